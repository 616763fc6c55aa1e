#include "sim/pve/simulator.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <stop_token>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "yaml-cpp/yaml.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "sim/pve/http_server.h"
#include "sim/pve/iso9660.h"
#include "sim/pve/schema.h"
#include "util/log.h"
#include "util/random.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::pve {
namespace {

using Json = nlohmann::json;
using TimePoint = util::Clock::SystemTime;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::int64_t kGiB = 1024LL * 1024 * 1024;
constexpr std::int64_t kMiB = 1024LL * 1024;
constexpr auto kTicketLifetime = std::chrono::hours(2);
constexpr auto kOfflineStatsExpiry = std::chrono::minutes(5);
constexpr auto kWorkerLockTimeout = seconds(10);
constexpr auto kCreateLockTimeout = seconds(5);

const std::vector<std::string>& AllPrivileges() {
  static const std::vector<std::string> privileges = {"Datastore.Allocate",
                                                      "Datastore.AllocateSpace",
                                                      "Datastore.AllocateTemplate",
                                                      "Datastore.Audit",
                                                      "Group.Allocate",
                                                      "Mapping.Audit",
                                                      "Mapping.Modify",
                                                      "Mapping.Use",
                                                      "Permissions.Modify",
                                                      "Pool.Allocate",
                                                      "Pool.Audit",
                                                      "Realm.Allocate",
                                                      "Realm.AllocateUser",
                                                      "SDN.Allocate",
                                                      "SDN.Audit",
                                                      "SDN.Use",
                                                      "Sys.AccessNetwork",
                                                      "Sys.Audit",
                                                      "Sys.Console",
                                                      "Sys.Incoming",
                                                      "Sys.Modify",
                                                      "Sys.PowerMgmt",
                                                      "Sys.Syslog",
                                                      "User.Modify",
                                                      "VM.Allocate",
                                                      "VM.Audit",
                                                      "VM.Backup",
                                                      "VM.Clone",
                                                      "VM.Config.CDROM",
                                                      "VM.Config.CPU",
                                                      "VM.Config.Cloudinit",
                                                      "VM.Config.Disk",
                                                      "VM.Config.HWType",
                                                      "VM.Config.Memory",
                                                      "VM.Config.Network",
                                                      "VM.Config.Options",
                                                      "VM.Console",
                                                      "VM.GuestAgent.Audit",
                                                      "VM.GuestAgent.FileRead",
                                                      "VM.GuestAgent.FileSystemMgmt",
                                                      "VM.GuestAgent.FileWrite",
                                                      "VM.GuestAgent.Unrestricted",
                                                      "VM.Migrate",
                                                      "VM.PowerMgmt",
                                                      "VM.Replicate",
                                                      "VM.Snapshot",
                                                      "VM.Snapshot.Rollback"};
  return privileges;
}

std::set<std::string> BuiltinRole(const std::string& role, bool& found) {
  found = true;
  const auto& all = AllPrivileges();
  auto with_prefix = [&](std::initializer_list<const char*> prefixes, std::initializer_list<const char*> extra) {
    std::set<std::string> out(extra.begin(), extra.end());
    for (const auto& priv : all) {
      for (const char* prefix : prefixes) {
        if (priv.rfind(prefix, 0) == 0) out.insert(priv);
      }
    }
    return out;
  };
  if (role == "Administrator") return {all.begin(), all.end()};
  if (role == "NoAccess") return {};
  if (role == "PVEAuditor") {
    return {"Datastore.Audit", "Mapping.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit"};
  }
  if (role == "PVEVMAdmin") return with_prefix({"VM."}, {"Datastore.AllocateSpace", "SDN.Use", "Mapping.Use"});
  if (role == "PVEVMUser") {
    return {"VM.Audit", "VM.Backup", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.PowerMgmt"};
  }
  if (role == "PVEDatastoreAdmin") return with_prefix({"Datastore."}, {});
  if (role == "PVEDatastoreUser") return {"Datastore.AllocateSpace", "Datastore.Audit"};
  if (role == "PVESDNUser") return {"SDN.Audit", "SDN.Use"};
  if (role == "PVEMappingUser") return {"Mapping.Audit", "Mapping.Use"};
  found = false;
  return {};
}

std::string Hex8(std::uint64_t value) { return fmt::format("{:08X}", value); }

std::string Base64(const unsigned char* data, std::size_t size) {
  std::string out(4 * ((size + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string HmacBase64(const std::string& key, const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(text.data()),
       text.size(), digest, &length);
  return Base64(digest, length);
}

std::string DigestHex(const EVP_MD* md, const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, md, nullptr);
  std::string out;
  for (unsigned int i = 0; i < length; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

std::string Lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::vector<std::string> SplitAny(const std::string& text, const std::string& separators) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find_first_of(separators, start);
    std::string part = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!part.empty()) out.push_back(part);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::string Join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

// '*' matches any run of characters.
bool GlobMatch(const std::string& pattern, const std::string& text) {
  std::size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// PVE's format_size: the largest unit among K, M, G, T that divides the size exactly.
std::string FormatSize(std::int64_t bytes) {
  const char* units[] = {"T", "G", "M", "K"};
  std::int64_t factors[] = {1024 * kGiB, kGiB, kMiB, 1024};
  for (int i = 0; i < 4; ++i) {
    if (bytes >= factors[i] && bytes % factors[i] == 0) return fmt::format("{}{}", bytes / factors[i], units[i]);
  }
  return fmt::format("{}", bytes);
}

std::optional<std::int64_t> ParseSize(const std::string& text) {
  static const std::regex re(R"(^(\d+(?:\.\d+)?)([KMGT]?)$)");
  std::smatch match;
  if (!std::regex_match(text, match, re)) return std::nullopt;
  double value = std::stod(match[1]);
  std::string unit = match[2];
  double factor = unit == "T" ? 1024.0 * kGiB : unit == "G" ? kGiB : unit == "M" ? kMiB : unit == "K" ? 1024 : 1;
  return static_cast<std::int64_t>(value * factor);
}

// Serializes with object keys in a random order, like Perl hashes.
void DumpShuffled(const Json& value, std::mt19937_64& rng, std::string& out) {
  if (value.is_object()) {
    std::vector<const std::string*> keys;
    for (const auto& [key, unused] : value.items()) keys.push_back(&key);
    std::shuffle(keys.begin(), keys.end(), rng);
    out += '{';
    bool first = true;
    for (const auto* key : keys) {
      if (!first) out += ',';
      first = false;
      out += Json(*key).dump();
      out += ':';
      DumpShuffled(value.at(*key), rng, out);
    }
    out += '}';
  } else if (value.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& item : value) {
      if (!first) out += ',';
      first = false;
      DumpShuffled(item, rng, out);
    }
    out += ']';
  } else {
    out += value.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

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

struct Reply {
  int status = 200;
  std::string message;  // error text, reason phrase is its first line
  Json data;
  Json errors;
  std::optional<std::int64_t> total;
  bool empty_body = false;
  bool drop = false;
  milliseconds delay{0};  // slept (real time) before answering, e.g. PVE's delay on 401
};

Reply Ok(Json data) {
  Reply reply;
  reply.data = std::move(data);
  return reply;
}

Reply Error(int status, std::string message) {
  Reply reply;
  reply.status = status;
  reply.message = std::move(message);
  return reply;
}

Reply ParamError(ParamErrors errors) {
  Reply reply;
  reply.status = 400;
  reply.message = "Parameter verification failed.\n";
  reply.errors = Json::object();
  for (auto& [key, value] : errors) reply.errors[key] = value;
  return reply;
}

Reply ParamError1(const std::string& key, const std::string& message) { return ParamError({{key, message}}); }

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

}  // namespace

// The default scenario: a 3-node cluster with local, thin LVM, thick LVM and shared NFS storage.
constexpr const char* kDefaultScenario = R"yaml(
cluster:
  name: pve-sim
  vmid_range: [100, 1000000]
nodes:
  - {name: pve1, cpus: 16, memory_gib: 64, bridges: [vmbr0, vmbr1], ip: 10.0.0.11}
  - {name: pve2, cpus: 16, memory_gib: 64, bridges: [vmbr0], ip: 10.0.0.12}
  - {name: pve3, cpus: 8, memory_gib: 32, bridges: [vmbr0], ip: 10.0.0.13}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup, images], path: /var/lib/vz, size_gib: 100}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 500}
  - {id: fast-lvm, type: lvm, content: [images], size_gib: 50, nodes: [pve1]}
  - {id: nas, type: nfs, content: [iso, images, backup], shared: true, path: /mnt/pve/nas, size_gib: 2000}
mappings:
  pci:
    - {id: gpu, nodes: [pve1]}
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
)yaml";

class Simulator::Impl {
 public:
  explicit Impl(SimulatorOptions options) : options_(std::move(options)), random_(options_.seed) {}

  absl::Status Init();
  HttpResponse Handle(const HttpRequest& request);
  void TickLoop(std::stop_token stop);

  // Controls.
  absl::Status SetNodeOnline(const std::string& node, bool online);
  absl::Status MigrateVm(int vmid, const std::string& to_node);
  absl::Status DeleteVmOutOfBand(int vmid);
  void SetFault(const std::string& pattern, FaultSpec spec);
  void ClearFaults();
  void FailNextTask(const std::string& type, const std::string& node, const std::string& error);
  Json State();
  std::uint64_t RequestCount(const std::string& endpoint);
  absl::StatusOr<std::string> VolumeContent(const std::string& node, const std::string& volid);

  SimulatorOptions options_;
  std::unique_ptr<util::Clock> owned_clock_;
  const util::Clock* clock_ = nullptr;
  util::Random random_;
  std::unique_ptr<Schema> schema_;
  TlsMaterial tls_;
  HttpServer server_;
  std::jthread ticker_;
  std::string default_token_id_;
  std::string default_token_secret_;

 private:
  using HandlerFn = Reply (Impl::*)(Call&);

  absl::Status LoadScenario(const std::string& text);
  void RegisterHandlers();
  Reply Dispatch(const HttpRequest& request, std::mt19937_64& rng);
  Reply HandleSim(const HttpRequest& request);
  std::optional<Reply> Authenticate(const HttpRequest& request, const Endpoint& endpoint, AuthContext& auth);
  std::optional<Reply> ExtractParams(const HttpRequest& request, const RouteMatch& match, Call& call);
  HttpResponse Render(const Reply& reply, std::mt19937_64& rng) const;

  // Everything below needs mutex_.
  void AdvanceLocked();
  TimePoint Now() const { return clock_->Now(); }
  std::int64_t NowUnix() const { return duration_cast<seconds>(Now().time_since_epoch()).count(); }
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
  Task& NewTaskLocked(const std::string& node, const std::string& type, const std::string& id, const AuthContext& auth,
                      std::chrono::milliseconds duration, int vmid = 0);
  std::chrono::milliseconds DurationOf(const std::string& type) const;
  void FinishTaskLocked(Task& task);
  std::int64_t UsedBytesLocked(const StorageState& storage, const std::string& node) const;
  std::string ScopeOf(const StorageState& storage, const std::string& node) const { return storage.shared ? "" : node; }
  Volume* FindVolumeLocked(const std::string& volid, const std::string& node);
  std::optional<std::string> AllocateDiskLocked(Vm& vm, const std::string& key, const std::string& storage_id,
                                                double size_gib, const std::string& format, bool cloudinit,
                                                std::vector<std::string>& allocated, std::string& volid);
  std::string GenerateMac(std::mt19937_64& rng);
  std::string Uuid(std::mt19937_64& rng);
  std::optional<Reply> CheckVmOptionPermissions(const Call& call, int vmid,
                                                const std::map<std::string, std::string>& options, bool create);
  std::optional<Reply> CheckDriveStorages(const Call& call, const std::string& node,
                                          const std::map<std::string, std::string>& options);
  // Applies option changes to a config; allocates new disks; returns an error text or "".
  std::string ApplyConfigLocked(Vm& vm, const std::map<std::string, std::string>& options,
                                const std::vector<std::string>& deletes, std::mt19937_64& rng,
                                std::vector<std::string>* log);
  void FinalizeCreateLocked(Vm& vm, std::mt19937_64& rng);
  std::string StartVmLocked(Vm& vm, Task& task);
  void RemoveVmVolumesLocked(Vm& vm, bool unreferenced);
  Json VmListEntry(const Vm& vm, bool full) const;
  Json NodeEntry(const NodeState& node, const AuthContext& auth) const;
  Json StorageStatus(const StorageState& storage, const std::string& node) const;
  std::optional<Reply> NodeCheck(const Call& call);
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
  std::optional<Reply> StorageOnNode(const std::string& storage_id, const std::string& node,
                                     const StorageState** out) const;

  // Handlers.
  Reply GetVersion(Call& call);
  Reply GetNodes(Call& call);
  Reply GetNodeStatus(Call& call);
  Reply GetClusterStatus(Call& call);
  Reply GetClusterResources(Call& call);
  Reply GetNextId(Call& call);
  Reply PostTicket(Call& call);
  Reply GetPermissions(Call& call);
  Reply GetStorageConfig(Call& call);
  Reply GetNodeStorage(Call& call);
  Reply GetStorageStatus(Call& call);
  Reply GetContent(Call& call);
  Reply GetVolume(Call& call);
  Reply DeleteVolume(Call& call);
  Reply PostDownloadUrl(Call& call);
  Reply PostUpload(Call& call);
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
  Reply GetNodeNetwork(Call& call);
  Reply GetHardwareMappings(Call& call);
  Reply GetTaskStatus(Call& call);
  Reply GetTaskLog(Call& call);
  Reply GetTaskList(Call& call);
  Reply DeleteTask(Call& call);

  std::map<std::string, HandlerFn> handlers_;

  mutable std::mutex mutex_;
  std::string cluster_name_ = "pve-sim";
  bool quorate_ = true;
  std::int64_t vmid_lower_ = 100;
  std::int64_t vmid_upper_ = 1000000;
  milliseconds auth_failure_delay_{0};
  milliseconds offline_delay_{0};
  seconds resource_lag_{0};
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

namespace {

template <typename T>
T YamlGet(const YAML::Node& node, const char* key, T fallback) {
  if (!node || !node[key]) return fallback;
  return node[key].as<T>();
}

absl::Status CheckKeys(const YAML::Node& node, const std::string& where, const std::vector<std::string>& allowed) {
  if (!node.IsMap()) return absl::InvalidArgumentError(fmt::format("scenario: {} must be a mapping", where));
  for (const auto& item : node) {
    auto key = item.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return absl::InvalidArgumentError(
          fmt::format("scenario: unknown field '{}.{}' (allowed: {})", where, key, Join(allowed, ", ")));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> YamlStrings(const YAML::Node& node) {
  std::vector<std::string> out;
  if (!node) return out;
  if (node.IsScalar()) return SplitAny(node.as<std::string>(), ", ");
  for (const auto& item : node) out.push_back(item.as<std::string>());
  return out;
}

FaultSpec ParseFault(const YAML::Node& node) {
  FaultSpec spec;
  spec.error_rate = YamlGet<double>(node, "error_rate", 1.0);
  spec.status_code = YamlGet<int>(node, "status", 500);
  spec.message = YamlGet<std::string>(node, "message", "simulated fault");
  spec.latency = milliseconds(YamlGet<int>(node, "latency_ms", 0));
  spec.drop_connection = YamlGet<bool>(node, "drop", false);
  spec.after_effect = YamlGet<bool>(node, "after_effect", false);
  return spec;
}

}  // namespace

absl::Status Simulator::Impl::LoadScenario(const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("scenario: not valid YAML: {}", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("scenario: the document must be a mapping with 'nodes:' etc.");
  try {
    OP_RETURN_IF_ERROR(CheckKeys(
        root, "scenario",
        {"cluster", "nodes", "storages", "mappings", "users", "roles", "acls", "tasks", "faults", "downloads"}));
    if (auto cluster = root["cluster"]) {
      OP_RETURN_IF_ERROR(CheckKeys(cluster, "cluster",
                                   {"name", "vmid_range", "quorate", "error_message_field", "auth_failure_delay_ms",
                                    "offline_delay_ms", "resource_lag_s", "shutdown_cooperative", "start_warnings"}));
      cluster_name_ = YamlGet<std::string>(cluster, "name", cluster_name_);
      if (auto range = cluster["vmid_range"]) {
        if (!range.IsSequence() || range.size() != 2) {
          return absl::InvalidArgumentError("scenario: cluster.vmid_range must be [lower, upper], e.g. [100, 1000]");
        }
        vmid_lower_ = range[0].as<std::int64_t>();
        vmid_upper_ = range[1].as<std::int64_t>();
        if (vmid_lower_ < 100 || vmid_upper_ <= vmid_lower_) {
          return absl::InvalidArgumentError(fmt::format(
              "scenario: cluster.vmid_range [{}, {}] is invalid: need 100 <= lower < upper", vmid_lower_, vmid_upper_));
        }
      }
      quorate_ = YamlGet<bool>(cluster, "quorate", true);
      options_.error_message_field = YamlGet<bool>(cluster, "error_message_field", options_.error_message_field);
      auth_failure_delay_ = milliseconds(YamlGet<int>(cluster, "auth_failure_delay_ms", 0));
      offline_delay_ = milliseconds(YamlGet<int>(cluster, "offline_delay_ms", 0));
      resource_lag_ = seconds(YamlGet<int>(cluster, "resource_lag_s", 0));
      shutdown_cooperative_ = YamlGet<bool>(cluster, "shutdown_cooperative", true);
      start_warnings_ = YamlGet<bool>(cluster, "start_warnings", true);
    }
    auto nodes = root["nodes"];
    if (!nodes || !nodes.IsSequence() || nodes.size() == 0) {
      return absl::InvalidArgumentError("scenario: 'nodes' must list at least one node, e.g. - {name: pve1}");
    }
    static const std::regex node_re("^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$");
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      auto item = nodes[i];
      std::string where = fmt::format("nodes[{}]", i);
      OP_RETURN_IF_ERROR(
          CheckKeys(item, where, {"name", "online", "cpus", "memory_gib", "rootfs_gib", "bridges", "ip", "hugepages"}));
      NodeState node;
      node.name = YamlGet<std::string>(item, "name", "");
      if (!std::regex_match(node.name, node_re)) {
        return absl::InvalidArgumentError(
            fmt::format("scenario: {}.name '{}' is not a valid node name (letters, digits, '-')", where, node.name));
      }
      if (nodes_.count(node.name) != 0) {
        return absl::InvalidArgumentError(fmt::format("scenario: {}.name '{}' is listed twice", where, node.name));
      }
      node.online = YamlGet<bool>(item, "online", true);
      node.cpus = YamlGet<int>(item, "cpus", 8);
      node.memory_bytes = static_cast<std::int64_t>(YamlGet<double>(item, "memory_gib", 32) * kGiB);
      node.rootfs_bytes = static_cast<std::int64_t>(YamlGet<double>(item, "rootfs_gib", 100) * kGiB);
      auto bridges = YamlStrings(item["bridges"]);
      if (!item["bridges"]) bridges = {"vmbr0"};
      node.bridges = {bridges.begin(), bridges.end()};
      node.ip = YamlGet<std::string>(item, "ip", fmt::format("10.0.0.{}", 11 + i));
      node.hugepages = YamlGet<bool>(item, "hugepages", true);
      node.boot_time = Now() - std::chrono::hours(24 * (i + 1));
      node.offline_since = Now() - std::chrono::hours(1);
      node_order_.push_back(node.name);
      nodes_[node.name] = std::move(node);
    }
    if (auto storages = root["storages"]) {
      for (std::size_t i = 0; i < storages.size(); ++i) {
        auto item = storages[i];
        std::string where = fmt::format("storages[{}]", i);
        OP_RETURN_IF_ERROR(
            CheckKeys(item, where,
                      {"id", "type", "content", "shared", "enabled", "disable", "nodes", "path", "size_gib", "thin"}));
        StorageState storage;
        storage.id = YamlGet<std::string>(item, "id", "");
        static const std::regex id_re(R"(^[a-z][a-z0-9\-_.]*[a-z0-9]$)", std::regex::icase);
        if (!std::regex_match(storage.id, id_re)) {
          return absl::InvalidArgumentError(
              fmt::format("scenario: {}.id '{}' is not a valid storage ID", where, storage.id));
        }
        storage.type = YamlGet<std::string>(item, "type", "dir");
        static const std::set<std::string> types = {"dir", "lvm",    "lvmthin", "zfspool", "nfs", "cifs",
                                                    "rbd", "cephfs", "btrfs",   "iscsi",   "pbs"};
        if (types.count(storage.type) == 0) {
          return absl::InvalidArgumentError(fmt::format("scenario: {}.type '{}' is not one of {}", where, storage.type,
                                                        Join({types.begin(), types.end()}, ", ")));
        }
        storage.content = YamlStrings(item["content"]);
        static const std::set<std::string> kinds = {"images", "rootdir",  "iso",   "vztmpl",
                                                    "backup", "snippets", "import"};
        for (const auto& kind : storage.content) {
          if (kinds.count(kind) == 0) {
            return absl::InvalidArgumentError(
                fmt::format("scenario: {}.content has unknown type '{}' (use images, rootdir, iso, vztmpl, backup, "
                            "snippets, import)",
                            where, kind));
          }
        }
        storage.shared = YamlGet<bool>(item, "shared", false);
        storage.disabled = !YamlGet<bool>(item, "enabled", true) || YamlGet<bool>(item, "disable", false);
        for (const auto& name : YamlStrings(item["nodes"])) {
          if (nodes_.count(name) == 0) {
            return absl::InvalidArgumentError(fmt::format("scenario: {}.nodes names unknown node '{}'", where, name));
          }
          storage.nodes.insert(name);
        }
        bool file_based = storage.FileBased();
        storage.path = YamlGet<std::string>(item, "path", file_based ? "/mnt/pve/" + storage.id : "");
        storage.size_bytes = static_cast<std::int64_t>(YamlGet<double>(item, "size_gib", 100) * kGiB);
        storage.thin = YamlGet<bool>(item, "thin", storage.type != "lvm");
        std::shuffle(storage.content.begin(), storage.content.end(), state_rng_);
        storage.digest = DigestHex(EVP_sha1(), storage.id + storage.type);
        if (storages_.count(storage.id) != 0) {
          return absl::InvalidArgumentError(fmt::format("scenario: {}.id '{}' is listed twice", where, storage.id));
        }
        storage_order_.push_back(storage.id);
        storages_[storage.id] = std::move(storage);
      }
    }
    if (auto mappings = root["mappings"]) {
      OP_RETURN_IF_ERROR(CheckKeys(mappings, "mappings", {"pci", "usb"}));
      for (const char* kind : {"pci", "usb"}) {
        auto& target = std::string(kind) == "pci" ? pci_mappings_ : usb_mappings_;
        for (const auto& item : mappings[kind]) {
          auto names = YamlStrings(item["nodes"]);
          target[YamlGet<std::string>(item, "id", "")] = {names.begin(), names.end()};
        }
      }
    }
    if (auto roles = root["roles"]) {
      for (const auto& item : roles) {
        auto privs = YamlStrings(item.second);
        for (const auto& priv : privs) {
          if (std::find(AllPrivileges().begin(), AllPrivileges().end(), priv) == AllPrivileges().end()) {
            return absl::InvalidArgumentError(
                fmt::format("scenario: roles.{} has unknown privilege '{}'", item.first.as<std::string>(), priv));
          }
        }
        roles_[item.first.as<std::string>()] = {privs.begin(), privs.end()};
      }
    }
    if (auto users = root["users"]) {
      for (std::size_t i = 0; i < users.size(); ++i) {
        auto item = users[i];
        std::string where = fmt::format("users[{}]", i);
        OP_RETURN_IF_ERROR(CheckKeys(item, where, {"userid", "password", "enabled", "tokens"}));
        User user;
        user.userid = YamlGet<std::string>(item, "userid", "");
        if (user.userid.find('@') == std::string::npos) {
          return absl::InvalidArgumentError(
              fmt::format("scenario: {}.userid '{}' must be user@realm, e.g. root@pam", where, user.userid));
        }
        user.password = YamlGet<std::string>(item, "password", "");
        user.enabled = YamlGet<bool>(item, "enabled", true);
        for (const auto& token_item : item["tokens"]) {
          Token token;
          token.userid = user.userid;
          token.tokenid = user.userid + "!" + YamlGet<std::string>(token_item, "name", "");
          token.secret = YamlGet<std::string>(token_item, "secret", "");
          token.privsep = YamlGet<bool>(token_item, "privsep", true);
          token.expire = YamlGet<std::int64_t>(token_item, "expire", 0);
          if (token.secret.empty()) {
            return absl::InvalidArgumentError(
                fmt::format("scenario: {}.tokens: token '{}' needs a 'secret'", where, token.tokenid));
          }
          if (default_token_id_.empty()) {
            default_token_id_ = token.tokenid;
            default_token_secret_ = token.secret;
          }
          tokens_[token.tokenid] = token;
        }
        users_[user.userid] = user;
      }
    }
    if (auto acls = root["acls"]) {
      for (std::size_t i = 0; i < acls.size(); ++i) {
        auto item = acls[i];
        std::string where = fmt::format("acls[{}]", i);
        OP_RETURN_IF_ERROR(CheckKeys(item, where, {"path", "ugid", "role", "roles", "privs", "propagate"}));
        AclEntry acl;
        acl.path = YamlGet<std::string>(item, "path", "/");
        acl.ugid = YamlGet<std::string>(item, "ugid", "");
        acl.propagate = YamlGet<bool>(item, "propagate", true);
        auto role_names = YamlStrings(item["roles"]);
        if (item["role"]) role_names.push_back(item["role"].as<std::string>());
        for (const auto& role : role_names) {
          bool found = false;
          auto privs = BuiltinRole(role, found);
          if (!found) {
            auto it = roles_.find(role);
            if (it == roles_.end()) {
              return absl::InvalidArgumentError(fmt::format(
                  "scenario: {}.role '{}' is not a built-in role (Administrator, PVEAuditor, PVEVMAdmin, ...) or one "
                  "defined under 'roles:'",
                  where, role));
            }
            privs = it->second;
          }
          acl.privs.insert(privs.begin(), privs.end());
        }
        for (const auto& priv : YamlStrings(item["privs"])) {
          if (std::find(AllPrivileges().begin(), AllPrivileges().end(), priv) == AllPrivileges().end()) {
            return absl::InvalidArgumentError(
                fmt::format("scenario: {}.privs has unknown privilege '{}'", where, priv));
          }
          acl.privs.insert(priv);
        }
        acls_.push_back(std::move(acl));
      }
    }
    if (auto tasks = root["tasks"]) {
      OP_RETURN_IF_ERROR(CheckKeys(tasks, "tasks", {"durations"}));
      for (const auto& item : tasks["durations"]) {
        task_seconds_[item.first.as<std::string>()] = item.second.as<double>();
      }
    }
    if (auto faults = root["faults"]) {
      for (const auto& item : faults) {
        faults_.emplace_back(YamlGet<std::string>(item, "endpoint", "*"), ParseFault(item));
      }
    }
    if (auto downloads = root["downloads"]) {
      for (const auto& item : downloads) {
        DownloadSpec spec;
        spec.size = static_cast<std::int64_t>(YamlGet<double>(item, "size_mib", 100) * kMiB);
        spec.fail = YamlGet<std::string>(item, "fail", "");
        for (const char* algorithm : {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"}) {
          if (item[algorithm]) spec.checksums[algorithm] = Lower(item[algorithm].as<std::string>());
        }
        downloads_[YamlGet<std::string>(item, "url", "")] = spec;
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("scenario: {}", e.what()));
  }
  return absl::OkStatus();
}

absl::Status Simulator::Impl::Init() {
  if (options_.clock != nullptr) {
    clock_ = options_.clock;
  } else {
    if (!(options_.time_scale > 0)) {
      return absl::InvalidArgumentError(fmt::format("time_scale {} must be > 0 (1 = real time)", options_.time_scale));
    }
    owned_clock_ = std::make_unique<util::ScaledClock>(options_.time_scale);
    clock_ = owned_clock_.get();
  }
  state_rng_.seed(options_.seed);
  std::string schema_text = EmbeddedPveSchema();
  if (!options_.schema_path.empty()) {
    FILE* file = std::fopen(options_.schema_path.c_str(), "rb");
    if (file == nullptr) {
      return absl::NotFoundError(fmt::format("schema_path '{}' cannot be read", options_.schema_path));
    }
    schema_text.clear();
    char buffer[65536];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof(buffer), file)) > 0;) schema_text.append(buffer, n);
    std::fclose(file);
  }
  OP_ASSIGN_OR_RETURN(schema_, Schema::Load(schema_text));
  OP_RETURN_IF_ERROR(LoadScenario(options_.scenario_yaml.empty() ? kDefaultScenario : options_.scenario_yaml));
  std::string key(32, '\0');
  for (auto& c : key) c = static_cast<char>(state_rng_() & 0xff);
  ticket_key_ = key;
  next_pid_ = static_cast<int>(0x1000 + state_rng_() % 0x10000);
  RegisterHandlers();
  if (options_.tls) {
    OP_ASSIGN_OR_RETURN(tls_, GenerateSelfSignedCertificate("pve-sim"));
  }
  OP_RETURN_IF_ERROR(server_.Start(options_.bind_address, options_.port, options_.tls ? &tls_ : nullptr,
                                   [this](const HttpRequest& request) { return Handle(request); }));
  ticker_ = std::jthread([this](std::stop_token stop) { TickLoop(stop); });
  return absl::OkStatus();
}

void Simulator::Impl::TickLoop(std::stop_token stop) {
  // Completes tasks whose simulated time is up even when nobody polls, so on_vm_started fires.
  std::mutex wait_mutex;
  std::condition_variable_any wake;
  while (!stop.stop_requested()) {
    {
      std::unique_lock wait_lock(wait_mutex);
      wake.wait_for(wait_lock, stop, milliseconds(20), [] { return false; });
    }
    std::vector<VmBootInfo> boots;
    {
      std::lock_guard lock(mutex_);
      AdvanceLocked();
      boots.swap(pending_boots_);
    }
    if (options_.on_vm_started) {
      for (const auto& boot : boots) options_.on_vm_started(boot);
    }
  }
}

void Simulator::Impl::RegisterHandlers() {
  handlers_ = {
      {"GET /version", &Impl::GetVersion},
      {"GET /nodes", &Impl::GetNodes},
      {"GET /nodes/{node}/status", &Impl::GetNodeStatus},
      {"GET /cluster/status", &Impl::GetClusterStatus},
      {"GET /cluster/resources", &Impl::GetClusterResources},
      {"GET /cluster/nextid", &Impl::GetNextId},
      {"POST /access/ticket", &Impl::PostTicket},
      {"GET /access/permissions", &Impl::GetPermissions},
      {"GET /storage", &Impl::GetStorageConfig},
      {"GET /nodes/{node}/storage", &Impl::GetNodeStorage},
      {"GET /nodes/{node}/storage/{storage}/status", &Impl::GetStorageStatus},
      {"GET /nodes/{node}/storage/{storage}/content", &Impl::GetContent},
      {"GET /nodes/{node}/storage/{storage}/content/{volume}", &Impl::GetVolume},
      {"DELETE /nodes/{node}/storage/{storage}/content/{volume}", &Impl::DeleteVolume},
      {"POST /nodes/{node}/storage/{storage}/download-url", &Impl::PostDownloadUrl},
      {"POST /nodes/{node}/storage/{storage}/upload", &Impl::PostUpload},
      {"GET /nodes/{node}/qemu", &Impl::GetQemuList},
      {"POST /nodes/{node}/qemu", &Impl::PostQemuCreate},
      {"GET /nodes/{node}/qemu/{vmid}/config", &Impl::GetVmConfig},
      {"POST /nodes/{node}/qemu/{vmid}/config", &Impl::PostVmConfig},
      {"PUT /nodes/{node}/qemu/{vmid}/config", &Impl::PutVmConfig},
      {"GET /nodes/{node}/qemu/{vmid}/status/current", &Impl::GetVmStatus},
      {"POST /nodes/{node}/qemu/{vmid}/status/start", &Impl::PostVmPower},
      {"POST /nodes/{node}/qemu/{vmid}/status/stop", &Impl::PostVmPower},
      {"POST /nodes/{node}/qemu/{vmid}/status/shutdown", &Impl::PostVmPower},
      {"POST /nodes/{node}/qemu/{vmid}/status/reboot", &Impl::PostVmPower},
      {"POST /nodes/{node}/qemu/{vmid}/status/reset", &Impl::PostVmPower},
      {"DELETE /nodes/{node}/qemu/{vmid}", &Impl::DeleteVm},
      {"GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", &Impl::GetAgentInterfaces},
      {"GET /nodes/{node}/network", &Impl::GetNodeNetwork},
      {"GET /cluster/mapping/pci", &Impl::GetHardwareMappings},
      {"GET /cluster/mapping/usb", &Impl::GetHardwareMappings},
      {"GET /nodes/{node}/tasks/{upid}/status", &Impl::GetTaskStatus},
      {"GET /nodes/{node}/tasks/{upid}/log", &Impl::GetTaskLog},
      {"GET /nodes/{node}/tasks", &Impl::GetTaskList},
      {"DELETE /nodes/{node}/tasks/{upid}", &Impl::DeleteTask},
  };
}

namespace {

std::map<std::string, std::string> ParseForm(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& pair : SplitAny(text, "&;")) {
    std::size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq), true);
    std::string value = eq == std::string::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
    out[key] = value;
  }
  return out;
}

std::string MediaType(const std::string& content_type) {
  std::string media = Lower(content_type.substr(0, content_type.find(';')));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  return media;
}

std::string CookieValue(const std::string& cookies, const std::string& name) {
  for (auto part : SplitAny(cookies, ";")) {
    std::size_t start = part.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    part = part.substr(start);
    if (part.rfind(name + "=", 0) == 0) return PercentDecode(part.substr(name.size() + 1), false);
  }
  return "";
}

struct MultipartPart {
  std::string name;
  std::string filename;
  bool has_filename = false;
  std::string data;
};

std::optional<std::vector<MultipartPart>> ParseMultipart(const std::string& body, const std::string& content_type) {
  std::size_t b = content_type.find("boundary=");
  if (b == std::string::npos) return std::nullopt;
  std::string boundary = content_type.substr(b + 9);
  if (auto semi = boundary.find(';'); semi != std::string::npos) boundary = boundary.substr(0, semi);
  if (boundary.size() >= 2 && boundary.front() == '"') boundary = boundary.substr(1, boundary.size() - 2);
  std::string delimiter = "--" + boundary;
  std::vector<MultipartPart> parts;
  std::size_t pos = body.find(delimiter);
  if (pos == std::string::npos) return std::nullopt;
  while (true) {
    pos += delimiter.size();
    if (body.compare(pos, 2, "--") == 0) break;
    if (body.compare(pos, 2, "\r\n") != 0) return std::nullopt;
    pos += 2;
    std::size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) return std::nullopt;
    std::string head = body.substr(pos, head_end - pos);
    std::size_t next = body.find("\r\n" + delimiter, head_end + 4);
    if (next == std::string::npos) return std::nullopt;
    MultipartPart part;
    part.data = body.substr(head_end + 4, next - head_end - 4);
    static const std::regex name_re(R"re(\bname="([^"]*)")re", std::regex::icase);
    static const std::regex file_re(R"re(\bfilename="([^"]*)")re", std::regex::icase);
    std::smatch match;
    for (const auto& line : SplitAny(head, "\r\n")) {
      if (Lower(line).rfind("content-disposition:", 0) != 0) continue;
      if (std::regex_search(line, match, name_re)) part.name = match[1];
      if (std::regex_search(line, match, file_re)) {
        part.filename = match[1];
        part.has_filename = true;
      }
    }
    parts.push_back(std::move(part));
    pos = next + 2;
  }
  return parts;
}

}  // namespace

HttpResponse Simulator::Impl::Handle(const HttpRequest& request) {
  std::mt19937_64 rng(random_.Uniform(~0ULL));
  Reply reply;
  if (request.path.rfind("/_sim/", 0) == 0) {
    reply = HandleSim(request);
  } else {
    std::optional<FaultSpec> fault;
    std::string api_path = request.path.rfind("/api2/json", 0) == 0 ? request.path.substr(10) : request.path;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [pattern, spec] : faults_) {
        if (GlobMatch(pattern, request.method + " " + api_path)) {
          if (random_.Bernoulli(spec.error_rate)) fault = spec;
          break;
        }
      }
    }
    if (fault && fault->after_effect) reply = Dispatch(request, rng);
    if (fault) {
      if (fault->latency.count() > 0) std::this_thread::sleep_for(fault->latency);
      if (fault->drop_connection) {
        reply = Reply{};
        reply.drop = true;
      } else if (fault->status_code != 0) {
        reply = Error(fault->status_code, fault->message);
        reply.empty_body = fault->status_code >= 595;
      } else if (!fault->after_effect) {
        reply = Dispatch(request, rng);
      }
    } else {
      reply = Dispatch(request, rng);
    }
  }
  std::vector<VmBootInfo> boots;
  {
    std::lock_guard lock(mutex_);
    boots.swap(pending_boots_);
  }
  if (options_.on_vm_started) {
    for (const auto& boot : boots) options_.on_vm_started(boot);
  }
  if (reply.delay.count() > 0) std::this_thread::sleep_for(reply.delay);
  return Render(reply, rng);
}

HttpResponse Simulator::Impl::Render(const Reply& reply, std::mt19937_64& rng) const {
  HttpResponse response;
  response.status = reply.status;
  if (reply.drop) {
    response.drop_connection = true;
    return response;
  }
  if (reply.status == 200) {
    response.reason = "OK";
    Json body = {{"data", reply.data}};
    if (reply.total) body["total"] = *reply.total;
    DumpShuffled(body, rng, response.body);
    response.headers.emplace_back("Content-Type", "application/json;charset=UTF-8");
  } else {
    std::string reason = reply.message.substr(0, reply.message.find('\n'));
    response.reason = reason.empty() ? "Error" : reason;
    if (!reply.empty_body) {
      Json body = {{"data", nullptr}};
      if (options_.error_message_field) {
        body["message"] = reply.message.empty() || reply.message.back() == '\n' ? reply.message : reply.message + "\n";
      }
      if (!reply.errors.is_null()) body["errors"] = reply.errors;
      DumpShuffled(body, rng, response.body);
      response.headers.emplace_back("Content-Type", "application/json;charset=UTF-8");
    }
  }
  response.headers.emplace_back("Cache-Control", "max-age=0");
  response.headers.emplace_back("Server", "pve-api-daemon/3.0 (omni-proxmox pve-sim)");
  return response;
}

Reply Simulator::Impl::Dispatch(const HttpRequest& request, std::mt19937_64& rng) {
  if (request.path.rfind("/api2/json/", 0) != 0 && request.path != "/api2/json") {
    return Error(501, fmt::format("Method '{} {}' not implemented", request.method, request.path));
  }
  std::string path = request.path.substr(10);
  if (path.empty()) path = "/";
  if (request.method != "POST" && request.method != "PUT" && !request.body.empty()) {
    return Error(501, fmt::format("Unexpected content for method '{}'", request.method));
  }
  RouteMatch match = schema_->Match(request.method, path);
  {
    std::lock_guard lock(mutex_);
    ++request_counts_[match.endpoint != nullptr ? match.endpoint->Key() : "(unknown)"];
  }
  if (match.endpoint == nullptr) {
    return Error(501, fmt::format("Method '{} {}' not implemented", request.method, path));
  }
  Call call;
  call.http = &request;
  call.endpoint = match.endpoint;
  call.rng.seed(rng());
  bool is_ticket = match.endpoint->Key() == "POST /access/ticket";
  if (!is_ticket) {
    if (auto failure = Authenticate(request, *match.endpoint, call.auth)) return *failure;
    if (!match.endpoint->allow_token && !call.auth.tokenname.empty()) {
      return Error(403, fmt::format("Permission check failed (URI '{}' not available with API token, need proper "
                                    "ticket.\n)",
                                    path));
    }
  }
  if (auto failure = ExtractParams(request, match, call)) return *failure;

  // Node checks come before validation: PVE forwards to the node, which then validates.
  if (call.Has("node") && match.endpoint->path_template.rfind("/nodes/{node}", 0) == 0) {
    const auto* node_schema = schema_->ParamSchema(*match.endpoint, "node");
    if (node_schema != nullptr) {
      if (auto error = schema_->CheckValue(*node_schema, call.Get("node"), "node")) return ParamError1("node", *error);
    }
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(call.Get("node"));
    if (it == nodes_.end()) {
      const std::string& name = call.Get("node");
      return Error(500, fmt::format("hostname lookup '{}' failed - failed to get address info for: {}: Name or "
                                    "service not known",
                                    name, name));
    }
    if (!it->second.online && match.endpoint->proxied_to_node) {
      Reply reply = Error(595, "Connection refused");
      reply.empty_body = true;
      reply.delay = offline_delay_;
      return reply;
    }
  }
  if (auto errors = schema_->Validate(*match.endpoint, call.params); !errors.empty()) return ParamError(errors);

  auto handler = handlers_.find(match.endpoint->Key());
  if (handler == handlers_.end()) {
    return Error(501, fmt::format("Method '{} {}' not implemented", request.method, path));
  }
  std::lock_guard lock(mutex_);
  AdvanceLocked();
  if (!is_ticket) {
    const Json& permissions = (*match.endpoint->definition)["permissions"];
    if (auto it = permissions.find("check"); it != permissions.end()) {
      if (auto denied = CheckPermissionSpec(*it, call)) return *denied;
    }
  }
  return (this->*(handler->second))(call);
}

std::optional<Reply> Simulator::Impl::Authenticate(const HttpRequest& request, const Endpoint& endpoint,
                                                   AuthContext& auth) {
  auto fail = [&](const std::string& message) {
    Reply reply = Error(401, message);
    reply.empty_body = true;
    reply.delay = auth_failure_delay_;
    return reply;
  };
  std::string ticket = CookieValue(request.Header("cookie"), "PVEAuthCookie");
  std::string authorization = request.Header("authorization");
  if (ticket.empty() && authorization.rfind("PVEAuthCookie=", 0) == 0) {
    ticket = PercentDecode(authorization.substr(14), false);
  }
  std::lock_guard lock(mutex_);
  if (!ticket.empty()) {
    // PVE:<userid>:<hex time>::<signature>
    auto parts = SplitAny(ticket, ":");
    std::size_t sig = ticket.rfind("::");
    if (parts.size() < 4 || parts[0] != "PVE" || sig == std::string::npos) return fail("Authentication failed!");
    std::string userid = PercentDecode(parts[1], false);
    std::string signed_part = ticket.substr(0, sig);
    if (HmacBase64(ticket_key_, signed_part) != ticket.substr(sig + 2)) return fail("Authentication failed!");
    std::int64_t issued = std::strtoll(parts[2].c_str(), nullptr, 16);
    std::int64_t age = NowUnix() - issued;
    if (age < -300 || age >= duration_cast<seconds>(kTicketLifetime).count()) return fail("Authentication failed!");
    auto user = users_.find(userid);
    if (user == users_.end() || !user->second.enabled) return fail("Authentication failed!");
    auth.authid = auth.userid = userid;
    auth.via_ticket = true;
    bool upload = endpoint.path_template == "/nodes/{node}/storage/{storage}/upload";
    if (request.method != "GET" && !upload) {
      std::string csrf = request.Header("csrfpreventiontoken");
      std::size_t colon = csrf.find(':');
      bool ok = colon != std::string::npos &&
                HmacBase64(ticket_key_, "CSRF:" + csrf.substr(0, colon) + ":" + userid) == csrf.substr(colon + 1);
      if (ok) {
        std::int64_t csrf_age = NowUnix() - std::strtoll(csrf.substr(0, colon).c_str(), nullptr, 16);
        ok = csrf_age > -300 && csrf_age < duration_cast<seconds>(kTicketLifetime).count();
      }
      if (!ok) return fail("Permission denied - invalid csrf token");
    }
    return std::nullopt;
  }
  // (?:^|\s)PVEAPIToken(?:=| )([^;]*), matched by hand because it runs on every request.
  std::size_t at = std::string::npos;
  for (std::size_t pos = authorization.find("PVEAPIToken"); pos != std::string::npos;
       pos = authorization.find("PVEAPIToken", pos + 1)) {
    bool boundary = pos == 0 || std::isspace(static_cast<unsigned char>(authorization[pos - 1]));
    std::size_t next = pos + 11;
    if (boundary && next < authorization.size() && (authorization[next] == '=' || authorization[next] == ' ')) {
      at = next + 1;
      break;
    }
  }
  if (at != std::string::npos) {
    std::string value = PercentDecode(authorization.substr(at, authorization.find(';', at) - at), false);
    std::size_t eq = value.rfind('=');
    if (eq == std::string::npos) return fail("Authentication failed!");
    std::string tokenid = value.substr(0, eq);
    std::string secret = value.substr(eq + 1);
    auto token = tokens_.find(tokenid);
    if (token == tokens_.end() || token->second.secret != secret) return fail("Authentication failed!");
    if (token->second.expire != 0 && token->second.expire <= NowUnix()) return fail("Authentication failed!");
    auto user = users_.find(token->second.userid);
    if (user == users_.end() || !user->second.enabled) return fail("Authentication failed!");
    auth.authid = tokenid;
    auth.userid = token->second.userid;
    auth.tokenname = tokenid.substr(tokenid.find('!') + 1);
    return std::nullopt;
  }
  return fail("No ticket");
}

std::optional<Reply> Simulator::Impl::ExtractParams(const HttpRequest& request, const RouteMatch& match, Call& call) {
  std::map<std::string, std::string> params;
  if ((request.method == "POST" || request.method == "PUT") && !request.body.empty()) {
    std::string media = MediaType(request.Header("content-type"));
    bool upload = match.endpoint->path_template == "/nodes/{node}/storage/{storage}/upload";
    if (media == "application/x-www-form-urlencoded") {
      params = ParseForm(request.body);
    } else if (media == "application/json") {
      Json body;
      try {
        body = Json::parse(request.body);
      } catch (const std::exception&) {
        return Error(400, "malformed JSON string");
      }
      if (!body.is_object()) return Error(400, "malformed JSON string: expected an object");
      for (const auto& [key, value] : body.items()) {
        if (value.is_null()) continue;
        if (value.is_boolean()) {
          params[key] = value.get<bool>() ? "1" : "0";
        } else if (value.is_string()) {
          params[key] = value.get<std::string>();
        } else if (value.is_number()) {
          params[key] = value.dump();
        } else {
          params[key] = value.dump();  // arrays/objects fail validation like PVE's type check
        }
      }
    } else if (upload && media == "multipart/form-data") {
      auto parts = ParseMultipart(request.body, request.Header("content-type"));
      if (!parts) return Error(400, "unable to parse multipart/form-data body");
      for (auto& part : *parts) {
        if (part.has_filename) {
          call.upload_field = part.name;
          call.upload_filename = part.filename;
          call.upload_data = std::move(part.data);
          break;  // PVE's streaming parser stops at the file part
        }
        params[part.name] = part.data;
      }
      if (call.upload_field.empty()) return Error(400, "missing file part 'filename' in multipart upload");
      if (call.upload_field != "filename") {
        return Error(500, fmt::format("wrong field name '{}' for file upload, expected 'filename'", call.upload_field));
      }
      params["filename"] = call.upload_filename;
    } else {
      return Error(506, fmt::format("upload 'Content-Type '{}' not implemented", request.Header("content-type")));
    }
  }
  for (auto& [key, value] : ParseForm(request.query)) params[key] = value;  // the query overrides the body
  params.erase("_dc");
  for (const auto& [key, value] : match.path_params) {
    auto it = params.find(key);
    if (it != params.end() && it->second != value) {
      return Error(400, "duplicate parameter (already defined in URI) with conflicting values!");
    }
    params[key] = value;
  }
  call.params = std::move(params);
  return std::nullopt;
}

std::set<std::string> Simulator::Impl::UserPrivsLocked(const std::string& ugid, const std::string& path) const {
  // Walk from "/" down to `path`; the deepest level with entries for `ugid` replaces what came
  // from above, and entries without propagate apply only on their own path (PVE's ACL model).
  std::vector<std::string> levels = {"/"};
  std::string prefix;
  for (const auto& part : SplitAny(path, "/")) {
    prefix += "/" + part;
    levels.push_back(prefix);
  }
  std::set<std::string> privs;
  for (const auto& level : levels) {
    std::set<std::string> here;
    bool any = false;
    for (const auto& acl : acls_) {
      if (acl.path != level || acl.ugid != ugid) continue;
      if (!acl.propagate && level != levels.back()) continue;
      any = true;
      here.insert(acl.privs.begin(), acl.privs.end());
    }
    if (any) privs = std::move(here);
  }
  return privs;
}

std::set<std::string> Simulator::Impl::PrivsLocked(const std::string& authid, const std::string& path) const {
  std::size_t bang = authid.find('!');
  std::string userid = authid.substr(0, bang);
  std::set<std::string> user_privs;
  if (userid == "root@pam") {
    user_privs = {AllPrivileges().begin(), AllPrivileges().end()};
  } else {
    user_privs = UserPrivsLocked(userid, path);
  }
  if (bang == std::string::npos) return user_privs;
  auto token = tokens_.find(authid);
  if (token == tokens_.end()) return {};
  if (!token->second.privsep) return user_privs;
  std::set<std::string> token_privs = UserPrivsLocked(authid, path);
  std::set<std::string> both;
  std::set_intersection(user_privs.begin(), user_privs.end(), token_privs.begin(), token_privs.end(),
                        std::inserter(both, both.begin()));
  return both;
}

std::string Simulator::Impl::SubstitutePath(const std::string& path, const Call& call) const {
  std::string out = path;
  for (const auto& [key, value] : call.params) {
    std::string placeholder = "{" + key + "}";
    for (std::size_t pos; (pos = out.find(placeholder)) != std::string::npos;)
      out.replace(pos, placeholder.size(), value);
  }
  return out;
}

std::optional<Reply> Simulator::Impl::CheckPermissionSpec(const Json& check, const Call& call) const {
  if (!check.is_array() || check.empty() || !check[0].is_string()) return std::nullopt;
  std::string kind = check[0].get<std::string>();
  if (kind == "perm" && check.size() >= 3) {
    std::string path = SubstitutePath(check[1].get<std::string>(), call);
    bool any = check.size() >= 5 && check[3] == "any";
    auto privs = PrivsLocked(call.auth.authid, path);
    std::vector<std::string> wanted;
    for (const auto& priv : check[2]) wanted.push_back(priv.get<std::string>());
    if (any) {
      for (const auto& priv : wanted) {
        if (privs.count(priv) != 0) return std::nullopt;
      }
      return Error(403, fmt::format("Permission check failed ({}, {})", path, Join(wanted, "|")));
    }
    for (const auto& priv : wanted) {
      if (privs.count(priv) == 0) return Error(403, fmt::format("Permission check failed ({}, {})", path, priv));
    }
    return std::nullopt;
  }
  if (kind == "and") {
    for (std::size_t i = 1; i < check.size(); ++i) {
      if (auto denied = CheckPermissionSpec(check[i], call)) return denied;
    }
    return std::nullopt;
  }
  if (kind == "or") {
    std::optional<Reply> first;
    for (std::size_t i = 1; i < check.size(); ++i) {
      auto denied = CheckPermissionSpec(check[i], call);
      if (!denied) return std::nullopt;
      if (!first) first = denied;
    }
    return first;
  }
  return std::nullopt;  // userid-param and friends: checked by the handler
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
  if (error.empty()) {
    for (auto it = task_failures_.begin(); it != task_failures_.end(); ++it) {
      if (it->type == task.type && (it->node.empty() || it->node == task.node)) {
        if (it->error == "WARNINGS") {
          task.log.push_back("WARN: injected warning");
          ++task.warnings;
        } else {
          error = it->error;
        }
        task_failures_.erase(it);
        break;
      }
    }
  }
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

std::int64_t Simulator::Impl::UsedBytesLocked(const StorageState& storage, const std::string& node) const {
  std::string scope = ScopeOf(storage, node);
  std::int64_t used = 0;
  for (const auto& volume : volumes_) {
    if (volume.storage == storage.id && volume.scope == scope) used += volume.size;
  }
  return used;
}

Volume* Simulator::Impl::FindVolumeLocked(const std::string& volid, const std::string& node) {
  std::size_t colon = volid.find(':');
  if (colon == std::string::npos) return nullptr;
  auto storage = storages_.find(volid.substr(0, colon));
  if (storage == storages_.end()) return nullptr;
  std::string scope = ScopeOf(storage->second, node);
  for (auto& volume : volumes_) {
    if (volume.volid == volid && volume.scope == scope) return &volume;
  }
  return nullptr;
}

std::string Simulator::Impl::GenerateMac(std::mt19937_64& rng) {
  return fmt::format("BC:24:11:{:02X}:{:02X}:{:02X}", rng() & 0xff, rng() & 0xff, rng() & 0xff);
}

std::string Simulator::Impl::Uuid(std::mt19937_64& rng) {
  std::uint64_t a = rng(), b = rng();
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                     0x8000 | ((b >> 48) & 0x3fff), b & 0xffffffffffffULL);
}

std::optional<Reply> Simulator::Impl::StorageOnNode(const std::string& storage_id, const std::string& node,
                                                    const StorageState** out) const {
  auto it = storages_.find(storage_id);
  if (it == storages_.end()) return Error(500, fmt::format("storage '{}' does not exist", storage_id));
  if (it->second.disabled) return Error(500, fmt::format("storage '{}' is disabled", storage_id));
  if (!it->second.EnabledOn(node)) {
    return Error(500, fmt::format("storage '{}' is not available on node '{}'", storage_id, node));
  }
  *out = &it->second;
  return std::nullopt;
}

// ---- cluster, nodes, access ----

Reply Simulator::Impl::GetVersion(Call&) {
  return Ok({{"version", "9.2.11"}, {"release", "9.2"}, {"repoid", "4d8a2f1c9b7e3a05"}});
}

Json Simulator::Impl::NodeEntry(const NodeState& node, const AuthContext& auth) const {
  Json entry = {{"node", node.name},
                {"id", "node/" + node.name},
                {"type", "node"},
                {"status", node.online ? "online" : "offline"},
                {"level", ""},
                {"ssl_fingerprint", "5A:0F:3C:" + DigestHex(EVP_sha1(), node.name).substr(0, 2) + ":9E:11:42"}};
  bool audit = PrivsLocked(auth.authid, "/nodes/" + node.name).count("Sys.Audit") != 0;
  bool recent = node.online || Now() - node.offline_since < kOfflineStatsExpiry;
  if (!audit || !recent) return entry;
  entry["maxcpu"] = node.cpus;
  entry["maxmem"] = node.memory_bytes;
  entry["maxdisk"] = node.rootfs_bytes;
  if (!node.online) {
    entry.erase("level");
    return entry;
  }
  std::int64_t mem = 2 * kGiB;
  int vcpus = 0;
  for (const auto& [vmid, vm] : vms_) {
    if (vm.node != node.name || !vm.running) continue;
    mem += std::stoll(vm.Str("memory").empty() ? "512" : SplitAny(vm.Str("memory"), "=,").back()) * kMiB;
    vcpus += std::stoi(vm.Str("cores").empty() ? "1" : vm.Str("cores"));
  }
  entry["mem"] = std::min(mem, node.memory_bytes);
  entry["cpu"] = std::min(1.0, 0.01 + 0.02 * vcpus / std::max(1, node.cpus));
  entry["disk"] = node.rootfs_bytes / 5;
  entry["uptime"] = duration_cast<seconds>(Now() - node.boot_time).count();
  return entry;
}

Reply Simulator::Impl::GetNodes(Call& call) {
  Json list = Json::array();
  std::vector<std::string> order = node_order_;
  std::shuffle(order.begin(), order.end(), call.rng);
  for (const auto& name : order) list.push_back(NodeEntry(nodes_.at(name), call.auth));
  return Ok(list);
}

Reply Simulator::Impl::GetNodeStatus(Call& call) {
  const NodeState& node = nodes_.at(call.Get("node"));
  Json entry = NodeEntry(node, call.auth);
  std::int64_t used = entry.value("mem", std::int64_t{0});
  return Ok({{"cpu", entry.value("cpu", 0.0)},
             {"memory",
              {{"total", node.memory_bytes},
               {"used", used},
               {"free", node.memory_bytes - used},
               {"available", node.memory_bytes - used}}},
             {"rootfs",
              {{"total", node.rootfs_bytes},
               {"used", node.rootfs_bytes / 5},
               {"avail", node.rootfs_bytes - node.rootfs_bytes / 5},
               {"free", node.rootfs_bytes - node.rootfs_bytes / 5}}},
             {"cpuinfo",
              {{"model", "Simulated CPU @ 3.00GHz"}, {"cpus", node.cpus}, {"cores", node.cpus / 2}, {"sockets", 1}}},
             {"loadavg", {"0.12", "0.08", "0.05"}},
             {"uptime", duration_cast<seconds>(Now() - node.boot_time).count()},
             {"kversion", "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2"},
             {"pveversion", "pve-manager/9.2.11/4d8a2f1c9b7e3a05"},
             {"current-kernel",
              {{"sysname", "Linux"}, {"release", "6.14.8-2-pve"}, {"version", "#1 SMP"}, {"machine", "x86_64"}}},
             {"boot-info", {{"mode", "efi"}, {"secureboot", 0}}}});
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

Reply Simulator::Impl::PostTicket(Call& call) {
  auto fail = [&] {
    Reply reply = Error(401, "authentication failure");
    reply.delay = auth_failure_delay_;
    return reply;
  };
  std::string userid = call.Get("username");
  if (call.Has("realm") && userid.find('@') == std::string::npos) userid += "@" + call.Get("realm");
  auto user = users_.find(userid);
  if (user == users_.end() || !user->second.enabled) return fail();
  std::string password = call.Get("password");
  bool ok = !user->second.password.empty() && password == user->second.password;
  if (!ok && password.rfind("PVE:", 0) == 0) {
    // Renewal: the password is a still-valid ticket of the same user.
    std::size_t sig = password.rfind("::");
    auto parts = SplitAny(password, ":");
    if (sig != std::string::npos && parts.size() >= 4 && PercentDecode(parts[1], false) == userid &&
        HmacBase64(ticket_key_, password.substr(0, sig)) == password.substr(sig + 2)) {
      std::int64_t age = NowUnix() - std::strtoll(parts[2].c_str(), nullptr, 16);
      ok = age > -300 && age < duration_cast<seconds>(kTicketLifetime).count();
    }
  }
  if (!ok) return fail();
  AuthContext auth;
  auth.authid = auth.userid = userid;
  if (call.Has("path")) {
    auto privs = PrivsLocked(userid, call.Get("path"));
    for (const auto& priv : SplitAny(call.Get("privs"), ",; ")) {
      if (privs.count(priv) == 0)
        return Error(403, fmt::format("Permission check failed ({}, {})", call.Get("path"), priv));
    }
  }
  std::string stamp = Hex8(static_cast<std::uint64_t>(NowUnix()));
  std::string escaped_user;
  for (char c : userid) escaped_user += c == ':' ? std::string("%3A") : std::string(1, c);
  std::string unsigned_ticket = fmt::format("PVE:{}:{}", escaped_user, stamp);
  std::string ticket = unsigned_ticket + "::" + HmacBase64(ticket_key_, unsigned_ticket);
  std::string csrf = stamp + ":" + HmacBase64(ticket_key_, "CSRF:" + stamp + ":" + userid);
  Json cap = Json::object();
  for (const auto& [group, path] : std::vector<std::pair<std::string, std::string>>{{"vms", "/vms"},
                                                                                    {"storage", "/storage"},
                                                                                    {"nodes", "/nodes"},
                                                                                    {"access", "/access"},
                                                                                    {"dc", "/"},
                                                                                    {"sdn", "/sdn"},
                                                                                    {"mapping", "/mapping"}}) {
    Json privs = Json::object();
    for (const auto& priv : PrivsLocked(userid, path)) privs[priv] = 1;
    cap[group] = privs;
  }
  Json data = {{"username", userid}, {"ticket", ticket}, {"CSRFPreventionToken", csrf}, {"cap", cap}};
  if (PrivsLocked(userid, "/").count("Sys.Audit") != 0) data["clustername"] = cluster_name_;
  return Ok(data);
}

Reply Simulator::Impl::GetPermissions(Call& call) {
  std::string target = call.Get("userid", call.auth.authid);
  if (target != call.auth.authid) {
    bool own_token = target.rfind(call.auth.userid + "!", 0) == 0 && call.auth.tokenname.empty();
    if (!own_token && !HasPriv(call.auth, "/access", "Sys.Audit")) {
      return Error(403, "Permission check failed (/access, Sys.Audit)");
    }
  }
  std::vector<std::string> paths;
  if (call.Has("path")) {
    paths = {call.Get("path")};
  } else {
    paths = {"/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"};
    for (const auto& acl : acls_) {
      if (std::find(paths.begin(), paths.end(), acl.path) == paths.end()) paths.push_back(acl.path);
    }
  }
  Json data = Json::object();
  for (const auto& path : paths) {
    auto privs = PrivsLocked(target, path);
    if (privs.empty()) continue;
    Json entry = Json::object();
    for (const auto& priv : privs) entry[priv] = 1;
    data[path] = entry;
  }
  return Ok(data);
}

// ---- storage ----

namespace {

std::string VolumePath(const StorageState& storage, const Volume& volume) {
  std::string name = volume.volid.substr(volume.volid.find(':') + 1);
  if (volume.content == "iso") return storage.path + "/template/iso/" + name.substr(4);
  if (volume.content == "vztmpl") return storage.path + "/template/cache/" + name.substr(7);
  if (volume.content == "import") return storage.path + "/import/" + name.substr(7);
  if (storage.FileBased()) return storage.path + "/images/" + name;
  return "/dev/" + storage.id + "/" + name;
}

std::string NormalizeFilename(const std::string& filename) {
  std::string name =
      filename.substr(filename.find_last_of("/\\") == std::string::npos ? 0 : filename.find_last_of("/\\") + 1);
  for (auto& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '_';
  }
  return name;
}

bool ExtensionAllowed(const std::string& content, const std::string& filename) {
  static const std::regex iso_re(R"(.+\.(iso|img)$)", std::regex::icase);
  static const std::regex vztmpl_re(R"(.+\.tar\.(gz|xz|zst|bz2)$)", std::regex::icase);
  static const std::regex import_re(R"(.+\.(ova|ovf|qcow2|raw|vmdk|img)$)", std::regex::icase);
  if (content == "iso") return std::regex_match(filename, iso_re);
  if (content == "vztmpl") return std::regex_match(filename, vztmpl_re);
  return std::regex_match(filename, import_re);
}

std::string ContentDir(const std::string& content) { return content == "vztmpl" ? "vztmpl" : content; }

}  // namespace

Json Simulator::Impl::StorageStatus(const StorageState& storage, const std::string& node) const {
  bool enabled = storage.EnabledOn(node);
  Json entry = {{"storage", storage.id},
                {"type", storage.type},
                {"content", Join(storage.content, ",")},
                {"shared", storage.shared ? 1 : 0},
                {"enabled", enabled ? 1 : 0},
                {"active", enabled ? 1 : 0},
                {"total", 0},
                {"used", 0},
                {"avail", 0}};
  if (enabled) {
    std::int64_t used = UsedBytesLocked(storage, node);
    entry["total"] = storage.size_bytes;
    entry["used"] = used;
    entry["avail"] = std::max<std::int64_t>(0, storage.size_bytes - used);
    if (storage.size_bytes > 0) {
      entry["used_fraction"] = static_cast<double>(used) / static_cast<double>(storage.size_bytes);
    }
  }
  return entry;
}

Reply Simulator::Impl::GetStorageConfig(Call& call) {
  Json list = Json::array();
  std::vector<std::string> order = storage_order_;
  std::shuffle(order.begin(), order.end(), call.rng);
  for (const auto& id : order) {
    const auto& storage = storages_.at(id);
    if (call.Has("type") && storage.type != call.Get("type")) continue;
    if (!HasPriv(call.auth, "/storage/" + id, "Datastore.Audit") &&
        !HasPriv(call.auth, "/storage/" + id, "Datastore.AllocateSpace")) {
      continue;
    }
    Json entry = {
        {"storage", id}, {"type", storage.type}, {"content", Join(storage.content, ",")}, {"digest", storage.digest}};
    if (!storage.path.empty()) entry["path"] = storage.path;
    if (storage.type == "lvmthin") {
      entry["vgname"] = "pve";
      entry["thinpool"] = "data";
    } else if (storage.type == "lvm") {
      entry["vgname"] = storage.id;
    }
    if (storage.type == "nfs") {
      entry["server"] = "10.0.0.100";
      entry["export"] = "/export/" + id;
    }
    if (storage.shared) entry["shared"] = 1;
    if (storage.disabled) entry["disable"] = 1;
    if (!storage.nodes.empty()) entry["nodes"] = Join({storage.nodes.begin(), storage.nodes.end()}, ",");
    list.push_back(entry);
  }
  return Ok(list);
}

Reply Simulator::Impl::GetNodeStorage(Call& call) {
  const std::string node = call.Get("node");
  if (call.Has("storage") && storages_.count(call.Get("storage")) == 0) {
    return ParamError1("storage", "No such storage.");
  }
  Json list = Json::array();
  std::vector<std::string> order = storage_order_;
  std::shuffle(order.begin(), order.end(), call.rng);
  for (const auto& id : order) {
    const auto& storage = storages_.at(id);
    if (call.Has("storage") && id != call.Get("storage")) continue;
    if (!HasPriv(call.auth, "/storage/" + id, "Datastore.Audit") &&
        !HasPriv(call.auth, "/storage/" + id, "Datastore.AllocateSpace")) {
      continue;
    }
    bool enabled = storage.EnabledOn(node);
    if (call.Has("content")) {
      bool all = true;
      for (const auto& kind : SplitAny(call.Get("content"), ",;")) all = all && storage.HasContent(kind);
      if (!all || !enabled) continue;
    }
    if (call.Has("enabled") && call.Flag("enabled") && !enabled) continue;
    if (call.Has("target") && !storage.EnabledOn(call.Get("target"))) continue;
    Json entry = StorageStatus(storage, node);
    if (call.Flag("format")) {
      entry["format"] =
          Json::array({storage.FileBased() ? Json({{"raw", 1}, {"qcow2", 1}, {"vmdk", 1}}) : Json({{"raw", 1}}),
                       storage.FileBased() ? "qcow2" : "raw"});
      entry["select_existing"] = storage.FileBased() ? 0 : 1;
    }
    list.push_back(entry);
  }
  return Ok(list);
}

Reply Simulator::Impl::GetStorageStatus(Call& call) {
  auto it = storages_.find(call.Get("storage"));
  if (it == storages_.end()) return ParamError1("storage", "No such storage.");
  Json entry = StorageStatus(it->second, call.Get("node"));
  entry.erase("storage");
  entry.erase("used_fraction");
  return Ok(entry);
}

Reply Simulator::Impl::GetContent(Call& call) {
  const std::string node = call.Get("node");
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(call.Get("storage"), node, &storage)) return *failure;
  std::string scope = ScopeOf(*storage, node);
  std::vector<const Volume*> found;
  for (const auto& volume : volumes_) {
    if (volume.storage != storage->id || volume.scope != scope) continue;
    if (call.Has("content") && volume.content != call.Get("content")) continue;
    if (call.Has("vmid") && volume.vmid != call.Int("vmid")) continue;
    found.push_back(&volume);
  }
  std::sort(found.begin(), found.end(),
            [](const Volume* a, const Volume* b) { return Lower(a->volid) < Lower(b->volid); });
  Json list = Json::array();
  for (const auto* volume : found) {
    Json entry = {{"volid", volume->volid},
                  {"content", volume->content},
                  {"format", volume->format},
                  {"size", volume->size},
                  {"ctime", volume->ctime}};
    if (volume->vmid != 0) {
      entry["vmid"] = volume->vmid;
      entry["used"] = volume->content == "images" && storage->thin ? 0 : volume->size;
    }
    list.push_back(entry);
  }
  return Ok(list);
}

Reply Simulator::Impl::GetVolume(Call& call) {
  const std::string node = call.Get("node");
  std::string storage_id = call.Get("storage");
  std::string volume = call.Get("volume");
  std::string volid = volume;
  if (std::size_t colon = volume.find(':'); colon != std::string::npos) {
    if (volume.substr(0, colon) != storage_id) {
      return ParamError1("volume",
                         fmt::format("storage ID mismatch ({} != {})\n", volume.substr(0, colon), storage_id));
    }
  } else {
    volid = storage_id + ":" + volume;
  }
  if (!HasPriv(call.auth, "/storage/" + storage_id, "Datastore.Audit") &&
      !HasPriv(call.auth, "/storage/" + storage_id, "Datastore.AllocateSpace")) {
    return Error(
        403, fmt::format("Permission check failed (/storage/{}, Datastore.Audit|Datastore.AllocateSpace)", storage_id));
  }
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(storage_id, node, &storage)) return *failure;
  Volume* found = FindVolumeLocked(volid, node);
  if (found == nullptr) return Error(500, fmt::format("volume_size_info on '{}' failed - no format", volid));
  return Ok({{"path", VolumePath(*storage, *found)},
             {"size", found->size},
             {"used", found->size},
             {"format", found->format}});
}

Reply Simulator::Impl::DeleteVolume(Call& call) {
  const std::string node = call.Get("node");
  std::string storage_id = call.Get("storage");
  std::string volid = call.Get("volume");
  if (volid.find(':') == std::string::npos) volid = storage_id + ":" + volid;
  if (!HasPriv(call.auth, "/storage/" + storage_id, "Datastore.Allocate")) {
    return Error(403, fmt::format("Permission check failed (/storage/{}, Datastore.Allocate)", storage_id));
  }
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(storage_id, node, &storage)) return *failure;
  Volume* volume = FindVolumeLocked(volid, node);
  int owner = volume != nullptr ? volume->vmid : 0;
  std::string scope = ScopeOf(*storage, node);
  Task& task = NewTaskLocked(node, "imgdel", owner != 0 ? fmt::format("{}@{}", owner, storage_id) : storage_id,
                             call.auth, DurationOf("imgdel"));
  task.finish = [this, volid, scope](Task& t) -> std::string {
    auto it = std::find_if(volumes_.begin(), volumes_.end(),
                           [&](const Volume& v) { return v.volid == volid && v.scope == scope; });
    if (it == volumes_.end()) return fmt::format("volume '{}' does not exist", volid);
    t.log.push_back(fmt::format("Removed volume '{}'", volid));
    volumes_.erase(it);
    return "";
  };
  if (call.Has("delay") && DurationOf("imgdel") <= seconds(call.Int("delay"))) {
    task.endtime = Now();
    FinishTaskLocked(task);
    if (task.exitstatus == "OK") return Ok(nullptr);
    return Error(500, task.exitstatus);
  }
  return Ok(task.upid);
}

