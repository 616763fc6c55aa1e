// SPDX-License-Identifier: Apache-2.0
#include "util/duration.h"

#include <charconv>
#include <cstdint>

#include <fmt/format.h>

namespace omni_proxmox::util {

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text, std::string_view flag) {
  const auto invalid = [&] {
    return absl::InvalidArgumentError(fmt::format(
        "{} '{}' is not a duration; use e.g. 500ms, 90s, 10m or 1h (a plain number is seconds)", flag, text));
  };
  std::int64_t multiplier = 1000;
  std::string_view digits = text;
  if (digits.ends_with("ms")) {
    multiplier = 1;
    digits.remove_suffix(2);
  } else if (digits.ends_with('s')) {
    digits.remove_suffix(1);
  } else if (digits.ends_with('m')) {
    multiplier = 60'000;
    digits.remove_suffix(1);
  } else if (digits.ends_with('h')) {
    multiplier = 3'600'000;
    digits.remove_suffix(1);
  }
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || error != std::errc{} || end != digits.data() + digits.size() || value < 0 ||
      value > 10'000'000'000 / multiplier) {
    return invalid();
  }
  return std::chrono::milliseconds{value * multiplier};
}

}  // namespace omni_proxmox::util
