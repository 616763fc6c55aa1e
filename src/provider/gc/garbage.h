// SPDX-License-Identifier: Apache-2.0
#pragma once

// What is garbage (issue #7): VMs carrying the markers of this provider of this Omni (markers.h
// Scope) whose MachineRequest is gone, and Talos or cloud-init ISOs named for this scope
// (iso_names.h) that nothing uses any more. Another Omni's VMs and ISOs are never candidates, even
// under the same provider ID; ours from before the instance marker existed, and the Go provider's
// cloud-init ISOs, carry no proof of which Omni made them and are collected only on request
// (include_unscoped), otherwise reported as kept. Pure: the inputs are
// plain values observed from Omni and Proxmox by GarbageCollector (collector.h), so every rule
// here is tested without a network. The rules err on the side of keeping things: a VM or ISO is
// garbage only when everything needed to prove it was read and it is older than the grace period.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "provider/ownership/markers.h"
#include "pve/types.h"

namespace omni_proxmox::provider {

// --gc-mode: what the provider does with garbage it finds.
enum class GcMode { kOff, kReport, kDelete };
// "off", "report" or "delete"; InvalidArgument naming --gc-mode otherwise.
absl::StatusOr<GcMode> ParseGcMode(std::string_view text);
std::string_view GcModeName(GcMode mode);

// A duration such as "90s", "10m", "1h" or plain seconds ("600"); InvalidArgument naming `flag`.
absl::StatusOr<std::chrono::seconds> ParseGcDuration(std::string_view text, std::string_view flag);

enum class GarbageKind { kOrphanVm, kTalosIso, kCidataIso };
// The metric label: "orphan_vm", "talos_iso", "cidata_iso".
std::string_view GarbageKindName(GarbageKind kind);
inline constexpr GarbageKind kAllGarbageKinds[] = {GarbageKind::kOrphanVm, GarbageKind::kTalosIso,
                                                   GarbageKind::kCidataIso};

// The volumes a VM config attaches (ide*, sata*, scsi*, virtio*, efidisk*, tpmstate*): the part before
// the first ',' ("local:iso/x.iso" from "local:iso/x.iso,media=cdrom"); "none" and "cdrom" skipped.
std::vector<std::string> AttachedVolumes(const std::map<std::string, std::string>& config);
// The creation time Proxmox records in a VM config's `meta` ("creation-qemu=9.2.0,ctime=1700000000").
std::optional<std::int64_t> CreatedUnixFromMeta(std::string_view meta);

struct ObservedVm {
  std::string node;
  pve::Vmid vmid = 0;
  std::string name;
  std::string tags;
  std::string lock;          // a VM that is being created, migrated or deleted is never touched
  bool config_read = false;  // false: media and age unknown
  std::optional<std::int64_t> created_unix;
  std::vector<std::string> media;  // AttachedVolumes of its config
};

struct ObservedIso {
  std::string node;  // the node it was listed through
  std::string storage;
  bool shared = false;  // one file for every node (a local storage has one file per node)
  std::string volid;    // "local:iso/talos-....iso"
  std::optional<std::int64_t> created_unix;
};

// A MachineRequest of this provider, with what our state resource says it uses.
struct ObservedRequest {
  std::string id;
  std::vector<std::string> volumes;    // Talos and cloud-init ISO volids in its state
  std::vector<std::string> iso_files;  // ISO file names it needs (e.g. a Talos ISO still downloading)
};

struct GarbageInputs {
  Scope scope;
  // Also collect what carries no proof of its Omni: our VMs and ISOs from before the instance
  // marker, and the Go provider's cloud-init ISOs (`gc --include-unscoped`).
  bool include_unscoped = false;
  // Why Omni could not be read (listing MachineRequests or our state failed); non-empty means
  // nothing is collected this cycle, since every VM would look orphaned.
  std::string omni_error;
  // Why the VM list could not be read; non-empty means nothing is collected either.
  std::string proxmox_error;
  std::vector<ObservedRequest> requests;
  std::set<std::string> in_flight;  // request IDs the reconciler is working on right now
  std::vector<ObservedVm> vms;      // every VM of the cluster, ours or not
  std::vector<ObservedIso> isos;    // every ISO listed on every reachable node
  // Nodes whose VM configs or ISO listings could not be read (offline): nothing on them or on a
  // shared storage can be proven unreferenced.
  std::set<std::string> unreadable_nodes;
  std::int64_t now_unix = 0;
  std::chrono::seconds grace_period{600};
  // Seconds each candidate (by GarbageKey) has been seen unused by the running provider on its own
  // monotonic clock; a key not in the map counts as just seen. When set, this and not Proxmox's
  // ctime decides the grace period, so a clock offset between this host and the nodes can neither
  // shorten it (deleting something young) nor stretch it forever. Null: ages come from ctime (the
  // one-shot `gc` and `status` commands, which have no history).
  const std::map<std::string, std::int64_t>* unused_for = nullptr;
};

// Stable identities of candidates across cycles: a VM by VMID and name (it keeps both when
// migrated), an ISO by its volume and, for a local storage, its node.
std::string VmGarbageKey(pve::Vmid vmid, std::string_view name);
std::string IsoGarbageKey(const ObservedIso& iso);

struct Garbage {
  GarbageKind kind = GarbageKind::kOrphanVm;
  std::string node;
  pve::Vmid vmid = 0;              // orphan VMs
  std::string name;                // orphan VMs
  std::string request_id;          // orphan VMs: the request tag (sanitized, as on the VM)
  std::string instance;            // orphan VMs: the instance tag ("" on a VM from before it)
  std::string storage;             // ISOs
  std::string volid;               // ISOs
  std::int64_t age_seconds = 0;    // by ctime, or how long it has been seen unused (see unused_for)
  std::vector<std::string> media;  // orphan VMs: the volumes attached to it
};

struct GarbageReport {
  bool skipped = false;
  std::string skip_reason;
  std::vector<Garbage> found;
  // Things that looked like garbage but were kept, with the reason (young, age unknown, locked...).
  std::vector<std::string> kept;
  // GarbageKey of everything that is unused, whatever its age: what the caller tracks over time.
  std::set<std::string> candidates;
};

GarbageReport FindGarbage(const GarbageInputs& inputs);

}  // namespace omni_proxmox::provider
