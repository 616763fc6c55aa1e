// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/responses.h"

#include <fmt/format.h>

#include "pve/errors.h"
#include "pve/parse/json.h"
#include "pve/parse/upid.h"

namespace omni_proxmox::pve::parse {
namespace {

using nlohmann::json;

absl::Status Malformed(std::string_view what, std::string_view why) {
  return MakeError(ErrorKind::kOther, fmt::format("{}: unexpected response: {}", what, why));
}

absl::StatusOr<json> DataObject(std::string_view body, std::string_view what) {
  auto data = ParseEnvelope(body, what);
  if (!data.ok()) return data.status();
  if (!data->is_object()) return Malformed(what, "'data' is not an object");
  return data;
}

absl::StatusOr<json> DataArray(std::string_view body, std::string_view what) {
  auto data = ParseEnvelope(body, what);
  if (!data.ok()) return data.status();
  if (!data->is_array()) return Malformed(what, "'data' is not an array");
  return data;
}

// A VMID field: absent, or a value that is no VMID (negative, too large), reads as nullopt.
std::optional<Vmid> GetVmid(const json& o, const char* key) {
  const auto value = GetInt(o, key);
  if (!value || *value < 0 || *value > static_cast<std::int64_t>(kMaxVmid)) return std::nullopt;
  return static_cast<Vmid>(*value);
}

VmStatus VmStatusFrom(const json& o) {
  VmStatus vm;
  vm.vmid = GetVmid(o, "vmid").value_or(0);
  vm.name = GetString(o, "name");
  vm.status = GetString(o, "status");
  vm.qmp_status = GetString(o, "qmpstatus");
  vm.lock = GetString(o, "lock");
  vm.tags = GetString(o, "tags");
  vm.pid = GetInt(o, "pid");
  vm.cpus = GetInt(o, "cpus");
  vm.max_mem_bytes = GetInt(o, "maxmem");
  vm.mem_bytes = GetInt(o, "mem");
  vm.max_disk_bytes = GetInt(o, "maxdisk");
  vm.uptime_seconds = GetInt(o, "uptime");
  vm.cpu_fraction = GetDouble(o, "cpu");
  vm.agent = GetBool(o, "agent").value_or(false);
  return vm;
}

}  // namespace

std::vector<std::string> SplitCommaList(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

absl::StatusOr<Ticket> ParseTicket(std::string_view body) {
  constexpr std::string_view kWhat = "POST /access/ticket";
  auto data = DataObject(body, kWhat);
  if (!data.ok()) return data.status();
  Ticket t;
  t.username = GetString(*data, "username");
  t.ticket = GetString(*data, "ticket");
  t.csrf_token = GetString(*data, "CSRFPreventionToken");
  if (GetBool(*data, "NeedTFA").value_or(false)) {
    return MakeError(ErrorKind::kAuth,
                     "POST /access/ticket: the user requires two-factor authentication, which the provider cannot "
                     "answer; use an API token (tokenID/tokenSecret) instead");
  }
  if (t.ticket.empty() || t.csrf_token.empty()) return Malformed(kWhat, "missing 'ticket' or 'CSRFPreventionToken'");
  return t;
}

absl::StatusOr<VersionInfo> ParseVersion(std::string_view body) {
  auto data = DataObject(body, "GET /version");
  if (!data.ok()) return data.status();
  VersionInfo v;
  v.version = GetString(*data, "version");
  v.release = GetString(*data, "release");
  v.repoid = GetString(*data, "repoid");
  if (v.version.empty()) return Malformed("GET /version", "missing 'version'");
  return v;
}

absl::StatusOr<Permissions> ParsePermissions(std::string_view body) {
  auto data = ParseEnvelope(body, "GET /access/permissions");
  if (!data.ok()) return data.status();
  Permissions out;
  if (data->is_null()) return out;
  if (!data->is_object()) return Malformed("GET /access/permissions", "'data' is not an object");
  for (const auto& [path, privs] : data->items()) {
    auto& entry = out[path];
    if (!privs.is_object()) continue;
    for (const auto& [priv, propagate] : privs.items()) {
      entry[priv] = propagate.is_boolean() ? propagate.get<bool>() : ScalarText(propagate) != "0";
    }
  }
  return out;
}

absl::StatusOr<std::vector<Node>> ParseNodes(std::string_view body) {
  auto data = DataArray(body, "GET /nodes");
  if (!data.ok()) return data.status();
  std::vector<Node> out;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    Node n;
    n.name = GetString(o, "node");
    if (n.name.empty()) continue;
    std::string status = GetString(o, "status");
    n.status = status == "online"    ? NodeStatus::kOnline
               : status == "offline" ? NodeStatus::kOffline
                                     : NodeStatus::kUnknown;
    n.cpu_fraction = GetDouble(o, "cpu");
    n.max_cpu = GetInt(o, "maxcpu");
    n.mem_bytes = GetInt(o, "mem");
    n.max_mem_bytes = GetInt(o, "maxmem");
    n.disk_bytes = GetInt(o, "disk");
    n.max_disk_bytes = GetInt(o, "maxdisk");
    n.uptime_seconds = GetInt(o, "uptime");
    out.push_back(std::move(n));
  }
  return out;
}

absl::StatusOr<std::vector<ClusterResource>> ParseClusterResources(std::string_view body) {
  auto data = DataArray(body, "GET /cluster/resources");
  if (!data.ok()) return data.status();
  std::vector<ClusterResource> out;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    ClusterResource r;
    r.id = GetString(o, "id");
    r.type = GetString(o, "type");
    r.node = GetString(o, "node");
    r.status = GetString(o, "status");
    r.vmid = GetVmid(o, "vmid");
    r.name = GetString(o, "name");
    r.tags = GetString(o, "tags");
    r.lock = GetString(o, "lock");
    r.is_template = GetBool(o, "template").value_or(false);
    r.max_mem_bytes = GetInt(o, "maxmem");
    r.mem_bytes = GetInt(o, "mem");
    r.max_disk_bytes = GetInt(o, "maxdisk");
    r.disk_bytes = GetInt(o, "disk");
    r.cpu_fraction = GetDouble(o, "cpu");
    r.max_cpu = GetInt(o, "maxcpu");
    r.uptime_seconds = GetInt(o, "uptime");
    r.storage = GetString(o, "storage");
    r.plugin_type = GetString(o, "plugintype");
    r.content = SplitCommaList(GetString(o, "content"));
    r.shared = GetBool(o, "shared").value_or(false);
    r.pool = GetString(o, "pool");
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<Vmid> ParseNextId(std::string_view body) {
  auto data = ParseEnvelope(body, "GET /cluster/nextid");
  if (!data.ok()) return data.status();
  json wrapper = {{"id", *data}};
  auto id = GetInt(wrapper, "id");
  if (!id.has_value() || *id < kMinVmid || *id > static_cast<std::int64_t>(kMaxVmid)) {
    return Malformed("GET /cluster/nextid", fmt::format("'data' is not a VMID: {}", data->dump()));
  }
  return static_cast<Vmid>(*id);
}

absl::StatusOr<std::vector<NodeStorage>> ParseNodeStorages(std::string_view body) {
  auto data = DataArray(body, "GET /nodes/{node}/storage");
  if (!data.ok()) return data.status();
  std::vector<NodeStorage> out;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    NodeStorage s;
    s.storage = GetString(o, "storage");
    if (s.storage.empty()) continue;
    s.type = GetString(o, "type");
    s.content = SplitCommaList(GetString(o, "content"));
    s.enabled = GetBool(o, "enabled").value_or(false);
    s.active = GetBool(o, "active").value_or(false);
    s.shared = GetBool(o, "shared").value_or(false);
    s.total_bytes = GetInt(o, "total").value_or(0);
    s.used_bytes = GetInt(o, "used").value_or(0);
    s.avail_bytes = GetInt(o, "avail").value_or(0);
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<std::vector<NetworkInterface>> ParseNetworkInterfaces(std::string_view body) {
  auto data = DataArray(body, "GET /nodes/{node}/network");
  if (!data.ok()) return data.status();
  std::vector<NetworkInterface> out;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    NetworkInterface n;
    n.iface = GetString(o, "iface");
    if (n.iface.empty()) continue;
    n.type = GetString(o, "type");
    n.active = GetBool(o, "active").value_or(false);
    n.vlan_aware = GetBool(o, "bridge_vlan_aware").value_or(false);
    out.push_back(std::move(n));
  }
  return out;
}

absl::StatusOr<std::vector<HardwareMapping>> ParseHardwareMappings(std::string_view body) {
  auto data = DataArray(body, "GET /cluster/mapping");
  if (!data.ok()) return data.status();
  std::vector<HardwareMapping> out;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    HardwareMapping m;
    m.id = GetString(o, "id");
    if (m.id.empty()) continue;
    if (auto it = o.find("map"); it != o.end() && it->is_array()) {
      for (const auto& entry : *it) {
        if (!entry.is_string()) continue;
        // "id=10de:2204,node=pve1,path=0000:01:00.0"
        for (const auto& field : SplitCommaList(entry.get<std::string>())) {
          if (field.rfind("node=", 0) == 0) m.nodes.push_back(field.substr(5));
        }
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

absl::StatusOr<std::vector<StorageVolume>> ParseStorageContent(std::string_view body) {
  auto data = DataArray(body, "GET /nodes/{node}/storage/{storage}/content");
  if (!data.ok()) return data.status();
  std::vector<StorageVolume> out;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    StorageVolume v;
    v.volid = GetString(o, "volid");
    if (v.volid.empty()) continue;
    v.content = GetString(o, "content");
    v.format = GetString(o, "format");
    v.size_bytes = GetInt(o, "size").value_or(0);
    v.used_bytes = GetInt(o, "used");
    v.vmid = GetVmid(o, "vmid");
    v.ctime_unix = GetInt(o, "ctime");
    out.push_back(std::move(v));
  }
  return out;
}

absl::StatusOr<VolumeInfo> ParseVolumeInfo(std::string_view body) {
  auto data = DataObject(body, "GET /nodes/{node}/storage/{storage}/content/{volume}");
  if (!data.ok()) return data.status();
  VolumeInfo v;
  v.path = GetString(*data, "path");
  v.format = GetString(*data, "format");
  v.size_bytes = GetInt(*data, "size").value_or(0);
  v.used_bytes = GetInt(*data, "used");
  return v;
}

absl::StatusOr<VmStatus> ParseVmStatus(std::string_view body) {
  auto data = DataObject(body, "GET /nodes/{node}/qemu/{vmid}/status/current");
  if (!data.ok()) return data.status();
  return VmStatusFrom(*data);
}

absl::StatusOr<std::vector<VmStatus>> ParseVmList(std::string_view body) {
  auto data = DataArray(body, "GET /nodes/{node}/qemu");
  if (!data.ok()) return data.status();
  std::vector<VmStatus> out;
  for (const auto& o : *data) {
    if (o.is_object()) out.push_back(VmStatusFrom(o));
  }
  return out;
}

absl::StatusOr<VmConfig> ParseVmConfig(std::string_view body) {
  auto data = DataObject(body, "GET /nodes/{node}/qemu/{vmid}/config");
  if (!data.ok()) return data.status();
  VmConfig config;
  for (const auto& [key, value] : data->items()) {
    if (key == "digest") {
      config.digest = ScalarText(value);
    } else if (!value.is_object() && !value.is_array()) {
      config.values[key] = ScalarText(value);
    }
  }
  return config;
}

absl::StatusOr<TaskStatus> ParseTaskStatus(std::string_view body) {
  auto data = DataObject(body, "GET /nodes/{node}/tasks/{upid}/status");
  if (!data.ok()) return data.status();
  TaskStatus t;
  t.upid = GetString(*data, "upid");
  t.node = GetString(*data, "node");
  t.type = GetString(*data, "type");
  t.id = GetString(*data, "id");
  t.user = GetString(*data, "user");
  std::string token = GetString(*data, "tokenid");
  if (!token.empty() && t.user.find('!') == std::string::npos) t.user += "!" + token;
  t.start_time_unix = GetInt(*data, "starttime");
  std::string status = GetString(*data, "status");
  if (status != "running" && status != "stopped") {
    return Malformed("GET /nodes/{node}/tasks/{upid}/status", fmt::format("unknown task status '{}'", status));
  }
  t.running = status == "running";
  if (!t.running) {
    auto it = data->find("exitstatus");
    t.exit_status = it != data->end() && !it->is_null() ? ScalarText(*it) : std::string("unexpected status");
  }
  return t;
}

absl::StatusOr<std::vector<TaskStatus>> ParseTaskList(std::string_view body) {
  auto data = DataArray(body, "GET /nodes/{node}/tasks");
  if (!data.ok()) return data.status();
  std::vector<TaskStatus> out;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    TaskStatus t;
    t.upid = GetString(o, "upid");
    if (t.upid.empty()) continue;
    t.node = GetString(o, "node");
    t.type = GetString(o, "type");
    t.id = GetString(o, "id");
    t.user = GetString(o, "user");
    std::string token = GetString(o, "tokenid");
    if (!token.empty() && t.user.find('!') == std::string::npos) t.user += "!" + token;
    t.start_time_unix = GetInt(o, "starttime");
    t.end_time_unix = GetInt(o, "endtime");
    std::string status = GetString(o, "status");
    t.running = status.empty() || status == "running";
    if (!t.running) t.exit_status = status;
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<TaskLog> ParseTaskLog(std::string_view body) {
  constexpr std::string_view kWhat = "GET /nodes/{node}/tasks/{upid}/log";
  auto parsed = ParseJsonBounded(body, kWhat);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) return Malformed(kWhat, "not an object");
  auto data = parsed->find("data");
  if (data == parsed->end() || !data->is_array()) return Malformed(kWhat, "'data' is not an array");
  TaskLog log;
  for (const auto& o : *data) {
    if (!o.is_object()) continue;
    log.lines.push_back({GetInt(o, "n").value_or(0), GetString(o, "t")});
  }
  log.total = GetInt(*parsed, "total").value_or(static_cast<std::int64_t>(log.lines.size()));
  return log;
}

absl::StatusOr<Upid> ParseUpidData(std::string_view body, std::string_view what) {
  auto data = ParseEnvelope(body, what);
  if (!data.ok()) return data.status();
  if (!data->is_string()) return Malformed(what, "expected a task ID (UPID) string in 'data'");
  auto upid = ParseUpid(data->get<std::string>());
  if (!upid.ok())
    return Malformed(what, upid.status().message() == "" ? "bad UPID" : std::string(upid.status().message()));
  return upid;
}

absl::StatusOr<std::optional<Upid>> ParseOptionalUpidData(std::string_view body, std::string_view what) {
  auto data = ParseEnvelope(body, what);
  if (!data.ok()) return data.status();
  if (data->is_null()) return std::optional<Upid>();
  if (!data->is_string()) return Malformed(what, "expected null or a task ID (UPID) string in 'data'");
  auto upid = ParseUpid(data->get<std::string>());
  if (!upid.ok()) return Malformed(what, std::string(upid.status().message()));
  return std::optional<Upid>(*std::move(upid));
}

}  // namespace omni_proxmox::pve::parse