Reply Simulator::Impl::PostDownloadUrl(Call& call) {
  const std::string node = call.Get("node");
  const std::string content = call.Get("content");
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(call.Get("storage"), node, &storage)) return *failure;
  if (!storage->FileBased()) {
    return Error(500, fmt::format("can't upload to storage type '{}', not a file based storage!", storage->type));
  }
  if (!storage->HasContent(content)) {
    return Error(500, fmt::format("storage '{}' is not configured for content-type '{}'", storage->id, content));
  }
  std::string filename = NormalizeFilename(call.Get("filename"));
  if (!ExtensionAllowed(content, filename)) return ParamError1("filename", "wrong file extension");
  std::string url = call.Get("url");
  std::string volid = fmt::format("{}:{}/{}", storage->id, ContentDir(content), filename);
  std::string scope = ScopeOf(*storage, node);
  std::string storage_id = storage->id;
  std::string algorithm = call.Get("checksum-algorithm");
  std::string checksum = Lower(call.Get("checksum"));
  Volume probe;
  probe.volid = volid;
  probe.content = content;
  std::string dest = VolumePath(*storage, probe);
  Task& task = NewTaskLocked(node, "download", filename, call.auth, DurationOf("download"));
  // The existence check happens when the task starts.
  if (Volume* existing = FindVolumeLocked(volid, node); existing != nullptr) {
    if (checksum.empty()) {
      task.forced_error = fmt::format("refusing to override existing file '{}'", dest);
    } else {
      auto known = existing->checksums.find(algorithm);
      if (known == existing->checksums.end() || known->second == checksum) {
        existing->checksums[algorithm] = checksum;
        task.log.push_back("OK, got correct file already, no need to download");
        task.endtime = Now();
        FinishTaskLocked(task);
        return Ok(task.upid);
      }
      task.forced_error = fmt::format("checksum mismatch: got '{}' != expect '{}', aborting", known->second, checksum);
    }
  }
  DownloadSpec spec;
  if (auto it = downloads_.find(url); it != downloads_.end()) spec = it->second;
  task.log.push_back(fmt::format("downloading {} to {}", url, dest));
  task.finish = [this, spec, url, dest, volid, scope, storage_id, content, algorithm, checksum,
                 node](Task& t) -> std::string {
    if (!spec.fail.empty()) return "download failed: " + spec.fail;
    const auto& storage = storages_.at(storage_id);
    std::int64_t free = storage.size_bytes - UsedBytesLocked(storage, node);
    if (spec.size > free) return fmt::format("download failed: {}: No space left on device", dest + ".tmp_dwnl");
    t.log.push_back(fmt::format("Length: {} [application/x-iso9660-image]", spec.size));
    Volume volume;
    volume.volid = volid;
    volume.storage = storage_id;
    volume.scope = scope;
    volume.content = content;
    volume.format = content == "iso" ? "iso" : content == "vztmpl" ? "tgz" : "raw";
    volume.size = spec.size;
    volume.ctime = NowUnix();
    volume.checksums = spec.checksums;
    if (!checksum.empty()) {
      auto known = spec.checksums.find(algorithm);
      if (known != spec.checksums.end() && known->second != checksum) {
        return fmt::format("checksum mismatch: got '{}' != expect '{}', aborting", known->second, checksum);
      }
      t.log.push_back(fmt::format("calculating checksum of '{}'...", dest + ".tmp_dwnl"));
      t.log.push_back(fmt::format("checksum verified"));
      volume.checksums[algorithm] = checksum;
    }
    // Two downloads of one name both rename into place: the later one wins.
    volumes_.erase(std::remove_if(volumes_.begin(), volumes_.end(),
                                  [&](const Volume& v) { return v.volid == volid && v.scope == scope; }),
                   volumes_.end());
    volumes_.push_back(std::move(volume));
    t.log.push_back(fmt::format("download of '{}' to '{}' finished", url, dest));
    return "";
  };
  return Ok(task.upid);
}

