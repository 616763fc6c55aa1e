// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/scenario_builder.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace omni_proxmox::sim::pve {
namespace {

// Numbers in their shortest exact form (0.12, not 0.11999999999999999).
std::string Number(double value) { return fmt::format("{}", value); }

void EmitStrings(YAML::Emitter& out, const std::vector<std::string>& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto& value : values) out << value;
  out << YAML::EndSeq;
}

void EmitNode(YAML::Emitter& out, const ScenarioNode& node) {
  out << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << node.name;
  out << YAML::Key << "cpus" << YAML::Value << node.cpus;
  out << YAML::Key << "memory_gib" << YAML::Value << Number(node.memory_gib);
  out << YAML::Key << "bridges" << YAML::Value;
  EmitStrings(out, node.bridges);
  if (!node.ip.empty()) out << YAML::Key << "ip" << YAML::Value << node.ip;
  out << YAML::EndMap;
}

void EmitStorage(YAML::Emitter& out, const ScenarioStorage& storage) {
  out << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "id" << YAML::Value << storage.id;
  out << YAML::Key << "type" << YAML::Value << storage.type;
  out << YAML::Key << "content" << YAML::Value;
  EmitStrings(out, storage.content);
  if (storage.shared) out << YAML::Key << "shared" << YAML::Value << true;
  if (!storage.nodes.empty()) {
    out << YAML::Key << "nodes" << YAML::Value;
    EmitStrings(out, storage.nodes);
  }
  if (!storage.path.empty()) out << YAML::Key << "path" << YAML::Value << storage.path;
  out << YAML::Key << "size_gib" << YAML::Value << Number(storage.size_gib);
  out << YAML::EndMap;
}

void EmitUser(YAML::Emitter& out, const ScenarioUser& user) {
  out << YAML::BeginMap;
  out << YAML::Key << "userid" << YAML::Value << user.userid;
  if (!user.password.empty()) out << YAML::Key << "password" << YAML::Value << user.password;
  out << YAML::Key << "tokens" << YAML::Value << YAML::BeginSeq;
  for (const auto& token : user.tokens) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << token.name;
    out << YAML::Key << "secret" << YAML::Value << token.secret;
    out << YAML::Key << "privsep" << YAML::Value << token.privsep;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
}

}  // namespace

ScenarioUser RootUser() {
  constexpr std::string_view kId = kRootTokenId;
  return {.userid = std::string(kId.substr(0, kId.find('!'))),
          .password = "pve-sim-root",
          .tokens = {{.name = std::string(kId.substr(kId.find('!') + 1)), .secret = kRootTokenSecret}}};
}

std::string Scenario::Yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << name;
  out << YAML::Key << "vmid_range" << YAML::Value << YAML::Flow << YAML::BeginSeq << vmid_lower << vmid_upper
      << YAML::EndSeq;
  out << YAML::EndMap;
  out << YAML::Key << "nodes" << YAML::Value << YAML::BeginSeq;
  for (const auto& node : nodes) EmitNode(out, node);
  out << YAML::EndSeq;
  if (!storages.empty()) {
    out << YAML::Key << "storages" << YAML::Value << YAML::BeginSeq;
    for (const auto& storage : storages) EmitStorage(out, storage);
    out << YAML::EndSeq;
  }
  if (!pci_mappings.empty()) {
    out << YAML::Key << "mappings" << YAML::Value << YAML::BeginMap << YAML::Key << "pci" << YAML::Value
        << YAML::BeginSeq;
    for (const auto& mapping : pci_mappings) {
      out << YAML::Flow << YAML::BeginMap << YAML::Key << "id" << YAML::Value << mapping.id << YAML::Key << "nodes"
          << YAML::Value;
      EmitStrings(out, mapping.nodes);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq << YAML::EndMap;
  }
  if (!roles.empty()) {
    out << YAML::Key << "roles" << YAML::Value << YAML::BeginMap;
    for (const auto& [role, privileges] : roles) {
      out << YAML::Key << role << YAML::Value;
      EmitStrings(out, privileges);
    }
    out << YAML::EndMap;
  }
  if (!users.empty()) {
    out << YAML::Key << "users" << YAML::Value << YAML::BeginSeq;
    for (const auto& user : users) EmitUser(out, user);
    out << YAML::EndSeq;
  }
  if (!acls.empty()) {
    out << YAML::Key << "acls" << YAML::Value << YAML::BeginSeq;
    for (const auto& acl : acls) {
      out << YAML::Flow << YAML::BeginMap << YAML::Key << "path" << YAML::Value << acl.path << YAML::Key << "ugid"
          << YAML::Value << acl.ugid << YAML::Key << "role" << YAML::Value << acl.role << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (!task_seconds.empty()) {
    out << YAML::Key << "tasks" << YAML::Value << YAML::BeginMap << YAML::Key << "durations" << YAML::Value
        << YAML::Flow << YAML::BeginMap;
    for (const auto& [type, seconds] : task_seconds) out << YAML::Key << type << YAML::Value << Number(seconds);
    out << YAML::EndMap << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<ScenarioNode> NumberedNodes(int count, int cpus, double memory_gib) {
  std::vector<ScenarioNode> nodes;
  for (int i = 1; i <= count; ++i) {
    nodes.push_back({.name = fmt::format("pve{}", i), .cpus = cpus, .memory_gib = memory_gib});
  }
  return nodes;
}

ScenarioStorage LocalDirStorage(double size_gib) {
  return {.id = "local", .type = "dir", .content = {"iso", "vztmpl", "backup"}, .size_gib = size_gib};
}

ScenarioStorage LocalLvmThinStorage(double size_gib) {
  return {.id = "local-lvm", .type = "lvmthin", .content = {"images", "rootdir"}, .size_gib = size_gib};
}

ScenarioStorage CephPoolStorage(double size_gib) {
  return {.id = "vm_ssd", .type = "rbd", .content = {"images"}, .size_gib = size_gib, .shared = true};
}

std::map<std::string, double> QuickTaskSeconds() {
  return {{"qmcreate", 2}, {"qmstart", 1}, {"qmstop", 1},    {"qmshutdown", 1}, {"qmconfig", 0.5},
          {"download", 5}, {"imgcopy", 1}, {"qmdestroy", 2}, {"imgdel", 0.5}};
}

Scenario DefaultScenario() {
  Scenario scenario;
  scenario.nodes = {{.name = "pve1", .bridges = {"vmbr0", "vmbr1"}, .ip = "10.0.0.11"},
                    {.name = "pve2", .ip = "10.0.0.12"},
                    {.name = "pve3", .cpus = 8, .memory_gib = 32, .ip = "10.0.0.13"}};
  scenario.storages = {{.id = "local", .content = {"iso", "vztmpl", "backup", "images"}, .path = "/var/lib/vz"},
                       LocalLvmThinStorage(),
                       {.id = "fast-lvm", .type = "lvm", .content = {"images"}, .size_gib = 50, .nodes = {"pve1"}},
                       {.id = "nas",
                        .type = "nfs",
                        .content = {"iso", "images", "backup"},
                        .size_gib = 2000,
                        .shared = true,
                        .path = "/mnt/pve/nas"}};
  scenario.pci_mappings = {{.id = "gpu", .nodes = {"pve1"}}};
  return scenario;
}

}  // namespace omni_proxmox::sim::pve
