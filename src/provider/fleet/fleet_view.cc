// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/fleet_view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "provider/ownership/markers.h"
#include "pve/parse/upid.h"

namespace omni_proxmox::provider {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// A failed task's exit status with the last lines of its log, for status messages.
std::string TaskFailureText(const pve::TaskStatus& status, const std::vector<std::string>& tail) {
  std::string text = status.exit_status.value_or("unknown error");
  if (!tail.empty()) text += fmt::format(" (log: {})", fmt::join(tail, " | "));
  return text;
}

}  // namespace

FleetView::FleetView(FleetOptions options, pve::Client& pve, pve::TaskSlotView* slots, const util::Clock& clock)
    : options_(std::move(options)),
      pve_(pve),
      slots_(slots),
      clock_(clock),
      ledger_(clock),
      pacer_(clock, options_.task_poll),
      board_(clock),
      isos_(clock, options_.iso_cache_ttl) {}

absl::StatusOr<std::shared_ptr<const VmListing>> FleetView::ClusterVms(const std::string& request_id) {
  std::uint64_t seq = 0;
  {
    absl::MutexLock lock(&listing_mutex_);
    // A listing that began after the request's last change: seq above the one then.
    std::uint64_t after = 0;
    if (!request_id.empty()) {
      if (auto it = changed_.find(request_id); it != changed_.end()) after = it->second;
    }
    while (true) {
      const auto oldest = clock_.Monotonic() - options_.vm_listing_ttl;
      if (listing_ && listing_->seq > after && listing_->started >= oldest) return listing_;
      if (listing_error_ && listing_error_seq_ > after) return *listing_error_;
      if (!listing_in_flight_) break;
      // The fetch in flight began before the request's change, or is the one to wait for.
      listing_done_.Wait(&listing_mutex_);
    }
    listing_in_flight_ = true;
    seq = ++listing_seq_;
  }
  auto fresh = std::make_shared<VmListing>();
  fresh->seq = seq;
  // Read before listing: a reservation released later may belong to a VM the listing misses.
  fresh->release_seq = ledger_.ReleaseSeq();
  fresh->started = clock_.Monotonic();
  auto vms = pve_.ClusterResources(pve::ResourceType::kVm);
  absl::MutexLock lock(&listing_mutex_);
  listing_in_flight_ = false;
  listing_done_.SignalAll();
  if (!vms.ok()) {
    listing_error_ = absl::Status(vms.status().code(), fmt::format("cannot list VMs: {}", Msg(vms.status())));
    listing_error_seq_ = seq;
    return *listing_error_;
  }
  listing_error_.reset();
  fresh->vms = std::move(*vms);
  listing_ = fresh;
  return listing_;
}

void FleetView::SawChange(const std::string& request_id) {
  absl::MutexLock lock(&listing_mutex_);
  // A fetch in flight may have read the cluster before the change: only later ones count.
  changed_[request_id] = listing_seq_;
}

void FleetView::ForgetRequest(const std::string& request_id) {
  absl::MutexLock lock(&listing_mutex_);
  changed_.erase(request_id);
}

absl::StatusOr<pve::Vmid> FleetView::VmidFloor() {
  absl::MutexLock lock(&floor_mutex_);
  const auto now = clock_.Monotonic();
  if (vmid_floor_ && now - vmid_floor_fetched_ < options_.vmid_floor_ttl) return *vmid_floor_;
  auto next = pve_.NextId();
  if (!next.ok()) return next.status();
  vmid_floor_ = *next;
  vmid_floor_fetched_ = now;
  return *next;
}

void FleetView::SetTaskWakeListener(TaskPollPacer::WakeListener listener) {
  pacer_.SetWakeListener(std::move(listener));
}

absl::StatusOr<std::shared_ptr<const PlacementSnapshot>> FleetView::Placement() {
  absl::MutexLock lock(&snapshot_mutex_);
  const auto now = clock_.Monotonic();
  if (snapshot_ && now - snapshot_fetched_ < options_.placement_snapshot_ttl) return snapshot_;
  auto fresh = FetchPlacement();
  if (!fresh.ok()) return fresh.status();
  snapshot_ = *fresh;
  snapshot_fetched_ = now;
  return snapshot_;
}

