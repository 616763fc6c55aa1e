// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace omni_proxmox::util {

// Levenshtein distance between two byte strings.
std::size_t EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `word`, if one is close enough to be a plausible typo
// (distance <= max(2, |word| / 3)). Used for "did you mean" hints.
std::optional<std::string> ClosestMatch(std::string_view word, std::span<const std::string> candidates);

}  // namespace omni_proxmox::util
