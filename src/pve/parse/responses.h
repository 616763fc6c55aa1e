// SPDX-License-Identifier: Apache-2.0
#pragma once

// Decoders for the bodies of successful Proxmox VE replies ({"data": ...}). Pure, bounded (body
// size and nesting limits in json.h) and tolerant of Proxmox's types: integers may be numeric
// strings, booleans 0/1. Unknown fields are ignored; list order is kept as received (callers must
// never depend on it). Errors are kOther and name `what`.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "pve/types.h"

namespace omni_proxmox::pve::parse {

struct Ticket {
  std::string username;
  std::string ticket;
  std::string csrf_token;
};

absl::StatusOr<Ticket> ParseTicket(std::string_view body);
absl::StatusOr<VersionInfo> ParseVersion(std::string_view body);
absl::StatusOr<Permissions> ParsePermissions(std::string_view body);
absl::StatusOr<std::vector<Node>> ParseNodes(std::string_view body);
absl::StatusOr<std::vector<ClusterResource>> ParseClusterResources(std::string_view body);
absl::StatusOr<Vmid> ParseNextId(std::string_view body);
absl::StatusOr<std::vector<NodeStorage>> ParseNodeStorages(std::string_view body);
absl::StatusOr<std::vector<NetworkInterface>> ParseNetworkInterfaces(std::string_view body);
absl::StatusOr<std::vector<HardwareMapping>> ParseHardwareMappings(std::string_view body);
absl::StatusOr<std::vector<StorageVolume>> ParseStorageContent(std::string_view body);
absl::StatusOr<VolumeInfo> ParseVolumeInfo(std::string_view body);
absl::StatusOr<VmStatus> ParseVmStatus(std::string_view body);
absl::StatusOr<std::vector<VmStatus>> ParseVmList(std::string_view body);
absl::StatusOr<VmConfig> ParseVmConfig(std::string_view body);
absl::StatusOr<TaskStatus> ParseTaskStatus(std::string_view body);
absl::StatusOr<TaskLog> ParseTaskLog(std::string_view body);
// GET /nodes/{node}/tasks: finished entries carry the exit status in `status`.
absl::StatusOr<std::vector<TaskStatus>> ParseTaskList(std::string_view body);
// {"data":"UPID:..."}: a worker-starting call.
absl::StatusOr<Upid> ParseUpidData(std::string_view body, std::string_view what);
// {"data":null} or {"data":"UPID:..."} (config POST, delete with delay).
absl::StatusOr<std::optional<Upid>> ParseOptionalUpidData(std::string_view body, std::string_view what);

// Splits a Proxmox comma list ("iso,vztmpl,backup"), dropping empty items.
std::vector<std::string> SplitCommaList(std::string_view text);

}  // namespace omni_proxmox::pve::parse
