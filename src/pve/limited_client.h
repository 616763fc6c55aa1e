// SPDX-License-Identifier: Apache-2.0
#pragma once

// A pve::Client decorator that keeps the provider from overwhelming Proxmox and measures every
// call. It wraps any Client (normally MakeHttpClient's), so the reconciler is unaware of it.
//
// Limits:
//  - At most `max_tasks_per_node` heavy tasks per node. Heavy calls are the ones whose worker task
//    takes a VM or storage lock for long or does bulk I/O: VM create, VM delete, download-url,
//    ISO upload of 16 MiB or more (not a cloud-init ISO), and a config change that allocates or imports a disk. A slot
//    is taken before the call (FIFO per node: callers are served in arrival order) and held until the task is observed
//    finished: GetTaskStatus reports it stopped or gone, or a WaitTask on it returns (however it
//    ends). A heavy call that fails, or returns no task, frees its slot at once.
//    The first caller waiting for a slot checks the held tasks of that node itself (at most every
//    `slot_check_interval`, sooner while they are young), so a slot whose owner never polls again (its request was
//    deleted, or every worker is itself waiting for a slot) is still freed when Proxmox finishes the task: waiting can
//    never deadlock on the caller's own work.
//  - A global token bucket: `requests_per_second` sustained with bursts of `burst` calls. Every
//    call takes one token before it goes out; WaitTask takes one for the whole wait (its polls
//    are paced by the inner client's task_poll settings).
//
// Metrics (when a registry is given):
//   omni_proxmox_pve_requests_total{endpoint,method,result}   result = "ok" or an ErrorKindName
//   omni_proxmox_pve_request_duration_seconds{endpoint,method} histogram, limiter waits excluded
//   omni_proxmox_pve_tasks_in_flight{node}                     heavy-task slots held
//   omni_proxmox_pve_rate_limited_seconds_total{limit}         limit = requests_per_second |
//                                                              tasks_per_node
// `endpoint` is the API path template ("/nodes/{node}/qemu/{vmid}/status/start"): never a node
// name, VMID or UPID, so the number of series stays bounded. WaitTask is method "WAIT".
//
// Thread-safe, like every Client.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "pve/client.h"
#include "util/clock.h"
#include "util/metrics.h"

namespace omni_proxmox::pve {

struct LimitOptions {
  // Heavy tasks in flight per node; 0 = unlimited.
  int max_tasks_per_node = 4;
  // Sustained request rate toward Proxmox; 0 = unlimited.
  double requests_per_second = 200;
  // Calls that may go out back to back after an idle period; 0 = twice requests_per_second.
  int burst = 0;
  // How often, at most, the first caller waiting for a task slot re-checks the node's held tasks
  // itself; sooner (a third of the oldest held task's age, at least 250 ms) while tasks are young,
  // since waiting callers occupy the workers that would otherwise poll those tasks.
  std::chrono::milliseconds slot_check_interval{2000};
  // How long a refused claimant (TaskSlotView::TryClaimSlot) keeps its place in a node's queue
  // without asking again.
  std::chrono::milliseconds claim_abandon_after{6000};
  // How a rate-limited caller waits. Default: std::this_thread::sleep_for. Tests advance a
  // ManualClock instead.
  std::function<void(std::chrono::milliseconds)> sleep;
};

// Checks the options; InvalidArgument naming the flag (--max-tasks-per-node,
// --pve-requests-per-second) and the fix otherwise.
absl::Status ValidateLimitOptions(const LimitOptions& options);

class LimitedClient;

// A task slot taken ahead of the heavy call that will use it (see TaskSlotView::TryClaimSlot): the
// next heavy call on its node from the same thread uses it instead of waiting for one. Destroyed
// unused, it frees the slot. A default-constructed claim holds nothing (no limit to claim from).
class SlotClaim {
 public:
  struct State;  // shared with the claiming thread's record; settled exactly once (used or returned)

  SlotClaim() = default;
  SlotClaim(SlotClaim&& other) noexcept = default;
  SlotClaim& operator=(SlotClaim&& other) noexcept;
  SlotClaim(const SlotClaim&) = delete;
  SlotClaim& operator=(const SlotClaim&) = delete;
  ~SlotClaim();

 private:
  friend class LimitedClient;
  explicit SlotClaim(std::shared_ptr<State> state) : state_(std::move(state)) {}
  void Reset();