Reply Simulator::Impl::PostUpload(Call& call) {
  const std::string node = call.Get("node");
  const std::string content = call.Get("content");
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(call.Get("storage"), node, &storage)) return *failure;
  if (!storage->HasContent(content)) {
    return Error(500, fmt::format("storage '{}' does not support '{}' content", storage->id, content));
  }
  if (!storage->FileBased()) {
    return Error(500, fmt::format("can't upload to storage type '{}', not a file based storage!", storage->type));
  }
  std::string filename = NormalizeFilename(call.upload_filename);
  if (!ExtensionAllowed(content, filename)) return ParamError1("filename", "wrong file extension");
  std::string volid = fmt::format("{}:{}/{}", storage->id, ContentDir(content), filename);
  std::string scope = ScopeOf(*storage, node);
  std::string storage_id = storage->id;
  std::string algorithm = call.Get("checksum-algorithm");
  std::string checksum = Lower(call.Get("checksum"));
  Task& task = NewTaskLocked(node, "imgcopy", "", call.auth, DurationOf("imgcopy"));
  std::string data = std::move(call.upload_data);
  task.log.push_back(fmt::format("starting file import from: /var/tmp/pveupload-{}", DigestHex(EVP_md5(), volid)));
  task.finish = [this, volid, scope, storage_id, content, algorithm, checksum, data = std::move(data),
                 node](Task& t) -> std::string {
    Volume volume;
    volume.volid = volid;
    volume.storage = storage_id;
    volume.scope = scope;
    volume.content = content;
    volume.format = content == "iso" ? "iso" : "raw";
    volume.size = static_cast<std::int64_t>(data.size());
    volume.ctime = NowUnix();
    volume.data = data;
    for (const auto& [name, md] : std::vector<std::pair<std::string, const EVP_MD*>>{
             {"md5", EVP_md5()}, {"sha1", EVP_sha1()}, {"sha256", EVP_sha256()}, {"sha512", EVP_sha512()}}) {
      volume.checksums[name] = DigestHex(md, data);
    }
    if (!checksum.empty()) {
      auto known = volume.checksums.find(algorithm);
      if (known != volume.checksums.end() && known->second != checksum) {
        return fmt::format("checksum mismatch: got '{}' != expect '{}'", known->second, checksum);
      }
    }
    const auto& storage = storages_.at(storage_id);
    // The upload overwrites an existing file silently.
    volumes_.erase(std::remove_if(volumes_.begin(), volumes_.end(),
                                  [&](const Volume& v) { return v.volid == volid && v.scope == scope; }),
                   volumes_.end());
    if (volume.size > storage.size_bytes - UsedBytesLocked(storage, node))
      return "import failed: No space left on device";
    t.log.push_back(fmt::format("target node: {}", node));
    t.log.push_back(fmt::format("file size is: {}", volume.size));
    volumes_.push_back(std::move(volume));
    t.log.push_back("finished file import successfully");
    return "";
  };
  return Ok(task.upid);
}

