// SPDX-License-Identifier: Apache-2.0
#pragma once

// UTF-8 encoding and decoding, with Go's rules for what is valid (no overlong forms, no surrogates, nothing
// above U+10FFFF), because the formats we match byte for byte (cel-go, Go's encoding/json) follow them.
// Pure functions, thread-safe.

#include <cstddef>
#include <string>
#include <string_view>

namespace omni_proxmox::util {

inline constexpr char32_t kReplacementCharacter = 0xFFFD;

// Appends the UTF-8 encoding of `code_point`. REQUIRES: code_point <= 0x10FFFF.
void AppendUtf8(std::string& out, char32_t code_point);

// Decodes the sequence that starts at text[pos] (REQUIRES: pos < text.size()). Returns its length in bytes and
// sets `code_point`; returns 0 when the bytes there are not valid UTF-8 (as Go's utf8.DecodeRuneInString
// reports RuneError with width 1).
std::size_t DecodeUtf8(std::string_view text, std::size_t pos, char32_t& code_point);

// True when all of `text` is valid UTF-8.
bool IsValidUtf8(std::string_view text);

}  // namespace omni_proxmox::util
