// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string_view>

#include "absl/status/statusor.h"

#include "pve/types.h"

namespace omni_proxmox::pve::parse {

// Parses a UPID exactly as Proxmox's decoder does (PVE::UPID::decode):
//   UPID:<node>:<pid %08X>:<pstart %08X or %09X>:<starttime %08X>:<type>:<id>:<user>:
// Pure and bounded (at most 1 KiB of input). Errors are kBadParameter naming the bad field.
absl::StatusOr<Upid> ParseUpid(std::string_view text);

}  // namespace omni_proxmox::pve::parse
