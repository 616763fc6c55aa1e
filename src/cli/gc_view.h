// SPDX-License-Identifier: Apache-2.0
#pragma once

// How `gc` and `status` show garbage (provider/gc): one table row or one JSON object per finding,
// so both commands print the same columns and keys. Internal to cli/.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "provider/gc/garbage.h"

namespace omni_proxmox::cli {

// "45s", "12m", "3h20m", "2d4h".
std::string FormatAge(std::int64_t seconds);

// KIND, NODE, WHAT, REQUEST, AGE.
std::vector<std::string> GarbageHeaders();
std::vector<std::string> GarbageRow(const provider::Garbage& garbage);
// {"kind", "node", "vmid", "name", "request_id", "storage", "volid", "age_seconds"}.
nlohmann::json GarbageJson(const provider::Garbage& garbage);

}  // namespace omni_proxmox::cli
