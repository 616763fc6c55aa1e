// SPDX-License-Identifier: Apache-2.0
#pragma once

// Text, form-encoding and digest helpers shared by the Proxmox simulator's endpoint families.
// Internal to sim/pve; pure functions, thread-safe.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <openssl/evp.h>

namespace omni_proxmox::sim::pve {

// Eight upper-case hex digits (UPID fields, ticket stamps).
std::string Hex8(std::uint64_t value);
// The digest of `data` as lower-case hex, e.g. DigestHex(EVP_sha1(), text).
std::string DigestHex(const EVP_MD* md, const std::string& data);
// ASCII lower case.
std::string Lower(std::string text);
// Splits at any of `separators`, dropping empty parts.
std::vector<std::string> SplitAny(const std::string& text, const std::string& separators);
std::string Join(const std::vector<std::string>& parts, const std::string& separator);
// An application/x-www-form-urlencoded body or query ('&' or ';' between pairs, '+' is a space).
std::map<std::string, std::string> ParseForm(const std::string& text);
// The media type of a Content-Type header, lower case, without parameters.
std::string MediaType(const std::string& content_type);

}  // namespace omni_proxmox::sim::pve