absl::StatusOr<std::shared_ptr<const PlacementSnapshot>> FleetView::FetchPlacement() {
  auto fresh = std::make_shared<PlacementSnapshot>();
  auto nodes = pve_.ListNodes();
  if (!nodes.ok()) {
    return absl::Status(nodes.status().code(), fmt::format("cannot list Proxmox nodes: {}", Msg(nodes.status())));
  }
  // The VM listing the steps share; its release_seq was read before it was fetched.
  auto listing = ClusterVms("");
  if (!listing.ok()) return listing.status();
  fresh->release_seq = (*listing)->release_seq;
  const std::vector<pve::ClusterResource>* vms = &(*listing)->vms;
  for (const auto& n : *nodes) {
    NodeSnapshot node;
    node.name = n.name;
    node.online = n.status == pve::NodeStatus::kOnline;
    node.max_memory_bytes = static_cast<std::uint64_t>(n.max_mem_bytes.value_or(0));
    node.used_memory_bytes = static_cast<std::uint64_t>(n.mem_bytes.value_or(0));
    if (node.online) {
      auto storages = pve_.NodeStorages(n.name);
      if (!storages.ok()) {
        // A node that cannot answer is skipped like an offline one, never fatal.
        node.online = false;
      } else {
        for (const auto& st : *storages) node.storages.push_back(ToStorageFacts(n.name, st));
      }
    }
    fresh->nodes.push_back(std::move(node));
  }
  const std::string provider_tag = SanitizeTag(options_.provider_id);
  for (const auto& vm : *vms) {
    Ownership ownership;
    if (vm.type != "qemu" || !ParseOwnership(vm.tags, ownership)) continue;
    if (ownership.provider_id != provider_tag) continue;
    fresh->vms.push_back({.request_id = ownership.request_id,
                          .request_set_id = ownership.request_set_id,
                          .node = vm.node,
                          .memory_bytes = static_cast<std::uint64_t>(vm.max_mem_bytes.value_or(0)),
                          .reservation = false,
                          .pending_disk_bytes = {}});
  }
  return fresh;
}

void FleetView::InvalidatePlacement() {
  absl::MutexLock lock(&snapshot_mutex_);
  snapshot_.reset();
}

absl::StatusOr<std::vector<StorageFacts>> FleetView::NodeStorages(const std::string& node) {
  // From the listing (a few seconds old at most) rather than a listing per pass: requests waiting
  // for their node's download ask here on every pass.
  if (auto snapshot = Placement(); snapshot.ok()) {
    for (const auto& n : (*snapshot)->nodes) {
      if (n.name == node && n.online) return n.storages;
    }
  }
  auto listed = pve_.NodeStorages(node);
  if (!listed.ok()) {
    return absl::Status(listed.status().code(),
                        fmt::format("node {}: cannot list storages: {}", node, Msg(listed.status())));
  }
  std::vector<StorageFacts> storages;
  for (const auto& s : *listed) storages.push_back(ToStorageFacts(node, s));
  return storages;
}

absl::StatusOr<bool> FleetView::IsoPresent(const IsoLocation& where, const std::string& volid, bool fresh) {
  if (!fresh) {
    if (auto known = isos_.Present(where.scope(), where.storage, volid)) return *known;
  }
  const std::uint64_t seq = isos_.ListingSeq();
  auto listing = pve_.StorageContent(where.node, where.storage, "iso");
  if (!listing.ok()) {
    isos_.Invalidate(where.scope(), where.storage);
    return absl::Status(listing.status().code(), fmt::format("node {} storage {}: cannot list ISOs: {}", where.node,
                                                             where.storage, Msg(listing.status())));
  }
  std::vector<std::string> volids;
  volids.reserve(listing->size());
  for (const auto& v : *listing) volids.push_back(v.volid);
  return isos_.Fill(where.scope(), where.storage, seq, volids, volid);
}

