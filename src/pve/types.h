// SPDX-License-Identifier: Apache-2.0
#pragma once

// Typed values exchanged with the Proxmox VE API. Plain structs with no transport or JSON types, so
// that callers (provider, cli) and tests depend on nothing but the standard library.
//
// Units are in the field names: Proxmox mixes bytes, MiB and GiB. Fields Proxmox leaves out (for
// example node statistics without Sys.Audit, or for an offline node) are std::optional.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace omni_proxmox::pve {

// A VM's ID (the API's pve-vmid: 100..999999999). One type from the API client to the state
// resource, so a VMID is never narrowed or sign-converted on its way.
using Vmid = std::uint32_t;
inline constexpr Vmid kMinVmid = 100;
inline constexpr Vmid kMaxVmid = 999'999'999;

// Form fields for POST/PUT bodies (create and config parameters), in the order given. Values are
// sent verbatim; booleans must already be "0"/"1" (use FormBool()).
using FormFields = std::vector<std::pair<std::string, std::string>>;

inline std::string FormBool(bool value) { return value ? "1" : "0"; }

// GET /version.
struct VersionInfo {
  std::string version;  // "9.2.11"
  std::string release;  // "9.2"
  std::string repoid;
};

// GET /access/permissions: ACL path -> privilege -> propagate flag.
using Permissions = std::map<std::string, std::map<std::string, bool>>;

enum class NodeStatus { kUnknown, kOnline, kOffline };

// One entry of GET /nodes.
struct Node {
  std::string name;
  NodeStatus status = NodeStatus::kUnknown;
  // Statistics are present only with Sys.Audit, and (cpu, mem, disk, uptime) only while online.
  std::optional<double> cpu_fraction;
  std::optional<std::int64_t> max_cpu;
  std::optional<std::int64_t> mem_bytes;
  std::optional<std::int64_t> max_mem_bytes;
  std::optional<std::int64_t> disk_bytes;
  std::optional<std::int64_t> max_disk_bytes;
  std::optional<std::int64_t> uptime_seconds;
};

// The `type` filter of GET /cluster/resources.
enum class ResourceType { kAll, kVm, kStorage, kNode };

// One entry of GET /cluster/resources. Which fields are set depends on `type`
// ("qemu", "lxc", "node", "storage", "pool", "sdn").
struct ClusterResource {
  std::string id;  // "qemu/105", "node/pve1", "storage/pve1/local"
  std::string type;
  std::string node;
  std::string status;
  // VMs and containers.
  std::optional<Vmid> vmid;
  std::string name;
  std::string tags;  // ";"-joined, as stored
  std::string lock;  // "create", "destroyed", ... or empty
  bool is_template = false;
  std::optional<std::int64_t> max_mem_bytes;
  std::optional<std::int64_t> mem_bytes;
  std::optional<std::int64_t> max_disk_bytes;
  std::optional<std::int64_t> disk_bytes;
  std::optional<double> cpu_fraction;
  std::optional<std::int64_t> max_cpu;
  std::optional<std::int64_t> uptime_seconds;
  // Storages.
  std::string storage;
  std::string plugin_type;
  std::vector<std::string> content;
  bool shared = false;
  // Pools.
  std::string pool;
};

// One entry of GET /nodes/{node}/storage.
struct NodeStorage {
  std::string storage;
  std::string type;                  // plugin type: dir, lvmthin, nfs, ...
  std::vector<std::string> content;  // "iso", "images", ... in server order (unstable)
  bool enabled = false;
  bool active = false;
  bool shared = false;
  std::int64_t total_bytes = 0;
  std::int64_t used_bytes = 0;
  std::int64_t avail_bytes = 0;

  bool HasContent(const std::string& kind) const {
    for (const auto& c : content) {
      if (c == kind) return true;
    }
    return false;
  }
};

// One entry of GET /nodes/{node}/network.
struct NetworkInterface {
  std::string iface;  // "vmbr0"
  std::string type;   // "bridge", "OVSBridge", "bond", "eth", ...
  bool active = false;
  bool vlan_aware = false;  // bridge_vlan_aware: tagged NICs need it on a Linux bridge
};

