// SPDX-License-Identifier: Apache-2.0
#pragma once

// The simulated cluster's records: nodes, storages, volumes, VMs, tasks, users, tokens and ACLs, as the
// scenario declares them and the endpoint families change them. Internal to sim/pve. Plain data, guarded
// by Simulator::Impl::mutex_.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "nlohmann/json.hpp"

#include "util/clock.h"

namespace omni_proxmox::sim::pve {

using Json = nlohmann::json;
using TimePoint = util::Clock::SystemTime;

constexpr std::int64_t kGiB = 1024LL * 1024 * 1024;
constexpr std::int64_t kMiB = 1024LL * 1024;
// PVE's node-local flock on a VM's config gives up after 10 s.
constexpr auto kWorkerLockTimeout = std::chrono::seconds(10);

struct NodeState {
  std::string name;
  bool online = true;
  TimePoint offline_since{};
  int cpus = 8;
  std::int64_t memory_bytes = 32 * kGiB;
  std::int64_t rootfs_bytes = 100 * kGiB;
  std::set<std::string> bridges;
  std::string ip;
  TimePoint boot_time{};
  bool hugepages = true;
};

struct StorageState {
  std::string id;
  std::string type = "dir";
  std::vector<std::string> content;  // in hash order (shuffled once)
  bool shared = false;
  bool disabled = false;
  std::set<std::string> nodes;  // empty = all
  std::string path;
  std::int64_t size_bytes = 100 * kGiB;
  bool thin = true;
  std::string digest;

  bool FileBased() const {
    return type == "dir" || type == "nfs" || type == "cifs" || type == "cephfs" || type == "btrfs";
  }
  bool HasContent(const std::string& kind) const {
    return std::find(content.begin(), content.end(), kind) != content.end();
  }
  bool EnabledOn(const std::string& node) const { return !disabled && (nodes.empty() || nodes.count(node) != 0); }
};

struct Volume {
  std::string volid;    // "local:iso/x.iso"
  std::string storage;  // "local"
  std::string scope;    // node name, or "" on shared storage
  std::string content;  // iso, images, vztmpl, import
  std::string format;   // iso, raw, qcow2
  std::int64_t size = 0;
  int vmid = 0;
  std::int64_t ctime = 0;
  std::string data;  // uploaded bytes (cidata ISOs), empty for synthetic downloads and disks
  std::map<std::string, std::string> checksums;  // algorithm -> digest, when known
};

struct Vm {
  int vmid = 0;
  std::string node;
  std::map<std::string, Json> config;
  bool running = false;
  TimePoint started_at{};
  int pid = 0;
  TimePoint busy_until{};         // the node-local flock is held by a worker until then
  bool reported_running = false;  // what /cluster/resources shows during the configured lag
  TimePoint status_changed_at{};

  std::string Lock() const {
    auto it = config.find("lock");
    return it == config.end() ? "" : it->second.get<std::string>();
  }
  std::string Name() const {
    auto it = config.find("name");
    return it == config.end() ? fmt::format("VM {}", vmid) : it->second.get<std::string>();
  }
  std::string Str(const std::string& key) const {
    auto it = config.find(key);
    if (it == config.end()) return "";
    return it->second.is_string() ? it->second.get<std::string>() : it->second.dump();
  }
};

struct Task {
  std::string upid;
  std::string node;
  std::string type;
  std::string id;
  std::string authid;
  int pid = 0;
  std::uint64_t pstart = 0;
  TimePoint starttime{};
  TimePoint endtime{};
  bool running = true;
  std::string exitstatus;
  std::vector<std::string> log;
  int warnings = 0;
  int vmid = 0;
  // Runs when the task's time is up; returns "" on success or the error text. May add warnings.
  std::function<std::string(Task&)> finish;
  // Runs when the task fails (after finish returned an error or it was aborted), for cleanup.
  std::function<void(Task&)> on_failure;
  std::string forced_error;  // set when the task must end with this error regardless of finish
};

struct User {
  std::string userid;
  std::string password;
  bool enabled = true;
};

struct Token {
  std::string tokenid;  // user@realm!name
  std::string userid;
  std::string secret;
  bool privsep = true;
  std::int64_t expire = 0;
};

struct AclEntry {
  std::string path;
  std::string ugid;  // user or token id
  std::set<std::string> privs;
  bool propagate = true;
};

struct DownloadSpec {
  std::int64_t size = 100 * kMiB;
  std::string fail;                              // e.g. "404 Not Found"
  std::map<std::string, std::string> checksums;  // algorithm -> expected digest of the file
};

struct AuthContext {
  std::string authid;  // user or user!token
  std::string userid;
  std::string tokenname;
  bool via_ticket = false;
};

}  // namespace omni_proxmox::sim::pve
