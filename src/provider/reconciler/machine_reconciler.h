#pragma once

// Reconciles one MachineRequest at a time toward its desired state: a running VM with our
// ownership markers while the request lives, nothing once it is torn down. Level-based: each
// pass reads the request, the provider's state resource and Proxmox, performs at most a few
// idempotent side effects, persists what it learned before acting on it, and asks to be
// requeued while Proxmox works. A crash at any point resumes from the persisted state, and
// the VM is always found by its markers before anything is created, so no request ever gets
// two VMs.
//
// Thread-safe: workers call Reconcile() concurrently for different request IDs (the work
// queue never hands one ID to two workers).

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "omni/join_config.h"
#include "omni/management_client.h"
#include "omni/schematic.h"
#include "omni/state_client.h"
#include "provider/reconciler/iso_cache.h"
#include "provider/reconciler/ledger.h"
#include "provider/reconciler/task_poll.h"
#include "provider/reconciler/work_queue.h"
#include "pve/client.h"
#include "pve/limited_client.h"
#include "util/clock.h"
#include "util/random.h"

namespace omni_proxmox::provider {

class MachineSpec;  // proto/provider/machine.proto

struct ReconcilerOptions {
  std::string provider_id = "proxmox";
  // Graceful shutdown before delete; Proxmox force-stops after it.
  std::chrono::seconds shutdown_timeout{60};
  std::chrono::milliseconds task_poll{1000};
  // Retry interval after a placement that found no room or no storage (stage FAILED meanwhile).
  std::chrono::milliseconds failed_retry{60'000};
  // How long one listing of nodes, storages and VMs serves placements (see PlacementSnapshotNow).
  std::chrono::milliseconds placement_snapshot_ttl{1500};
  // How long a listing of a storage's ISOs answers "is this ISO there?" (see IsoPresenceCache);
  // bounds how late an ISO removed out of band is noticed.
  std::chrono::milliseconds iso_cache_ttl{30'000};
  // Put the request ID into join tokens, so a machine registers with its request (Omni's
  // WithEncodeRequestIDsIntoTokens) and a wrong join config is refused.
  bool encode_request_ids = true;
  // How long connection parameters (join token, API URL) are cached.
  std::chrono::seconds connection_params_ttl{60};
  // How long a request's memo (see Forget) may stand in for reading the request, its status and
  // our state from Omni; bounds how late a change that no watch event reported is noticed.
  // Zero: every pass reads everything.
  std::chrono::milliseconds pass_memo_ttl{30'000};
  // How soon a request that found its node's task slots all taken looks again if no freed slot
  // woke it first (see set_task_slots).
  std::chrono::milliseconds slot_recheck{2000};
};

// Counters a caller may export as metrics. Thread-safe snapshots.
struct ReconcilerStats {
  long provisioned = 0;
  long deprovisioned = 0;
  long vms_created = 0;
  long vms_adopted = 0;
  long vms_deleted = 0;
  long failures = 0;
};

class MachineReconciler {
 public:
  MachineReconciler(ReconcilerOptions options, pve::Client& pve, omni::StateClient& state,
                    omni::ManagementClient& management, std::string image_factory_url, const util::Clock& clock,
                    util::Random& random);

  ~MachineReconciler();

  Outcome Reconcile(const std::string& request_id);

  // A pass that ends waiting (for a task, a slot, a retry) leaves a memo of what it read and
  // wrote: the request, its status, our state resource, the parsed providerdata, and whether
  // our VM was seen by its markers. The next pass starts from the memo instead of three signed
  // Omni reads and a YAML parse, so waiting on a task costs one Proxmox call. We are the only
  // writer of the status and state specs, and our writes carry the memo's version, so a
  // conflict still falls back to a fresh read. Anything else (Omni tearing the request down,
  // a changed request) arrives as a watch event, and the controller calls Forget for it; a
  // Forget during a pass keeps that pass from leaving a memo.
  // `version`: the request's version in the event; the echo of our own write of the request
  // (adding our finalizer) is not a change and keeps the memo.
  void Forget(const std::string& request_id, const std::string& version = "");
  void ForgetAll();

  // When set (normally the pve::LimitedClient the reconciler calls through), a request about to
  // create a VM claims its node's task slot first and is requeued when none is free, instead of
  // blocking a worker in the slot wait: blocked workers cannot run the polls that free the slots.
  // Must outlive the reconciler.
  void set_task_slots(pve::TaskSlotView* slots);
  // How the reconciler asks for a request to be reconciled again now (the controller's queue);
  // used to retry requests waiting for a task slot when one is freed.
  std::function<void(const std::string& request_id)> wake_request;

  ReconcilerStats Stats() const;
  Ledger& ledger() { return ledger_; }

  // Hook for step timing metrics: step name, seconds.
  std::function<void(const std::string&, double)> on_step_duration;

 private:
  struct Pass;
  struct PassMemo;
  enum class StepKind { kNext, kRequeue, kRetry, kFailed };
  struct StepResult {
    StepKind kind = StepKind::kNext;
    std::chrono::milliseconds after{0};
    std::string message;  // kRetry / kFailed: the error shown in the status

    static StepResult Next() { return {}; }
    static StepResult Requeue(std::chrono::milliseconds d) { return {StepKind::kRequeue, d, ""}; }
    static StepResult Retry(std::string message, std::chrono::milliseconds d) {
      return {StepKind::kRetry, d, std::move(message)};
    }
    static StepResult Failed(std::string message) { return {StepKind::kFailed, {}, std::move(message)}; }
  };

  // `loaded`: the pass comes from a memo, so the request, status and state are already known.
  Outcome Provision(Pass& pass, bool loaded);
  // Reads the status and our state resource (creating them when missing) and parses the
  // providerdata; an Outcome when the pass ends there.
  std::optional<Outcome> LoadPass(Pass& pass);
  std::shared_ptr<PassMemo> RecallMemo(const std::string& request_id, std::uint64_t& epoch);
  // The epoch Forget/ForgetAll have reached for `request_id`. REQUIRES: memo_mutex_ held.
  std::uint64_t MemoEpochLocked(const std::string& request_id) const;
  // The pass is moved into the memo: a waiting pass ends here, and copying it cost every poll.
  void KeepMemo(Pass&& pass, std::uint64_t epoch, util::Clock::MonotonicTime read_at);
  Outcome FinishPass(Outcome outcome, Pass&& pass, std::uint64_t epoch, util::Clock::MonotonicTime read_at);
  // A request that is done (provisioned, gone, or torn down) needs no memo bookkeeping.
  void DropMemoRecords(const std::string& request_id);
  Outcome Deprovision(const omni::Resource& request);

  StepResult Place(Pass& pass);
  StepResult Schematic(Pass& pass);
  StepResult TalosIso(Pass& pass);
  StepResult Cidata(Pass& pass);
  StepResult CreateVm(Pass& pass);
  StepResult StartVm(Pass& pass);

  // Writes the state spec and the step annotation now: one Update from the version the pass holds,
  // a read-modify-write (retried on conflicts) only when that version is no longer current.
  absl::Status SaveMachine(Pass& pass, const std::string& step,
                           std::optional<std::string_view> expected_phase = omni::kPhaseRunning);
  // Marks pass.machine as changed; FlushSave writes it before the pass reports its status. Only
  // writes that must land before a Proxmox call (the create intent) use SaveMachine directly:
  // a crash before the flush repeats idempotent work (placement, a listing, a poll), never a create.
  void DeferSave(Pass& pass, const std::string& step);
  absl::Status FlushSave(Pass& pass);
  // Whether an ISO volume ("storage:iso/file") is listed on `node`, from iso_cache_ when it knows;
  // `scope` is the node for local storage, "" for shared storage.
  // `fresh` skips the cache (the listing still refreshes it).
  absl::StatusOr<bool> IsoPresent(const std::string& scope, const std::string& node, const std::string& volid,
                                  bool fresh = false);
  // Creates or updates the request's MachineRequestStatus from pass.status (the last version
  // read or written); skipped when nothing changes.
  absl::Status WriteStatus(Pass& pass, int stage, const std::string& text, const std::string& error,
                           const std::string& uuid);
  absl::StatusOr<omni::ConnectionParams> ConnectionParams();
  // Our VM for a request: by markers cluster-wide; nullopt when none.
  absl::StatusOr<std::optional<pve::ClusterResource>> FindOwnedVm(const std::string& request_id);
  // True when `vm` is the one the Go provider's state `machine` describes (no markers of ours:
  // same VMID and the stored SMBIOS uuid).
  absl::StatusOr<bool> IsLegacyOwned(const MachineSpec& machine, const pve::ClusterResource& vm);
  struct PlacementSnapshot {
    std::uint64_t release_seq = 0;  // the ledger's ReleaseSeq() before the listing
    std::vector<NodeSnapshot> nodes;
    std::vector<PlacedVm> vms;  // ours, from /cluster/resources
  };
  absl::StatusOr<std::shared_ptr<const PlacementSnapshot>> PlacementSnapshotNow();
  // After an error that suggests the listing is stale (capacity, VMID taken, VM gone).
  void InvalidatePlacementSnapshot();
  // A task slot on `node` for the create `request_id` is about to make, or nullopt (the request
  // is queued and woken when a slot frees).
  std::optional<pve::SlotClaim> ClaimTaskSlot(const std::string& node, const std::string& request_id);
  // `asker`: the request polling; another request's recent reading of the same task stands in for a poll.
  // `succeeded` (optional) is set when the task finished successfully, as opposed to failed or unknown.
  StepResult PollTask(const std::string& asker, const std::string& upid_text, const std::string& what, bool& done,
                      bool* succeeded = nullptr);

  const ReconcilerOptions options_;
  pve::Client& pve_;
  omni::StateClient& state_;
  omni::ManagementClient& management_;
  const util::Clock& clock_;
  util::Random& random_;
  Ledger ledger_{clock_};
  TaskPollPacer task_pacer_{clock_, options_.task_poll};
  TaskStatusBoard task_board_{clock_};
  pve::TaskSlotView* task_slots_ = nullptr;
  std::mutex slot_waiters_mutex_;
  // Requests that found no task slot, per node, in the order they asked; woken one per freed slot.
  struct SlotWaiter {
    std::string request_id;
    util::Clock::MonotonicTime asked{};
  };
  std::map<std::string, std::deque<SlotWaiter>, std::less<>> slot_waiters_;  // guarded by slot_waiters_mutex_
  IsoPresenceCache iso_cache_{clock_, options_.iso_cache_ttl};

  std::mutex resolver_mutex_;
  omni::BootAssetResolver resolver_;

  std::mutex snapshot_mutex_;
  std::shared_ptr<const PlacementSnapshot> snapshot_;
  util::Clock::MonotonicTime snapshot_fetched_{};

  std::mutex params_mutex_;
  std::optional<omni::ConnectionParams> params_;
  util::Clock::MonotonicTime params_fetched_{};

  std::mutex memo_mutex_;
  std::map<std::string, std::shared_ptr<PassMemo>, std::less<>> memos_;   // guarded by memo_mutex_
  std::map<std::string, std::uint64_t, std::less<>> memo_epochs_;         // bumped by Forget; guarded by memo_mutex_
  std::uint64_t memo_epoch_all_ = 0;                                      // bumped by ForgetAll; guarded by memo_mutex_
  std::map<std::string, std::string, std::less<>> own_request_versions_;  // guarded by memo_mutex_

  mutable std::mutex stats_mutex_;
  ReconcilerStats stats_;
};

// A random (version 4) UUID, lowercase, for the VM's SMBIOS identity.
std::string NewUuid(util::Random& random);

// "talos-<first 16 of schematic>-v<version>-nocloud-amd64.iso": the Talos ISO file a request uses.
std::string TalosIsoFileName(const std::string& schematic, std::string version);

// One step toward a deleted VM, shared by teardown and garbage collection so both destroy the
// same way. The caller has just re-read `vm` cluster-wide and verified it is ours. A running VM
// gets a graceful shutdown (Proxmox force-stops it after `shutdown_timeout`); a stopped one is
// deleted with purge and its unreferenced disks. The caller waits for `task`, then calls again
// until kGone.
struct VmRemovalStep {
  enum class Kind { kGone, kBusy, kShuttingDown, kDeleting };
  Kind kind = Kind::kGone;
  std::optional<pve::Upid> task;  // kShuttingDown, kDeleting
};
absl::StatusOr<VmRemovalStep> AdvanceVmRemoval(pve::Client& pve, const pve::ClusterResource& vm,
                                               std::chrono::seconds shutdown_timeout);

}  // namespace omni_proxmox::provider
