// SPDX-License-Identifier: Apache-2.0
#pragma once

// The Proxmox simulator's implementation object, shared by its endpoint families. Internal to sim/pve.
//
// One Simulator::Impl holds the whole simulated cluster behind one mutex. Each endpoint family lives in its
// own file and registers its routes ("<METHOD> <path template>" -> handler) through an Add*Routes function:
//   simulator.cc  the core: start-up, request decoding, routing, schema checks, rendering, the ticker
//   scenario.cc   the scenario document (YAML) and the built-in default cluster
//   access.cc     authentication (tickets, API tokens, CSRF), the ACL model, /access/*
//   cluster.cc    /version and /cluster/* (status, resources, nextid, hardware mappings)
//   nodes.cc      /nodes, /nodes/{node}/status and /nodes/{node}/network
//   storage.cc    /storage and /nodes/{node}/storage/* (content, volumes, download-url, upload)
//   qemu.cc       /nodes/{node}/qemu/* (create, config, power, destroy, guest agent);
//                 qemu_config.cc applies option changes and allocates disks for it
//   tasks.cc      the task engine (UPIDs, worker locks, completion) and /nodes/{node}/tasks/*
//   faults.cc     fault injection into requests and tasks
//   controls.cc   the /_sim/* controls and the state dump used by tests
// Handlers run with mutex_ held (Dispatch takes it); members whose name ends in Locked need it too.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

#include "sim/pve/fault.h"
#include "sim/pve/http_server.h"
#include "sim/pve/internal/state.h"
#include "sim/pve/schema.h"
#include "sim/pve/simulator.h"
#include "util/clock.h"
#include "util/random.h"

namespace YAML {
class Node;
}

namespace omni_proxmox::sim::pve {

// A handler's answer before rendering: data on success, or an error status with PVE's message.
struct Reply {
  int status = 200;
  std::string message;  // error text, reason phrase is its first line
  Json data;
  Json errors;
  std::optional<std::int64_t> total;
  bool empty_body = false;
  bool drop = false;
  std::chrono::milliseconds delay{0};  // slept (real time) before answering, e.g. PVE's delay on 401
};

inline Reply Ok(Json data) {
  Reply reply;
  reply.data = std::move(data);
  return reply;
}

inline Reply Error(int status, std::string message) {
  Reply reply;
  reply.status = status;
  reply.message = std::move(message);
  return reply;
}

// PVE's 400 "Parameter verification failed." with per-parameter errors.
inline Reply ParamError(ParamErrors errors) {
  Reply reply;
  reply.status = 400;
  reply.message = "Parameter verification failed.\n";
  reply.errors = Json::object();
  for (auto& [key, value] : errors) reply.errors[key] = value;
  return reply;
}

inline Reply ParamError1(const std::string& key, const std::string& message) { return ParamError({{key, message}}); }

// One API request after decoding: the matched endpoint, its parameters (path, query and body merged) and who
// sent it.
struct Call {
  const HttpRequest* http = nullptr;
  const Endpoint* endpoint = nullptr;
  std::map<std::string, std::string> params;
  AuthContext auth;
  std::mt19937_64 rng;
  std::string upload_filename;  // multipart upload: the file part's filename attribute
  std::string upload_data;      // and its bytes
  std::string upload_field;     // and its field name (must be "filename")