// ---- VMs ----

namespace {

bool IsDriveKey(const std::string& key) {
  static const std::regex re(
      R"(^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$)");
  return std::regex_match(key, re);
}

// Drive keys in PVE's valid_drive_names order.
std::vector<std::string> DriveOrder() {
  std::vector<std::string> order;
  for (int i = 0; i <= 3; ++i) order.push_back(fmt::format("ide{}", i));
  for (int i = 0; i <= 30; ++i) order.push_back(fmt::format("scsi{}", i));
  for (int i = 0; i <= 15; ++i) order.push_back(fmt::format("virtio{}", i));
  for (int i = 0; i <= 5; ++i) order.push_back(fmt::format("sata{}", i));
  return order;
}

std::map<std::string, std::string> ParseDrive(const std::string& value) {
  std::map<std::string, std::string> out;
  for (const auto& [key, sub] : SplitPropertyString(value)) out[key.empty() ? "file" : key] = sub;
  if (out.count("volume") != 0 && out.count("file") == 0) out["file"] = out["volume"];
  return out;
}

std::string PrintDrive(const std::map<std::string, std::string>& drive) {
  std::string out = drive.count("file") != 0 ? drive.at("file") : "";
  for (const auto& [key, value] : drive) {
    if (key == "file" || key == "volume") continue;
    out += "," + key + "=" + value;
  }
  return out;
}

bool IsCdrom(const std::string& value) {
  auto drive = ParseDrive(value);
  return drive.count("media") != 0 && drive.at("media") == "cdrom";
}

std::string NormalizeTags(const std::string& value) {
  std::set<std::string> tags;
  for (const auto& tag : SplitAny(value, ",; \t")) tags.insert(Lower(tag));
  return Join({tags.begin(), tags.end()}, ";");
}

std::int64_t MemoryMiB(const Vm& vm) {
  std::string memory = vm.Str("memory");
  if (memory.empty()) return 512;
  for (const auto& [key, value] : SplitPropertyString(memory)) {
    if (key.empty() || key == "current") return std::stoll(value);
  }
  return 512;
}

const std::regex& NewDiskRe() {
  static const std::regex re(R"(^(([^/:\s]+):)?(\d+(\.\d+)?)$)");
  return re;
}

}  // namespace

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

