// SPDX-License-Identifier: Apache-2.0
#pragma once

// Which Proxmox VM is a request's, and how one is removed: the one place that decides what
// teardown, garbage collection and the operator tools (`status`, `gc`) may touch. A VM is a
// request's when it carries the request's markers (markers.h), or, for state the Go provider
// wrote (no markers of ours), when it sits at the stored VMID with the stored SMBIOS uuid. A VM
// that is neither is never modified or deleted.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "provider/ownership/markers.h"
#include "pve/client.h"
#include "pve/types.h"

namespace omni_proxmox::provider {

class MachineSpec;  // proto/provider/machine.proto

// How a VM without our markers is recognised: the Go provider stores the VMID and the SMBIOS uuid
// it gave the VM.
struct LegacyIdentity {
  pve::Vmid vmid = 0;
  std::string smbios_uuid;
};

// The legacy identity of a state resource without markers; nullopt for our own state (markers
// set) or state that names no VM yet.
std::optional<LegacyIdentity> LegacyIdentityOf(const MachineSpec& machine);

// What one cluster listing says about a request's VM.
struct VmLookup {
  enum class Kind {
    kNone,      // nothing of this request in the listing
    kMarked,    // `vm` carries the request's markers
    kCreating,  // a create holds the lock at the stored VMID (markers hidden until it ends)
    kLegacy,    // `vm` is at the stored VMID and carries the stored SMBIOS uuid (Go provider's)
    kForeign,   // another VM (not ours) occupies the stored VMID
  };
  Kind kind = Kind::kNone;
  std::optional<pve::ClusterResource> vm;
};

// VMs of the listing that carry the markers of `request_id` of `scope` (IsOwnedBy). Pure.
std::vector<pve::ClusterResource> MarkedVms(const std::vector<pve::ClusterResource>& vms, const Scope& scope,
                                            std::string_view request_id);

// The request's VM by its markers; nullopt when none; FailedPrecondition when two VMs carry them
// (only something outside the provider can make that: never guess which one to keep). Pure.
absl::StatusOr<std::optional<pve::ClusterResource>> FindMarkedVm(const std::vector<pve::ClusterResource>& vms,
                                                                 const Scope& scope, std::string_view request_id);

// Looks the request's VM up in `vms` (one GET /cluster/resources): by markers first, then, with a
// legacy identity, at its VMID, reading that VM's config to compare the SMBIOS uuid. `stored_vmid`
// (0: none) is where our own create may be in progress.
absl::StatusOr<VmLookup> LookUpVm(pve::Client& pve, const std::vector<pve::ClusterResource>& vms, const Scope& scope,
                                  std::string_view request_id, pve::Vmid stored_vmid,
                                  const std::optional<LegacyIdentity>& legacy);

// True when `vm` is the Go provider's VM `legacy` describes: same VMID and the stored SMBIOS uuid
// in its config.
absl::StatusOr<bool> IsLegacyOwned(pve::Client& pve, const pve::ClusterResource& vm, const LegacyIdentity& legacy);

// One step toward a deleted VM, shared by teardown and garbage collection so both destroy the
// same way. The caller has just located `vm` (LookUpVm, or GC's re-check of its markers). A running
// VM gets a graceful shutdown (Proxmox force-stops it after `shutdown_timeout`); a stopped one is
// deleted with purge and its unreferenced disks. The caller waits for `task`, then calls again
// until kGone. kBusy: a lock holds the VM; `refused` is Proxmox's answer when the delete itself
// was refused for it (`can't lock file ... - got timeout`), empty when the listing showed a lock
// (a create, migration or delete in progress) and nothing was asked.
//
// `power` is what the caller already knows of the VM's power state, saving the status read:
// kStopped after its own shutdown of this VM just ended OK (deleted at once), kRunning when the
// listing says so (shut down at once: a shutdown of a VM that turns out stopped is a no-op).
struct VmRemovalStep {
  enum class Kind { kGone, kBusy, kShuttingDown, kDeleting };
  Kind kind = Kind::kGone;
  std::optional<pve::Upid> task;  // kShuttingDown, kDeleting
  std::string refused;            // kBusy
};
enum class KnownPower { kUnknown, kRunning, kStopped };
absl::StatusOr<VmRemovalStep> AdvanceVmRemoval(pve::Client& pve, const pve::ClusterResource& vm,
                                               std::chrono::seconds shutdown_timeout,
                                               KnownPower power = KnownPower::kUnknown);

}  // namespace omni_proxmox::provider
