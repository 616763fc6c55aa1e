// SPDX-License-Identifier: Apache-2.0
// The Omni controllers a provider observes: MachineRequestSets becoming MachineRequests (and
// torn down on scale-down), and the MachineRequestStatus cleanup finalizer.

#include <algorithm>
#include <set>

#include "omni/specs/omni.pb.h"
#include "sim/omni/standin_impl.h"

namespace omni_proxmox::sim::omni {

void StandIn::Impl::ControllerLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    const auto before = store_.change_count();
    ReconcileOnce();
    store_.WaitUntil([&] { return stop.stop_requested() || store_.change_count() != before; }, std::chrono::seconds(1));
  }
}

void StandIn::Impl::ReconcileOnce() {
  ReconcileClusters();
  ReconcileRequestSets();
  ReconcileStatuses();
}

void StandIn::Impl::ReconcileRequestSets() {
  auto sets = store_.List(kDefaultNs, kMachineRequestSetType);
  if (!sets.ok()) return;
  std::set<std::string> live_sets;
  for (const auto& set : *sets) {
    live_sets.insert(set.id);
    specs::MachineRequestSetSpec spec;
    if (!spec.ParseFromString(set.proto_spec)) continue;
    const int count = spec.machine_count();
    const std::string provider = spec.provider_id().empty() ? options_.provider_id : spec.provider_id();

    ResourceFilter filter;
    filter.label_queries = {{{{kMachineRequestSetLabel, LabelOp::kEqual, {set.id}, false}}}};
    auto requests = store_.List(kInfraProviderNs, kMachineRequestType, filter);
    if (!requests.ok()) continue;
    std::vector<std::string> running;
    for (const auto& r : *requests) {
      if (r.phase == Phase::kRunning) running.push_back(r.id);
    }
    for (int i = static_cast<int>(running.size()); i < count; ++i) {
      specs::MachineRequestSpec request;
      request.set_talos_version(spec.talos_version().empty() ? options_.talos_version : spec.talos_version());
      request.set_provider_data(spec.provider_data());
      *request.mutable_kernel_args() = spec.kernel_args();
      *request.mutable_extensions() = spec.extensions();
      *request.mutable_meta_values() = spec.meta_values();
      request.set_grpc_tunnel(spec.grpc_tunnel());
      for (int attempt = 0; attempt < 10; ++attempt) {
        const std::string id = set.id + "-" + RandomString(random_, 6, "abcdefghijklmnopqrstuvwxyz0123456789");
        auto created = store_.Create(MakeResource(kInfraProviderNs, kMachineRequestType, id, request,
                                                  {{kProviderIdLabel, provider}, {kMachineRequestSetLabel, set.id}}),
                                     "");
        if (created.ok()) {
          log_->info("machine request set {}: created machine request {}", set.id, id);
          break;
        }
      }
    }
    if (static_cast<int>(running.size()) > count) {
      std::sort(running.begin(), running.end());
      for (std::size_t i = static_cast<std::size_t>(count); i < running.size(); ++i) {
        (void)store_.Teardown(kInfraProviderNs, kMachineRequestType, running[i], "");
        log_->info("machine request set {}: tearing down machine request {}", set.id, running[i]);
      }
    }
  }
  auto requests = store_.List(kInfraProviderNs, kMachineRequestType);
  if (!requests.ok()) return;
  for (const auto& r : *requests) {
    auto set = r.labels.find(kMachineRequestSetLabel);
    if (r.phase == Phase::kRunning && set != r.labels.end() && live_sets.count(set->second) == 0) {
      (void)store_.Teardown(kInfraProviderNs, kMachineRequestType, r.id, r.owner);
    }
    // Omni destroys a torn-down request once the provider has removed its finalizer.
    if (r.phase == Phase::kTearingDown && r.finalizers.empty()) {
      if (store_.Destroy(kInfraProviderNs, kMachineRequestType, r.id, r.owner).ok()) {
        log_->info("machine request {} destroyed", r.id);
      }
    }
  }
}

void StandIn::Impl::ReconcileStatuses() {
  auto statuses = store_.List(kInfraProviderNs, kMachineRequestStatusType);
  if (!statuses.ok()) return;
  for (const auto& s : *statuses) {
    if (s.phase == Phase::kRunning && !s.HasFinalizer(kCleanupFinalizer)) {
      (void)store_.Modify(s.ns, s.type, s.id, [](Resource& r) {
        if (r.phase != Phase::kRunning || r.HasFinalizer(kCleanupFinalizer)) return false;
        r.finalizers.push_back(kCleanupFinalizer);
        return true;
      });
    } else if (s.phase == Phase::kTearingDown && s.HasFinalizer(kCleanupFinalizer)) {
      // Omni removes the machine's links (and so its registration) before letting go.
      specs::MachineRequestStatusSpec spec;
      if (spec.ParseFromString(s.proto_spec) && !spec.id().empty()) {
        for (const auto& [ns, type] :
             std::vector<std::pair<const char*, const char*>>{{kInfraProviderNs, kInfraMachineRegistrationType},
                                                              {kDefaultNs, kLinkType},
                                                              {kDefaultNs, kMachineType}}) {
          auto gone = store_.Get(ns, type, spec.id());
          if (gone.ok()) (void)store_.Destroy(ns, type, spec.id(), gone->owner);
        }
      }
      (void)store_.Modify(s.ns, s.type, s.id, [](Resource& r) {
        auto it = std::find(r.finalizers.begin(), r.finalizers.end(), kCleanupFinalizer);
        if (it == r.finalizers.end()) return false;
        r.finalizers.erase(it);
        return true;
      });
    }
  }
}

}  // namespace omni_proxmox::sim::omni
