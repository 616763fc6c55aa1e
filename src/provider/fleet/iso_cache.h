// SPDX-License-Identifier: Apache-2.0
#pragma once

// Part of the fleet's shared views of Proxmox (fleet_view.h): which ISO volumes each storage holds.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "util/clock.h"

namespace omni_proxmox::provider {

// Which ISO volumes a storage holds, so requests waiting for their node's Talos ISO download do
// not list the storage's content on every pass (about 6 listings per VM at 100 VMs). A scope is
// the node for local storage and "" for shared storage, which every node sees alike.
//
// The cache never claims a volume is present without having listed it or been told it was made,
// and a stale listing can never hide a mark made while it was fetched: callers take a sequence
// number before listing and Fill() ignores what the listing says about volumes marked since.
// Everything expires after `ttl`, so a volume removed out of band (by hand, by another
// provider's GC) is noticed. Thread-safe.
class IsoPresenceCache {
 public:
  IsoPresenceCache(const util::Clock& clock, std::chrono::milliseconds ttl) : clock_(clock), ttl_(ttl) {}

  // Present/absent when known and fresh; nullopt when the caller must list the storage.
  std::optional<bool> Present(const std::string& scope, const std::string& storage, const std::string& volid) const;
  // Taken before listing, passed to Fill.
  std::uint64_t ListingSeq() const;
  // Stores a listing started at `seq` and answers for `volid` (a volume marked since the listing
  // began keeps its mark).
  bool Fill(const std::string& scope, const std::string& storage, std::uint64_t seq,
            const std::vector<std::string>& volids, const std::string& volid);
  // We made (download/upload finished) or removed (delete finished) a volume.
  void Mark(const std::string& scope, const std::string& storage, const std::string& volid, bool present);
  // After an error that suggests the cache is wrong (a task failed, Proxmox says the file exists,
  // a create failed): the next lookup lists again.
  void Invalidate(const std::string& scope, const std::string& storage);
  void InvalidateAll();

 private:
  using StorageKey = std::pair<std::string, std::string>;  // scope, storage
  struct Listing {
    util::Clock::MonotonicTime fetched{};
    std::uint64_t seq = 0;
    std::set<std::string> volids;
  };
  struct VolumeMark {
    util::Clock::MonotonicTime at{};
    std::uint64_t seq = 0;
    bool present = false;
  };
  bool Fresh(util::Clock::MonotonicTime at) const { return clock_.Monotonic() - at < ttl_; }

  const util::Clock& clock_;
  const std::chrono::milliseconds ttl_;
  mutable absl::Mutex mutex_;
  std::uint64_t seq_ ABSL_GUARDED_BY(mutex_) = 0;  // incremented by every Mark/Invalidate
  // A listing begun before the last invalidation may show what the invalidation was about: not stored.
  std::uint64_t invalidated_seq_ ABSL_GUARDED_BY(mutex_) = 0;
  std::map<StorageKey, Listing> listings_ ABSL_GUARDED_BY(mutex_);
  // scope, storage, volid
  std::map<std::tuple<std::string, std::string, std::string>, VolumeMark> marks_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace omni_proxmox::provider
