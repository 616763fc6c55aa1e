// SPDX-License-Identifier: Apache-2.0
// The scenario document (YAML) that describes the simulated cluster: cluster settings, nodes, storages,
// hardware mappings, users, tokens, roles, ACLs, task durations, faults and download sources; without one,
// the built-in cluster of scenario_builder.h (DefaultScenario). Every error names the scenario field at
// fault. Serves no endpoint.

#include <algorithm>
#include <regex>

#include "fmt/format.h"
#include "yaml-cpp/yaml.h"

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"
#include "sim/pve/scenario_builder.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::pve {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

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
    root = YAML::Load(text.empty() ? DefaultScenario().Yaml() : text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("scenario: not valid YAML: {}", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("scenario: the document must be a mapping with 'nodes:' etc.");
  try {
    OP_RETURN_IF_ERROR(CheckKeys(
        root, "scenario",
        {"cluster", "nodes", "storages", "mappings", "users", "roles", "acls", "tasks", "faults", "downloads"}));
    if (auto cluster = root["cluster"]) OP_RETURN_IF_ERROR(LoadCluster(cluster));
    OP_RETURN_IF_ERROR(LoadNodes(root["nodes"]));  // before storages, which name nodes
    if (auto storages = root["storages"]) OP_RETURN_IF_ERROR(LoadStorages(storages));
    if (auto mappings = root["mappings"]) OP_RETURN_IF_ERROR(LoadMappings(mappings));
    if (auto roles = root["roles"]) OP_RETURN_IF_ERROR(LoadRoles(roles));  // before acls, which name roles
    if (auto users = root["users"]) OP_RETURN_IF_ERROR(LoadUsers(users));
    if (auto acls = root["acls"]) OP_RETURN_IF_ERROR(LoadAcls(acls));
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

absl::Status Simulator::Impl::LoadCluster(const YAML::Node& cluster) {
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
  return absl::OkStatus();
}

absl::Status Simulator::Impl::LoadNodes(const YAML::Node& nodes) {
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
  return absl::OkStatus();
}

absl::Status Simulator::Impl::LoadStorages(const YAML::Node& storages) {
  for (std::size_t i = 0; i < storages.size(); ++i) {
    auto item = storages[i];
    std::string where = fmt::format("storages[{}]", i);
    OP_RETURN_IF_ERROR(CheckKeys(
        item, where, {"id", "type", "content", "shared", "enabled", "disable", "nodes", "path", "size_gib", "thin"}));
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
    static const std::set<std::string> kinds = {"images", "rootdir", "iso", "vztmpl", "backup", "snippets", "import"};
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
  return absl::OkStatus();
}

absl::Status Simulator::Impl::LoadMappings(const YAML::Node& mappings) {
  OP_RETURN_IF_ERROR(CheckKeys(mappings, "mappings", {"pci", "usb"}));
  for (const char* kind : {"pci", "usb"}) {
    auto& target = std::string(kind) == "pci" ? pci_mappings_ : usb_mappings_;
    for (const auto& item : mappings[kind]) {
      auto names = YamlStrings(item["nodes"]);
      target[YamlGet<std::string>(item, "id", "")] = {names.begin(), names.end()};
    }
  }
  return absl::OkStatus();
}

absl::Status Simulator::Impl::LoadRoles(const YAML::Node& roles) {
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
  return absl::OkStatus();
}

absl::Status Simulator::Impl::LoadUsers(const YAML::Node& users) {
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
  return absl::OkStatus();
}

absl::Status Simulator::Impl::LoadAcls(const YAML::Node& acls) {
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
        return absl::InvalidArgumentError(fmt::format("scenario: {}.privs has unknown privilege '{}'", where, priv));
      }
      acl.privs.insert(priv);
    }
    acls_.push_back(std::move(acl));
  }
  return absl::OkStatus();
}

}  // namespace omni_proxmox::sim::pve