void FleetView::MarkIso(const IsoLocation& where, const std::string& volid, bool present) {
  isos_.Mark(where.scope(), where.storage, volid, present);
}

void FleetView::InvalidateIsos(const IsoLocation& where) { isos_.Invalidate(where.scope(), where.storage); }

void FleetView::InvalidateAllIsos() { isos_.InvalidateAll(); }

std::chrono::milliseconds FleetView::FirstPoll(const std::string& upid, const std::string& asker) {
  return pacer_.Next(upid, asker);
}

TaskPoll FleetView::PollTask(const std::string& asker, const std::string& upid_text, std::string_view what) {
  auto upid = pve::parse::ParseUpid(upid_text);
  if (!upid.ok()) {
    pacer_.Done(upid_text);
    SawChange(asker);
    return TaskPoll{.kind = TaskPoll::Kind::kGone};  // an unreadable stored UPID: re-check the world
  }
  const std::chrono::milliseconds interval = pacer_.Next(upid_text, asker);
  absl::StatusOr<pve::TaskStatus> status;
  bool polled_here = false;
  if (auto recent = board_.Recent(upid_text, interval, asker)) {
    // Another request polled this task (a shared download) within the interval.
    if (recent->status.running) {
      // Back just after that request's next poll, to read its answer.
      const auto until_next =
          std::chrono::duration_cast<std::chrono::milliseconds>(recent->at + interval - clock_.Monotonic());
      return TaskPoll{.kind = TaskPoll::Kind::kRunning,
                      .again = std::max(until_next, std::chrono::milliseconds{0}) + std::chrono::milliseconds{20}};
    }
    status = recent->status;
  } else {
    status = pve_.GetTaskStatus(*upid);
    polled_here = true;
    if (status.ok()) board_.Record(upid_text, *status, asker);
  }
  if (!status.ok()) {
    if (status.status().code() == absl::StatusCode::kNotFound) {
      pacer_.Done(upid_text);
      board_.Forget(upid_text);
      SawChange(asker);
      return TaskPoll{.kind = TaskPoll::Kind::kGone};
    }
    return TaskPoll{.kind = TaskPoll::Kind::kUnreadable,
                    .error = fmt::format("{}: cannot read task status: {}", what, Msg(status.status()))};
  }
  if (status->running) {
    if (polled_here) pacer_.SawRunning(upid_text);
    return TaskPoll{.kind = TaskPoll::Kind::kRunning, .again = interval};
  }
  // Only a task this request polled to its end teaches the pacer how long such tasks take.
  if (polled_here) {
    pacer_.Finished(upid_text, asker);
  } else {
    pacer_.Done(upid_text);
  }
  // What a VM's task did (qmcreate, qmdestroy...) shows only in listings begun from now. A shutdown
  // changes only the power state, which teardown takes from the task itself: the listing before its
  // delete need only begin after the shutdown was sent.
  if (upid->type.starts_with("qm") && upid->type != "qmshutdown") SawChange(asker);
  if (status->Succeeded()) return TaskPoll{.kind = TaskPoll::Kind::kSucceeded};
  std::vector<std::string> tail;
  if (auto log = pve_.GetTaskLog(*upid, 0, 500); log.ok()) {
    const std::size_t n = log->lines.size();
    for (std::size_t i = n > 3 ? n - 3 : 0; i < n; ++i) tail.push_back(log->lines[i].text);
  }
  return TaskPoll{.kind = TaskPoll::Kind::kFailed,
                  .error = fmt::format("{} failed: {}", what, TaskFailureText(*status, tail))};
}

std::optional<pve::SlotClaim> FleetView::ClaimSlot(const std::string& node, const std::string& request_id) {
  if (slots_ == nullptr) return pve::SlotClaim{};
  return slots_->TryClaimSlot(node, request_id);
}

}  // namespace omni_proxmox::provider