std::optional<Reply> Simulator::Impl::CheckVmOptionPermissions(const Call& call, int vmid,
                                                               const std::map<std::string, std::string>& options,
                                                               bool create) {
  static const std::set<std::string> cpu = {"cores", "sockets",  "cpu",      "numa",
                                            "vcpus", "cpulimit", "cpuunits", "affinity"};
  static const std::set<std::string> memory = {"memory", "balloon", "shares"};
  static const std::set<std::string> hwtype = {"machine", "scsihw", "smbios1", "vga",  "bios",     "acpi",    "kvm",
                                               "tablet",  "arch",   "audio0",  "rng0", "watchdog", "ivshmem", "tdf"};
  static const std::set<std::string> options_set = {
      "name",      "onboot", "agent",          "ostype",  "description", "protection",
      "startup",   "tags",   "localtime",      "freeze",  "keyboard",    "autostart",
      "startdate", "reboot", "vmstatestorage", "vmgenid", "hotplug",     "template"};
  static const std::set<std::string> cloudinit = {"cicustom",   "ciuser",       "cipassword", "sshkeys",
                                                  "nameserver", "searchdomain", "citype",     "ciupgrade"};
  const std::string path = fmt::format("/vms/{}", vmid);
  auto privs = PrivsLocked(call.auth.authid, path);
  bool root = call.auth.authid == "root@pam";
  auto need = [&](const std::string& priv) -> std::optional<Reply> {
    if (privs.count(priv) != 0) return std::nullopt;
    return Error(403, fmt::format("Permission check failed ({}, {})", path, priv));
  };
  if (create) {
    if (call.Has("pool")) {
      if (!HasPriv(call.auth, "/pool/" + call.Get("pool"), "VM.Allocate")) {
        return Error(403, fmt::format("Permission check failed (/pool/{}, VM.Allocate)", call.Get("pool")));
      }
    } else if (auto denied = need("VM.Allocate")) {
      return denied;
    }
  }
  static const std::regex numbered(R"(^(net|hostpci|ipconfig|usb|serial|parallel|numa|unused|virtiofs)(\d+)$)");
  for (const auto& [key, value] : options) {
    std::smatch match;
    std::string family = std::regex_match(key, match, numbered) ? match[1].str() : "";
    std::optional<Reply> denied;
    if (cpu.count(key) != 0 || family == "numa") {
      denied = need("VM.Config.CPU");
    } else if (memory.count(key) != 0) {
      denied = need("VM.Config.Memory");
    } else if (hwtype.count(key) != 0 || family == "usb" || family == "serial" || family == "parallel") {
      denied = need("VM.Config.HWType");
    } else if (options_set.count(key) != 0) {
      denied = need("VM.Config.Options");
    } else if (key == "boot" || key == "bootdisk" || family == "unused") {
      denied = need("VM.Config.Disk");
    } else if (IsDriveKey(key) || key == "cdrom") {
      std::string file = ParseDrive(value)["file"];
      if (file.size() > 10 && file.substr(file.size() - 10) == ":cloudinit") {
        denied = need("VM.Config.Cloudinit");
        if (!denied) denied = need("VM.Config.CDROM");
      } else if (key == "cdrom" || IsCdrom(value)) {
        denied = need("VM.Config.CDROM");
      } else {
        denied = need("VM.Config.Disk");
      }
    } else if (family == "net") {
      denied = need("VM.Config.Network");
      std::string bridge = ParseDrive(value)["bridge"];
      if (!denied && !bridge.empty()) {
        std::string sdn = "/sdn/zones/localnetwork/" + bridge;
        std::string tag = ParseDrive(value)["tag"];
        if (!tag.empty()) sdn += "/" + tag;
        if (!HasPriv(call.auth, sdn, "SDN.Use")) {
          denied = Error(403, fmt::format("Permission check failed ({}, SDN.Use)", sdn));
        }
      }
    } else if (family == "hostpci") {
      auto pci = ParseDrive(value);
      if (pci.count("mapping") != 0 && pci.count("romfile") == 0) {
        denied = need("VM.Config.HWType");
        std::string mapping_path = "/mapping/pci/" + pci["mapping"];
        if (!denied && !HasPriv(call.auth, mapping_path, "Mapping.Use")) {
          denied = Error(403, fmt::format("Permission check failed ({}, Mapping.Use)", mapping_path));
        }
      } else if (!root) {
        denied = Error(500, fmt::format("only root can set '{}' config", key));
      }
    } else if (cloudinit.count(key) != 0 || family == "ipconfig") {
      if (privs.count("VM.Config.Cloudinit") == 0 && privs.count("VM.Config.Network") == 0) {
        denied = Error(403, fmt::format("Permission check failed ({}, VM.Config.Cloudinit|VM.Config.Network)", path));
      }
    } else if (!root) {
      denied = Error(500, fmt::format("only root can set '{}' config", key));
    }
    if (denied) return denied;
  }
  return std::nullopt;
}