  bool Has(const std::string& key) const { return params.count(key) != 0; }
  std::string Get(const std::string& key, const std::string& fallback = "") const {
    auto it = params.find(key);
    return it == params.end() ? fallback : it->second;
  }
  bool Flag(const std::string& key) const { return Get(key, "0") == "1"; }
  std::int64_t Int(const std::string& key, std::int64_t fallback = 0) const {
    auto it = params.find(key);
    return it == params.end() ? fallback : std::stoll(it->second);
  }
};

// Every privilege PVE 9 knows, in its order (access.cc).
const std::vector<std::string>& AllPrivileges();
// The privileges of a built-in role such as PVEVMAdmin; `found` is false for any other name (access.cc).
std::set<std::string> BuiltinRole(const std::string& role, bool& found);
// A task as GET /nodes/{node}/tasks/{upid}/status shows it (tasks.cc).
Json TaskEntry(const Task& task);

class Simulator::Impl {
 public:
  explicit Impl(SimulatorOptions options)
      : options_(std::move(options)),
        random_(options_.seed),
        journal_(options_.journal_clock != nullptr ? *options_.journal_clock : util::RealClock()) {}

  absl::Status Init();
  HttpResponse Handle(const HttpRequest& request);
  void TickLoop(std::stop_token stop);

  // Controls (controls.cc).
  absl::Status SetNodeOnline(const std::string& node, bool online);
  absl::Status MigrateVm(int vmid, const std::string& to_node);
  absl::Status DeleteVmOutOfBand(int vmid);
  absl::Status HoldVmLock(int vmid, std::chrono::milliseconds hold);
  Json State();
  std::uint64_t RequestCount(const std::string& endpoint);
  absl::StatusOr<std::string> VolumeContent(const std::string& node, const std::string& volid);
  // Fault injection (faults.cc).
  void SetFault(const std::string& pattern, FaultSpec spec);
  void ClearFaults();
  void FailNextTask(const std::string& type, const std::string& node, const std::string& error);

  SimulatorOptions options_;
  std::unique_ptr<util::Clock> owned_clock_;
  const util::Clock* clock_ = nullptr;
  util::Random random_;
  Journal journal_;  // mutating requests, by arrival (journal.h)
  std::unique_ptr<Schema> schema_;
  TlsMaterial tls_;
  HttpServer server_;
  std::jthread ticker_;
  std::string default_token_id_;
  std::string default_token_secret_;

 private:
  using HandlerFn = Reply (Impl::*)(Call&);
  using Routes = std::map<std::string, HandlerFn>;

  // ---- core (simulator.cc) ----
  void RegisterHandlers();
  Reply Dispatch(const HttpRequest& request, std::mt19937_64& rng);
  std::optional<Reply> ExtractParams(const HttpRequest& request, const RouteMatch& match, Call& call);
  HttpResponse Render(const Reply& reply, std::mt19937_64& rng) const;
  TimePoint Now() const { return clock_->Now(); }
  std::int64_t NowUnix() const {
    return std::chrono::duration_cast<std::chrono::seconds>(Now().time_since_epoch()).count();
  }

  // ---- scenario (scenario.cc) ----
  absl::Status LoadScenario(const std::string& text);
  absl::Status LoadCluster(const YAML::Node& cluster);
  absl::Status LoadNodes(const YAML::Node& nodes);
  absl::Status LoadStorages(const YAML::Node& storages);
  absl::Status LoadMappings(const YAML::Node& mappings);
  absl::Status LoadRoles(const YAML::Node& roles);
  absl::Status LoadUsers(const YAML::Node& users);
  absl::Status LoadAcls(const YAML::Node& acls);

  // ---- controls (controls.cc) ----
  Reply HandleSim(const HttpRequest& request);

  // ---- faults (faults.cc) ----
  // The fault, if any, that this request draws: the first matching pattern, taken with its error_rate.
  std::optional<FaultSpec> DrawFault(const HttpRequest& request);
  // Answers a request that drew `fault`, carrying it out first when the fault is after_effect.
  Reply ServeFaulted(const HttpRequest& request, const FaultSpec& fault, std::mt19937_64& rng);
  // Consumes a FailNextTask entry matching `task`: returns its error ("" when none or only a warning).
  std::string TakeTaskFailureLocked(Task& task);