  std::shared_ptr<State> state_;
};

// Lets a caller take a task slot before the work that leads to a heavy call (listings, a VMID,
// persisting its intent), instead of finding out in the call: a worker blocked in a slot wait
// cannot run the polls that free the slots, and many at once starve the provider.
//
// A refused claimant keeps its place in the node's one queue of waiters, which also holds the
// callers blocked in a heavy call: slots are granted first come, first served across both. When a
// claimant's turn comes (a slot freed while it is first in line), the slot-freed listener is told
// its key, so it can come back and claim. A claimant that stops asking (its request went away)
// loses its place after LimitOptions::claim_abandon_after.
class TaskSlotView {
 public:
  virtual ~TaskSlotView() = default;
  // A claim on a slot of `node` for this thread's next heavy call there, for `waiter` (a key the
  // caller chooses: the request ID); nullopt when that waiter is not first in line or no slot is
  // free (it then keeps or takes its place in the queue), or when the client is closed.
  virtual std::optional<SlotClaim> TryClaimSlot(std::string_view node, std::string_view waiter) = 0;
  // Called (on the freeing thread, outside any lock of the view) with the key of the claimant whose
  // turn it now is. One listener; set it before any heavy call.
  virtual void SetSlotFreedListener(std::function<void(const std::string& waiter)> listener) = 0;
};

class LimitedClient final : public Client, public TaskSlotView {
 public:
  // `inner`, `clock` and `metrics` (may be null) must outlive this client.
  // REQUIRES: ValidateLimitOptions(options).ok().
  LimitedClient(Client& inner, LimitOptions options, const util::Clock& clock, util::MetricsRegistry* metrics);
  // The same, owning `inner`.
  LimitedClient(std::unique_ptr<Client> inner, LimitOptions options, const util::Clock& clock,
                util::MetricsRegistry* metrics);
  ~LimitedClient() override;

  // Wakes every caller waiting for a task slot with kTransient "shutting down" and refuses new
  // heavy calls the same way, so a stopping provider does not wait for Proxmox tasks to end.
  void Close();

  // Checks every held task once and frees the finished ones. `run` calls it periodically, so a
  // task nobody polls any more (its request was deleted) does not keep its slot, and the
  // in-flight gauge, until the next caller waits on that node.
  void PollHeldTasks();

  // Heavy-task slots held on `node` (calls in progress and tasks not yet seen finished).
  int TasksInFlight(std::string_view node) const;
  // Callers waiting for a slot on `node`: blocked heavy calls and refused claimants.
  int SlotWaiters(std::string_view node) const;
  std::optional<SlotClaim> TryClaimSlot(std::string_view node, std::string_view waiter) override;
  void SetSlotFreedListener(std::function<void(const std::string& waiter)> listener) override;

  absl::StatusOr<VersionInfo> Version() override;
  absl::StatusOr<Permissions> GetPermissions(std::string_view path = "") override;
  absl::StatusOr<std::vector<Node>> ListNodes() override;
  absl::StatusOr<std::vector<ClusterResource>> ClusterResources(ResourceType type) override;
  absl::StatusOr<Vmid> NextId() override;
  absl::StatusOr<std::vector<NodeStorage>> NodeStorages(std::string_view node, std::string_view content = "",
                                                        bool enabled_only = false) override;
  absl::StatusOr<std::vector<StorageVolume>> StorageContent(std::string_view node, std::string_view storage,
                                                            std::string_view content = "") override;
  absl::StatusOr<VolumeInfo> GetVolume(std::string_view node, std::string_view storage,
                                       std::string_view volid) override;
  absl::StatusOr<Upid> DownloadUrl(const DownloadUrlRequest& request) override;
  absl::StatusOr<Upid> UploadIso(std::string_view node, std::string_view storage, std::string_view filename,
                                 std::string_view bytes) override;
  absl::StatusOr<Upid> DeleteVolume(std::string_view node, std::string_view storage, std::string_view volid) override;
  absl::StatusOr<std::vector<NetworkInterface>> NodeNetworks(std::string_view node,
                                                             std::string_view type = "any_bridge") override;
  absl::StatusOr<std::vector<HardwareMapping>> HardwareMappings(std::string_view kind) override;
  absl::StatusOr<std::vector<VmStatus>> ListVms(std::string_view node) override;
  absl::StatusOr<Upid> CreateVm(std::string_view node, Vmid vmid, const FormFields& params) override;
  absl::StatusOr<VmConfig> GetVmConfig(std::string_view node, Vmid vmid) override;
  absl::StatusOr<std::optional<Upid>> UpdateVmConfig(std::string_view node, Vmid vmid,
                                                     const FormFields& params) override;
  absl::StatusOr<VmStatus> GetVmStatus(std::string_view node, Vmid vmid) override;
  absl::StatusOr<Upid> StartVm(std::string_view node, Vmid vmid) override;
  absl::StatusOr<Upid> StopVm(std::string_view node, Vmid vmid) override;
  absl::StatusOr<Upid> ShutdownVm(std::string_view node, Vmid vmid, const ShutdownOptions& options = {}) override;
  absl::StatusOr<Upid> DeleteVm(std::string_view node, Vmid vmid, bool purge, bool destroy_unreferenced_disks) override;
  absl::StatusOr<TaskStatus> GetTaskStatus(const Upid& upid) override;
  absl::StatusOr<TaskLog> GetTaskLog(const Upid& upid, std::int64_t start = 0, std::int64_t limit = 50) override;
  absl::StatusOr<std::vector<TaskStatus>> ListTasks(std::string_view node, std::optional<Vmid> vmid,
                                                    bool active_only) override;
  absl::StatusOr<TaskStatus> WaitTask(const Upid& upid, util::Clock::MonotonicTime deadline) override;

