// SPDX-License-Identifier: Apache-2.0
// The task engine and its endpoints. Every asynchronous action is a worker task with a UPID; tasks on one
// VMID queue behind its node-local lock (kWorkerLockTimeout), complete when their simulated time is up and
// then run their effect. Endpoints: GET /nodes/{node}/tasks, GET .../tasks/{upid}/status,
// GET .../tasks/{upid}/log and DELETE .../tasks/{upid} (abort).

#include <algorithm>
#include <regex>

#include "fmt/format.h"

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"

namespace omni_proxmox::sim::pve {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

void Simulator::Impl::AddTaskRoutes(Routes& routes) {
  routes["GET /nodes/{node}/tasks/{upid}/status"] = &Impl::GetTaskStatus;
  routes["GET /nodes/{node}/tasks/{upid}/log"] = &Impl::GetTaskLog;
  routes["GET /nodes/{node}/tasks"] = &Impl::GetTaskList;
  routes["DELETE /nodes/{node}/tasks/{upid}"] = &Impl::DeleteTask;
}

Json TaskEntry(const Task& task) {
  auto unix = [](TimePoint t) { return duration_cast<seconds>(t.time_since_epoch()).count(); };
  Json entry = {{"upid", task.upid},
                {"node", task.node},
                {"pid", task.pid},
                {"pstart", task.pstart},
                {"starttime", unix(task.starttime)},
                {"type", task.type},
                {"id", task.id},
                {"user", task.authid},
                {"status", task.running ? "running" : "stopped"}};
  std::size_t bang = task.authid.find('!');
  if (bang != std::string::npos) {
    entry["user"] = task.authid.substr(0, bang);
    entry["tokenid"] = task.authid.substr(bang + 1);
  }
  if (!task.running) entry["exitstatus"] = task.exitstatus;
  return entry;
}

std::chrono::milliseconds Simulator::Impl::DurationOf(const std::string& type) const {
  static const std::map<std::string, double> defaults = {
      {"qmcreate", 2},  {"qmstart", 1},    {"qmstop", 1},   {"qmshutdown", 3}, {"qmreboot", 2}, {"qmreset", 0.5},
      {"qmdestroy", 2}, {"qmconfig", 0.5}, {"download", 5}, {"imgcopy", 1},    {"imgdel", 0.5}};
  double value = 1;
  if (auto it = task_seconds_.find(type); it != task_seconds_.end()) {
    value = it->second;
  } else if (auto def = defaults.find(type); def != defaults.end()) {
    value = def->second;
  }
  return milliseconds(static_cast<std::int64_t>(value * 1000));
}

Task& Simulator::Impl::NewTaskLocked(const std::string& node, const std::string& type, const std::string& id,
                                     const AuthContext& auth, std::chrono::milliseconds duration, int vmid) {
  auto task = std::make_unique<Task>();
  task->node = node;
  task->type = type;
  task->id = id;
  task->authid = auth.authid;
  task->pid = next_pid_++;
  task->vmid = vmid;
  task->starttime = Now();
  const auto& node_state = nodes_.at(node);
  task->pstart = static_cast<std::uint64_t>(duration_cast<milliseconds>(Now() - node_state.boot_time).count() / 10);
  std::string escaped_id;
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (c == ':' || c == '%' || u < 0x20 || u >= 0x7f) {
      escaped_id += fmt::format("%{:02x}", u);
    } else {
      escaped_id += c;
    }
  }
  task->upid = fmt::format("UPID:{}:{}:{}:{}:{}:{}:{}:", node, Hex8(task->pid), Hex8(task->pstart & 0xFFFFFFFFF),
                           Hex8(static_cast<std::uint64_t>(NowUnix())), type, escaped_id, auth.authid);
  task->endtime = Now() + duration;
  // Serialize workers on one VMID like PVE's node-local flock, with its 10 s timeout.
  if (vmid != 0) {
    if (auto it = vms_.find(vmid); it != vms_.end()) {
      Vm& vm = it->second;
      TimePoint start = std::max(Now(), vm.busy_until);
      if (start - Now() > kWorkerLockTimeout) {
        task->endtime = Now() + kWorkerLockTimeout;
        task->forced_error = LockFileTimeout(vmid);
      } else {
        task->endtime = start + duration;
        vm.busy_until = task->endtime;
      }
    }
  }
  Task& ref = *task;
  tasks_by_upid_[task->upid] = task.get();
  tasks_.push_back(std::move(task));
  return ref;
}

void Simulator::Impl::FinishTaskLocked(Task& task) {
  task.running = false;
  std::string error = task.forced_error;
  if (error.empty()) error = TakeTaskFailureLocked(task);
  if (error.empty() && task.finish) error = task.finish(task);
  if (!error.empty()) {
    if (task.on_failure) task.on_failure(task);
    std::replace(error.begin(), error.end(), '\n', ' ');
    while (!error.empty() && error.back() == ' ') error.pop_back();
    task.log.push_back("TASK ERROR: " + error);
    task.exitstatus = error;
  } else if (task.warnings > 0) {
    task.log.push_back(fmt::format("TASK WARNINGS: {}", task.warnings));
    task.exitstatus = fmt::format("WARNINGS: {}", task.warnings);
  } else {
    task.log.push_back("TASK OK");
    task.exitstatus = "OK";
  }
}

