// SPDX-License-Identifier: Apache-2.0
// Cluster-wide endpoints: GET /version, GET /cluster/status, GET /cluster/resources (VMs, nodes and
// storages, with the configured status lag), GET /cluster/nextid and GET /cluster/mapping/{pci,usb}.

#include "fmt/format.h"

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"

namespace omni_proxmox::sim::pve {

void Simulator::Impl::AddClusterRoutes(Routes& routes) {
  routes["GET /version"] = &Impl::GetVersion;
  routes["GET /cluster/status"] = &Impl::GetClusterStatus;
  routes["GET /cluster/resources"] = &Impl::GetClusterResources;
  routes["GET /cluster/nextid"] = &Impl::GetNextId;
  routes["GET /cluster/mapping/pci"] = &Impl::GetHardwareMappings;
  routes["GET /cluster/mapping/usb"] = &Impl::GetHardwareMappings;
}

Reply Simulator::Impl::GetVersion(Call&) {
  return Ok({{"version", "9.2.11"}, {"release", "9.2"}, {"repoid", "4d8a2f1c9b7e3a05"}});
}

Reply Simulator::Impl::GetClusterStatus(Call&) {
  Json list = Json::array();
  list.push_back({{"type", "cluster"},
                  {"id", "cluster"},
                  {"name", cluster_name_},
                  {"nodes", nodes_.size()},
                  {"quorate", quorate_ ? 1 : 0},
                  {"version", 7}});
  int index = 1;
  for (const auto& name : node_order_) {
    const auto& node = nodes_.at(name);
    list.push_back({{"type", "node"},
                    {"id", "node/" + name},
                    {"name", name},
                    {"nodeid", index},
                    {"ip", node.ip},
                    {"online", node.online ? 1 : 0},
                    {"local", index == 1 ? 1 : 0},
                    {"level", ""}});
    ++index;
  }
  return Ok(list);
}

Reply Simulator::Impl::GetClusterResources(Call& call) {
  std::string type = call.Get("type");
  Json list = Json::array();
  if (type.empty() || type == "vm") {
    for (const auto& [vmid, vm] : vms_) {  // sorted by vmid, as PVE does for this list
      if (!HasPriv(call.auth, fmt::format("/vms/{}", vmid), "VM.Audit")) continue;
      Json entry = VmListEntry(vm, true);
      entry["id"] = fmt::format("qemu/{}", vmid);
      entry["type"] = "qemu";
      entry["node"] = vm.node;
      entry["maxcpu"] = entry["cpus"];
      entry.erase("cpus");
      entry["template"] = 0;
      entry["diskread"] = 0;
      entry["diskwrite"] = 0;
      entry["hastate"] = nullptr;
      entry.erase("hastate");
      if (vm.reported_running != vm.running) {
        entry["status"] = vm.reported_running ? "running" : "stopped";
      }
      if (!nodes_.at(vm.node).online) entry["status"] = "unknown";
      list.push_back(entry);
    }
  }
  if (type.empty() || type == "node") {
    for (const auto& name : node_order_) {
      Json entry = NodeEntry(nodes_.at(name), call.auth);
      entry["cgroup-mode"] = 2;
      entry["host-arch"] = "x86_64";
      list.push_back(entry);
    }
  }
  if (type.empty() || type == "storage") {
    for (const auto& name : node_order_) {
      for (const auto& id : storage_order_) {
        const auto& storage = storages_.at(id);
        if (!storage.EnabledOn(name)) continue;
        if (!HasPriv(call.auth, "/storage/" + id, "Datastore.Audit")) continue;
        Json entry = {{"id", fmt::format("storage/{}/{}", name, id)},
                      {"storage", id},
                      {"node", name},
                      {"type", "storage"},
                      {"plugintype", storage.type},
                      {"status", nodes_.at(name).online ? "available" : "unknown"},
                      {"shared", storage.shared ? 1 : 0},
                      {"content", Join(storage.content, ",")}};
        if (nodes_.at(name).online) {
          entry["disk"] = UsedBytesLocked(storage, name);
          entry["maxdisk"] = storage.size_bytes;
        }
        list.push_back(entry);
      }
    }
  }
  return Ok(list);
}

Reply Simulator::Impl::GetNextId(Call& call) {
  if (call.Has("vmid")) {
    int vmid = static_cast<int>(call.Int("vmid"));
    if (vms_.count(vmid) != 0) return ParamError1("vmid", fmt::format("VM {} already exists", vmid));
    return Ok(std::to_string(vmid));
  }
  for (std::int64_t id = vmid_lower_; id < vmid_upper_; ++id) {
    if (vms_.count(static_cast<int>(id)) == 0) return Ok(std::to_string(id));
  }
  return Error(500, fmt::format("unable to get any free VMID in range [{}, {}]", vmid_lower_, vmid_upper_));
}

Reply Simulator::Impl::GetHardwareMappings(Call& call) {
  const bool pci = call.endpoint->path_template == "/cluster/mapping/pci";
  const auto& mappings = pci ? pci_mappings_ : usb_mappings_;
  Json list = Json::array();
  for (const auto& [id, nodes] : mappings) {
    const std::string path = fmt::format("/mapping/{}/{}", pci ? "pci" : "usb", id);
    if (!HasPriv(call.auth, path, "Mapping.Audit") && !HasPriv(call.auth, path, "Mapping.Use") &&
        !HasPriv(call.auth, path, "Mapping.Modify")) {
      continue;
    }
    // An empty node list means every node (the scenario's shorthand).
    std::vector<std::string> on(nodes.begin(), nodes.end());
    if (on.empty()) {
      for (const auto& [name, node] : nodes_) on.push_back(name);
    }
    Json map = Json::array();
    int n = 1;
    for (const auto& node : on) {
      map.push_back(pci ? fmt::format("id=10de:2204,node={},path=0000:0{}:00.0", node, n++)
                        : fmt::format("id=0781:5583,node={},path=1-{}", node, n++));
    }
    list.push_back({{"id", id}, {"description", ""}, {"map", map}});
  }
  return Ok(list);
}

}  // namespace omni_proxmox::sim::pve
