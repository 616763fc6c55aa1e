// SPDX-License-Identifier: Apache-2.0
#include "util/escape.h"

#include "util/utf8.h"

namespace omni_proxmox::util {
namespace {

constexpr char kLowerHex[] = "0123456789abcdef";

void AppendUnicodeEscape(std::string& out, unsigned value) {
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kLowerHex[(value >> shift) & 0xF];
}

// The escape for one ASCII byte, or nothing when it stays as is.
bool AppendAsciiEscape(std::string& out, unsigned char c, const EscapeRules& rules) {
  if (c == '\\') {
    out += "\\\\";
  } else if (c == '\n') {
    out += "\\n";
  } else if (rules.quote != '\0' && c == static_cast<unsigned char>(rules.quote)) {
    out += '\\';
    out += rules.quote;
  } else if (rules.escape_cr_tab && (c == '\r' || c == '\t')) {
    out += c == '\r' ? "\\r" : "\\t";
  } else if (rules.go_json && (c == '<' || c == '>' || c == '&')) {
    AppendUnicodeEscape(out, c);
  } else if (rules.controls == EscapeRules::Controls::kJsonUnicode && c < 0x20) {
    AppendUnicodeEscape(out, c);
  } else if (rules.controls == EscapeRules::Controls::kHexByte && (c < 0x20 || c == 0x7f)) {
    out += "\\x";
    out += kLowerHex[c >> 4];
    out += kLowerHex[c & 0xF];
  } else {
    return false;
  }
  return true;
}

}  // namespace

void AppendEscaped(std::string& out, std::string_view text, const EscapeRules& rules) {
  out.reserve(out.size() + text.size() + 2);
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80 || !rules.go_json) {
      if (!AppendAsciiEscape(out, c, rules)) out += static_cast<char>(c);
      ++i;
      continue;
    }
    char32_t cp = 0;
    const std::size_t len = DecodeUtf8(text, i, cp);
    if (len == 0) {
      AppendUnicodeEscape(out, kReplacementCharacter);
      ++i;
    } else {
      if (cp == 0x2028 || cp == 0x2029) {
        AppendUnicodeEscape(out, static_cast<unsigned>(cp));
      } else {
        out.append(text.substr(i, len));
      }
      i += len;
    }
  }
}

std::string JsonEscape(std::string_view text) {
  std::string out;
  AppendEscaped(out, text, kJsonRules);
  return out;
}

std::string GoJsonQuote(std::string_view text) {
  std::string out = "\"";
  AppendEscaped(out, text, kGoJsonRules);
  out += '"';
  return out;
}

}  // namespace omni_proxmox::util
