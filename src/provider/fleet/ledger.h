// SPDX-License-Identifier: Apache-2.0
#pragma once

// Process-wide bookkeeping shared by the workers: placements not yet visible in Proxmox (so
// concurrent requests do not pile onto one node), VMIDs being claimed (so two workers never pick
// the same one), VMs seen carrying their request's markers (so a pass need not list the cluster
// again to know it), and downloads in flight (so one ISO is fetched once per storage).
// Thread-safe; every method takes the one mutex.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "provider/placement/placement.h"
#include "pve/types.h"
#include "util/clock.h"

namespace omni_proxmox::provider {

class Ledger {
 public:
  explicit Ledger(const util::Clock& clock) : clock_(clock) {}

  // Runs `place` with the current reservations, records the resulting reservation, and
  // returns the decision, all under the lock, so two placements never see the same state.
  // `snapshot_seq` is ReleaseSeq() read before the cluster listing the placement sees was
  // fetched: reservations released after it (their VM created after the listing, or being
  // deleted) are still handed to `place`, so a cached listing never makes a new VM's node
  // look emptier than it is. `place` drops those whose VM the listing shows.
  template <typename PlaceFn>
  auto PlaceAndReserve(const std::string& request_id, std::uint64_t snapshot_seq, PlaceFn place) {
    absl::MutexLock lock(&mutex_);
    PruneReleasedLocked();
    std::vector<PlacedVm> reserved;
    for (const auto& [id, vm] : reservations_) {
      if (id != request_id) reserved.push_back(vm);
    }
    for (const auto& released : released_) {
      if (released.seq > snapshot_seq && released.vm.request_id != request_id) reserved.push_back(released.vm);
    }
    auto result = place(reserved);
    if (result.ok()) reservations_[request_id] = result->second;
    return result;
  }

  // Increases with every Release: read it before fetching a listing to pass to PlaceAndReserve.
  std::uint64_t ReleaseSeq() const;
  std::size_t RecentlyReleasedForTest() const;

  void Release(const std::string& request_id);
  std::vector<PlacedVm> Reservations() const;

  // Claims the lowest VMID in [first, last] that is not in `taken` nor claimed by another
  // request; nullopt when the range is full. A request keeps its claim until Release.
  std::optional<pve::Vmid> ClaimVmid(const std::string& request_id, const std::set<pve::Vmid>& taken, pve::Vmid first,
                                     pve::Vmid last);
  // Records that `request_id` holds `vmid` (a VMID from Proxmox's nextid, or after a restart).
  // Returns false when another request holds it.
  bool HoldVmid(const std::string& request_id, pve::Vmid vmid);
  // Drops the request's VMID and what was verified about it.
  void ReleaseVmid(const std::string& request_id);

  // `request_id`'s VM was seen at `vmid` with its markers (or our create of it finished), by this
  // process: later passes trust it until Unverify (the VM went missing) or Release.
  void MarkVerified(const std::string& request_id, pve::Vmid vmid);
  bool Verified(const std::string& request_id, pve::Vmid vmid) const;
  void Unverify(const std::string& request_id);
  // Our create of `vmid` for `request_id` just finished in this process: the VM is ours and has
  // never been started, so startVm starts it without reading its status first. Taken once.
  void MarkCreated(const std::string& request_id, pve::Vmid vmid);
  bool TakeCreated(const std::string& request_id, pve::Vmid vmid);

  // Downloads keyed by "<storage or node/storage>/<file>": the UPID of the running task.
  std::optional<std::string> Download(const std::string& key) const;
  void SetDownload(const std::string& key, const std::string& upid);
  void ClearDownload(const std::string& key);
  // Serialises starting a download for one key: the caller holds the returned lock while it
  // checks and starts the task.
  std::unique_lock<std::mutex> LockDownloads() { return std::unique_lock(download_start_mutex_); }

 private:
  // Released reservations are kept this long: far longer than any cached listing is used
  // (the reconciler's placement snapshot lives ~1.5 s), short enough to stay small.
  static constexpr std::chrono::seconds kReleasedHorizon{60};
  struct Released {
    std::uint64_t seq = 0;
    util::Clock::MonotonicTime at{};
    PlacedVm vm;
  };
  void PruneReleasedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const util::Clock& clock_;
  mutable absl::Mutex mutex_;
  std::map<std::string, PlacedVm> reservations_ ABSL_GUARDED_BY(mutex_);
  std::uint64_t release_seq_ ABSL_GUARDED_BY(mutex_) = 0;
  std::vector<Released> released_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, pve::Vmid> vmids_ ABSL_GUARDED_BY(mutex_);     // request -> vmid
  std::map<std::string, pve::Vmid> verified_ ABSL_GUARDED_BY(mutex_);  // request -> vmid seen with markers
  std::map<std::string, pve::Vmid> created_ ABSL_GUARDED_BY(mutex_);   // request -> vmid we created, not started
  std::map<std::string, std::string> downloads_ ABSL_GUARDED_BY(mutex_);
  // Not a data guard: held by a caller across checking for and starting one download.
  std::mutex download_start_mutex_;
};

}  // namespace omni_proxmox::provider
