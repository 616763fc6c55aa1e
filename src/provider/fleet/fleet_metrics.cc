// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/fleet_metrics.h"

#include <map>
#include <string>

#include <fmt/format.h>

#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "provider/ownership/markers.h"

namespace omni_proxmox::provider {
namespace {

constexpr char kVmsManaged[] = "omni_proxmox_vms_managed";
constexpr char kVmsManagedHelp[] = "VMs carrying this provider's ownership markers, per Proxmox node";
constexpr char kRequests[] = "omni_proxmox_requests";
constexpr char kRequestsHelp[] = "This provider's MachineRequests by stage";

absl::Status UpdateVms(pve::Client& pve, const Scope& scope, util::MetricsRegistry& metrics) {
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
  return absl::OkStatus();
}

absl::Status UpdateRequests(omni::ResourceCache& state, std::string_view provider_id, util::MetricsRegistry& metrics) {
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
  std::map<std::string, specs::MachineRequestStatusSpec::Stage> stage_of;
  for (const auto& status : *statuses) {
    specs::MachineRequestStatusSpec spec;
    if (omni::DecodeSpec(status, spec).ok()) stage_of[status.metadata.id] = spec.stage();
  }
  // Every stage is written, so one that empties drops to 0 instead of keeping its last count.
  std::map<std::string, int> counts = {
      {"pending", 0}, {"provisioning", 0}, {"provisioned", 0}, {"failed", 0}, {"deprovisioning", 0}};
  for (const auto& request : *requests) {
    if (request.tearing_down()) {
      ++counts["deprovisioning"];
      continue;
    }
    auto it = stage_of.find(request.metadata.id);
    if (it == stage_of.end()) {
      ++counts["pending"];
      continue;
    }
    switch (it->second) {
      case specs::MachineRequestStatusSpec::PROVISIONED:
        ++counts["provisioned"];
        break;
      case specs::MachineRequestStatusSpec::FAILED:
        ++counts["failed"];
        break;
      case specs::MachineRequestStatusSpec::PROVISIONING:
        ++counts["provisioning"];
        break;
      default:
        ++counts["pending"];
    }
  }
  for (const auto& [stage, count] : counts) metrics.GetGauge(kRequests, kRequestsHelp, {{"stage", stage}}).Set(count);
  return absl::OkStatus();
}

}  // namespace

absl::Status UpdateFleetMetrics(pve::Client& pve, omni::ResourceCache& state, std::string_view provider_id,
                                const absl::StatusOr<Scope>& scope, util::MetricsRegistry& metrics) {
  absl::Status vms = scope.ok() ? UpdateVms(pve, *scope, metrics) : scope.status();
  absl::Status requests = UpdateRequests(state, provider_id, metrics);
  return vms.ok() ? requests : vms;
}

}  // namespace omni_proxmox::provider
