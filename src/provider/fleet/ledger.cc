// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/ledger.h"

namespace omni_proxmox::provider {

void Ledger::Release(const std::string& request_id) {
  absl::MutexLock lock(&mutex_);
  ++release_seq_;
  if (auto it = reservations_.find(request_id); it != reservations_.end()) {
    released_.push_back({.seq = release_seq_, .at = clock_.Monotonic(), .vm = std::move(it->second)});
    reservations_.erase(it);
  }
  vmids_.erase(request_id);
  verified_.erase(request_id);
  created_.erase(request_id);
  PruneReleasedLocked();
}

std::uint64_t Ledger::ReleaseSeq() const {
  absl::MutexLock lock(&mutex_);
  return release_seq_;
}

std::size_t Ledger::RecentlyReleasedForTest() const {
  absl::MutexLock lock(&mutex_);
  return released_.size();
}

void Ledger::PruneReleasedLocked() {
  const auto now = clock_.Monotonic();
  std::erase_if(released_, [&](const Released& r) { return now - r.at > kReleasedHorizon; });
}

std::vector<PlacedVm> Ledger::Reservations() const {
  absl::MutexLock lock(&mutex_);
  std::vector<PlacedVm> out;
  for (const auto& [_, vm] : reservations_) out.push_back(vm);
  return out;
}

std::optional<pve::Vmid> Ledger::ClaimVmid(const std::string& request_id, const std::set<pve::Vmid>& taken,
                                           pve::Vmid first, pve::Vmid last) {
  absl::MutexLock lock(&mutex_);
  std::set<pve::Vmid> claimed;
  for (const auto& [id, vmid] : vmids_) {
    if (id != request_id) claimed.insert(vmid);
  }
  // 64-bit, so a range ending at the largest VMID terminates.
  for (std::uint64_t v = first; v <= last; ++v) {
    const auto vmid = static_cast<pve::Vmid>(v);
    if (taken.contains(vmid) || claimed.contains(vmid)) continue;
    vmids_[request_id] = vmid;
    return vmid;
  }
  return std::nullopt;
}

bool Ledger::HoldVmid(const std::string& request_id, pve::Vmid vmid) {
  absl::MutexLock lock(&mutex_);
  for (const auto& [id, held] : vmids_) {
    if (held == vmid && id != request_id) return false;
  }
  vmids_[request_id] = vmid;
  return true;
}

void Ledger::ReleaseVmid(const std::string& request_id) {
  absl::MutexLock lock(&mutex_);
  vmids_.erase(request_id);
  verified_.erase(request_id);
  created_.erase(request_id);
}

void Ledger::MarkVerified(const std::string& request_id, pve::Vmid vmid) {
  absl::MutexLock lock(&mutex_);
  verified_[request_id] = vmid;
}

bool Ledger::Verified(const std::string& request_id, pve::Vmid vmid) const {
  absl::MutexLock lock(&mutex_);
  auto it = verified_.find(request_id);
  return it != verified_.end() && it->second == vmid;
}

void Ledger::Unverify(const std::string& request_id) {
  absl::MutexLock lock(&mutex_);
  verified_.erase(request_id);
  created_.erase(request_id);
}

void Ledger::MarkCreated(const std::string& request_id, pve::Vmid vmid) {
  absl::MutexLock lock(&mutex_);
  created_[request_id] = vmid;
}

bool Ledger::TakeCreated(const std::string& request_id, pve::Vmid vmid) {
  absl::MutexLock lock(&mutex_);
  auto it = created_.find(request_id);
  if (it == created_.end()) return false;
  const bool match = it->second == vmid;
  created_.erase(it);
  return match;
}

std::optional<std::string> Ledger::Download(const std::string& key) const {
  absl::MutexLock lock(&mutex_);
  auto it = downloads_.find(key);
  if (it == downloads_.end()) return std::nullopt;
  return it->second;
}

void Ledger::SetDownload(const std::string& key, const std::string& upid) {
  absl::MutexLock lock(&mutex_);
  downloads_[key] = upid;
}

void Ledger::ClearDownload(const std::string& key) {
  absl::MutexLock lock(&mutex_);
  downloads_.erase(key);
}

}  // namespace omni_proxmox::provider
