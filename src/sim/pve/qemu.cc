// SPDX-License-Identifier: Apache-2.0
// QEMU VM endpoints under /nodes/{node}/qemu: the VM list, POST (create, optionally started), the config
// (GET, POST as a task, PUT synchronously), status/current, the power actions (start, stop, shutdown, reboot,
// reset), DELETE (destroy) and agent/network-get-interfaces. Starting a VM with a cidata ISO attached reads
// its user-data and meta-data for SimulatorOptions::on_vm_started.

#include <algorithm>
#include <regex>

#include "fmt/format.h"
#include <openssl/evp.h>

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/qemu_config.h"
#include "sim/pve/internal/text.h"
#include "sim/pve/iso9660.h"
#include "sim/pve/schema.h"

namespace omni_proxmox::sim::pve {
namespace {

using std::chrono::duration_cast;
using std::chrono::seconds;

}  // namespace

void Simulator::Impl::AddQemuRoutes(Routes& routes) {
  routes["GET /nodes/{node}/qemu"] = &Impl::GetQemuList;
  routes["POST /nodes/{node}/qemu"] = &Impl::PostQemuCreate;
  routes["GET /nodes/{node}/qemu/{vmid}/config"] = &Impl::GetVmConfig;
  routes["POST /nodes/{node}/qemu/{vmid}/config"] = &Impl::PostVmConfig;
  routes["PUT /nodes/{node}/qemu/{vmid}/config"] = &Impl::PutVmConfig;
  routes["GET /nodes/{node}/qemu/{vmid}/status/current"] = &Impl::GetVmStatus;
  for (const char* action : {"start", "stop", "shutdown", "reboot", "reset"}) {
    routes[fmt::format("POST /nodes/{{node}}/qemu/{{vmid}}/status/{}", action)] = &Impl::PostVmPower;
  }
  routes["DELETE /nodes/{node}/qemu/{vmid}"] = &Impl::DeleteVm;
  routes["GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"] = &Impl::GetAgentInterfaces;
}

Json Simulator::Impl::VmListEntry(const Vm& vm, bool) const {
  int cores = vm.Str("cores").empty() ? 1 : std::stoi(vm.Str("cores"));
  int sockets = vm.Str("sockets").empty() ? 1 : std::stoi(vm.Str("sockets"));
  int cpus = vm.Str("vcpus").empty() ? cores * sockets : std::stoi(vm.Str("vcpus"));
  cpus = std::min(cpus, nodes_.at(vm.node).cpus);
  std::int64_t maxdisk = 0;
  std::vector<std::string> boot_order;
  for (const auto& [key, value] : SplitPropertyString(vm.Str("boot"))) {
    if (key == "order") boot_order = SplitAny(value, ";");
  }
  for (const auto& key : boot_order.empty() ? DriveOrder() : boot_order) {
    auto it = vm.config.find(key);
    if (it == vm.config.end() || !IsDriveKey(key) || IsCdrom(it->second.get<std::string>())) continue;
    auto drive = ParseDrive(it->second.get<std::string>());
    if (drive.count("size") != 0) maxdisk = ParseSize(drive.at("size")).value_or(0);
    break;
  }
  std::int64_t uptime = vm.running ? duration_cast<seconds>(Now() - vm.started_at).count() : 0;
  Json entry = {{"vmid", vm.vmid},
                {"name", vm.Name()},
                {"status", vm.running ? "running" : "stopped"},
                {"cpus", cpus},
                {"maxmem", MemoryMiB(vm) * kMiB},
                {"maxdisk", maxdisk},
                {"disk", 0},
                {"uptime", uptime},
                {"cpu", vm.running ? 0.02 : 0.0},
                {"mem", vm.running ? MemoryMiB(vm) * kMiB / 2 : 0},
                {"netin", vm.running ? uptime * 1000 : 0},
                {"netout", vm.running ? uptime * 700 : 0}};
  if (vm.running) entry["pid"] = vm.pid;
  if (!vm.Lock().empty()) entry["lock"] = vm.Lock();
  if (vm.config.count("tags") != 0) entry["tags"] = vm.Str("tags");
  if (vm.config.count("serial0") != 0) entry["serial"] = 1;
  if (vm.Str("template") == "1") entry["template"] = 1;
  return entry;
}

Reply Simulator::Impl::GetQemuList(Call& call) {
  const std::string node = call.Get("node");
  std::vector<const Vm*> list;
  for (const auto& [vmid, vm] : vms_) {
    if (vm.node == node && HasPriv(call.auth, fmt::format("/vms/{}", vmid), "VM.Audit")) list.push_back(&vm);
  }
  std::shuffle(list.begin(), list.end(), call.rng);
  Json out = Json::array();
  for (const auto* vm : list) out.push_back(VmListEntry(*vm, call.Flag("full")));
  return Ok(out);
}

std::string Simulator::Impl::StartVmLocked(Vm& vm, Task& task) {
  if (!vm.Lock().empty()) return fmt::format("VM is locked ({})", vm.Lock());
  if (vm.running) return fmt::format("VM {} already running", vm.vmid);
  if (vm.Str("template") == "1") return "you can't start a vm if it's a template";
  const NodeState& node = nodes_.at(vm.node);
  for (int i = 0; i <= 31; ++i) {
    std::string key = fmt::format("net{}", i);
    if (vm.config.count(key) == 0) continue;
    std::string bridge = ParseDrive(vm.Str(key))["bridge"];
    if (!bridge.empty() && node.bridges.count(bridge) == 0) return fmt::format("bridge '{}' does not exist", bridge);
  }
  for (int i = 0; i <= 15; ++i) {
    std::string key = fmt::format("hostpci{}", i);
    if (vm.config.count(key) == 0) continue;
    auto pci = ParseDrive(vm.Str(key));
    if (pci.count("mapping") != 0) {
      auto it = pci_mappings_.find(pci["mapping"]);
      if (it == pci_mappings_.end() || (!it->second.empty() && it->second.count(vm.node) == 0)) {
        return fmt::format("PCI device mapping not found for '{}'", pci["mapping"]);
      }
    }
  }
  if (vm.config.count("hugepages") != 0 && !node.hugepages) {
    return "start failed: hugepage allocation failed: not enough free hugepages";
  }
  std::string scsihw = vm.Str("scsihw").empty() ? "lsi" : vm.Str("scsihw");
  std::optional<std::string> cidata_volid;
  for (const auto& key : DriveOrder()) {
    auto it = vm.config.find(key);
    if (it == vm.config.end()) continue;
    auto drive = ParseDrive(it->second.get<std::string>());
    if (start_warnings_ && key.rfind("scsi", 0) == 0 && drive["iothread"] == "1" && scsihw != "virtio-scsi-single") {
      task.log.push_back("WARN: iothread is only valid with virtio disk or virtio-scsi-single controller, ignoring");
      ++task.warnings;
    }
    if (drive["file"].find("-cloudinit") != std::string::npos) task.log.push_back("generating cloud-init ISO");
    if (drive["media"] == "cdrom" && !cidata_volid) {
      if (Volume* volume = FindVolumeLocked(drive["file"], vm.node); volume != nullptr && !volume->data.empty()) {
        cidata_volid = volume->volid;
      }
    }
  }
  vm.running = true;
  vm.started_at = Now();
  vm.pid = next_pid_++;
  vm.status_changed_at = Now();
  if (cidata_volid) {
    Volume* volume = FindVolumeLocked(*cidata_volid, vm.node);
    auto image = ReadIsoImage(volume->data);
    if (image.ok() && (Lower(image->volume_id) == "cidata" || image->files.count("user-data") != 0)) {
      VmBootInfo info;
      info.node = vm.node;
      info.vmid = vm.vmid;
      info.name = vm.Name();
      for (const auto& [key, value] : SplitPropertyString(vm.Str("smbios1"))) {
        if (key == "uuid") info.smbios_uuid = Lower(value);
      }
      info.user_data = image->files.count("user-data") != 0 ? image->files.at("user-data") : "";
      info.meta_data = image->files.count("meta-data") != 0 ? image->files.at("meta-data") : "";
      info.iso_volid = *cidata_volid;
      pending_boots_.push_back(std::move(info));
    }
  }
  return "";
}

void Simulator::Impl::RemoveVmVolumesLocked(Vm& vm, bool unreferenced) {
  std::set<std::string> referenced;
  for (const auto& [key, value] : vm.config) {
    if (!value.is_string()) continue;
    if (IsDriveKey(key) || key.rfind("unused", 0) == 0) referenced.insert(ParseDrive(value.get<std::string>())["file"]);
  }
  std::string prefix = fmt::format("vm-{}-", vm.vmid);
  volumes_.erase(std::remove_if(volumes_.begin(), volumes_.end(),
                                [&](const Volume& v) {
                                  if (v.content != "images") return false;  // ISOs stay
                                  if (referenced.count(v.volid) != 0 && v.vmid == vm.vmid) return true;
                                  return unreferenced && v.vmid == vm.vmid && v.volid.find(prefix) != std::string::npos;
                                }),
                 volumes_.end());
}

Reply Simulator::Impl::PostQemuCreate(Call& call) {
  const std::string node = call.Get("node");
  int vmid = static_cast<int>(call.Int("vmid"));
  if (!quorate_) return Error(500, "cluster not ready - no quorum?");
  std::map<std::string, std::string> options = call.params;
  for (const char* key : {"node", "vmid", "start", "storage", "pool", "force", "unique", "archive", "bwlimit",
                          "live-restore", "import-working-storage"}) {
    options.erase(key);
  }
  if (auto denied = CheckVmOptionPermissions(call, vmid, options, true)) return *denied;
  std::map<std::string, std::string> drives = options;
  if (drives.count("cdrom") != 0) drives["ide2"] = drives["cdrom"];
  if (auto failure = CheckDriveStorages(call, node, drives)) return *failure;
  if (options.count("balloon") != 0) {
    Vm probe;
    if (options.count("memory") != 0) probe.config["memory"] = options["memory"];
    if (std::stoll(options["balloon"]) > MemoryMiB(probe)) {
      return Error(500, "balloon value too large (must be smaller than assigned memory)");
    }
  }
  if (auto it = vms_.find(vmid); it != vms_.end()) {
    return Error(
        500, fmt::format("unable to create VM {} - VM {} already exists on node '{}'", vmid, vmid, it->second.node));
  }
  Vm& vm = vms_[vmid];
  vm.vmid = vmid;
  vm.node = node;
  vm.config["lock"] = "create";
  vm.status_changed_at = Now();
  Task& task = NewTaskLocked(node, "qmcreate", std::to_string(vmid), call.auth, DurationOf("qmcreate"), vmid);
  std::map<std::string, std::string> all = call.params;
  bool start = call.Flag("start");
  std::uint64_t seed = call.rng();
  task.finish = [this, vmid, all, start, seed](Task& t) -> std::string {
    auto it = vms_.find(vmid);
    if (it == vms_.end()) return fmt::format("unable to create VM {} - VM was removed during creation", vmid);
    Vm& created = it->second;
    std::mt19937_64 rng(seed);
    std::string error = ApplyConfigLocked(created, all, {}, rng, &t.log);
    if (!error.empty()) return fmt::format("unable to create VM {} - {}", vmid, error);
    FinalizeCreateLocked(created, rng);
    created.config.erase("lock");
    if (start) {
      t.log.push_back(fmt::format("starting VM {}", vmid));
      if (std::string start_error = StartVmLocked(created, t); !start_error.empty()) return start_error;
    }
    return "";
  };
  task.on_failure = [this, vmid](Task&) {
    // A failed create frees what it allocated and removes its config, so the VMID is free again.
    auto it = vms_.find(vmid);
    if (it == vms_.end() || it->second.Lock() != "create") return;
    volumes_.erase(std::remove_if(volumes_.begin(), volumes_.end(),
                                  [&](const Volume& v) { return v.vmid == vmid && v.content == "images"; }),
                   volumes_.end());
    vms_.erase(it);
  };
  return Ok(task.upid);
}

Reply Simulator::Impl::GetVmConfig(Call& call) {
  const std::string node = call.Get("node");
  int vmid = static_cast<int>(call.Int("vmid"));
  Vm* vm = VmOnNode(vmid, node);
  if (vm == nullptr) return Error(500, ConfigMissing(node, vmid));
  if (call.Has("snapshot")) return Error(500, fmt::format("snapshot '{}' does not exist", call.Get("snapshot")));
  Json data = Json::object();
  std::string text;
  for (const auto& [key, value] : vm->config) {
    data[key] = value;
    text += key + ": " + (value.is_string() ? value.get<std::string>() : value.dump()) + "\n";
  }
  if (data.contains("cipassword")) data["cipassword"] = "**********";
  data["digest"] = DigestHex(EVP_sha1(), text);
  return Ok(data);
}

Reply Simulator::Impl::PostVmConfig(Call& call) { return UpdateVmConfig(call, true); }
Reply Simulator::Impl::PutVmConfig(Call& call) { return UpdateVmConfig(call, false); }

Reply Simulator::Impl::UpdateVmConfig(Call& call, bool async) {
  const std::string node = call.Get("node");
  int vmid = static_cast<int>(call.Int("vmid"));
  Vm* vm = VmOnNode(vmid, node);
  if (vm == nullptr) return Error(500, ConfigMissing(node, vmid));
  bool skiplock = call.Flag("skiplock");
  if (call.Has("skiplock") && call.auth.authid != "root@pam") {
    return ParamError1("skiplock", "Only root may use this option.");
  }
  if (call.Has("digest")) {
    Call probe;
    probe.params = {{"node", node}, {"vmid", std::to_string(vmid)}};
    std::string current = GetVmConfig(probe).data["digest"];
    if (current != call.Get("digest")) return Error(500, "checksum mismatch (file change by other user?)");
  }
  if (!vm->Lock().empty() && !skiplock) return Error(500, fmt::format("VM is locked ({})", vm->Lock()));
  std::map<std::string, std::string> options = call.params;
  for (const char* key : {"node", "vmid", "delete", "revert", "digest", "skiplock", "force", "background_delay"}) {
    options.erase(key);
  }
  std::vector<std::string> deletes = SplitAny(call.Get("delete"), ",; ");
  if (options.empty() && deletes.empty() && !call.Has("revert")) return Error(500, "no options specified");
  for (const auto& key : deletes) {
    if (options.count(key) != 0) {
      return Error(400, fmt::format("unable to delete '{}' - config change for the same option", key));
    }
  }
  if (options.count("balloon") != 0) {
    Vm probe = *vm;
    if (options.count("memory") != 0) probe.config["memory"] = options["memory"];
    if (std::stoll(options["balloon"]) > MemoryMiB(probe)) {
      return Error(500, "balloon value too large (must be smaller than assigned memory)");
    }
  }
  std::map<std::string, std::string> checked = options;
  for (const auto& key : deletes) checked.emplace(key, "");
  std::optional<Reply> denied = CheckVmOptionPermissions(call, vmid, checked, false);
  if (auto failure = CheckDriveStorages(call, node, options)) return *failure;
  if (!async) {
    // PUT takes the node-local flock synchronously; POST takes it inside its worker.
    if (vm->busy_until - Now() > kWorkerLockTimeout) return Error(500, LockFileTimeout(vmid));
    if (denied) return *denied;
    std::string error = ApplyConfigLocked(*vm, options, deletes, call.rng, nullptr);
    if (!error.empty()) return Error(500, error);
    return Ok(nullptr);
  }
  // POST: drive privileges are checked inside the qmconfig worker, so they fail the task.
  bool drive_denial = false;
  if (denied && denied->status == 403) {
    for (const auto& [key, value] : checked) {
      if (IsDriveKey(key) || key == "cdrom") drive_denial = true;
    }
    std::map<std::string, std::string> non_drive;
    for (const auto& [key, value] : checked) {
      if (!IsDriveKey(key) && key != "cdrom") non_drive[key] = value;
    }
    if (auto sync_denied = CheckVmOptionPermissions(call, vmid, non_drive, false)) return *sync_denied;
  } else if (denied) {
    return *denied;
  }
  Task& task = NewTaskLocked(node, "qmconfig", std::to_string(vmid), call.auth, DurationOf("qmconfig"), vmid);
  if (drive_denial) task.forced_error = denied->message;
  std::uint64_t seed = call.rng();
  task.finish = [this, vmid, options, deletes, seed, skiplock](Task& t) -> std::string {
    auto it = vms_.find(vmid);
    if (it == vms_.end()) return ConfigMissing(t.node, vmid);
    if (!it->second.Lock().empty() && !skiplock) return fmt::format("VM is locked ({})", it->second.Lock());
    std::mt19937_64 rng(seed);
    for (const auto& [key, value] : options) t.log.push_back(fmt::format("update VM {}: -{} {}", vmid, key, value));
    return ApplyConfigLocked(it->second, options, deletes, rng, &t.log);
  };
  if (call.Has("background_delay") && task.endtime - Now() <= seconds(call.Int("background_delay"))) {
    task.endtime = Now();
    if (auto it = vms_.find(vmid); it != vms_.end()) it->second.busy_until = Now();
    FinishTaskLocked(task);
    if (task.exitstatus == "OK") return Ok(nullptr);
    return Error(500, task.exitstatus);
  }
  return Ok(task.upid);
}

Reply Simulator::Impl::GetVmStatus(Call& call) {
  const std::string node = call.Get("node");
  int vmid = static_cast<int>(call.Int("vmid"));
  Vm* vm = VmOnNode(vmid, node);
  if (vm == nullptr) return Error(500, ConfigMissing(node, vmid));
  Json entry = VmListEntry(*vm, true);
  entry["qmpstatus"] = entry["status"];
  entry["ha"] = {{"managed", 0}};
  auto agent = SplitPropertyString(vm->Str("agent"));
  bool agent_enabled = false;
  for (const auto& [key, value] : agent) {
    if (key.empty() || key == "enabled") {
      std::string v = Lower(value);
      agent_enabled = v == "1" || v == "on" || v == "yes" || v == "true";
    }
  }
  if (agent_enabled) entry["agent"] = 1;
  if (vm->running) {
    entry["running-machine"] = "pc-i440fx-9.2+pve1";
    entry["running-qemu"] = "9.2.0";
    entry["balloon"] = MemoryMiB(*vm) * kMiB;
    entry["freemem"] = MemoryMiB(*vm) * kMiB / 2;
  }
  return Ok(entry);
}

Reply Simulator::Impl::PostVmPower(Call& call) {
  const std::string node = call.Get("node");
  int vmid = static_cast<int>(call.Int("vmid"));
  std::string action = call.endpoint->path_template.substr(call.endpoint->path_template.rfind('/') + 1);
  for (const char* root_only : {"skiplock", "stateuri", "migratedfrom", "migration_type", "migration_network",
                                "targetstorage", "force-cpu", "nets"}) {
    if (call.Has(root_only) && call.auth.authid != "root@pam") {
      return ParamError1(root_only, "Only root may use this option.");
    }
  }
  bool skiplock = call.Flag("skiplock");
  Vm* vm = VmOnNode(vmid, node);
  if (action == "reboot" || action == "reset") {
    if (vm == nullptr) return Error(500, ConfigMissing(node, vmid));
    if (!vm->running) return Error(500, fmt::format("VM {} not running", vmid));
  }
  auto duration = DurationOf("qm" + action);
  bool force_stop = call.Flag("forceStop");
  if (action == "shutdown" && !shutdown_cooperative_ && !force_stop) duration = seconds(call.Int("timeout", 60));
  Task& task = NewTaskLocked(node, "qm" + action, std::to_string(vmid), call.auth, duration, vmid);
  task.finish = [this, vmid, action, skiplock, force_stop, node](Task& t) -> std::string {
    Vm* target = VmOnNode(vmid, node);
    if (target == nullptr) {
      if (action == "stop") return fmt::format("unable to find configuration file for VM {} on node '{}'", vmid, node);
      return ConfigMissing(node, vmid);
    }
    if (action == "start") return StartVmLocked(*target, t);
    if (!target->Lock().empty() && !skiplock) return fmt::format("VM is locked ({})", target->Lock());
    if (action == "stop" || action == "shutdown") {
      if (!target->running) return "";  // already stopped: nothing to do
      if (action == "shutdown" && !shutdown_cooperative_ && !force_stop) {
        return "VM quit/powerdown failed - got timeout";
      }
      target->running = false;
      target->pid = 0;
      target->status_changed_at = Now();
      return "";
    }
    if (!target->running) return fmt::format("VM {} not running", vmid);
    if (action == "reboot") target->started_at = Now();
    return "";
  };
  return Ok(task.upid);
}

Reply Simulator::Impl::DeleteVm(Call& call) {
  const std::string node = call.Get("node");
  int vmid = static_cast<int>(call.Int("vmid"));
  if (call.Has("skiplock") && call.auth.authid != "root@pam") {
    return ParamError1("skiplock", "Only root may use this option.");
  }
  Vm* vm = VmOnNode(vmid, node);
  if (vm == nullptr) return Error(500, ConfigMissing(node, vmid));
  if (vm->Str("protection") == "1")
    return Error(500, fmt::format("can't remove VM {} - protection mode enabled", vmid));
  if (vm->running) return Error(500, fmt::format("VM {} is running - destroy failed", vmid));
  bool skiplock = call.Flag("skiplock");
  bool unreferenced = call.Flag("destroy-unreferenced-disks");
  Task& task = NewTaskLocked(node, "qmdestroy", std::to_string(vmid), call.auth, DurationOf("qmdestroy"), vmid);
  if (!vm->Lock().empty() && !skiplock) {
    task.forced_error = fmt::format("VM is locked ({})", vm->Lock());
  } else if (task.forced_error.empty()) {
    vm->config["lock"] = "destroyed";  // the zombie config holds the VMID until the task ends
  }
  task.finish = [this, vmid, node, unreferenced](Task& t) -> std::string {
    Vm* target = VmOnNode(vmid, node);
    if (target == nullptr) return ConfigMissing(node, vmid);
    RemoveVmVolumesLocked(*target, unreferenced);
    t.log.push_back(fmt::format("destroying VM {}", vmid));
    vms_.erase(vmid);
    return "";
  };
  task.on_failure = [this, vmid, node](Task&) {
    Vm* target = VmOnNode(vmid, node);
    if (target != nullptr && target->Lock() == "destroyed") target->config.erase("lock");
  };
  return Ok(task.upid);
}

Reply Simulator::Impl::GetAgentInterfaces(Call& call) {
  const std::string node = call.Get("node");
  int vmid = static_cast<int>(call.Int("vmid"));
  Vm* vm = VmOnNode(vmid, node);
  if (vm == nullptr) return Error(500, ConfigMissing(node, vmid));
  bool enabled = false;
  for (const auto& [key, value] : SplitPropertyString(vm->Str("agent"))) {
    if (key.empty() || key == "enabled") {
      std::string v = Lower(value);
      enabled = v == "1" || v == "on" || v == "yes" || v == "true";
    }
  }
  if (!enabled) return Error(500, "No QEMU guest agent configured");
  if (!vm->running) return Error(500, "QEMU guest agent is not running");
  std::string mac = "bc:24:11:00:00:01";
  if (vm->config.count("net0") != 0) {
    std::string first = SplitPropertyString(vm->Str("net0")).front().value;
    mac = Lower(first);
  }
  int node_index = static_cast<int>(std::find(node_order_.begin(), node_order_.end(), node) - node_order_.begin());
  Json result = Json::array(
      {{{"name", "lo"},
        {"hardware-address", "00:00:00:00:00:00"},
        {"ip-addresses", Json::array({{{"ip-address", "127.0.0.1"}, {"ip-address-type", "ipv4"}, {"prefix", 8}}})}},
       {{"name", "eth0"},
        {"hardware-address", mac},
        {"ip-addresses",
         Json::array({{{"ip-address", fmt::format("10.{}.{}.{}", 10 + node_index, (vmid / 250) % 250, vmid % 250 + 2)},
                       {"ip-address-type", "ipv4"},
                       {"prefix", 16}}})}}});
  return Ok({{"result", result}});
}

}  // namespace omni_proxmox::sim::pve