  // ---- access (access.cc) ----
  static void AddAccessRoutes(Routes& routes);
  std::optional<Reply> Authenticate(const HttpRequest& request, const Endpoint& endpoint, AuthContext& auth);
  std::set<std::string> PrivsLocked(const std::string& authid, const std::string& path) const;
  std::set<std::string> UserPrivsLocked(const std::string& ugid, const std::string& path) const;
  bool HasPriv(const AuthContext& auth, const std::string& path, const std::string& priv) const {
    if (IsRootEquivalent(auth.authid)) return true;  // fast path: lists of 1,000 VMs check every entry
    return PrivsLocked(auth.authid, path).count(priv) != 0;
  }
  bool IsRootEquivalent(const std::string& authid) const {
    if (authid == "root@pam") return true;
    if (authid.rfind("root@pam!", 0) != 0) return false;
    auto token = tokens_.find(authid);
    return token != tokens_.end() && !token->second.privsep;
  }
  std::optional<Reply> CheckPermissionSpec(const Json& check, const Call& call) const;
  std::string SubstitutePath(const std::string& path, const Call& call) const;
  Reply PostTicket(Call& call);
  Reply GetPermissions(Call& call);

  // ---- cluster (cluster.cc) ----
  static void AddClusterRoutes(Routes& routes);
  Reply GetVersion(Call& call);
  Reply GetClusterStatus(Call& call);
  Reply GetClusterResources(Call& call);
  Reply GetNextId(Call& call);
  Reply GetHardwareMappings(Call& call);

  // ---- nodes (nodes.cc) ----
  static void AddNodeRoutes(Routes& routes);
  Json NodeEntry(const NodeState& node, const AuthContext& auth) const;
  Reply GetNodes(Call& call);
  Reply GetNodeStatus(Call& call);
  Reply GetNodeNetwork(Call& call);

  // ---- storage (storage.cc) ----
  static void AddStorageRoutes(Routes& routes);
  std::int64_t UsedBytesLocked(const StorageState& storage, const std::string& node) const;
  std::string ScopeOf(const StorageState& storage, const std::string& node) const { return storage.shared ? "" : node; }
  Volume* FindVolumeLocked(const std::string& volid, const std::string& node);
  std::optional<Reply> StorageOnNode(const std::string& storage_id, const std::string& node,
                                     const StorageState** out) const;
  Json StorageStatus(const StorageState& storage, const std::string& node) const;
  Reply GetStorageConfig(Call& call);
  Reply GetNodeStorage(Call& call);
  Reply GetStorageStatus(Call& call);
  Reply GetContent(Call& call);
  Reply GetVolume(Call& call);
  Reply DeleteVolume(Call& call);
  Reply PostDownloadUrl(Call& call);
  Reply PostUpload(Call& call);

