// SPDX-License-Identifier: Apache-2.0
#include "provider/ownership/owned_vm.h"

#include <fmt/format.h>

#include "provider/machine.pb.h"
#include "provider/ownership/markers.h"
#include "pve/errors.h"

namespace omni_proxmox::provider {

std::optional<LegacyIdentity> LegacyIdentityOf(const MachineSpec& machine) {
  if (machine.markers() || machine.uuid().empty() || machine.vmid() == 0) return std::nullopt;
  return LegacyIdentity{.vmid = machine.vmid(), .smbios_uuid = machine.uuid()};
}

std::vector<pve::ClusterResource> MarkedVms(const std::vector<pve::ClusterResource>& vms, const Scope& scope,
                                            std::string_view request_id) {
  std::vector<pve::ClusterResource> out;
  for (const auto& vm : vms) {
    if (vm.type == "qemu" && vm.vmid && IsOwnedBy(vm.tags, vm.name, scope, request_id)) out.push_back(vm);
  }
  return out;
}

absl::StatusOr<std::optional<pve::ClusterResource>> FindMarkedVm(const std::vector<pve::ClusterResource>& vms,
                                                                 const Scope& scope, std::string_view request_id) {
  auto marked = MarkedVms(vms, scope, request_id);
  if (marked.empty()) return std::nullopt;
  if (marked.size() > 1) {
    return absl::FailedPreconditionError(
        fmt::format("VMs {} and {} both carry the markers of request {}; remove the one that is not in use",
                    *marked[0].vmid, *marked[1].vmid, request_id));
  }
  return marked.front();
}

absl::StatusOr<bool> IsLegacyOwned(pve::Client& pve, const pve::ClusterResource& vm, const LegacyIdentity& legacy) {
  if (!vm.vmid || *vm.vmid != legacy.vmid || legacy.smbios_uuid.empty()) return false;
  auto config = pve.GetVmConfig(vm.node, *vm.vmid);
  if (!config.ok()) return config.status();
  return config->Get("smbios1").value_or("").find("uuid=" + legacy.smbios_uuid) != std::string::npos;
}

absl::StatusOr<VmLookup> LookUpVm(pve::Client& pve, const std::vector<pve::ClusterResource>& vms, const Scope& scope,
                                  std::string_view request_id, pve::Vmid stored_vmid,
                                  const std::optional<LegacyIdentity>& legacy) {
  auto marked = FindMarkedVm(vms, scope, request_id);
  if (!marked.ok()) return marked.status();
  if (*marked) return VmLookup{.kind = VmLookup::Kind::kMarked, .vm = **marked};
  if (stored_vmid == 0) return VmLookup{};
  for (const auto& vm : vms) {
    if (!vm.vmid || *vm.vmid != stored_vmid) continue;
    // Our create may still hold the lock: its config shows no markers until the task ends.
    if (vm.lock == "create") return VmLookup{.kind = VmLookup::Kind::kCreating, .vm = vm};
    if (vm.type == "qemu" && legacy) {
      auto owned = IsLegacyOwned(pve, vm, *legacy);
      if (!owned.ok()) return owned.status();
      if (*owned) return VmLookup{.kind = VmLookup::Kind::kLegacy, .vm = vm};
    }
    return VmLookup{.kind = VmLookup::Kind::kForeign, .vm = vm};
  }
  return VmLookup{};
}

absl::StatusOr<VmRemovalStep> AdvanceVmRemoval(pve::Client& pve, const pve::ClusterResource& vm,
                                               std::chrono::seconds shutdown_timeout, KnownPower power) {
  if (!vm.vmid) return VmRemovalStep{};
  const pve::Vmid vmid = *vm.vmid;
  // A create, migration or delete in progress owns the VM until it ends.
  if (!vm.lock.empty()) return VmRemovalStep{.kind = VmRemovalStep::Kind::kBusy, .task = std::nullopt};
  bool running = power == KnownPower::kRunning;
  if (power == KnownPower::kUnknown) {
    auto status = pve.GetVmStatus(vm.node, vmid);
    if (status.status().code() == absl::StatusCode::kNotFound) return VmRemovalStep{};
    if (!status.ok()) return status.status();
    running = status->status == "running";
  }
  if (running) {
    auto upid = pve.ShutdownVm(vm.node, vmid, {.timeout = shutdown_timeout, .force_stop = true});
    if (!upid.ok()) return upid.status();
    return VmRemovalStep{.kind = VmRemovalStep::Kind::kShuttingDown, .task = *upid};
  }
  auto upid = pve.DeleteVm(vm.node, vmid, /*purge=*/true, /*destroy_unreferenced_disks=*/true);
  if (!upid.ok()) {
    if (pve::ClassifyError(upid.status()) == pve::ErrorKind::kLocked) {
      return VmRemovalStep{
          .kind = VmRemovalStep::Kind::kBusy,
          .task = std::nullopt,
          .refused = fmt::format("delete of VM {} on {}: {}", vmid, vm.node, std::string(upid.status().message()))};
    }
    if (upid.status().code() == absl::StatusCode::kNotFound) return VmRemovalStep{};
    return upid.status();
  }
  return VmRemovalStep{.kind = VmRemovalStep::Kind::kDeleting, .task = *upid};
}

}  // namespace omni_proxmox::provider
