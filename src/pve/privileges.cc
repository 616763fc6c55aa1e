// SPDX-License-Identifier: Apache-2.0
#include "pve/privileges.h"

#include <algorithm>
#include <cctype>
#include <iterator>

#include <fmt/format.h>

#include "pve/errors.h"

namespace omni_proxmox::pve {
namespace {

RequiredPrivilege One(std::string path, std::string priv, std::string why) {
  return RequiredPrivilege{{{std::move(path), std::move(priv)}}, std::move(why)};
}

}  // namespace

const std::vector<RequiredPrivilege>& ProvisioningPrivileges() {
  static const std::vector<RequiredPrivilege> kRequired = {
      One("/vms", "VM.Allocate", "create and delete VMs"),
      One("/vms", "VM.Audit", "read VM status and config"),
      One("/vms", "VM.PowerMgmt", "start and stop VMs"),
      One("/vms", "VM.Config.CPU", "set cores and cpu type"),
      One("/vms", "VM.Config.Memory", "set memory"),
      One("/vms", "VM.Config.Disk", "add disks and set the boot order"),
      One("/vms", "VM.Config.CDROM", "attach the Talos ISO"),
      One("/vms", "VM.Config.Network", "add network interfaces"),
      One("/vms", "VM.Config.Options", "set name, tags, onboot and agent"),
      One("/vms", "VM.Config.HWType", "set scsihw, machine and smbios1"),
      One("/storage", "Datastore.AllocateSpace", "allocate VM disks"),
      One("/storage", "Datastore.AllocateTemplate", "download and upload ISOs"),
      One("/storage", "Datastore.Audit", "list storages and their content"),
      One("/nodes", "Sys.Audit", "read node capacity for placement"),
      One("/sdn/zones/localnetwork", "SDN.Use", "attach VMs to bridges"),
      RequiredPrivilege{{{"/nodes", "Sys.AccessNetwork"}, {"/", "Sys.Modify"}}, "download ISOs with download-url"},
  };
  return kRequired;
}

bool HasPrivilege(const Permissions& permissions, const std::string& path, const std::string& privilege) {
  auto own = permissions.find(path);
  if (own != permissions.end()) return own->second.count(privilege) > 0;
  // Walk up to the nearest listed ancestor; only propagating privileges reach below it.
  std::string current = path;
  while (current != "/") {
    auto slash = current.rfind('/');
    current = slash == 0 || slash == std::string::npos ? "/" : current.substr(0, slash);
    auto it = permissions.find(current);
    if (it != permissions.end()) {
      auto priv = it->second.find(privilege);
      return priv != it->second.end() && priv->second;
    }
  }
  return false;
}

absl::Status CheckPrivileges(const Permissions& permissions, const std::vector<RequiredPrivilege>& required,
                             const std::string& auth_id) {
  std::vector<std::string> missing;
  for (const auto& requirement : required) {
    bool met = false;
    for (const auto& [path, priv] : requirement.any_of) met = met || HasPrivilege(permissions, path, priv);
    if (met) continue;
    std::string alternatives;
    for (const auto& [path, priv] : requirement.any_of) {
      alternatives += fmt::format("{}{} on {}", alternatives.empty() ? "" : " or ", priv, path);
    }
    missing.push_back(fmt::format("{} (to {})", alternatives, requirement.why));
  }
  if (missing.empty()) return absl::OkStatus();
  std::string list;
  for (const auto& m : missing) list += fmt::format("{}{}", list.empty() ? "" : "; ", m);
  return MakeError(ErrorKind::kPermission,
                   fmt::format("'{}' lacks {} privilege(s): {}; grant them with pveum acl modify (for a token with "
                               "privilege separation, grant them to the user and to the token)",
                               auth_id, missing.size(), list));
}

}  // namespace omni_proxmox::pve

namespace omni_proxmox::pve {

std::vector<std::string> GrantCommands(const Permissions& permissions, const std::vector<RequiredPrivilege>& required,
                                       const std::string& auth_id, const std::string& role) {
  // path -> privileges missing there, in the order of `required`; one role per path keeps each
  // grant as narrow as the requirement.
  std::vector<std::pair<std::string, std::vector<std::string>>> by_path;
  for (const auto& requirement : required) {
    bool met = false;
    for (const auto& [path, priv] : requirement.any_of) met = met || HasPrivilege(permissions, path, priv);
    if (met || requirement.any_of.empty()) continue;
    const auto& [path, priv] = requirement.any_of.front();  // the narrowest alternative comes first
    auto it = std::find_if(by_path.begin(), by_path.end(), [&](const auto& entry) { return entry.first == path; });
    if (it == by_path.end()) {
      by_path.push_back({path, {}});
      it = std::prev(by_path.end());
    }
    it->second.push_back(priv);
  }
  std::vector<std::string> out;
  if (by_path.empty()) return out;
  const bool token = auth_id.find('!') != std::string::npos;
  const std::string user = token ? auth_id.substr(0, auth_id.find('!')) : auth_id;
  for (const auto& [path, privileges] : by_path) {
    std::string suffix = path == "/" ? "Root" : path.substr(path.rfind('/') + 1);
    if (!suffix.empty()) suffix[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
    const std::string role_name = role + suffix;
    // The role may exist already (docs/proxmox-permissions.md creates the same names, and `role add`
    // refuses an existing role): then the privileges are appended to it.
    const std::string privs = fmt::format("{}", fmt::join(privileges, ","));
    out.push_back(fmt::format("pveum role add {0} --privs \"{1}\" || pveum role modify {0} --append 1 --privs \"{1}\"",
                              role_name, privs));
    out.push_back(fmt::format("pveum acl modify {} --roles {} --users {}", path, role_name, user));
    if (token) out.push_back(fmt::format("pveum acl modify {} --roles {} --tokens '{}'", path, role_name, auth_id));
  }
  return out;
}

}  // namespace omni_proxmox::pve
