// SPDX-License-Identifier: Apache-2.0
// The simulator's own controls and inspection, outside the PVE API: GET /_sim/state, POST /_sim/node/<n>/
// {offline,online}, POST /_sim/vm/<id>/{migrate,delete,hold-lock}, POST /_sim/fault, DELETE /_sim/faults,
// POST /_sim/fail-next-task and POST /_sim/quorum (docs/pve-sim.md), and their Simulator methods.

#include "fmt/format.h"

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"

namespace omni_proxmox::sim::pve {

using std::chrono::milliseconds;

Reply Simulator::Impl::HandleSim(const HttpRequest& request) {
  std::vector<std::string> parts = SplitAny(request.path, "/");  // "_sim", ...
  auto params = ParseForm(request.query);
  if (!request.body.empty()) {
    if (MediaType(request.Header("content-type")) == "application/json") {
      try {
        // Named: items() of a temporary would outlive the document it iterates.
        const Json body = Json::parse(request.body);
        for (const auto& [key, value] : body.items()) {
          params[key] = value.is_string() ? value.get<std::string>() : value.dump();
        }
      } catch (const std::exception& e) {
        return Error(400, fmt::format("_sim: body is not valid JSON: {}", e.what()));
      }
    } else {
      for (auto& [key, value] : ParseForm(request.body)) params[key] = value;
    }
  }
  auto to_reply = [](const absl::Status& status) {
    if (status.ok()) return Ok(nullptr);
    return Error(status.code() == absl::StatusCode::kNotFound ? 404 : 400, std::string(status.message()));
  };
  auto param = [&](const std::string& key, const std::string& fallback = "") {
    auto it = params.find(key);
    return it == params.end() ? fallback : it->second;
  };
  try {
    if (request.method == "GET" && parts.size() == 2 && parts[1] == "state") return Ok(State());
    if (request.method == "GET" && parts.size() == 2 && parts[1] == "journal") return Ok(journal_.ToJson());
    if (request.method == "POST" && parts.size() == 4 && parts[1] == "node" &&
        (parts[3] == "offline" || parts[3] == "online")) {
      return to_reply(SetNodeOnline(parts[2], parts[3] == "online"));
    }
    if (request.method == "POST" && parts.size() == 4 && parts[1] == "vm" && parts[3] == "migrate") {
      if (param("node").empty()) return Error(400, "_sim: migrate needs node=<target node>");
      return to_reply(MigrateVm(std::stoi(parts[2]), param("node")));
    }
    if (request.method == "POST" && parts.size() == 4 && parts[1] == "vm" && parts[3] == "delete") {
      return to_reply(DeleteVmOutOfBand(std::stoi(parts[2])));
    }
    if (request.method == "POST" && parts.size() == 4 && parts[1] == "vm" && parts[3] == "hold-lock") {
      if (param("seconds").empty()) return Error(400, "_sim: hold-lock needs seconds=<how long; 0 releases>");
      return to_reply(
          HoldVmLock(std::stoi(parts[2]), milliseconds(static_cast<std::int64_t>(std::stod(param("seconds")) * 1000))));
    }
    if (request.method == "POST" && parts.size() == 2 && parts[1] == "fault") {
      if (param("endpoint").empty()) return Error(400, "_sim: fault needs endpoint=<glob, e.g. 'POST /nodes/*/qemu'>");
      FaultSpec spec;
      spec.error_rate = std::stod(param("error_rate", "1"));
      spec.status_code = std::stoi(param("status", "500"));
      spec.message = param("message", spec.message);
      spec.latency = milliseconds(std::stoi(param("latency_ms", "0")));
      spec.drop_connection = param("drop", "0") == "1" || param("drop") == "true";
      spec.after_effect = param("after_effect", "0") == "1" || param("after_effect") == "true";
      SetFault(param("endpoint"), spec);
      return Ok(nullptr);
    }
    if (request.method == "DELETE" && parts.size() == 2 && parts[1] == "faults") {
      ClearFaults();
      return Ok(nullptr);
    }
    if (request.method == "POST" && parts.size() == 2 && parts[1] == "fail-next-task") {
      if (param("type").empty()) return Error(400, "_sim: fail-next-task needs type=<task type, e.g. qmstart>");
      FailNextTask(param("type"), param("node"), param("error", "simulated task failure"));
      return Ok(nullptr);
    }
    if (request.method == "POST" && parts.size() == 2 && parts[1] == "quorum") {
      std::lock_guard lock(mutex_);
      quorate_ = param("quorate", "1") == "1";
      return Ok(nullptr);
    }
  } catch (const std::exception& e) {
    return Error(400, fmt::format("_sim: bad parameter: {}", e.what()));
  }
  return Error(404, fmt::format("_sim: unknown control '{} {}' (see docs/pve-sim.md)", request.method, request.path));
}

Json Simulator::Impl::State() {
  std::lock_guard lock(mutex_);
  AdvanceLocked();
  Json state = {{"cluster", {{"name", cluster_name_}, {"quorate", quorate_}}}};
  Json nodes = Json::array();
  for (const auto& name : node_order_) {
    const auto& node = nodes_.at(name);
    nodes.push_back({{"name", name},
                     {"online", node.online},
                     {"cpus", node.cpus},
                     {"memory_bytes", node.memory_bytes},
                     {"bridges", node.bridges}});
  }
  state["nodes"] = nodes;
  Json storages = Json::array();
  for (const auto& id : storage_order_) {
    const auto& storage = storages_.at(id);
    Json used = Json::object();
    for (const auto& name : node_order_) {
      if (storage.EnabledOn(name)) used[name] = UsedBytesLocked(storage, name);
    }
    storages.push_back({{"id", id},
                        {"type", storage.type},
                        {"content", storage.content},
                        {"shared", storage.shared},
                        {"thin", storage.thin},
                        {"size_bytes", storage.size_bytes},
                        {"used_bytes", used}});
  }
  state["storages"] = storages;
  Json vms = Json::array();
  for (const auto& [vmid, vm] : vms_) {
    Json config = Json::object();
    for (const auto& [key, value] : vm.config) config[key] = value;
    vms.push_back({{"vmid", vmid},
                   {"node", vm.node},
                   {"status", vm.running ? "running" : "stopped"},
                   {"lock", vm.Lock()},
                   {"config", config}});
  }
  state["vms"] = vms;
  Json volumes = Json::array();
  for (const auto& volume : volumes_) {
    volumes.push_back({{"volid", volume.volid},
                       {"node", volume.scope},
                       {"content", volume.content},
                       {"format", volume.format},
                       {"size", volume.size},
                       {"vmid", volume.vmid},
                       {"has_data", !volume.data.empty()}});
  }
  state["volumes"] = volumes;
  Json tasks = Json::array();
  for (const auto& task : tasks_) {
    Json entry = TaskEntry(*task);
    entry["log"] = task->log;
    tasks.push_back(entry);
  }
  state["tasks"] = tasks;
  state["requests"] = request_counts_;
  return state;
}

absl::Status Simulator::Impl::SetNodeOnline(const std::string& node, bool online) {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return absl::NotFoundError(fmt::format("no node '{}' in the scenario", node));
  if (it->second.online && !online) it->second.offline_since = Now();
  if (!it->second.online && online) it->second.boot_time = Now();
  it->second.online = online;
  return absl::OkStatus();
}

absl::Status Simulator::Impl::MigrateVm(int vmid, const std::string& to_node) {
  std::lock_guard lock(mutex_);
  auto it = vms_.find(vmid);
  if (it == vms_.end()) return absl::NotFoundError(fmt::format("no VM {}", vmid));
  if (nodes_.count(to_node) == 0) return absl::NotFoundError(fmt::format("no node '{}' in the scenario", to_node));
  Vm& vm = it->second;
  // Local volumes move with the VM; shared ones stay where they are.
  for (auto& volume : volumes_) {
    if (volume.vmid == vmid && volume.scope == vm.node) volume.scope = to_node;
  }
  vm.node = to_node;
  return absl::OkStatus();
}

absl::Status Simulator::Impl::DeleteVmOutOfBand(int vmid) {
  std::lock_guard lock(mutex_);
  auto it = vms_.find(vmid);
  if (it == vms_.end()) return absl::NotFoundError(fmt::format("no VM {}", vmid));
  RemoveVmVolumesLocked(it->second, true);
  vms_.erase(it);
  return absl::OkStatus();
}

absl::Status Simulator::Impl::HoldVmLock(int vmid, milliseconds hold) {
  std::lock_guard lock(mutex_);
  auto it = vms_.find(vmid);
  if (it == vms_.end()) return absl::NotFoundError(fmt::format("no VM {}", vmid));
  // Like a worker holding the flock until then; a release (0) lets the next worker take it at once.
  it->second.busy_until = Now() + hold;
  return absl::OkStatus();
}

std::uint64_t Simulator::Impl::RequestCount(const std::string& endpoint) {
  std::lock_guard lock(mutex_);
  auto it = request_counts_.find(endpoint);
  return it == request_counts_.end() ? 0 : it->second;
}

absl::StatusOr<std::string> Simulator::Impl::VolumeContent(const std::string& node, const std::string& volid) {
  std::lock_guard lock(mutex_);
  AdvanceLocked();
  Volume* volume = FindVolumeLocked(volid, node);
  if (volume == nullptr) return absl::NotFoundError(fmt::format("no volume '{}' visible on node '{}'", volid, node));
  return volume->data;
}

}  // namespace omni_proxmox::sim::pve
