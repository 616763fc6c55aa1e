// SPDX-License-Identifier: Apache-2.0
#pragma once

// The provider's shared views of Proxmox, each with its freshness rule, so the steps of many
// requests running at once read the cluster once instead of once each:
//   placement   one listing of nodes, their storages and our VMs, for placement_snapshot_ttl;
//               allocations made since then are the ledger's reservations (ledger.h)
//   ISOs        which ISO volumes each storage holds, for iso_cache_ttl (iso_cache.h)
//   tasks       how often to poll each task, and the last poll of a task another request shares
//               (a node's Talos ISO download) (task_poll.h)
//   task slots  a node's heavy-task slot claimed before a create (pve::TaskSlotView)
// Steps ask it; nothing here decides what to create or delete. Thread-safe.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "provider/fleet/iso_cache.h"
#include "provider/fleet/ledger.h"
#include "provider/fleet/task_poll.h"
#include "provider/placement/placement.h"
#include "provider/placement/storage_selector.h"
#include "pve/client.h"
#include "pve/limited_client.h"
#include "util/clock.h"

namespace omni_proxmox::provider {

struct FleetOptions {
  std::string provider_id = "proxmox";
  // How long one listing of nodes, storages and VMs serves placements.
  std::chrono::milliseconds placement_snapshot_ttl{1500};
  // How long a listing of a storage's ISOs answers "is this ISO there?"; bounds how late an ISO
  // removed out of band is noticed.
  std::chrono::milliseconds iso_cache_ttl{30'000};
  // The longest wait between two polls of a running task.
  std::chrono::milliseconds task_poll{1000};
};

// One listing of the cluster as placement sees it.
struct PlacementSnapshot {
  std::uint64_t release_seq = 0;  // the ledger's ReleaseSeq() before the listing
  std::vector<NodeSnapshot> nodes;
  std::vector<PlacedVm> vms;  // ours, from /cluster/resources
};

// What one look at a Proxmox task found.
struct TaskPoll {
  enum class Kind {
    kRunning,     // look again after `again`
    kSucceeded,   // ended OK (or with warnings)
    kFailed,      // ended with an error: `error` holds its exit status and log tail
    kGone,        // Proxmox no longer knows it (or its UPID is unreadable): look at the world instead
    kUnreadable,  // its status could not be read now: `error` says why
  };
  Kind kind = Kind::kRunning;
  std::chrono::milliseconds again{0};
  std::string error;

  bool Finished() const { return kind == Kind::kSucceeded || kind == Kind::kFailed || kind == Kind::kGone; }
};

// Where an ISO lives: local storage is per node, shared storage is the same on every node.
struct IsoLocation {
  std::string node;  // the node to list through
  std::string storage;
  bool shared = false;
  std::string scope() const { return shared ? "" : node; }
};

class FleetView {
 public:
  // `slots` may be null (no per-node task limit). All references must outlive the view.
  FleetView(FleetOptions options, pve::Client& pve, pve::TaskSlotView* slots, const util::Clock& clock);

  // The current listing (fetched when the last one is older than placement_snapshot_ttl; workers
  // that ask meanwhile wait for that one fetch).
  absl::StatusOr<std::shared_ptr<const PlacementSnapshot>> Placement();
  // After an error that suggests the listing is stale (capacity, VMID taken, VM gone).
  void InvalidatePlacement();
  // `node`'s storages from the current listing, or from a listing of its own when the node is not
  // online in it.
  absl::StatusOr<std::vector<StorageFacts>> NodeStorages(const std::string& node);

  // Whether `volid` ("storage:iso/file") is in `where`, from the ISO cache when it knows; `fresh`
  // skips the cache (the listing still refreshes it).
  absl::StatusOr<bool> IsoPresent(const IsoLocation& where, const std::string& volid, bool fresh = false);
  // We made (a download or upload finished) or removed (a delete finished) `volid`.
  void MarkIso(const IsoLocation& where, const std::string& volid, bool present);
  // After an error that suggests the cache is wrong: the next look lists the storage again.
  void InvalidateIsos(const IsoLocation& where);
  void InvalidateAllIsos();

  // Polls `upid` for `asker` (a request ID), or takes another asker's recent reading of it.
  // `what` names the task in errors ("create of VM 105").
  TaskPoll PollTask(const std::string& asker, const std::string& upid, std::string_view what);
  // When to look at a task just started.
  std::chrono::milliseconds FirstPoll(const std::string& upid);

  // A task slot on `node` for the create `request_id` is about to make, or nullopt: the request
  // keeps its place in the node's queue and is told when its turn comes (pve::TaskSlotView).
  // Without a task limit, always a claim that holds nothing.
  std::optional<pve::SlotClaim> ClaimSlot(const std::string& node, const std::string& request_id);

  Ledger& ledger() { return ledger_; }
  const FleetOptions& options() const { return options_; }

 private:
  absl::StatusOr<std::shared_ptr<const PlacementSnapshot>> FetchPlacement();

  const FleetOptions options_;
  pve::Client& pve_;
  pve::TaskSlotView* const slots_;
  const util::Clock& clock_;
  Ledger ledger_;
  TaskPollPacer pacer_;
  TaskStatusBoard board_;
  IsoPresenceCache isos_;

  // Held while fetching, so concurrent placements wait for one fetch instead of each starting one.
  absl::Mutex snapshot_mutex_;
  std::shared_ptr<const PlacementSnapshot> snapshot_ ABSL_GUARDED_BY(snapshot_mutex_);
  util::Clock::MonotonicTime snapshot_fetched_ ABSL_GUARDED_BY(snapshot_mutex_){};
};

}  // namespace omni_proxmox::provider
