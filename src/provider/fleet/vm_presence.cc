// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/vm_presence.h"

#include <iterator>
#include <set>

#include <fmt/format.h>

#include "provider/ownership/owned_vm.h"

namespace omni_proxmox::provider {
namespace {

// Where the listing shows the request's VM, or nullopt when it does not.
std::optional<pve::ClusterResource> Listed(const std::vector<pve::ClusterResource>& listing, const Scope& scope,
                                           const ProvisionedVm& request) {
  auto marked = MarkedVms(listing, scope, request.request_id);
  if (!marked.empty()) return marked.front();
  // The Go provider's VM is known by its VMID alone here: comparing its SMBIOS uuid would cost a
  // config read per VM per listing, and teardown still checks it before touching the VM.
  if (!request.markers && request.vmid != 0) {
    for (const auto& vm : listing) {
      if (vm.vmid && *vm.vmid == request.vmid) return vm;
    }
  }
  return std::nullopt;
}

}  // namespace

std::string VmGoneMessage(const MissingVm& missing) {
  return fmt::format(
      "{} Proxmox no longer lists it; last seen on node {} as VM {}. It is not re-created (Omni owns the "
      "machine's lifecycle): restore the VM, or remove the machine in Omni so that this request is torn down",
      kVmGonePrefix, missing.node.empty() ? "?" : missing.node, missing.vmid);
}

std::vector<std::string> VmPresence::Observe(const std::vector<pve::ClusterResource>& listing, const Scope& scope,
                                             const std::vector<ProvisionedVm>& provisioned) {
  std::vector<std::string> changed;
  std::set<std::string> judged;
  absl::MutexLock lock(&mutex_);
  for (const auto& request : provisioned) {
    judged.insert(request.request_id);
    auto [it, inserted] = entries_.try_emplace(request.request_id);
    Entry& entry = it->second;
    if (inserted) {
      entry.node = request.node;
      entry.vmid = request.vmid;
    }
    const Verdict before = entry.verdict;
    if (auto vm = Listed(listing, scope, request)) {
      entry.node = vm->node;
      entry.vmid = vm->vmid.value_or(request.vmid);
      entry.absent_listings = 0;
      entry.verdict = Verdict::kPresent;
    } else if (++entry.absent_listings >= confirmations_) {
      entry.verdict = Verdict::kMissing;
    }
    if (entry.verdict != before && entry.verdict != Verdict::kUnknown) changed.push_back(request.request_id);
  }
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = judged.contains(it->first) ? std::next(it) : entries_.erase(it);
  }
  return changed;
}

VmPresence::Verdict VmPresence::Of(const std::string& request_id, MissingVm* missing) const {
  absl::MutexLock lock(&mutex_);
  auto it = entries_.find(request_id);
  if (it == entries_.end()) return Verdict::kUnknown;
  if (it->second.verdict == Verdict::kMissing && missing != nullptr) {
    *missing = {.request_id = request_id, .node = it->second.node, .vmid = it->second.vmid};
  }
  return it->second.verdict;
}

std::vector<MissingVm> VmPresence::Missing() const {
  absl::MutexLock lock(&mutex_);
  std::vector<MissingVm> out;
  for (const auto& [id, entry] : entries_) {
    if (entry.verdict == Verdict::kMissing) out.push_back({.request_id = id, .node = entry.node, .vmid = entry.vmid});
  }
  return out;
}

}  // namespace omni_proxmox::provider