void Simulator::Impl::AdvanceLocked() {
  TimePoint now = Now();
  while (true) {
    Task* next = nullptr;
    for (auto& task : tasks_) {
      if (task->running && task->endtime <= now && (next == nullptr || task->endtime < next->endtime)) {
        next = task.get();
      }
    }
    if (next == nullptr) break;
    FinishTaskLocked(*next);
  }
  for (auto& [vmid, vm] : vms_) {
    if (vm.reported_running != vm.running && now - vm.status_changed_at >= resource_lag_) {
      vm.reported_running = vm.running;
    }
  }
}

Reply Simulator::Impl::GetTaskStatus(Call& call) {
  static const std::regex upid_re(
      R"(^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$)");
  std::string upid = call.Get("upid");
  if (!std::regex_match(upid, upid_re)) return ParamError1("upid", "unable to parse worker upid");
  auto it = tasks_by_upid_.find(upid);
  if (it == tasks_by_upid_.end() || it->second->node != call.Get("node")) return ParamError1("upid", "no such task");
  const Task& task = *it->second;
  if (task.authid != call.auth.authid && !HasPriv(call.auth, "/nodes/" + task.node, "Sys.Audit")) {
    return Error(403, fmt::format("Permission check failed (/nodes/{}, Sys.Audit)", task.node));
  }
  return Ok(TaskEntry(task));
}

Reply Simulator::Impl::GetTaskLog(Call& call) {
  std::string upid = call.Get("upid");
  auto it = tasks_by_upid_.find(upid);
  if (it == tasks_by_upid_.end() || it->second->node != call.Get("node")) return ParamError1("upid", "no such task");
  const Task& task = *it->second;
  if (task.authid != call.auth.authid && !HasPriv(call.auth, "/nodes/" + task.node, "Sys.Audit")) {
    return Error(403, fmt::format("Permission check failed (/nodes/{}, Sys.Audit)", task.node));
  }
  std::vector<std::string> lines = task.log;
  if (lines.empty()) lines.push_back("no content");
  std::int64_t start = call.Int("start", 0);
  std::int64_t limit = call.Int("limit", 50);
  Json list = Json::array();
  for (std::int64_t i = start; i < static_cast<std::int64_t>(lines.size()) && (limit == 0 || i < start + limit); ++i) {
    list.push_back({{"n", i + 1}, {"t", lines[static_cast<std::size_t>(i)]}});
  }
  Reply reply = Ok(list);
  reply.total = static_cast<std::int64_t>(lines.size());
  return reply;
}

Reply Simulator::Impl::GetTaskList(Call& call) {
  const std::string node = call.Get("node");
  bool audit = HasPriv(call.auth, "/nodes/" + node, "Sys.Audit");
  std::string source = call.Get("source", "archive");
  std::vector<const Task*> found;
  for (const auto& task : tasks_) {
    if (task->node != node) continue;
    if (!audit && task->authid != call.auth.authid) continue;
    if (source == "archive" && task->running) continue;
    if (source == "active" && !task->running) continue;
    if (call.Has("vmid") && task->vmid != call.Int("vmid") && task->id != call.Get("vmid")) continue;
    if (call.Has("typefilter") && task->type != call.Get("typefilter")) continue;
    if (call.Has("userfilter") && task->authid.find(call.Get("userfilter")) == std::string::npos) continue;
    if (call.Flag("errors") && (task->running || task->exitstatus == "OK")) continue;
    auto start = duration_cast<seconds>(task->starttime.time_since_epoch()).count();
    if (call.Has("since") && start < call.Int("since")) continue;
    if (call.Has("until") && start > call.Int("until")) continue;
    if (call.Has("statusfilter")) {
      auto wanted = SplitAny(call.Get("statusfilter"), ",; ");
      std::string status = task->running                                ? "running"
                           : task->exitstatus == "OK"                   ? "ok"
                           : task->exitstatus.rfind("WARNINGS", 0) == 0 ? "warning"
                                                                        : "error";
      if (std::find(wanted.begin(), wanted.end(), status) == wanted.end()) continue;
    }
    found.push_back(task.get());
  }
  std::sort(found.begin(), found.end(), [](const Task* a, const Task* b) { return a->starttime > b->starttime; });
  Json list = Json::array();
  std::int64_t start = call.Int("start", 0), limit = call.Int("limit", 50);
  for (std::int64_t i = start; i < static_cast<std::int64_t>(found.size()) && i < start + limit; ++i) {
    const Task* task = found[static_cast<std::size_t>(i)];
    Json entry = TaskEntry(*task);
    if (!task->running) {
      entry["status"] = task->exitstatus;
      entry["endtime"] = duration_cast<seconds>(task->endtime.time_since_epoch()).count();
    }
    entry.erase("exitstatus");
    list.push_back(entry);
  }
  Reply reply = Ok(list);
  reply.total = static_cast<std::int64_t>(found.size());
  return reply;
}

Reply Simulator::Impl::DeleteTask(Call& call) {
  auto it = tasks_by_upid_.find(call.Get("upid"));
  if (it == tasks_by_upid_.end() || it->second->node != call.Get("node")) return ParamError1("upid", "no such task");
  Task& task = *it->second;
  if (task.authid != call.auth.authid && !HasPriv(call.auth, "/nodes/" + task.node, "Sys.Modify")) {
    return Error(403, fmt::format("Permission check failed (/nodes/{}, Sys.Modify)", task.node));
  }
  if (task.running) {
    task.forced_error = "received interrupt";
    task.endtime = Now();
    if (task.vmid != 0) {
      if (auto vm = vms_.find(task.vmid); vm != vms_.end()) vm->second.busy_until = Now();
    }
    FinishTaskLocked(task);
  }
  return Ok(nullptr);
}

}  // namespace omni_proxmox::sim::pve
