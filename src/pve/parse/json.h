// SPDX-License-Identifier: Apache-2.0
#pragma once

// JSON helpers for the response parsers (internal to pve/parse). Tolerant of Proxmox's types:
// integers may arrive as numeric strings, booleans as 0/1 or "0"/"1".

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace omni_proxmox::pve::parse {

inline constexpr std::size_t kMaxBodyBytes = 64 * 1024 * 1024;
inline constexpr int kMaxJsonDepth = 32;

// Parses `body` with a size and nesting limit. Errors name `what` ("GET /nodes").
absl::StatusOr<nlohmann::json> ParseJsonBounded(std::string_view body, std::string_view what);

// The `data` member of the {"data": ...} envelope (null when absent).
absl::StatusOr<nlohmann::json> ParseEnvelope(std::string_view body, std::string_view what);

std::optional<std::int64_t> GetInt(const nlohmann::json& object, const char* key);
std::optional<double> GetDouble(const nlohmann::json& object, const char* key);
std::optional<bool> GetBool(const nlohmann::json& object, const char* key);
// Strings as-is, numbers formatted without exponent for integers; empty when absent or null.
std::string GetString(const nlohmann::json& object, const char* key);
// A scalar rendered as the text Proxmox would accept back.
std::string ScalarText(const nlohmann::json& value);

}  // namespace omni_proxmox::pve::parse
