// SPDX-License-Identifier: Apache-2.0
#pragma once

// A simulated cluster as a value: the scenario document of docs/pve-sim.md (nodes, storages,
// hardware mappings, users with their API tokens, roles, ACLs, the VMID range and task durations)
// built in code and rendered as the YAML the simulator parses (SimulatorOptions::scenario_yaml,
// `pve-sim --scenario`). Tests, the demo and the benchmark describe their clusters with it instead
// of copying YAML; root@pam's API token, which every scenario carries, is defined here once.
// Part of the simulator: it shares no code with the client (src/pve).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace omni_proxmox::sim::pve {

struct ScenarioNode {
  std::string name;
  int cpus = 16;
  double memory_gib = 64;
  std::vector<std::string> bridges = {"vmbr0"};
  std::string ip;  // empty: the simulator's 10.0.0.<11 + position>
};

struct ScenarioStorage {
  std::string id;
  std::string type = "dir";          // dir, lvm, lvmthin, zfspool, nfs, cifs, rbd, cephfs, btrfs, iscsi, pbs
  std::vector<std::string> content;  // images, rootdir, iso, vztmpl, backup, snippets, import
  double size_gib = 100;
  bool shared = false;
  std::vector<std::string> nodes;  // empty: every node
  std::string path;                // empty: the simulator's /mnt/pve/<id> for a file-based storage
};

struct ScenarioToken {
  std::string name;  // the part after '!' in the token ID
  std::string secret;
  bool privsep = false;  // true: the token has only the privileges its own ACLs grant
};

struct ScenarioUser {
  std::string userid;  // user@realm
  std::string password;
  std::vector<ScenarioToken> tokens;
};

struct ScenarioAcl {
  std::string path = "/";
  std::string ugid;  // a user ID or a token ID
  std::string role;  // a built-in role or one of Scenario::roles
};

// A PCI hardware mapping (GET /cluster/mapping/pci) and the nodes that have the device.
struct ScenarioMapping {
  std::string id;
  std::vector<std::string> nodes;
};

// root@pam's token "omni" without privilege separation: the first token of a scenario, so the
// simulator's default_token_id() and default_token_secret().
inline constexpr char kRootTokenId[] = "root@pam!omni";
inline constexpr char kRootTokenSecret[] = "5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40";

// root@pam with its password and the token above.
ScenarioUser RootUser();

struct Scenario {
  std::string name = "pve-sim";  // the cluster's name
  // What GET /cluster/nextid hands out: [vmid_lower, vmid_upper).
  std::int64_t vmid_lower = 100;
  std::int64_t vmid_upper = 1'000'000;
  std::vector<ScenarioNode> nodes;
  std::vector<ScenarioStorage> storages;
  std::vector<ScenarioMapping> pci_mappings;
  std::map<std::string, std::vector<std::string>> roles;  // custom role -> its privileges
  std::vector<ScenarioUser> users = {RootUser()};
  std::vector<ScenarioAcl> acls;
  // Simulated seconds per task type (qmcreate, qmstart, download, ...); a type not named takes
  // the simulator's own duration.
  std::map<std::string, double> task_seconds;

  // The scenario document, for SimulatorOptions::scenario_yaml.
  std::string Yaml() const;
};

// pve1 ... pve<count>, each with `cpus`, `memory_gib` and the bridge vmbr0.
std::vector<ScenarioNode> NumberedNodes(int count, int cpus, double memory_gib);

// The storages of a Proxmox node as installed, and the operator document's shared pool:
// "local" (a directory for ISOs, templates and backups on every node), "local-lvm" (LVM-thin for
// disks on every node) and "vm_ssd" (a shared Ceph RBD pool for disks).
ScenarioStorage LocalDirStorage(double size_gib = 100);
ScenarioStorage LocalLvmThinStorage(double size_gib = 500);
ScenarioStorage CephPoolStorage(double size_gib = 4000);

// Tasks of a few simulated seconds: create 2, start 1, stop 1, shutdown 1, config 0.5, ISO
// download 5, upload 1, destroy 2, volume delete 0.5.
std::map<std::string, double> QuickTaskSeconds();

// The simulator's built-in cluster (`pve-sim` without --scenario): pve1 and pve2 with 16 CPUs,
// pve3 with 8; local (ISOs and disks), LVM-thin, thick LVM on pve1 only, shared NFS; a GPU on pve1.
Scenario DefaultScenario();

}  // namespace omni_proxmox::sim::pve
