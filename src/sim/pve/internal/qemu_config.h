// SPDX-License-Identifier: Apache-2.0
#pragma once

// VM config strings as qemu-server reads them: drive options, drive order, sizes and memory. Internal to
// sim/pve (defined in qemu_config.cc); pure functions, thread-safe.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sim/pve/internal/state.h"

namespace omni_proxmox::sim::pve {

// ide0-3, sata0-5, scsi0-30, virtio0-15, efidisk0, tpmstate0.
bool IsDriveKey(const std::string& key);
// Drive keys in PVE's valid_drive_names order.
std::vector<std::string> DriveOrder();
// A drive option as key -> value, the volume under "file".
std::map<std::string, std::string> ParseDrive(const std::string& value);
std::string PrintDrive(const std::map<std::string, std::string>& drive);
bool IsCdrom(const std::string& value);
// PVE's format_size: the largest unit among K, M, G, T that divides the size exactly.
std::string FormatSize(std::int64_t bytes);
// "32G", "512M", "1.5T" or plain bytes.
std::optional<std::int64_t> ParseSize(const std::string& text);
// The VM's configured memory in MiB (512 when unset).
std::int64_t MemoryMiB(const Vm& vm);

}  // namespace omni_proxmox::sim::pve