std::optional<Reply> Simulator::Impl::CheckDriveStorages(const Call& call, const std::string& node,
                                                         const std::map<std::string, std::string>& options) {
  for (const auto& [key, value] : options) {
    if (!IsDriveKey(key)) continue;
    auto drive = ParseDrive(value);
    if (drive.count("file") == 0 || drive["file"].empty()) return ParamError1(key, "unable to parse drive options");
    std::string file = drive["file"];
    std::smatch match;
    std::string storage_id;
    if (std::regex_match(file, match, NewDiskRe())) {
      storage_id = match[2].matched ? match[2].str() : call.Get("storage");
      if (storage_id.empty())
        return ParamError1(key, "missing storage for the new disk (set 'storage' or STORAGE:SIZE)");
    } else if (file.size() > 10 && file.substr(file.size() - 10) == ":cloudinit") {
      storage_id = file.substr(0, file.size() - 10);
    } else {
      continue;
    }
    const StorageState* storage = nullptr;
    if (auto failure = StorageOnNode(storage_id, node, &storage)) return failure;
    if (!storage->HasContent("images")) {
      return ParamError1("storage", fmt::format("storage '{}' does not support vm images", storage_id));
    }
    if (!HasPriv(call.auth, "/storage/" + storage_id, "Datastore.AllocateSpace")) {
      return Error(403, fmt::format("Permission check failed (/storage/{}, Datastore.AllocateSpace)", storage_id));
    }
  }
  return std::nullopt;
}

