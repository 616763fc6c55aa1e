// SPDX-License-Identifier: Apache-2.0
#pragma once

// A TLS Proxmox simulator (from a scenario) and an Omni stand-in for running `plan`,
// `selector test` and `doctor` as separate processes. Each test gets its own directory with
// config.yaml (caFile pinning the simulator's certificate), the token secret and the provider key.

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/subprocess.h"

namespace omni_proxmox::cli {

// Three nodes (pve3 small), node-local LVM-thin, a shared Ceph pool, and a second user whose
// token lacks VM.Allocate.
inline constexpr const char* kOperatorScenario = R"yaml(
cluster:
  name: test
  vmid_range: [100, 10000]
nodes:
  - {name: pve1, cpus: 16, memory_gib: 64, bridges: [vmbr0, vmbr1]}
  - {name: pve2, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve3, cpus: 8, memory_gib: 16, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup], size_gib: 100}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 500}
  - {id: vm_ssd, type: rbd, content: [images], shared: true, size_gib: 4000}
mappings:
  pci: [{id: gpu, nodes: [pve1]}]
roles:
  NoAllocate: [VM.Audit, VM.PowerMgmt, VM.Config.CPU, VM.Config.Memory, VM.Config.Disk, VM.Config.CDROM,
               VM.Config.Network, VM.Config.Options, VM.Config.HWType, Datastore.AllocateSpace,
               Datastore.AllocateTemplate, Datastore.Audit, Sys.Audit, Sys.AccessNetwork, SDN.Use]
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
  - userid: limited@pve
    password: limited-password
    tokens:
      - {name: plan, secret: 7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f, privsep: false}
acls:
  - {path: /, ugid: limited@pve, role: NoAllocate}
)yaml";

inline constexpr const char* kLimitedTokenId = "limited@pve!plan";
inline constexpr const char* kLimitedTokenSecret = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

class OperatorWorld : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-operator-{}-{}", getpid(), counter_++);
    std::filesystem::create_directories(dir_);
    sim::pve::SimulatorOptions options;
    options.scenario_yaml = kOperatorScenario;
    options.tls = true;
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    Write("ca.pem", sim_->ca_certificate_pem());
    Write("secret", sim_->default_token_secret());
    Write("limited-secret", kLimitedTokenSecret);
    WriteConfig("config.yaml", sim_->default_token_id(), "secret");
    WriteConfig("limited.yaml", kLimitedTokenId, "limited-secret");
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  void StartOmni() {
    // What Omni advertises to machines; a loopback URL would make doctor warn (VMs cannot reach it).
    auto standin =
        sim::omni::StandIn::Start({.provider_id = "proxmox", .siderolink_api_url = "https://omni.example.test:8090"});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    Write("key", standin_->provider_key());
  }

  void WriteConfig(const std::string& name, const std::string& token_id, const std::string& secret_file) {
    Write(name, fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n  caFile: {}\n",
                            sim_->base_url(), token_id, secret_file, Path("ca.pem")));
  }

  void Write(const std::string& name, const std::string& content) { std::ofstream(dir_ / name) << content; }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs the binary with the root flags first (--format goes before the command).
  testing::ProcessResult Run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {OP_BINARY, "--log-level", "error"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunProcess(argv, "", env, std::chrono::seconds{120});
  }

  static nlohmann::json ParseJson(const std::string& text) {
    return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::unique_ptr<sim::omni::StandIn> standin_;
};

}  // namespace omni_proxmox::cli
