#pragma once

// Process-wide bookkeeping shared by the reconciler's workers: placements not yet visible in
// Proxmox (so concurrent requests do not pile onto one node), VMIDs being claimed (so two
// workers never pick the same one) and downloads in flight (so one ISO is fetched once per
// storage). Thread-safe; every method takes the one mutex.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "provider/placement/placement.h"
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
    std::lock_guard lock(mutex_);
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
  std::optional<std::uint32_t> ClaimVmid(const std::string& request_id, const std::set<std::int64_t>& taken,
                                         std::uint32_t first, std::uint32_t last);
  // Records that `request_id` holds `vmid` (a VMID from Proxmox's nextid, or after a restart).
  // Returns false when another request holds it.
  bool HoldVmid(const std::string& request_id, std::uint32_t vmid);
  void ReleaseVmid(const std::string& request_id);

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
  void PruneReleasedLocked();

  const util::Clock& clock_;
  mutable std::mutex mutex_;
  std::map<std::string, PlacedVm> reservations_;
  std::uint64_t release_seq_ = 0;
  std::vector<Released> released_;
  std::map<std::string, std::uint32_t> vmids_;  // request -> vmid
  std::map<std::string, std::string> downloads_;
  std::mutex download_start_mutex_;
};

}  // namespace omni_proxmox::provider
