// SPDX-License-Identifier: Apache-2.0
#pragma once

// Durations as operators write them on the command line and in configs: "500ms", "90s", "10m",
// "1h", or a plain number of seconds (the Go provider's flags take Go durations such as these).

#include <chrono>
#include <string_view>

#include "absl/status/statusor.h"

namespace omni_proxmox::util {

// InvalidArgument naming `flag`, the text and examples when it is not a whole non-negative
// number with an optional unit ms, s, m or h.
absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text, std::string_view flag);

}  // namespace omni_proxmox::util
