// SPDX-License-Identifier: Apache-2.0
#pragma once

// The provider's shared views of Proxmox, each with its freshness rule, so the steps of many
// requests running at once read the cluster once instead of once each:
//   VMs         one GET /cluster/resources?type=vm serves every request that asks about the same
//               time: a listing is handed to a request only when it began after that request's own
//               last change in Proxmox (a create, shutdown or delete it sent, or one of its VM's
//               tasks seen ending) and at most vm_listing_ttl ago, so what a step decides from it is
//               never older than its own last action (teardown of 30 VMs reads one listing per pass)
//   placement   one listing of nodes, their storages and our VMs, for placement_snapshot_ttl;
//               allocations made since then are the ledger's reservations (ledger.h)
//   VMID floor  Proxmox's next free VMID (GET /cluster/nextid), the lower bound of new VMIDs, for
//               vmid_floor_ttl (the listing and the ledger say which are free)
//   ISOs        which ISO volumes each storage holds, for iso_cache_ttl (iso_cache.h)
//   tasks       how often to poll each task, and the last poll of a task another request shares
//               (a node's Talos ISO download); waiters are woken when their task should be done
//               (task_poll.h)
//   task slots  a node's heavy-task slot claimed before a create (pve::TaskSlotView)
// Steps ask it; nothing here decides what to create or delete. Thread-safe.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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
  // How old a shared VM listing may be when a request asks for one.
  std::chrono::milliseconds vm_listing_ttl{1000};
  // How long one GET /cluster/nextid answer serves as the lower bound of new VMIDs.
  std::chrono::milliseconds vmid_floor_ttl{10'000};
};

// One GET /cluster/resources?type=vm.
struct VmListing {
  std::uint64_t seq = 0;          // fetches started before it, this one included
  std::uint64_t release_seq = 0;  // the ledger's ReleaseSeq() before the fetch
  util::Clock::MonotonicTime started{};
  std::vector<pve::ClusterResource> vms;
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

  // The cluster's VMs for `request_id` ("" for no request): a listing that began after the
  // request's last SawChange and at most vm_listing_ttl ago. Requests asking while a fetch is in
  // flight wait for it when it is new enough for them, otherwise for the next one.
  absl::StatusOr<std::shared_ptr<const VmListing>> ClusterVms(const std::string& request_id);
  // `request_id` changed something in Proxmox (sent a create, shutdown or delete) or saw one of
  // its VM's tasks end (PollTask does): its next listing must begin after this.
  void SawChange(const std::string& request_id);
  // The request is gone (torn down, or deleted): drop what the view keeps for it. Not when it is
  // provisioned: its teardown's listings must still begin after its create.
  void ForgetRequest(const std::string& request_id);
  // The lower bound for a new VMID: Proxmox's next free one (GET /cluster/nextid), one answer per
  // vmid_floor_ttl.
  absl::StatusOr<pve::Vmid> VmidFloor();

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
  // When `asker` should look at a task it just started.
  std::chrono::milliseconds FirstPoll(const std::string& upid, const std::string& asker);
  // How a request waiting on a task is brought back when the task should be done (TaskPollPacer).
  void SetTaskWakeListener(TaskPollPacer::WakeListener listener);

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

  absl::Mutex listing_mutex_;
  absl::CondVar listing_done_;
  std::shared_ptr<const VmListing> listing_ ABSL_GUARDED_BY(listing_mutex_);
  std::uint64_t listing_seq_ ABSL_GUARDED_BY(listing_mutex_) = 0;  // fetches started
  bool listing_in_flight_ ABSL_GUARDED_BY(listing_mutex_) = false;
  // The last fetch's error, for the requests that waited for that fetch.
  std::optional<absl::Status> listing_error_ ABSL_GUARDED_BY(listing_mutex_);
  std::uint64_t listing_error_seq_ ABSL_GUARDED_BY(listing_mutex_) = 0;
  std::unordered_map<std::string, std::uint64_t> changed_ ABSL_GUARDED_BY(listing_mutex_);  // request -> seq then

  absl::Mutex floor_mutex_;
  std::optional<pve::Vmid> vmid_floor_ ABSL_GUARDED_BY(floor_mutex_);
  util::Clock::MonotonicTime vmid_floor_fetched_ ABSL_GUARDED_BY(floor_mutex_){};

  // Held while fetching, so concurrent placements wait for one fetch instead of each starting one.
  absl::Mutex snapshot_mutex_;
  std::shared_ptr<const PlacementSnapshot> snapshot_ ABSL_GUARDED_BY(snapshot_mutex_);
  util::Clock::MonotonicTime snapshot_fetched_ ABSL_GUARDED_BY(snapshot_mutex_){};
};

}  // namespace omni_proxmox::provider