 private:
  friend class SlotClaim;
  class SlotLease;
  struct NodeSlots {
    int in_use = 0;
    // One queue in arrival order: a blocked heavy call (empty key) or a refused claimant.
    struct Waiter {
      std::uint64_t ticket = 0;
      std::string key;
      util::Clock::MonotonicTime asked{};  // a claimant's last ask
    };
    std::deque<Waiter> waiting;
    struct HeldTask {
      Upid upid;
      util::Clock::MonotonicTime since{};
    };
    std::map<std::string, HeldTask> tasks;         // UPID text -> task holding a slot
    util::Clock::MonotonicTime last_held_check{};  // by a caller refused by TryClaimSlot
  };

  // Takes a token (sleeping while the bucket is empty).
  void AwaitToken();
  // Takes a heavy-task slot on `node` in FIFO order; kTransient after Close().
  absl::StatusOr<SlotLease> AcquireSlot(std::string_view node);
  // Moves a lease's slot to `upid`, to be freed when the task is seen finished.
  void HoldForTask(SlotLease& lease, const Upid& upid);
  void FreeSlot(const std::string& node);
  // Drops claimants that stopped asking. REQUIRES: slots_mutex_ held.
  void PruneAbandonedLocked(NodeSlots& slots);
  // The claimant first in line when a slot of `node` is free, to be told its turn came ("": none).
  // REQUIRES: slots_mutex_ held.
  std::string ClaimantToWakeLocked(const NodeSlots& slots) const;
  // Frees the slot of `upid` if it holds one.
  void TaskFinished(const Upid& upid);
  // How long a caller kept from a slot waits before checking the held tasks itself: a third of the
  // oldest one's age, between 250 ms and slot_check_interval. REQUIRES: slots_mutex_ held.
  std::chrono::milliseconds HeldTaskCheckInterval(const NodeSlots& slots) const;
  // Polls the held tasks of `node` (outside the lock) and frees the finished ones.
  void CheckHeldTasks(const std::string& node);
  // REQUIRES: slots_mutex_ held.
  void UpdateInFlightGauge(const std::string& node, int value);

  // Runs `call` after taking a token; counts it and times it under `endpoint`/`method`.
  template <typename Call>
  auto Measured(std::string_view method, std::string_view endpoint, Call&& call) -> decltype(call());
  // A heavy call: slot, then Measured; the slot follows the returned task.
  template <typename Call>
  absl::StatusOr<Upid> Heavy(std::string_view node, std::string_view method, std::string_view endpoint, Call&& call);

  std::unique_ptr<Client> owned_inner_;  // null when borrowed
  Client& inner_;
  const LimitOptions options_;
  const util::Clock& clock_;
  util::MetricsRegistry* const metrics_;
  util::Counter* rate_wait_seconds_ = nullptr;
  util::Counter* slot_wait_seconds_ = nullptr;

  std::mutex bucket_mutex_;
  double capacity_ = 0;  // the burst
  double tokens_ = 0;    // may go negative: callers queued behind the bucket
  util::Clock::MonotonicTime refilled_at_{};

  mutable std::mutex slots_mutex_;
  std::condition_variable slots_changed_;
  std::map<std::string, NodeSlots, std::less<>> slots_;  // guarded by slots_mutex_
  std::uint64_t next_ticket_ = 0;                        // guarded by slots_mutex_
  bool closed_ = false;                                  // guarded by slots_mutex_
  std::function<void(const std::string& waiter)> slot_freed_;
};

}  // namespace omni_proxmox::pve