// One entry of GET /cluster/mapping/pci or /cluster/mapping/usb: a logical device and the nodes
// that have it (the node= of each map entry).
struct HardwareMapping {
  std::string id;
  std::vector<std::string> nodes;
};

// One entry of GET /nodes/{node}/storage/{storage}/content.
struct StorageVolume {
  std::string volid;  // "local:iso/talos.iso"
  std::string content;
  std::string format;
  std::int64_t size_bytes = 0;
  std::optional<std::int64_t> used_bytes;
  std::optional<Vmid> vmid;
  std::optional<std::int64_t> ctime_unix;
};

// GET /nodes/{node}/storage/{storage}/content/{volume}.
struct VolumeInfo {
  std::string path;
  std::string format;
  std::int64_t size_bytes = 0;
  std::optional<std::int64_t> used_bytes;
};

// GET /nodes/{node}/qemu/{vmid}/status/current, or one entry of GET /nodes/{node}/qemu.
struct VmStatus {
  Vmid vmid = 0;
  std::string name;
  std::string status;      // "running" | "stopped"
  std::string qmp_status;  // status/current only
  std::string lock;
  std::string tags;
  std::optional<std::int64_t> pid;
  std::optional<std::int64_t> cpus;
  std::optional<std::int64_t> max_mem_bytes;
  std::optional<std::int64_t> mem_bytes;
  std::optional<std::int64_t> max_disk_bytes;
  std::optional<std::int64_t> uptime_seconds;
  std::optional<double> cpu_fraction;
  bool agent = false;
};

// GET /nodes/{node}/qemu/{vmid}/config. Every value is kept as its string form, since Proxmox
// sends some as numbers and some as strings (memory) and most are property strings anyway.
struct VmConfig {
  std::map<std::string, std::string> values;
  std::string digest;

  std::optional<std::string> Get(const std::string& key) const {
    auto it = values.find(key);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
};

// A parsed task ID: UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:
struct Upid {
  std::string node;
  std::uint32_t pid = 0;
  std::uint64_t pstart = 0;
  std::int64_t start_time_unix = 0;
  std::string type;  // qmcreate, qmstart, download, imgcopy, ...
  std::string id;    // vmid, file name, or empty
  std::string user;  // full auth ID, "root@pam!omni" for a token
  std::string text;  // the UPID exactly as Proxmox sent it; used verbatim in requests

  friend bool operator==(const Upid& a, const Upid& b) { return a.text == b.text; }
};

// GET /nodes/{node}/tasks/{upid}/status.
struct TaskStatus {
  std::string upid;
  std::string node;
  std::string type;
  std::string id;
  std::string user;
  bool running = false;
  // Present only once stopped: "OK", "WARNINGS: <n>", or the error text.
  std::optional<std::string> exit_status;
  std::optional<std::int64_t> start_time_unix;
  std::optional<std::int64_t> end_time_unix;  // task lists only

  // True when stopped with "OK" or "WARNINGS: n" (Proxmox's own rule; go-proxmox gets this wrong).
  bool Succeeded() const;
  // The n of "WARNINGS: n"; 0 otherwise.
  int Warnings() const;
};

// One line of GET /nodes/{node}/tasks/{upid}/log.
struct TaskLogLine {
  std::int64_t n = 0;  // 1-based line number
  std::string text;
};

struct TaskLog {
  std::vector<TaskLogLine> lines;
  std::int64_t total = 0;
};

// POST /nodes/{node}/storage/{storage}/download-url.
struct DownloadUrlRequest {
  std::string node;
  std::string storage;
  std::string content = "iso";  // iso | vztmpl | import
  std::string filename;
  std::string url;
  // Both or neither. With a checksum, an existing identical file is success, not a failure.
  std::string checksum;
  std::string checksum_algorithm;  // md5 | sha1 | sha224 | sha256 | sha384 | sha512
  std::optional<bool> verify_certificates;
};

// POST /nodes/{node}/qemu/{vmid}/status/shutdown options.
struct ShutdownOptions {
  std::optional<std::chrono::seconds> timeout;
  bool force_stop = false;
};

}  // namespace omni_proxmox::pve
