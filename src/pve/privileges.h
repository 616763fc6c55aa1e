// SPDX-License-Identifier: Apache-2.0
#pragma once

// Preflight check of the privileges a provisioning provider needs (reference §2.5), evaluated
// against the effective map from GET /access/permissions (Client::GetPermissions()). Pure.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

#include "pve/types.h"

namespace omni_proxmox::pve {

// One requirement: satisfied when any (path, privilege) alternative holds.
struct RequiredPrivilege {
  std::vector<std::pair<std::string, std::string>> any_of;
  std::string why;  // "create VMs", ...
};

// What the provider's calls need: VM allocation, config, power and audit on /vms, storage
// allocation and ISO templates on /storage, node audit, bridge use, and network access for
// download-url (Sys.AccessNetwork on /nodes, or Sys.Modify on / before pve-storage 8.1).
const std::vector<RequiredPrivilege>& ProvisioningPrivileges();

// True when `privilege` is effective on `path`: the entry for the path itself, or else for its
// nearest listed ancestor where the privilege propagates.
bool HasPrivilege(const Permissions& permissions, const std::string& path, const std::string& privilege);

// OK, or PermissionDenied (ErrorKind::kPermission) listing every unmet requirement as
// "<priv> on <path> (to <why>)" and how to fix it.
absl::Status CheckPrivileges(const Permissions& permissions, const std::vector<RequiredPrivilege>& required,
                             const std::string& auth_id);

// The pveum commands that grant what CheckPrivileges finds missing (empty when nothing is): per
// path one role "<role><Path>" (OmniProxmoxVms, ...) holding the privileges missing there (created,
// or appended to when it exists: `pveum role add R ... || pveum role modify R --append 1 ...`), granted
// to the user, and for an API token (auth_id "user@realm!name") to the token too, since a token
// with privilege separation gets only what both hold. See docs/proxmox-permissions.md.
std::vector<std::string> GrantCommands(const Permissions& permissions, const std::vector<RequiredPrivilege>& required,
                                       const std::string& auth_id, const std::string& role = "OmniProxmox");

}  // namespace omni_proxmox::pve
