// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

// Byte-exact encodings shared by the Omni client: base64, Go encoding/json of a string map, Go
// url.QueryEscape, HMAC-SHA256. These exist because Omni recomputes HMACs and compares headers over its own
// Go re-encodings, so "equivalent" output is not good enough (a single Go JSON string is util::GoJsonQuote).
// Pure functions, thread-safe.
namespace omni_proxmox::omni {

// Standard base64 with padding (RFC 4648 §4).
std::string Base64Encode(std::string_view data);
// Standard base64 with padding; rejects anything else (whitespace, URL alphabet, bad padding).
absl::StatusOr<std::string> Base64Decode(std::string_view text);

// Go json.Marshal of a map[string]string: compact, keys sorted bytewise.
std::string GoJsonStringMap(const std::map<std::string, std::string>& values);

// Go url.QueryEscape: unreserved bytes kept, space as '+', everything else %XX (upper case).
std::string GoQueryEscape(std::string_view text);

// HMAC-SHA256(key, message), raw 32 bytes.
std::string HmacSha256(std::string_view key, std::string_view message);
// SHA-256 as lowercase hex.
std::string Sha256Hex(std::string_view data);

}  // namespace omni_proxmox::omni
