// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/upid.h"

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "pve/errors.h"

namespace omni_proxmox::pve::parse {
namespace {

constexpr std::size_t kMaxUpidLength = 1024;

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

bool ValidNodeName(std::string_view s) {
  if (s.empty() || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '-') return false;
  }
  return true;
}

// [^:\s/] — the field separators and path characters are excluded so a UPID is one path segment.
bool ValidField(std::string_view s, bool allow_empty) {
  if (s.empty()) return allow_empty;
  for (char c : s) {
    if (c == ':' || c == '/' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      return false;
    }
  }
  return true;
}

bool ParseHex(std::string_view s, std::size_t min_digits, std::size_t max_digits, std::uint64_t& out) {
  if (s.size() < min_digits || s.size() > max_digits) return false;
  std::uint64_t value = 0;
  for (char c : s) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return false;
    }
    value = value * 16 + static_cast<std::uint64_t>(digit);
  }
  out = value;
  return true;
}

absl::Status Bad(std::string_view text, std::string_view why) {
  std::string shown(text.substr(0, 120));
  return MakeError(ErrorKind::kBadParameter, fmt::format("upid '{}': {}", shown, why));
}

}  // namespace

absl::StatusOr<Upid> ParseUpid(std::string_view text) {
  if (text.size() > kMaxUpidLength) return Bad(text, "longer than 1024 bytes");
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    std::size_t colon = text.find(':', start);
    if (colon == std::string_view::npos) {
      fields.push_back(text.substr(start));
      break;
    }
    fields.push_back(text.substr(start, colon - start));
    start = colon + 1;
  }
  if (fields.size() != 9 || fields[0] != "UPID" || !fields[8].empty()) {
    return Bad(text, "expected UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>: (9 ':'-separated fields)");
  }
  Upid upid;
  if (!ValidNodeName(fields[1])) return Bad(text, "node is not a valid node name");
  upid.node = std::string(fields[1]);
  std::uint64_t value = 0;
  if (!ParseHex(fields[2], 8, 8, value)) return Bad(text, "pid is not 8 hex digits");
  upid.pid = static_cast<std::uint32_t>(value);
  if (!ParseHex(fields[3], 8, 9, value)) return Bad(text, "pstart is not 8 or 9 hex digits");
  upid.pstart = value;
  if (!ParseHex(fields[4], 8, 8, value)) return Bad(text, "starttime is not 8 hex digits");
  upid.start_time_unix = static_cast<std::int64_t>(value);
  if (!ValidField(fields[5], false)) return Bad(text, "type is empty or contains ':', '/' or whitespace");
  upid.type = std::string(fields[5]);
  if (!ValidField(fields[6], true)) return Bad(text, "id contains ':', '/' or whitespace");
  upid.id = std::string(fields[6]);
  if (!ValidField(fields[7], false)) return Bad(text, "user is empty or contains ':', '/' or whitespace");
  upid.user = std::string(fields[7]);
  upid.text = std::string(text);
  return upid;
}

}  // namespace omni_proxmox::pve::parse
