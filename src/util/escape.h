// SPDX-License-Identifier: Apache-2.0
#pragma once

// Backslash escaping for the text formats we write: JSON (our log lines, and Go's encoding/json byte for byte,
// which Omni recomputes signatures over), CEL string literals and the Prometheus text format. One routine with
// the rules as data, so each format states what it escapes instead of carrying its own loop.
// Pure functions, thread-safe.

#include <string>
#include <string_view>

namespace omni_proxmox::util {

// What to escape, beyond the backslash itself (always "\\\\") and '\n' (always "\\n").
struct EscapeRules {
  char quote = '"';           // escaped as backslash + quote; '\0' for none
  bool escape_cr_tab = true;  // '\r' -> \r, '\t' -> \t
  // Other control characters (below 0x20): as \u00xx (JSON), as \xXX (CEL, which also escapes 0x7f), or kept.
  enum class Controls { kKeep, kJsonUnicode, kHexByte } controls = Controls::kJsonUnicode;
  // Go's encoding/json HTML-safe default: '<', '>', '&' as \u003c, \u003e, \u0026; U+2028 and U+2029 as \u2028
  // and \u2029; and each byte that is not valid UTF-8 as \ufffd.
  bool go_json = false;
};

// JSON string contents as our log lines write them: \" \\ \n \r \t, other controls as \u00xx, all else as is.
inline constexpr EscapeRules kJsonRules{};
// Go's encoding/json string contents (json.Marshal's defaults).
inline constexpr EscapeRules kGoJsonRules{'"', true, EscapeRules::Controls::kJsonUnicode, true};
// A Prometheus text-format label value: \\ \" \n.
inline constexpr EscapeRules kPrometheusLabelRules{'"', false, EscapeRules::Controls::kKeep, false};
// A Prometheus text-format HELP line: \\ \n.
inline constexpr EscapeRules kPrometheusHelpRules{'\0', false, EscapeRules::Controls::kKeep, false};

// Appends `text` escaped by `rules`, without surrounding quotes.
void AppendEscaped(std::string& out, std::string_view text, const EscapeRules& rules);

// `text` escaped for inclusion inside a JSON string literal (kJsonRules).
std::string JsonEscape(std::string_view text);

// `text` as a Go encoding/json string literal, quotes included.
std::string GoJsonQuote(std::string_view text);

}  // namespace omni_proxmox::util
