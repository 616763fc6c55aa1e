// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/iso_cache.h"

#include <algorithm>

namespace omni_proxmox::provider {

std::optional<bool> IsoPresenceCache::Present(const std::string& scope, const std::string& storage,
                                              const std::string& volid) const {
  absl::MutexLock lock(&mutex_);
  const auto listing = listings_.find({scope, storage});
  const bool listed = listing != listings_.end() && Fresh(listing->second.fetched);
  const auto mark = marks_.find({scope, storage, volid});
  if (mark != marks_.end() && Fresh(mark->second.at) && (!listed || mark->second.seq > listing->second.seq)) {
    return mark->second.present;
  }
  if (!listed) return std::nullopt;
  return listing->second.volids.contains(volid);
}

std::uint64_t IsoPresenceCache::ListingSeq() const {
  absl::MutexLock lock(&mutex_);
  return seq_;
}

bool IsoPresenceCache::Fill(const std::string& scope, const std::string& storage, std::uint64_t seq,
                            const std::vector<std::string>& volids, const std::string& volid) {
  absl::MutexLock lock(&mutex_);
  const auto now = clock_.Monotonic();
  // An older listing never replaces a newer one, nor outlives an invalidation made while it was fetched.
  auto listing = listings_.find({scope, storage});
  const bool newer = listing == listings_.end() || seq >= listing->second.seq || !Fresh(listing->second.fetched);
  if (seq >= invalidated_seq_ && newer) {
    listings_[{scope, storage}] = {.fetched = now, .seq = seq, .volids = {volids.begin(), volids.end()}};
  }
  listing = listings_.find({scope, storage});
  const std::uint64_t listed_seq = listing == listings_.end() ? 0 : listing->second.seq;
  // Marks the listing has caught up with, or that expired, are dropped.
  for (auto it = marks_.lower_bound({scope, storage, ""});
       it != marks_.end() && std::get<0>(it->first) == scope && std::get<1>(it->first) == storage;) {
    if ((listing != listings_.end() && it->second.seq <= listed_seq) || !Fresh(it->second.at)) {
      it = marks_.erase(it);
    } else {
      ++it;
    }
  }
  const auto mark = marks_.find({scope, storage, volid});
  if (mark != marks_.end() && mark->second.seq > seq) return mark->second.present;
  return std::find(volids.begin(), volids.end(), volid) != volids.end();
}

void IsoPresenceCache::Mark(const std::string& scope, const std::string& storage, const std::string& volid,
                            bool present) {
  absl::MutexLock lock(&mutex_);
  marks_[{scope, storage, volid}] = {.at = clock_.Monotonic(), .seq = ++seq_, .present = present};
}

void IsoPresenceCache::Invalidate(const std::string& scope, const std::string& storage) {
  absl::MutexLock lock(&mutex_);
  invalidated_seq_ = ++seq_;
  listings_.erase({scope, storage});
  for (auto it = marks_.lower_bound({scope, storage, ""});
       it != marks_.end() && std::get<0>(it->first) == scope && std::get<1>(it->first) == storage;) {
    it = marks_.erase(it);
  }
}

void IsoPresenceCache::InvalidateAll() {
  absl::MutexLock lock(&mutex_);
  invalidated_seq_ = ++seq_;
  listings_.clear();
  marks_.clear();
}

}  // namespace omni_proxmox::provider
