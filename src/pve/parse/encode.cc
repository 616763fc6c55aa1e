// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/encode.h"

namespace omni_proxmox::pve::parse {

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

std::string EncodePathSegment(std::string_view text, bool keep_slash) {
  static constexpr std::string_view kKeep = ":@!$&'()*+,;=";
  std::string out;
  for (char c : text) {
    if (kKeep.find(c) != std::string_view::npos || (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      out += PercentEncode(std::string_view(&c, 1));
    }
  }
  return out;
}

std::string FormEncode(const FormFields& fields) {
  std::string out;
  for (const auto& [key, value] : fields) {
    if (!out.empty()) out.push_back('&');
    out += PercentEncode(key);
    out.push_back('=');
    out += PercentEncode(value);
  }
  return out;
}

FormFields RedactFields(const FormFields& fields) {
  FormFields out = fields;
  for (auto& [key, value] : out) {
    std::string lower;
    for (char c : key) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    if (lower == "password" || lower.find("secret") != std::string::npos || lower.find("token") != std::string::npos ||
        lower == "cipassword" || lower == "sshkeys") {
      value = "***";
    }
  }
  return out;
}

}  // namespace omni_proxmox::pve::parse