std::optional<std::string> Simulator::Impl::AllocateDiskLocked(Vm& vm, const std::string& key,
                                                               const std::string& storage_id, double size_gib,
                                                               const std::string& format, bool cloudinit,
                                                               std::vector<std::string>& allocated,
                                                               std::string& volid) {
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(storage_id, vm.node, &storage)) return failure->message;
  std::string scope = ScopeOf(*storage, vm.node);
  std::int64_t size = cloudinit ? 4 * kMiB : static_cast<std::int64_t>(size_gib * kGiB);
  std::int64_t free = storage->size_bytes - UsedBytesLocked(*storage, vm.node);
  if (!storage->thin && size > free) {
    return fmt::format("{}: not enough free space ({} < {})", key, std::max<std::int64_t>(free, 0), size);
  }
  std::string fmt_name = format.empty() ? (storage->FileBased() ? "qcow2" : "raw") : format;
  std::string name;
  if (cloudinit) {
    name = fmt::format("vm-{}-cloudinit", vm.vmid);
  } else {
    for (int n = 0;; ++n) {
      name = fmt::format("vm-{}-disk-{}", vm.vmid, n);
      bool taken = std::any_of(volumes_.begin(), volumes_.end(), [&](const Volume& v) {
        return v.storage == storage_id && v.scope == scope && v.volid.find(name) != std::string::npos;
      });
      if (!taken) break;
    }
  }
  Volume volume;
  volume.volid = storage->FileBased() ? fmt::format("{}:{}/{}.{}", storage_id, vm.vmid, name, fmt_name)
                                      : fmt::format("{}:{}", storage_id, name);
  volume.storage = storage_id;
  volume.scope = scope;
  volume.content = "images";
  volume.format = fmt_name;
  volume.size = size;
  volume.vmid = vm.vmid;
  volume.ctime = NowUnix();
  volid = volume.volid;
  allocated.push_back(volume.volid);
  volumes_.push_back(std::move(volume));
  return std::nullopt;
}

