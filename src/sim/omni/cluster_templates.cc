// SPDX-License-Identifier: Apache-2.0
// The stand-in's `omnictl cluster template sync` and `omnictl cluster delete`: a cluster
// template (the multi-document form: one `kind: Cluster`, one `kind: ControlPlane`, any number of
// `kind: Workers`) becomes Clusters/<name> and one MachineSet per section, as Omni's template
// sync writes them. Only machine-class sections are simulated (there are no static machines to
// pick here); patches and features are accepted and ignored.

#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "omni/specs/omni.pb.h"
#include "sim/omni/standin_impl.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::omni {
namespace {

struct MachineSetTemplate {
  std::string id;  // "<cluster>-control-planes", "<cluster>-workers", "<cluster>-<name>"
  bool control_plane = false;
  std::string machine_class;
  std::uint32_t size = 0;
};

struct ClusterTemplate {
  std::string name;
  std::string kubernetes_version;
  std::string talos_version;
  std::vector<MachineSetTemplate> machine_sets;
};

std::string WithoutV(std::string version) {
  if (!version.empty() && version.front() == 'v') version.erase(0, 1);
  return version;
}

absl::Status CheckKeys(const YAML::Node& doc, const std::string& kind, const std::set<std::string>& allowed) {
  for (const auto& entry : doc) {
    const auto key = entry.first.as<std::string>();
    if (!allowed.contains(key)) {
      return absl::InvalidArgumentError(
          fmt::format("cluster template: {}: field {} not found in type models.{}", kind, key, kind));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MachineSetTemplate> ParseMachineSet(const YAML::Node& doc, const std::string& kind) {
  MachineSetTemplate set;
  set.control_plane = kind == "ControlPlane";
  OP_RETURN_IF_ERROR(CheckKeys(doc, kind,
                               {"kind", "name", "machineClass", "machines", "patches", "labels", "annotations",
                                "updateStrategy", "deleteStrategy"}));
  if (doc["machines"]) {
    return absl::UnimplementedError(fmt::format(
        "cluster template: {}: static machines are not simulated by the stand-in: use machineClass: {{name, size}}",
        kind));
  }
  const YAML::Node klass = doc["machineClass"];
  if (!klass || !klass.IsMap() || !klass["name"]) {
    return absl::InvalidArgumentError(
        fmt::format("cluster template: {}: machineClass: {{name, size}} is required", kind));
  }
  set.machine_class = klass["name"].as<std::string>();
  try {
    set.size = klass["size"] ? klass["size"].as<std::uint32_t>() : 0;
  } catch (const YAML::Exception&) {
    return absl::InvalidArgumentError(
        fmt::format("cluster template: {}: machineClass.size must be a number of machines", kind));
  }
  if (!set.control_plane) set.id = doc["name"] ? doc["name"].as<std::string>() : std::string("workers");
  return set;
}

absl::StatusOr<ClusterTemplate> ParseClusterTemplate(const std::string& yaml) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("cluster template: not YAML: {}", e.what()));
  }
  ClusterTemplate out;
  int control_planes = 0;
  try {
    for (const auto& doc : docs) {
      if (!doc.IsMap()) continue;
      const std::string kind = doc["kind"] ? doc["kind"].as<std::string>() : "";
      if (kind == "Cluster") {
        OP_RETURN_IF_ERROR(CheckKeys(doc, kind,
                                     {"kind", "name", "kubernetes", "talos", "patches", "features", "labels",
                                      "annotations", "systemExtensions"}));
        out.name = doc["name"] ? doc["name"].as<std::string>() : "";
        if (doc["kubernetes"] && doc["kubernetes"]["version"]) {
          out.kubernetes_version = WithoutV(doc["kubernetes"]["version"].as<std::string>());
        }
        if (doc["talos"] && doc["talos"]["version"])
          out.talos_version = WithoutV(doc["talos"]["version"].as<std::string>());
      } else if (kind == "ControlPlane" || kind == "Workers") {
        OP_ASSIGN_OR_RETURN(auto set, ParseMachineSet(doc, kind));
        control_planes += set.control_plane;
        out.machine_sets.push_back(std::move(set));
      } else {
        return absl::InvalidArgumentError(
            fmt::format("cluster template: unknown kind '{}': use Cluster, ControlPlane or Workers", kind));
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("cluster template: {}", e.what()));
  }
  if (out.name.empty()) return absl::InvalidArgumentError("cluster template: kind: Cluster with a name is required");
  if (out.talos_version.empty()) return absl::InvalidArgumentError("cluster template: talos.version is required");
  if (control_planes != 1) {
    return absl::InvalidArgumentError(
        fmt::format("cluster template: template should contain 1 controlplane, got {}", control_planes));
  }
  for (auto& set : out.machine_sets) {
    set.id = set.control_plane ? out.name + "-control-planes" : out.name + "-" + set.id;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> StandIn::SyncClusterTemplate(const std::string& template_yaml) {
  OP_ASSIGN_OR_RETURN(const ClusterTemplate tmpl, ParseClusterTemplate(template_yaml));
  auto& store = impl_->store_;
  for (const auto& set : tmpl.machine_sets) {
    if (!store.Get(kDefaultNs, kMachineClassType, set.machine_class).ok()) {
      return absl::NotFoundError(fmt::format("machine class '{}' (machine set {}) does not exist: create it first",
                                             set.machine_class, set.id));
    }
  }
  specs::ClusterSpec cluster;
  cluster.set_kubernetes_version(tmpl.kubernetes_version);
  cluster.set_talos_version(tmpl.talos_version);
  const auto upsert = [&](Resource r) -> absl::Status {
    auto current = store.Get(r.ns, r.type, r.id);
    if (!current.ok()) return store.Create(std::move(r), kClusterController).status();
    r.version = current->version;
    return store.Update(std::move(r), current->owner, std::nullopt).status();
  };
  OP_RETURN_IF_ERROR(upsert(MakeResource(kDefaultNs, kClusterType, tmpl.name, cluster)));
  std::set<std::string> synced;
  for (const auto& set : tmpl.machine_sets) {
    specs::MachineSetSpec spec;
    spec.mutable_machine_allocation()->set_name(set.machine_class);
    spec.mutable_machine_allocation()->set_machine_count(set.size);
    Labels labels = {{kClusterLabel, tmpl.name}};
    labels[set.control_plane ? kRoleControlPlaneLabel : kRoleWorkerLabel] = "";
    OP_RETURN_IF_ERROR(upsert(MakeResource(kDefaultNs, kMachineSetType, set.id, spec, labels)));
    synced.insert(set.id);
  }
  // Sync prunes the machine sets the template no longer has.
  ResourceFilter ours;
  ours.label_queries = {{{{kClusterLabel, LabelOp::kEqual, {tmpl.name}, false}}}};
  for (const auto& ms : store.List(kDefaultNs, kMachineSetType, ours).value_or(std::vector<Resource>{})) {
    if (!synced.contains(ms.id)) (void)store.Destroy(kDefaultNs, kMachineSetType, ms.id, ms.owner);
  }
  impl_->log_->info("cluster {} synced: {} machine sets", tmpl.name, synced.size());
  return tmpl.name;
}

absl::Status StandIn::DeleteCluster(const std::string& name) {
  auto& store = impl_->store_;
  auto cluster = store.Get(kDefaultNs, kClusterType, name);
  if (!cluster.ok()) return absl::NotFoundError(fmt::format("cluster '{}' does not exist", name));
  ResourceFilter ours;
  ours.label_queries = {{{{kClusterLabel, LabelOp::kEqual, {name}, false}}}};
  for (const auto& ms : store.List(kDefaultNs, kMachineSetType, ours).value_or(std::vector<Resource>{})) {
    OP_RETURN_IF_ERROR(store.Destroy(kDefaultNs, kMachineSetType, ms.id, ms.owner));
  }
  OP_RETURN_IF_ERROR(store.Destroy(kDefaultNs, kClusterType, name, cluster->owner));
  impl_->log_->info("cluster {} deleted", name);
  return absl::OkStatus();
}

}  // namespace omni_proxmox::sim::omni
