// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/error.h"

#include <map>
#include <string>

#include <fmt/format.h>

#include "pve/parse/json.h"

namespace omni_proxmox::pve::parse {
namespace {

constexpr std::size_t kMaxErrorBody = 1024 * 1024;
constexpr std::size_t kMaxMessage = 4096;

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) s.remove_prefix(1);
  if (s.size() > kMaxMessage) s = s.substr(0, kMaxMessage);
  return std::string(s);
}

}  // namespace

ErrorKind ClassifyMessage(std::string_view m) {
  // Locks first: "can't lock file '...' - got timeout" must not read as a generic timeout.
  if (Contains(m, "VM is locked (") || Contains(m, "CT is locked (") || Contains(m, "can't lock file")) {
    return ErrorKind::kLocked;
  }
  if (Contains(m, "already exists") || Contains(m, "File exists") ||
      Contains(m, "refusing to override existing file")) {
    return ErrorKind::kAlreadyExists;
  }
  if (Contains(m, "does not exist") || Contains(m, "unable to find configuration file for VM") ||
      (Contains(m, "volume_size_info on '") && Contains(m, "failed")) || Contains(m, "no such task") ||
      Contains(m, "no such cluster node") || (Contains(m, "hostname lookup '") && Contains(m, "failed"))) {
    return ErrorKind::kNotFound;
  }
  if (Contains(m, "got no worker upid") || Contains(m, "no quorum") || Contains(m, "cluster not ready")) {
    return ErrorKind::kTransient;
  }
  if (Contains(m, "Permission check failed")) return ErrorKind::kPermission;
  return ErrorKind::kOther;
}

absl::Status ErrorFromHttp(int http_status, std::string_view reason, std::string_view body, std::string_view context) {
  std::string message = Trim(reason);
  std::map<std::string, std::string> parameter_errors;
  if (!body.empty() && body.size() <= kMaxErrorBody) {
    auto parsed = ParseJsonBounded(body, context);
    if (parsed.ok() && parsed->is_object()) {
      std::string body_message = Trim(GetString(*parsed, "message"));
      // The body holds the whole message; the reason phrase only its first line.
      if (!body_message.empty()) message = body_message;
      auto errors = parsed->find("errors");
      if (errors != parsed->end() && errors->is_object()) {
        for (const auto& [key, value] : errors->items()) {
          if (parameter_errors.size() >= 256) break;
          parameter_errors[key.substr(0, 256)] = Trim(ScalarText(value));
        }
      }
    } else if (message.empty() && !parsed.ok()) {
      // Transport-level 501s carry the message as plain text.
      message = Trim(body);
    }
  }
  if (message.empty()) message = fmt::format("HTTP {}", http_status);

  std::string detail;
  for (const auto& [key, value] : parameter_errors) {
    detail += fmt::format("{}{}: {}", detail.empty() ? "" : "; ", key, value);
  }
  std::string full = detail.empty() ? fmt::format("{}: {} {}", context, http_status, message)
                                    : fmt::format("{}: {} {} ({})", context, http_status, message, detail);

  ErrorKind kind;
  if (http_status == 401) {
    kind = ErrorKind::kAuth;
  } else if (http_status == 403) {
    kind = ErrorKind::kPermission;
  } else if (http_status >= 595 && http_status <= 599) {
    kind = ErrorKind::kNodeUnreachable;
  } else if (http_status == 501 || http_status == 506) {
    kind = ErrorKind::kUnsupported;
  } else if (http_status == 502 || http_status == 503 || http_status == 504) {
    kind = ErrorKind::kTransient;
  } else if (http_status == 400) {
    kind = ErrorKind::kBadParameter;
    // A few conflicts come back as 400 parameter errors (nextid?vmid=N taken, task on no node).
    for (const auto& [key, value] : parameter_errors) {
      ErrorKind specific = ClassifyMessage(value);
      if (specific == ErrorKind::kAlreadyExists || specific == ErrorKind::kNotFound) kind = specific;
    }
  } else if (http_status >= 500) {
    kind = ClassifyMessage(message);
  } else {
    kind = ErrorKind::kOther;
  }
  return MakeError(kind, full, parameter_errors, http_status);
}

}  // namespace omni_proxmox::pve::parse
