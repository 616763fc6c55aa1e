// SPDX-License-Identifier: Apache-2.0
#pragma once

// Garbage collection against the real world (issue #7): observes Omni (our MachineRequests and
// state resources) and Proxmox (every VM, every ISO listing), asks FindGarbage (garbage.h) what is
// garbage, and in delete mode removes it: orphan VMs through the same ownership-checked path as
// teardown (AdvanceVmRemoval, markers re-verified from the VM config right before every
// destructive call), then ISOs nothing uses any more. Used by the provider's periodic cycle
// (`run --gc-mode`), `omni-proxmox gc` and `omni-proxmox status`.
//
// Thread-compatible: one cycle at a time (the controller runs it on one thread).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"

#include "omni/state_client.h"
#include "provider/gc/garbage.h"
#include "pve/client.h"
#include "util/clock.h"
#include "util/metrics.h"

namespace omni_proxmox::provider {

struct GarbageCollectorOptions {
  std::string provider_id = "proxmox";
  std::chrono::seconds grace_period{600};
  // Graceful shutdown of an orphan before Proxmox force-stops it (as in teardown).
  std::chrono::seconds shutdown_timeout{60};
  // Longest wait for one Proxmox task (shutdown, delete) before giving up until the next cycle.
  std::chrono::seconds task_timeout{300};
  // The long-running provider's mode: the grace period counts from when this collector first saw
  // an item unused (its own monotonic clock, immune to clock offsets between this host and the
  // nodes) instead of from Proxmox's ctime. One-shot commands keep ctime: they have no history.
  bool age_by_unused_time = false;
  // Also collect what carries no proof of its Omni (garbage.h GarbageInputs::include_unscoped).
  bool include_unscoped = false;
};

// One piece of garbage and what became of it.
struct GarbageOutcome {
  Garbage item;
  bool deleted = false;
  std::string error;  // why a delete failed; empty when reported only or deleted
};

struct GarbageCycle {
  GarbageReport report;                  // the first look
  std::vector<GarbageOutcome> outcomes;  // every finding of the cycle, in order
  int Deleted() const;
  int Remaining() const;  // findings not deleted (reported, or their delete failed)
};

class GarbageCollector {
 public:
  // `metrics` may be null; otherwise omni_proxmox_gc_findings{kind} and
  // omni_proxmox_gc_deleted_total{kind} are kept there.
  GarbageCollector(GarbageCollectorOptions options, pve::Client& pve, omni::StateClient& state,
                   const util::Clock& clock, util::MetricsRegistry* metrics = nullptr);

  // Request IDs the reconciler is working on; their VMs and ISOs are never collected. Optional.
  std::function<std::set<std::string>()> in_flight;

  // Reads both sides. Omni or VM-list failures are recorded in the result (FindGarbage then skips).
  GarbageInputs Observe();

  // One cycle: observe, find, log each finding once (warn), update the metrics, and with kDelete
  // remove what was found (then look again for ISOs the removed VMs used). kOff does nothing.
  GarbageCycle RunCycle(GcMode mode);

 private:
  absl::Status RemoveOrphanVm(const Garbage& orphan);
  absl::Status RemoveIso(const Garbage& iso);
  absl::Status WaitFor(const pve::Upid& task, const std::string& what);
  void Record(const GarbageCycle& cycle);
  // Seconds each tracked candidate has been unused (age_by_unused_time), or null otherwise.
  const std::map<std::string, std::int64_t>* UnusedFor(std::map<std::string, std::int64_t>& storage) const;
  void TrackCandidates(const std::set<std::string>& candidates);

  const GarbageCollectorOptions options_;
  pve::Client& pve_;
  omni::StateClient& state_;
  const util::Clock& clock_;
  util::MetricsRegistry* metrics_;
  std::map<std::string, util::Clock::MonotonicTime> first_seen_unused_;
};

}  // namespace omni_proxmox::provider
