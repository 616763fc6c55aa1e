// SPDX-License-Identifier: Apache-2.0
#include "cli/cluster_status.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/text_table.h"
#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "util/status_macros.h"

namespace omni_proxmox::cli {
namespace {

using nlohmann::json;

// The Omni resources this view reads (all in namespace default unless noted).
constexpr std::string_view kTypeCluster = "Clusters.omni.sidero.dev";
constexpr std::string_view kTypeMachineSet = "MachineSets.omni.sidero.dev";
constexpr std::string_view kTypeMachineSetStatus = "MachineSetStatuses.omni.sidero.dev";
constexpr std::string_view kTypeMachineSetNode = "MachineSetNodes.omni.sidero.dev";
constexpr std::string_view kTypeMachineRequestSet = "MachineRequestSets.omni.sidero.dev";
constexpr std::string_view kTypeMachineClass = "MachineClasses.omni.sidero.dev";
constexpr std::string_view kTypeClusterMachineRequestStatus = "ClusterMachineRequestStatuses.omni.sidero.dev";
constexpr std::string_view kTypeLink = "Links.omni.sidero.dev";
constexpr std::string_view kLabelCluster = "omni.sidero.dev/cluster";
constexpr std::string_view kLabelMachineSet = "omni.sidero.dev/machine-set";
constexpr std::string_view kLabelRoleControlPlane = "omni.sidero.dev/role-controlplane";
// Omni shows a provider as connected while its heartbeat is younger than this.
constexpr std::int64_t kHeartbeatWindowSeconds = 31;

struct ProviderRow {
  std::string id;
  std::optional<std::int64_t> heartbeat_age_seconds;
  std::string error;
  bool connected() const { return heartbeat_age_seconds && *heartbeat_age_seconds < kHeartbeatWindowSeconds; }
};

struct SetRow {
  std::string id;
  std::string role;
  std::string machine_class;
  std::uint32_t wanted = 0;
  std::uint32_t bound = 0;
  std::string phase = "Unknown";
  bool has_request_set = false;
  int requests = 0;
  std::string provider_id;
  std::string stuck;           // why the set cannot get machines; empty when nothing keeps it from them
  bool misconfigured = false;  // stuck until an operator changes something
};

struct RequestRow {
  std::string id;
  std::string machine_set;
  std::string provider_id;
  std::string stage = "PENDING";  // Omni's ClusterMachineRequestStatus stage
  std::string step;               // the provider's MachineRequestStatus.status
  std::string error;              // the provider's MachineRequestStatus.error
  std::string machine_uuid;
  bool joined = false;  // a Link exists for the request's machine
  bool bound = false;   // the machine is a MachineSetNode of the set
  bool tearing_down = false;
  std::int64_t age_seconds = 0;
  std::string where;  // where it is stuck, in words; empty when it is done
};

struct ClusterView {
  std::string name;
  std::string talos_version;
  std::string kubernetes_version;
  std::vector<SetRow> sets;
  std::vector<RequestRow> requests;
  std::map<std::string, ProviderRow> providers;
  bool attention = false;
};

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// An error naming the kind the key could not read and, for a refusal, the role it needs.
absl::Status ReadError(const absl::Status& status, std::string_view type, const KeyInUse& key) {
  if (status.code() == absl::StatusCode::kPermissionDenied) {
    return absl::PermissionDeniedError(
        fmt::format("the key '{}' may not read {}: it needs the Reader role or more (omnictl serviceaccount create "
                    "status-reader --role Reader, then --omni-operator-key-file with its key): {}",
                    key.name, type, Msg(status)));
  }
  return absl::Status(status.code(), fmt::format("cannot read {}: {}", type, Msg(status)));
}

absl::StatusOr<std::vector<omni::Resource>> ListOf(omni::StateClient& state, std::string_view ns, std::string_view type,
                                                   omni::LabelQuery labels, const KeyInUse& key) {
  auto list = state.List({std::string(ns), std::string(type), std::move(labels)});
  if (!list.ok()) return ReadError(list.status(), type, key);
  return list;
}

template <typename Spec>
std::map<std::string, Spec> ById(const std::vector<omni::Resource>& resources) {
  std::map<std::string, Spec> out;
  for (const auto& r : resources) {
    Spec spec;
    if (omni::DecodeSpec(r, spec).ok()) out[r.metadata.id] = spec;
  }
  return out;
}

std::int64_t SecondsSince(util::Clock::SystemTime now, util::Clock::SystemTime then) {
  return std::chrono::duration_cast<std::chrono::seconds>(now - then).count();
}

const specs::MachineSetSpec::MachineAllocation* AllocationOf(const specs::MachineSetSpec& spec) {
  if (spec.has_machine_allocation()) return &spec.machine_allocation();
  if (spec.has_machine_class()) return &spec.machine_class();
  return nullptr;
}

// What keeps a machine set from getting machines, if anything (set.stuck, set.misconfigured).
void DiagnoseSet(omni::StateClient& state, SetRow& set, bool has_allocation) {
  if (!has_allocation) {
    set.stuck = "machines are picked by hand (no machine class): nothing is requested from a provider";
    return;
  }
  if (set.has_request_set) return;
  auto klass = state.Get({std::string(omni::kNamespaceDefault), std::string(kTypeMachineClass), set.machine_class});
  specs::MachineClassSpec spec;
  if (!klass.ok() && klass.status().code() == absl::StatusCode::kNotFound) {
    set.stuck = fmt::format("machine class '{}' does not exist: apply it (omnictl apply -f)", set.machine_class);
    set.misconfigured = true;
  } else if (klass.ok() && omni::DecodeSpec(*klass, spec).ok() && !spec.has_auto_provision()) {
    set.stuck = fmt::format(
        "machine class '{}' does not auto-provision: Omni picks connected machines matching its labels instead of "
        "asking a provider",
        set.machine_class);
    set.misconfigured = true;
  } else {
    set.stuck = "Omni has not made its MachineRequestSet yet";
  }
}

std::string RequestWhere(const RequestRow& r, const ClusterView& view) {
  if (r.bound) return "";
  if (r.tearing_down) return "being torn down: the provider removes the VM, then its finalizer";
  if (r.stage == "FAILED") return fmt::format("failed: {}", r.error.empty() ? r.step : r.error);
  if (r.stage == "PENDING") {
    auto p = view.providers.find(r.provider_id);
    if (p == view.providers.end() || !p->second.connected()) {
      const std::string beat =
          p == view.providers.end() || !p->second.heartbeat_age_seconds
              ? "it has never sent a heartbeat"
              : fmt::format("last heartbeat {} ago", HumanSeconds(*p->second.heartbeat_age_seconds));
      return fmt::format("waiting for provider '{}', which is not connected ({}): start omni-proxmox run with its key",
                         r.provider_id, beat);
    }
    return fmt::format("waiting for provider '{}' to pick it up", r.provider_id);
  }
  if (r.stage == "PROVISIONING") {
    std::string text = r.step.empty() ? "provisioning" : fmt::format("provisioning: {}", r.step);
    if (!r.error.empty()) text += fmt::format(" (retrying after: {})", r.error);
    return text;
  }
  if (r.stage == "PROVISIONED" && !r.joined) {
    return "its VM is up but the machine has not joined Omni: the VM cannot reach Omni's SideroLink URL, or it "
           "booted without the provider's join config ('omni-proxmox doctor' checks the usual causes)";
  }
  if (r.joined) return "its machine joined Omni; waiting to be added to the machine set";
  return r.step;
}

// What the machine-set pass needs to know about the cluster's other resources, by ID.
struct ClusterIndex {
  std::map<std::string, specs::MachineSetStatusSpec> status_by_set;
  std::map<std::string, specs::MachineRequestSetSpec> request_set_by_id;
  std::map<std::string, specs::ClusterMachineRequestStatusSpec> cluster_request_by_id;
  std::map<std::string, specs::MachineRequestStatusSpec> status_by_request;
  std::set<std::string> bound_machines;   // MachineSetNodes: machine UUIDs in a set of the cluster
  std::set<std::string> linked_requests;  // requests whose machine has a SideroLink Link
};

absl::Status ReadClusterHeader(omni::StateClient& state, const KeyInUse& key, ClusterView& view) {
  auto cluster = state.Get({std::string(omni::kNamespaceDefault), std::string(kTypeCluster), view.name});
  if (!cluster.ok()) {
    if (cluster.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          fmt::format("cluster '{}' does not exist in Omni (omnictl get clusters lists them)", view.name));
    }
    return ReadError(cluster.status(), kTypeCluster, key);
  }
  specs::ClusterSpec spec;
  (void)omni::DecodeSpec(*cluster, spec);
  view.talos_version = spec.talos_version();
  view.kubernetes_version = spec.kubernetes_version();
  return absl::OkStatus();
}

absl::StatusOr<ClusterIndex> ReadIndex(omni::StateClient& state, const KeyInUse& key, const std::string& name) {
  const std::string def(omni::kNamespaceDefault);
  const omni::LabelQuery of_cluster = {omni::LabelTerm::Equal(std::string(kLabelCluster), name)};
  ClusterIndex index;
  OP_ASSIGN_OR_RETURN(auto set_statuses, ListOf(state, def, kTypeMachineSetStatus, of_cluster, key));
  OP_ASSIGN_OR_RETURN(auto nodes, ListOf(state, def, kTypeMachineSetNode, of_cluster, key));
  OP_ASSIGN_OR_RETURN(auto request_sets, ListOf(state, def, kTypeMachineRequestSet, {}, key));
  OP_ASSIGN_OR_RETURN(auto cluster_requests, ListOf(state, def, kTypeClusterMachineRequestStatus, of_cluster, key));
  OP_ASSIGN_OR_RETURN(auto links, ListOf(state, def, kTypeLink, {}, key));
  OP_ASSIGN_OR_RETURN(auto statuses,
                      ListOf(state, omni::kNamespaceInfraProvider, omni::kTypeMachineRequestStatus, {}, key));
  index.status_by_set = ById<specs::MachineSetStatusSpec>(set_statuses);
  index.request_set_by_id = ById<specs::MachineRequestSetSpec>(request_sets);
  index.cluster_request_by_id = ById<specs::ClusterMachineRequestStatusSpec>(cluster_requests);
  index.status_by_request = ById<specs::MachineRequestStatusSpec>(statuses);
  for (const auto& n : nodes) index.bound_machines.insert(n.metadata.id);
  for (const auto& l : links) {
    if (auto it = l.metadata.labels.find(std::string(omni::kLabelMachineRequest)); it != l.metadata.labels.end()) {
      index.linked_requests.insert(it->second);
    }
  }
  return index;
}

absl::Status ReadMachineSets(omni::StateClient& state, const KeyInUse& key, const ClusterIndex& index,
                             ClusterView& view) {
  const omni::LabelQuery of_cluster = {omni::LabelTerm::Equal(std::string(kLabelCluster), view.name)};
  OP_ASSIGN_OR_RETURN(auto machine_sets, ListOf(state, omni::kNamespaceDefault, kTypeMachineSet, of_cluster, key));
  for (const auto& ms : machine_sets) {
    specs::MachineSetSpec spec;
    (void)omni::DecodeSpec(ms, spec);
    SetRow row;
    row.id = ms.metadata.id;
    row.role = ms.metadata.labels.contains(std::string(kLabelRoleControlPlane)) ? "control-plane" : "worker";
    const auto* allocation = AllocationOf(spec);
    if (allocation != nullptr) {
      row.machine_class = allocation->name();
      row.wanted = allocation->machine_count();
    }
    if (auto it = index.status_by_set.find(row.id); it != index.status_by_set.end()) {
      row.phase = specs::MachineSetPhase_Name(it->second.phase());
      row.bound = it->second.machines().total();
    }
    if (auto it = index.request_set_by_id.find(row.id); it != index.request_set_by_id.end()) {
      row.has_request_set = true;
      row.provider_id = it->second.provider_id();
      view.providers[row.provider_id].id = row.provider_id;
    }
    DiagnoseSet(state, row, allocation != nullptr);
    view.attention |= row.misconfigured;
    view.sets.push_back(std::move(row));
  }
  return absl::OkStatus();
}

// The heartbeat of every provider a machine set of the cluster asks for machines.
absl::Status ReadProviders(omni::StateClient& state, const KeyInUse& key, util::Clock::SystemTime now,
                           ClusterView& view) {
  for (auto& [id, provider] : view.providers) {
    auto beat = state.Get(
        {std::string(omni::kNamespaceInfraProviderEphemeral), std::string(omni::kTypeInfraProviderHealthStatus), id});
    specs::InfraProviderHealthStatusSpec spec;
    if (beat.ok() && omni::DecodeSpec(*beat, spec).ok() && spec.has_last_heartbeat_timestamp()) {
      provider.heartbeat_age_seconds = SecondsSince(
          now, util::Clock::SystemTime{} + std::chrono::seconds{spec.last_heartbeat_timestamp().seconds()});
      provider.error = spec.error();
    } else if (!beat.ok() && beat.status().code() != absl::StatusCode::kNotFound) {
      return ReadError(beat.status(), omni::kTypeInfraProviderHealthStatus, key);
    }
  }
  return absl::OkStatus();
}

RequestRow MakeRequestRow(const omni::Resource& request, const ClusterIndex& index, util::Clock::SystemTime now) {
  RequestRow row;
  row.id = request.metadata.id;
  row.machine_set = request.metadata.labels.at(std::string(omni::kLabelMachineRequestSet));
  if (auto it = request.metadata.labels.find(std::string(omni::kLabelInfraProviderId));
      it != request.metadata.labels.end()) {
    row.provider_id = it->second;
  }
  row.tearing_down = request.tearing_down();
  row.age_seconds = SecondsSince(now, request.metadata.created);
  if (auto it = index.cluster_request_by_id.find(row.id); it != index.cluster_request_by_id.end()) {
    row.stage = specs::ClusterMachineRequestStatusSpec::Stage_Name(it->second.stage());
    row.machine_uuid = it->second.machine_uuid();
  }
  if (auto it = index.status_by_request.find(row.id); it != index.status_by_request.end()) {
    row.step = it->second.status();
    row.error = it->second.error();
    if (row.machine_uuid.empty()) row.machine_uuid = it->second.id();
  }
  row.joined = index.linked_requests.contains(row.id);
  row.bound = !row.machine_uuid.empty() && index.bound_machines.contains(row.machine_uuid);
  return row;
}

absl::Status ReadRequests(omni::StateClient& state, const KeyInUse& key, const ClusterIndex& index,
                          util::Clock::SystemTime now, ClusterView& view) {
  omni::LabelTerm of_sets{std::string(omni::kLabelMachineRequestSet), omni::LabelTerm::Op::kIn, {}, false};
  for (const auto& set : view.sets) of_sets.values.push_back(set.id);
  if (of_sets.values.empty()) return absl::OkStatus();
  OP_ASSIGN_OR_RETURN(auto requests,
                      ListOf(state, omni::kNamespaceInfraProvider, omni::kTypeMachineRequest, {of_sets}, key));
  for (const auto& request : requests) {
    RequestRow row = MakeRequestRow(request, index, now);
    for (auto& set : view.sets) set.requests += set.id == row.machine_set;
    view.requests.push_back(std::move(row));
  }
  for (auto& r : view.requests) {
    r.where = RequestWhere(r, view);
    const auto p = view.providers.find(r.provider_id);
    view.attention |=
        r.stage == "FAILED" || (r.stage == "PENDING" && (p == view.providers.end() || !p->second.connected()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClusterView> ReadCluster(omni::StateClient& state, const KeyInUse& key, const std::string& name,
                                        util::Clock::SystemTime now) {
  ClusterView view;
  view.name = name;
  OP_RETURN_IF_ERROR(ReadClusterHeader(state, key, view));
  OP_ASSIGN_OR_RETURN(const ClusterIndex index, ReadIndex(state, key, name));
  OP_RETURN_IF_ERROR(ReadMachineSets(state, key, index, view));
  OP_RETURN_IF_ERROR(ReadProviders(state, key, now, view));
  OP_RETURN_IF_ERROR(ReadRequests(state, key, index, now, view));
  return view;
}

json ToJson(const ClusterView& view, const KeyInUse& key) {
  json sets = json::array();
  for (const auto& s : view.sets) {
    sets.push_back({{"id", s.id},
                    {"role", s.role},
                    {"machine_class", s.machine_class},
                    {"machines_wanted", s.wanted},
                    {"machines_bound", s.bound},
                    {"phase", s.phase},
                    {"request_set", s.has_request_set},
                    {"provider_id", s.provider_id},
                    {"requests", s.requests},
                    {"stuck", s.stuck}});
  }
  json requests = json::array();
  for (const auto& r : view.requests) {
    requests.push_back({{"id", r.id},
                        {"machine_set", r.machine_set},
                        {"provider_id", r.provider_id},
                        {"stage", r.stage},
                        {"step", r.step},
                        {"error", r.error},
                        {"machine_uuid", r.machine_uuid},
                        {"machine_joined", r.joined},
                        {"in_machine_set", r.bound},
                        {"tearing_down", r.tearing_down},
                        {"age_seconds", r.age_seconds},
                        {"where", r.where}});
  }
  json providers = json::array();
  for (const auto& [id, p] : view.providers) {
    providers.push_back({{"id", id},
                         {"connected", p.connected()},
                         {"heartbeat_age_seconds", p.heartbeat_age_seconds ? json(*p.heartbeat_age_seconds) : json()},
                         {"error", p.error}});
  }
  return {
      {"ok", !view.attention},
      {"cluster",
       {{"name", view.name}, {"talos_version", view.talos_version}, {"kubernetes_version", view.kubernetes_version}}},
      {"key", {{"name", key.name}, {"kind", "operator"}, {"from", key.flag}}},
      {"providers", std::move(providers)},
      {"machine_sets", std::move(sets)},
      {"requests", std::move(requests)}};
}

void PrintText(const ClusterView& view, const KeyInUse& key) {
  std::cout << fmt::format("Cluster    {} (Talos {}, Kubernetes {})\n", view.name,
                           view.talos_version.empty() ? "?" : view.talos_version,
                           view.kubernetes_version.empty() ? "?" : view.kubernetes_version);
  std::cout << fmt::format("Read with  the operator key '{}' ({}); an infra-provider key may not read clusters\n",
                           key.name, key.flag);
  for (const auto& [id, p] : view.providers) {
    std::string health =
        !p.heartbeat_age_seconds ? "never sent a heartbeat"
        : p.connected()          ? fmt::format("connected (heartbeat {} ago)", HumanSeconds(*p.heartbeat_age_seconds))
                        : fmt::format("not connected (last heartbeat {} ago)", HumanSeconds(*p.heartbeat_age_seconds));
    if (!p.error.empty()) health += fmt::format(", reports: {}", FoldCell(p.error));
    std::cout << fmt::format("Provider   {}: {}\n", id, health);
  }
  std::cout << "\n";
  if (view.sets.empty()) {
    std::cout << "The cluster has no machine sets.\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : view.sets) {
      const std::string requests = !s.has_request_set ? "-"
                                                      : fmt::format("{} request{} for {}", s.requests,
                                                                    s.requests == 1 ? "" : "s", s.provider_id);
      rows.push_back({s.id, s.role, s.machine_class.empty() ? "-" : s.machine_class,
                      fmt::format("{}/{}", s.bound, s.wanted), s.phase, requests});
    }
    std::cout << RenderTable({"MACHINE SET", "ROLE", "CLASS", "MACHINES", "PHASE", "REQUESTS"}, rows);
  }
  if (!view.requests.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : view.requests) {
      rows.push_back({r.id, r.stage, r.step.empty() ? "-" : FoldCell(r.step, 60),
                      r.error.empty() ? "-" : FoldCell(r.error, 60), HumanSeconds(r.age_seconds),
                      r.bound    ? "in the machine set"
                      : r.joined ? "joined"
                                 : "not joined"});
    }
    std::cout << "\n" << RenderTable({"REQUEST", "STAGE", "STEP", "ERROR", "AGE", "MACHINE"}, rows);
  }
  std::vector<std::string> stuck;
  for (const auto& s : view.sets) {
    if (!s.stuck.empty()) stuck.push_back(fmt::format("  {}: {}", s.id, s.stuck));
  }
  for (const auto& r : view.requests) {
    if (!r.where.empty()) stuck.push_back(fmt::format("  {}: {}", r.id, FoldCell(r.where, 400)));
  }
  if (stuck.empty()) {
    std::cout << "\nEvery machine set has the machines it asks for.\n";
  } else {
    std::cout << "\nWhere it is stuck:\n" << fmt::format("{}\n", fmt::join(stuck, "\n"));
  }
}

}  // namespace

int RunClusterStatus(omni::StateClient& state, const KeyInUse& key, const std::string& cluster, OutputFormat format,
                     util::Clock::SystemTime now) {
  auto view = ReadCluster(state, key, cluster, now);
  if (!view.ok()) {
    std::cerr << "omni-proxmox status: " << Msg(view.status()) << "\n";
    return kExitFindings;
  }
  if (format == OutputFormat::kJson) {
    std::cout << ToJson(*view, key).dump(2) << "\n";
  } else {
    PrintText(*view, key);
  }
  return view->attention ? kExitFindings : kExitOk;
}

}  // namespace omni_proxmox::cli