std::string Simulator::Impl::ApplyConfigLocked(Vm& vm, const std::map<std::string, std::string>& options,
                                               const std::vector<std::string>& deletes, std::mt19937_64& rng,
                                               std::vector<std::string>* log) {
  const Endpoint* create = schema_->Find("POST", "/nodes/{node}/qemu");
  std::vector<std::string> allocated;
  auto fail = [&](const std::string& error) {
    for (const auto& volid : allocated) {
      volumes_.erase(
          std::remove_if(volumes_.begin(), volumes_.end(), [&](const Volume& v) { return v.volid == volid; }),
          volumes_.end());
    }
    return error;
  };
  static const std::set<std::string> not_config = {"node",
                                                   "vmid",
                                                   "start",
                                                   "storage",
                                                   "pool",
                                                   "force",
                                                   "unique",
                                                   "archive",
                                                   "bwlimit",
                                                   "live-restore",
                                                   "import-working-storage",
                                                   "delete",
                                                   "revert",
                                                   "digest",
                                                   "skiplock",
                                                   "background_delay"};
  std::string default_storage = options.count("storage") != 0 ? options.at("storage") : "";
  for (const auto& [raw_key, raw_value] : options) {
    if (not_config.count(raw_key) != 0) continue;
    std::string key = raw_key == "cdrom" ? "ide2" : raw_key;
    std::string value = raw_value;
    if (raw_key == "cdrom" && value.find("media=") == std::string::npos) value += ",media=cdrom";
    if (IsDriveKey(key)) {
      auto drive = ParseDrive(value);
      std::string file = drive["file"];
      std::smatch match;
      if (std::regex_match(file, match, NewDiskRe())) {
        std::string storage_id = match[2].matched ? match[2].str() : default_storage;
        std::string volid;
        if (auto error = AllocateDiskLocked(vm, key, storage_id, std::stod(match[3]), drive["format"], false, allocated,
                                            volid)) {
          return fail(*error);
        }
        drive["file"] = volid;
        drive.erase("format");
        drive["size"] = FormatSize(volumes_.back().size);
        if (log != nullptr) {
          log->push_back(fmt::format("{}: successfully created disk '{}'", key, PrintDrive(drive)));
        }
      } else if (file.size() > 10 && file.substr(file.size() - 10) == ":cloudinit") {
        std::string volid;
        if (auto error = AllocateDiskLocked(vm, key, file.substr(0, file.size() - 10), 0, drive["format"], true,
                                            allocated, volid)) {
          return fail(*error);
        }
        drive = {{"file", volid}, {"media", "cdrom"}};
      } else if (file != "none" && file != "cdrom") {
        Volume* volume = FindVolumeLocked(file, vm.node);
        if (volume == nullptr) return fail(fmt::format("volume {} does not exist", file));
        drive["size"] = FormatSize(volume->size);
      }
      value = PrintDrive(drive);
    } else if (key.rfind("net", 0) == 0 && key.size() > 3 && std::isdigit(static_cast<unsigned char>(key[3]))) {
      std::string model, mac;
      std::map<std::string, std::string> rest;
      for (const auto& [sub_key, sub_value] : SplitPropertyString(value)) {
        if (sub_key.empty() || sub_key == "model") {
          model = sub_value;
        } else if (sub_key == "macaddr") {
          mac = sub_value;
        } else if (rest.count(sub_key) == 0 && sub_key != "bridge" && sub_key != "firewall" && sub_key != "link_down" &&
                   sub_key != "mtu" && sub_key != "queues" && sub_key != "rate" && sub_key != "tag" &&
                   sub_key != "trunks") {
          model = sub_key;  // "<model>=<mac>"
          mac = sub_value;
        } else {
          rest[sub_key] = sub_value;
        }
      }
      if (mac.empty()) mac = GenerateMac(rng);
      value = model + "=" + mac;
      for (const auto& [sub_key, sub_value] : rest) value += "," + sub_key + "=" + sub_value;
    } else if (key == "tags") {
      value = NormalizeTags(value);
    }
    const Json* schema = create != nullptr ? schema_->ParamSchema(*create, raw_key) : nullptr;
    std::string type = schema != nullptr ? schema->value("type", std::string("string")) : "string";
    if (type == "integer" || type == "boolean") {
      vm.config[key] = std::stoll(value);
    } else if (type == "number") {
      vm.config[key] = std::stod(value);
    } else {
      vm.config[key] = value;
    }
  }
  for (const auto& key : deletes) {
    auto it = vm.config.find(key);
    if (it == vm.config.end()) continue;
    if (IsDriveKey(key) && it->second.is_string() && !IsCdrom(it->second.get<std::string>())) {
      // A detached disk is kept as unusedN, as PVE does.
      for (int n = 0; n <= 255; ++n) {
        std::string unused = fmt::format("unused{}", n);
        if (vm.config.count(unused) == 0) {
          vm.config[unused] = ParseDrive(it->second.get<std::string>())["file"];
          break;
        }
      }
    }
    vm.config.erase(it);
  }
  return "";
}

void Simulator::Impl::FinalizeCreateLocked(Vm& vm, std::mt19937_64& rng) {
  if (vm.config.count("smbios1") == 0) vm.config["smbios1"] = "uuid=" + Uuid(rng);
  if (vm.config.count("vmgenid") == 0) vm.config["vmgenid"] = Uuid(rng);
  vm.config["meta"] = fmt::format("creation-qemu=9.2.0,ctime={}", NowUnix());
  if (vm.config.count("boot") == 0) {
    std::string disk, cdrom, net;
    for (const auto& key : DriveOrder()) {
      auto it = vm.config.find(key);
      if (it == vm.config.end()) continue;
      bool is_cdrom = IsCdrom(it->second.get<std::string>());
      if (is_cdrom && cdrom.empty()) cdrom = key;
      if (!is_cdrom && disk.empty()) disk = key;
    }
    for (int i = 0; i <= 31 && net.empty(); ++i) {
      if (vm.config.count(fmt::format("net{}", i)) != 0) net = fmt::format("net{}", i);
    }
    std::vector<std::string> order;
    for (const auto& device : {disk, cdrom, net}) {
      if (!device.empty()) order.push_back(device);
    }
    if (!order.empty()) vm.config["boot"] = "order=" + Join(order, ";");
  }
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

Reply Simulator::Impl::GetNodeNetwork(Call& call) {
  // The scenario knows only Linux bridges, so every other interface type lists nothing.
  const std::string type = call.Get("type", "any_bridge");
  Json list = Json::array();
  if (type != "bridge" && type != "any_bridge" && type != "any_local_bridge" && type != "include_sdn") {
    return Ok(list);
  }
  const NodeState& node = nodes_.at(call.Get("node"));
  int priority = 3;
  for (const auto& bridge : node.bridges) {
    list.push_back({{"iface", bridge},
                    {"type", "bridge"},
                    {"method", "manual"},
                    {"method6", "manual"},
                    {"families", Json::array({"inet"})},
                    {"active", 1},
                    {"autostart", 1},
                    {"bridge_ports", ""},
                    {"bridge_stp", "off"},
                    {"bridge_fd", "0"},
                    {"priority", priority++}});
  }
  std::shuffle(list.begin(), list.end(), call.rng);
  return Ok(list);
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

// ---- tasks ----

namespace {

Json TaskEntry(const Task& task, TimePoint now) {
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
  (void)now;
  std::size_t bang = task.authid.find('!');
  if (bang != std::string::npos) {
    entry["user"] = task.authid.substr(0, bang);
    entry["tokenid"] = task.authid.substr(bang + 1);
  }
  if (!task.running) entry["exitstatus"] = task.exitstatus;
  return entry;
}

}  // namespace

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
  return Ok(TaskEntry(task, Now()));
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
    Json entry = TaskEntry(*task, Now());
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

// ---- simulator controls and inspection ----

Reply Simulator::Impl::HandleSim(const HttpRequest& request) {
  std::vector<std::string> parts = SplitAny(request.path, "/");  // "_sim", ...
  auto params = ParseForm(request.query);
  if (!request.body.empty()) {
    if (MediaType(request.Header("content-type")) == "application/json") {
      try {
        for (const auto& [key, value] : Json::parse(request.body).items()) {
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
    Json entry = TaskEntry(*task, Now());
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

void Simulator::Impl::SetFault(const std::string& pattern, FaultSpec spec) {
  std::lock_guard lock(mutex_);
  for (auto& [existing, existing_spec] : faults_) {
    if (existing == pattern) {
      existing_spec = spec;
      return;
    }
  }
  faults_.emplace_back(pattern, spec);
}

void Simulator::Impl::ClearFaults() {
  std::lock_guard lock(mutex_);
  faults_.clear();
}

void Simulator::Impl::FailNextTask(const std::string& type, const std::string& node, const std::string& error) {
  std::lock_guard lock(mutex_);
  task_failures_.push_back({type, node, error});
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

// ---- public API ----

Simulator::Simulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Simulator::~Simulator() {
  impl_->ticker_.request_stop();
  if (impl_->ticker_.joinable()) impl_->ticker_.join();
  impl_->server_.Stop();
}

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Start(SimulatorOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  OP_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Simulator>(new Simulator(std::move(impl)));
}

int Simulator::port() const { return impl_->server_.port(); }

std::string Simulator::base_url() const {
  std::string host = impl_->options_.bind_address;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return fmt::format("{}://{}:{}", impl_->options_.tls ? "https" : "http", host, port());
}

std::string Simulator::ca_certificate_pem() const { return impl_->tls_.certificate_pem; }
std::string Simulator::default_token_id() const { return impl_->default_token_id_; }
std::string Simulator::default_token_secret() const { return impl_->default_token_secret_; }
nlohmann::json Simulator::StateForTest() const { return impl_->State(); }
absl::Status Simulator::SetNodeOnline(const std::string& node, bool online) {
  return impl_->SetNodeOnline(node, online);
}
absl::Status Simulator::MigrateVm(int vmid, const std::string& to_node) { return impl_->MigrateVm(vmid, to_node); }
absl::Status Simulator::DeleteVmOutOfBand(int vmid) { return impl_->DeleteVmOutOfBand(vmid); }
void Simulator::SetFault(const std::string& endpoint_pattern, FaultSpec spec) {
  impl_->SetFault(endpoint_pattern, std::move(spec));
}
void Simulator::ClearFaults() { impl_->ClearFaults(); }
void Simulator::FailNextTask(const std::string& type, const std::string& node, const std::string& error) {
  impl_->FailNextTask(type, node, error);
}
std::uint64_t Simulator::RequestCount(const std::string& endpoint) const { return impl_->RequestCount(endpoint); }
absl::StatusOr<std::string> Simulator::VolumeContentForTest(const std::string& node, const std::string& volid) const {
  return impl_->VolumeContent(node, volid);
}

}  // namespace omni_proxmox::sim::pve
