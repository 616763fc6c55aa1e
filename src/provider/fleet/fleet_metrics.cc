// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/fleet_metrics.h"

#include <map>
#include <string>

#include <fmt/format.h>

#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "provider/machine.pb.h"
#include "provider/ownership/markers.h"

namespace omni_proxmox::provider {
namespace {

constexpr char kVmsManaged[] = "omni_proxmox_vms_managed";
constexpr char kVmsManagedHelp[] = "VMs carrying this provider's ownership markers, per Proxmox node";
constexpr char kRequests[] = "omni_proxmox_requests";
constexpr char kRequestsHelp[] = "This provider's MachineRequests by stage";

constexpr char kVmsMissing[] = "omni_proxmox_vms_missing";
constexpr char kVmsMissingHelp[] =
    "PROVISIONED MachineRequests whose VM Proxmox no longer lists (deleted out of band or lost with a node)";

// What the cache says about this provider's requests: counts by stage, and where each PROVISIONED
// one's VM should be.
struct RequestView {
  std::map<std::string, int> counts;
  std::vector<ProvisionedVm> provisioned;
};

absl::StatusOr<RequestView> ReadRequests(omni::ResourceCache& state, std::string_view provider_id) {
  const omni::LabelTerm ours =
      omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), std::string(provider_id));
  auto requests =
      state.List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), {ours}});
  if (!requests.ok()) {
    return absl::Status(requests.status().code(),
                        fmt::format("cannot count MachineRequests: {}", std::string(requests.status().message())));
  }
  auto statuses =
      state.List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), {}});
  if (!statuses.ok()) {
    return absl::Status(statuses.status().code(), fmt::format("cannot count MachineRequestStatuses: {}",
                                                              std::string(statuses.status().message())));
  }
  auto machines = state.List({omni::ProviderNamespace(provider_id), omni::ProviderMachineType(provider_id), {}});
  if (!machines.ok()) {
    return absl::Status(machines.status().code(), fmt::format("cannot read the provider's state resources: {}",
                                                              std::string(machines.status().message())));
  }
  std::map<std::string, specs::MachineRequestStatusSpec::Stage> stage_of;
  for (const auto& status : *statuses) {
    specs::MachineRequestStatusSpec spec;
    if (omni::DecodeSpec(status, spec).ok()) stage_of[status.metadata.id] = spec.stage();
  }
  std::map<std::string, MachineSpec> machine_of;
  for (const auto& machine : *machines) {
    MachineSpec spec;
    if (omni::DecodeSpec(machine, spec).ok()) machine_of[machine.metadata.id] = spec;
  }
  // Every stage is written, so one that empties drops to 0 instead of keeping its last count.
  RequestView view;
  view.counts = {{"pending", 0}, {"provisioning", 0}, {"provisioned", 0}, {"failed", 0}, {"deprovisioning", 0}};
  for (const auto& request : *requests) {
    if (request.tearing_down()) {
      ++view.counts["deprovisioning"];
      continue;
    }
    auto it = stage_of.find(request.metadata.id);
    if (it == stage_of.end()) {
      ++view.counts["pending"];
      continue;
    }
    switch (it->second) {
      case specs::MachineRequestStatusSpec::PROVISIONED:
        ++view.counts["provisioned"];
        // Without our state there is nothing to say where its VM should be.
        if (auto machine = machine_of.find(request.metadata.id); machine != machine_of.end()) {
          view.provisioned.push_back({.request_id = request.metadata.id,
                                      .vmid = machine->second.vmid(),
                                      .node = machine->second.node(),
                                      .markers = machine->second.markers()});
        }
        break;
      case specs::MachineRequestStatusSpec::FAILED:
        ++view.counts["failed"];
        break;
      case specs::MachineRequestStatusSpec::PROVISIONING:
        ++view.counts["provisioning"];
        break;
      default:
        ++view.counts["pending"];
    }
  }
  return view;
}

// Managed VMs per node from one listing, and (with `presence`) which provisioned requests lack
// their VM in it; returns the requests whose verdict changed.
absl::StatusOr<std::vector<std::string>> UpdateVms(pve::Client& pve, const Scope& scope,
                                                   const std::vector<ProvisionedVm>* provisioned, VmPresence* presence,
                                                   util::MetricsRegistry& metrics) {
  auto resources = pve.ClusterResources(pve::ResourceType::kAll);
  if (!resources.ok()) {
    return absl::Status(resources.status().code(),
                        fmt::format("cannot count managed VMs: {}", std::string(resources.status().message())));
  }
  std::map<std::string, int> per_node;
  for (const auto& resource : *resources) {
    if (resource.type == "node") per_node.try_emplace(resource.node, 0);
    if (resource.type != "qemu" || resource.is_template) continue;
    Ownership ownership;
    if (!ParseOwnership(resource.tags, ownership)) continue;
    // Another Omni's VMs under the same provider ID are not ours to count (or to touch).
    if (OursOrUnscoped(MatchScope(ownership, scope))) ++per_node[resource.node];
  }
  for (const auto& [node, count] : per_node) {
    metrics.GetGauge(kVmsManaged, kVmsManagedHelp, {{"node", node}}).Set(count);
  }
  if (presence == nullptr || provisioned == nullptr) return std::vector<std::string>{};
  auto changed = presence->Observe(*resources, scope, *provisioned);
  metrics.GetGauge(kVmsMissing, kVmsMissingHelp).Set(static_cast<double>(presence->Missing().size()));
  return changed;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> UpdateFleetMetrics(pve::Client& pve, omni::ResourceCache& state,
                                                            std::string_view provider_id,
                                                            const absl::StatusOr<Scope>& scope,
                                                            util::MetricsRegistry& metrics, VmPresence* presence) {
  // The requests first: a VM listed after them is judged against requests that existed before it.
  auto requests = ReadRequests(state, provider_id);
  if (requests.ok()) {
    for (const auto& [stage, count] : requests->counts) {
      metrics.GetGauge(kRequests, kRequestsHelp, {{"stage", stage}}).Set(count);
    }
  }
  if (!scope.ok()) return scope.status();
  // Without the requests, the listing still counts managed VMs but judges no presence.
  auto changed = UpdateVms(pve, *scope, requests.ok() ? &requests->provisioned : nullptr, presence, metrics);
  if (!changed.ok()) return changed.status();
  if (!requests.ok()) return requests.status();
  return changed;
}

}  // namespace omni_proxmox::provider
