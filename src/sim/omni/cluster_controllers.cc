// SPDX-License-Identifier: Apache-2.0
// Omni's cluster controllers as far as a provider and an operator can observe them (Omni's
// internal/backend/runtime/omni/controllers/omni: machine_provision.go, the machine set node and
// status controllers, cluster_machine_request_status.go):
// - a MachineSet whose allocation names a MachineClass with auto_provision gets a
//   MachineRequestSet with the set's ID, owned by MachineProvisionController, holding the class's
//   provider data, the cluster's Talos version and the set's machine count;
// - connected Machines of that request set become MachineSetNodes of the machine set, up to its
//   count (the stand-in has no Talos, so a connected machine counts as healthy);
// - MachineSetStatuses count requested, bound and connected machines (phase ScalingUp,
//   ScalingDown or Running);
// - each MachineRequest of a request set whose MachineSet exists gets a
//   ClusterMachineRequestStatus with the request's ID: PENDING until the provider reports, then
//   the provider's stage and status text, "Waiting for the machine to join Omni" once
//   PROVISIONED, "Provision Failed: <error>" when FAILED, DEPROVISIONING while torn down.
// Outputs whose input is gone are destroyed.

#include <algorithm>
#include <set>

#include <google/protobuf/util/message_differencer.h>

#include "omni/specs/omni.pb.h"
#include "sim/omni/standin_impl.h"