  // ---- qemu (qemu.cc, qemu_config.cc) ----
  static void AddQemuRoutes(Routes& routes);
  std::string GenerateMac(std::mt19937_64& rng);
  std::string Uuid(std::mt19937_64& rng);
  std::optional<Reply> CheckVmOptionPermissions(const Call& call, int vmid,
                                                const std::map<std::string, std::string>& options, bool create);
  std::optional<Reply> CheckDriveStorages(const Call& call, const std::string& node,
                                          const std::map<std::string, std::string>& options);
  std::optional<std::string> AllocateDiskLocked(Vm& vm, const std::string& key, const std::string& storage_id,
                                                double size_gib, const std::string& format, bool cloudinit,
                                                std::vector<std::string>& allocated, std::string& volid);
  // Applies option changes to a config; allocates new disks; returns an error text or "".
  std::string ApplyConfigLocked(Vm& vm, const std::map<std::string, std::string>& options,
                                const std::vector<std::string>& deletes, std::mt19937_64& rng,
                                std::vector<std::string>* log);
  // One drive option of ApplyConfigLocked: allocates a new disk or checks the volume it names.
  std::optional<std::string> ApplyDriveLocked(Vm& vm, const std::string& key, const std::string& default_storage,
                                              std::string& value, std::vector<std::string>& allocated,
                                              std::vector<std::string>* log);
  void FinalizeCreateLocked(Vm& vm, std::mt19937_64& rng);
  std::string StartVmLocked(Vm& vm, Task& task);
  void RemoveVmVolumesLocked(Vm& vm, bool unreferenced);
  Json VmListEntry(const Vm& vm, bool full) const;
  Vm* VmOnNode(int vmid, const std::string& node) {
    auto it = vms_.find(vmid);
    return it == vms_.end() || it->second.node != node ? nullptr : &it->second;
  }
  static std::string ConfigMissing(const std::string& node, int vmid) {
    return fmt::format("Configuration file 'nodes/{}/qemu-server/{}.conf' does not exist", node, vmid);
  }
  static std::string LockFileTimeout(int vmid) {
    return fmt::format("can't lock file '/var/lock/qemu-server/lock-{}.conf' - got timeout", vmid);
  }
  Reply GetQemuList(Call& call);
  Reply PostQemuCreate(Call& call);
  Reply GetVmConfig(Call& call);
  Reply PostVmConfig(Call& call);
  Reply PutVmConfig(Call& call);
  Reply UpdateVmConfig(Call& call, bool async);
  Reply GetVmStatus(Call& call);
  Reply PostVmPower(Call& call);
  Reply DeleteVm(Call& call);
  Reply GetAgentInterfaces(Call& call);

  // ---- tasks (tasks.cc) ----
  static void AddTaskRoutes(Routes& routes);
  Task& NewTaskLocked(const std::string& node, const std::string& type, const std::string& id, const AuthContext& auth,
                      std::chrono::milliseconds duration, int vmid = 0);
  std::chrono::milliseconds DurationOf(const std::string& type) const;
  void FinishTaskLocked(Task& task);
  void AdvanceLocked();
  Reply GetTaskStatus(Call& call);
  Reply GetTaskLog(Call& call);
  Reply GetTaskList(Call& call);
  Reply DeleteTask(Call& call);

  Routes handlers_;

  mutable std::mutex mutex_;
  std::string cluster_name_ = "pve-sim";
  bool quorate_ = true;
  std::int64_t vmid_lower_ = 100;
  std::int64_t vmid_upper_ = 1000000;
  std::chrono::milliseconds auth_failure_delay_{0};
  std::chrono::milliseconds offline_delay_{0};
  std::chrono::seconds resource_lag_{0};
  bool shutdown_cooperative_ = true;
  bool start_warnings_ = true;  // iothread without virtio-scsi-single logs a WARN like PVE
  std::map<std::string, double> task_seconds_;
  std::vector<std::string> node_order_;
  std::map<std::string, NodeState> nodes_;
  std::vector<std::string> storage_order_;
  std::map<std::string, StorageState> storages_;
  std::map<std::string, std::set<std::string>> pci_mappings_;  // id -> nodes
  std::map<std::string, std::set<std::string>> usb_mappings_;
  std::map<std::string, User> users_;
  std::map<std::string, Token> tokens_;
  std::map<std::string, std::set<std::string>> roles_;
  std::vector<AclEntry> acls_;
  std::map<std::string, DownloadSpec> downloads_;
  std::map<int, Vm> vms_;
  std::vector<Volume> volumes_;
  std::vector<std::unique_ptr<Task>> tasks_;
  std::map<std::string, Task*> tasks_by_upid_;
  std::vector<std::pair<std::string, FaultSpec>> faults_;
  struct TaskFailure {
    std::string type, node, error;
  };
  std::vector<TaskFailure> task_failures_;
  std::map<std::string, std::uint64_t> request_counts_;
  std::vector<VmBootInfo> pending_boots_;
  std::string ticket_key_;
  int next_pid_ = 0x1000;
  std::mt19937_64 state_rng_{1};
};

}  // namespace omni_proxmox::sim::pve