namespace omni_proxmox::sim::omni {
namespace {

using google::protobuf::util::MessageDifferencer;

ResourceFilter LabelEquals(const char* key, const std::string& value) {
  ResourceFilter filter;
  filter.label_queries = {{{{key, LabelOp::kEqual, {value}, false}}}};
  return filter;
}

// The machine set's allocation: machine_allocation, or the older machine_class field.
const specs::MachineSetSpec::MachineAllocation* AllocationOf(const specs::MachineSetSpec& spec) {
  if (spec.has_machine_allocation()) return &spec.machine_allocation();
  if (spec.has_machine_class()) return &spec.machine_class();
  return nullptr;
}

// Labels an output copies from its machine set (cluster and role), plus `extra`.
Labels SetLabels(const Resource& machine_set, Labels extra = {}) {
  for (const char* key : {kClusterLabel, kRoleControlPlaneLabel, kRoleWorkerLabel}) {
    if (auto it = machine_set.labels.find(key); it != machine_set.labels.end()) extra[key] = it->second;
  }
  return extra;
}

// Writes `desired` (spec and labels) as `owner`'s output: created when missing, updated when it
// differs. Returns false when nothing had to change.
template <typename Spec>
bool WriteOutput(StateStore& store, const std::string& type, const std::string& id, const Spec& desired,
                 const Labels& labels, const std::string& owner) {
  auto current = store.Get(kDefaultNs, type, id);
  if (!current.ok()) {
    return store.Create(MakeResource(kDefaultNs, type, id, desired, labels), owner).ok();
  }
  Spec stored;
  if (current->labels == labels && stored.ParseFromString(current->proto_spec) &&
      MessageDifferencer::Equals(stored, desired)) {
    return false;
  }
  return store
      .Modify(kDefaultNs, type, id,
              [&](Resource& r) {
                r.proto_spec = desired.SerializeAsString();
                r.yaml_spec = RenderYaml(desired);
                r.labels = labels;
                return true;
              })
      .ok();
}

}  // namespace

void StandIn::Impl::ReconcileClusters() {
  ReconcileMachineProvision();
  ReconcileMachineSetNodes();
  ReconcileMachineSetStatuses();
  ReconcileClusterMachineRequestStatuses();
}

void StandIn::Impl::ReconcileMachineProvision() {
  auto machine_sets = store_.List(kDefaultNs, kMachineSetType);
  if (!machine_sets.ok()) return;
  std::set<std::string> provisioned;
  for (const auto& ms : *machine_sets) {
    specs::MachineSetSpec spec;
    if (!spec.ParseFromString(ms.proto_spec)) continue;
    const auto* allocation = AllocationOf(spec);
    if (allocation == nullptr || allocation->name().empty() || ms.phase != Phase::kRunning) continue;
    auto cluster_name = ms.labels.find(kClusterLabel);
    if (cluster_name == ms.labels.end()) continue;
    auto cluster = store_.Get(kDefaultNs, kClusterType, cluster_name->second);
    auto klass = store_.Get(kDefaultNs, kMachineClassType, allocation->name());
    if (!cluster.ok() || !klass.ok()) continue;
    specs::ClusterSpec cluster_spec;
    specs::MachineClassSpec class_spec;
    if (!cluster_spec.ParseFromString(cluster->proto_spec) || !class_spec.ParseFromString(klass->proto_spec) ||
        !class_spec.has_auto_provision()) {
      continue;
    }
    const auto& provision = class_spec.auto_provision();
    specs::MachineRequestSetSpec desired;
    desired.set_provider_id(provision.provider_id());
    *desired.mutable_kernel_args() = provision.kernel_args();
    *desired.mutable_meta_values() = provision.meta_values();
    desired.set_talos_version(cluster_spec.talos_version());
    desired.set_provider_data(provision.provider_data());
    desired.set_grpc_tunnel(provision.grpc_tunnel());
    desired.set_machine_count(static_cast<int>(allocation->machine_count()));
    provisioned.insert(ms.id);
    auto current = store_.Get(kDefaultNs, kMachineRequestSetType, ms.id);
    if (current.ok() && current->owner != kMachineProvisionController) continue;  // a user's set of that name
    if (WriteOutput(store_, kMachineRequestSetType, ms.id, desired, {}, kMachineProvisionController)) {
      log_->info("machine set {}: machine request set of {} machines of class {}", ms.id, desired.machine_count(),
                 allocation->name());
    }
  }
  auto sets = store_.List(kDefaultNs, kMachineRequestSetType);
  if (!sets.ok()) return;
  for (const auto& set : *sets) {
    if (set.owner == kMachineProvisionController && !provisioned.contains(set.id)) {
      (void)store_.Destroy(kDefaultNs, kMachineRequestSetType, set.id, set.owner);
      log_->info("machine set {} is gone: machine request set destroyed", set.id);
    }
  }
}

void StandIn::Impl::ReconcileMachineSetNodes() {
  auto machine_sets = store_.List(kDefaultNs, kMachineSetType);
  auto nodes = store_.List(kDefaultNs, kMachineSetNodeType);
  if (!machine_sets.ok() || !nodes.ok()) return;
  std::map<std::string, const Resource*> sets_by_id;
  for (const auto& ms : *machine_sets) sets_by_id[ms.id] = &ms;
  std::set<std::string> bound;
  std::map<std::string, std::vector<std::string>> nodes_by_set;
  for (const auto& node : *nodes) {
    auto set = node.labels.find(kMachineSetLabel);
    const bool machine_exists = store_.Get(kDefaultNs, kMachineType, node.id).ok();
    if (set == node.labels.end() || !sets_by_id.contains(set->second) || !machine_exists) {
      (void)store_.Destroy(kDefaultNs, kMachineSetNodeType, node.id, node.owner);
      continue;
    }
    bound.insert(node.id);
    nodes_by_set[set->second].push_back(node.id);
  }
  for (const auto& ms : *machine_sets) {
    specs::MachineSetSpec spec;
    if (!spec.ParseFromString(ms.proto_spec)) continue;
    const auto* allocation = AllocationOf(spec);
    if (allocation == nullptr) continue;
    auto& members = nodes_by_set[ms.id];
    const std::size_t count = allocation->machine_count();
    // Machines provisioned for this set's request set, in ID order.
    auto machines = store_.List(kDefaultNs, kMachineType, LabelEquals(kMachineRequestSetLabel, ms.id));
    if (machines.ok()) {
      for (const auto& machine : *machines) {
        if (members.size() >= count || bound.contains(machine.id)) continue;
        specs::MachineSpec machine_spec;
        if (!machine_spec.ParseFromString(machine.proto_spec) || !machine_spec.connected()) continue;
        auto created =
            store_.Create(MakeResource(kDefaultNs, kMachineSetNodeType, machine.id, specs::MachineSetNodeSpec(),
                                       SetLabels(ms, {{kMachineSetLabel, ms.id}})),
                          kMachineSetNodeController);
        if (created.ok()) {
          members.push_back(machine.id);
          bound.insert(machine.id);
          log_->info("machine set {}: machine {} bound", ms.id, machine.id);
        }
      }
    }
    std::sort(members.begin(), members.end());
    while (members.size() > count) {
      (void)store_.Destroy(kDefaultNs, kMachineSetNodeType, members.back(), kMachineSetNodeController);
      members.pop_back();
    }
  }
}

void StandIn::Impl::ReconcileMachineSetStatuses() {
  auto machine_sets = store_.List(kDefaultNs, kMachineSetType);
  if (!machine_sets.ok()) return;
  std::set<std::string> live;
  for (const auto& ms : *machine_sets) {
    specs::MachineSetSpec spec;
    if (!spec.ParseFromString(ms.proto_spec)) continue;
    live.insert(ms.id);
    specs::MachineSetStatusSpec status;
    std::uint32_t requested = 0;
    if (const auto* allocation = AllocationOf(spec); allocation != nullptr) {
      requested = allocation->machine_count();
      *status.mutable_machine_allocation() = *allocation;
    }
    std::uint32_t total = 0, connected = 0;
    auto nodes = store_.List(kDefaultNs, kMachineSetNodeType, LabelEquals(kMachineSetLabel, ms.id));
    for (const auto& node : nodes.value_or(std::vector<Resource>{})) {
      ++total;
      auto machine = store_.Get(kDefaultNs, kMachineType, node.id);
      specs::MachineSpec machine_spec;
      if (machine.ok() && machine_spec.ParseFromString(machine->proto_spec) && machine_spec.connected()) ++connected;
    }
    status.mutable_machines()->set_requested(requested);
    status.mutable_machines()->set_total(total);
    status.mutable_machines()->set_connected(connected);
    status.mutable_machines()->set_healthy(connected);
    status.set_phase(ms.phase == Phase::kTearingDown ? specs::Destroying
                     : total < requested             ? specs::ScalingUp
                     : total > requested             ? specs::ScalingDown
                                                     : specs::Running);
    status.set_ready(status.phase() == specs::Running && connected == total);
    (void)WriteOutput(store_, kMachineSetStatusType, ms.id, status, SetLabels(ms), kMachineSetStatusController);
  }
  auto statuses = store_.List(kDefaultNs, kMachineSetStatusType);
  for (const auto& s : statuses.value_or(std::vector<Resource>{})) {
    if (!live.contains(s.id)) (void)store_.Destroy(kDefaultNs, kMachineSetStatusType, s.id, s.owner);
  }
}

void StandIn::Impl::ReconcileClusterMachineRequestStatuses() {
  using Stage = specs::ClusterMachineRequestStatusSpec;
  auto requests = store_.List(kInfraProviderNs, kMachineRequestType);
  if (!requests.ok()) return;
  std::set<std::string> live;
  for (const auto& request : *requests) {
    auto set_name = request.labels.find(kMachineRequestSetLabel);
    if (set_name == request.labels.end()) continue;
    auto machine_set = store_.Get(kDefaultNs, kMachineSetType, set_name->second);
    if (!machine_set.ok()) continue;
    Stage desired;
    desired.set_stage(Stage::PENDING);
    desired.set_status("Waiting for the infra provider to start provision");
    auto status = store_.Get(kInfraProviderNs, kMachineRequestStatusType, request.id);
    specs::MachineRequestStatusSpec reported;
    const bool has_status = status.ok() && reported.ParseFromString(status->proto_spec);
    if (request.phase == Phase::kTearingDown) {
      desired.set_stage(Stage::DEPROVISIONING);
      desired.set_status("Waiting for the infra provider to finish teardown");
    } else if (has_status) {
      desired.set_machine_uuid(reported.id());
      desired.set_status(reported.status());
      switch (reported.stage()) {
        case specs::MachineRequestStatusSpec::PROVISIONING:
          desired.set_stage(Stage::PROVISIONING);
          break;
        case specs::MachineRequestStatusSpec::PROVISIONED:
          desired.set_stage(Stage::PROVISIONED);
          desired.set_status("Waiting for the machine to join Omni");
          break;
        case specs::MachineRequestStatusSpec::FAILED:
          desired.set_stage(Stage::FAILED);
          desired.set_status("Provision Failed: " + reported.error());
          break;
        default:
          desired.set_stage(Stage::PENDING);
          break;
      }
    }
    if (auto provider = request.labels.find(kProviderIdLabel); provider != request.labels.end()) {
      desired.set_provider_id(provider->second);
    }
    Labels labels = SetLabels(*machine_set, {{kMachineSetLabel, set_name->second}});
    if (has_status && !reported.id().empty() && store_.Get(kDefaultNs, kMachineSetNodeType, reported.id()).ok()) {
      labels[kMachineRequestInUseLabel] = "";
    }
    live.insert(request.id);
    (void)WriteOutput(store_, kClusterMachineRequestStatusType, request.id, desired, labels,
                      kClusterMachineRequestStatusController);
  }
  auto outputs = store_.List(kDefaultNs, kClusterMachineRequestStatusType);
  for (const auto& o : outputs.value_or(std::vector<Resource>{})) {
    if (!live.contains(o.id)) (void)store_.Destroy(kDefaultNs, kClusterMachineRequestStatusType, o.id, o.owner);
  }
}

}  // namespace omni_proxmox::sim::omni
