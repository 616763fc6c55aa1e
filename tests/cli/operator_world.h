// SPDX-License-Identifier: Apache-2.0
#pragma once

// A TLS Proxmox simulator (from a scenario) and an Omni stand-in (support/world_test.h) for running
// `plan`, `selector test` and `doctor` as separate processes. Each test gets its own directory with
// config.yaml (caFile pinning the simulator's certificate), the token secret and the provider key.

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/omni/standin.h"
#include "sim/pve/scenario_builder.h"
#include "sim/pve/simulator.h"
#include "support/subprocess.h"
#include "support/world_test.h"

namespace omni_proxmox::cli {

inline constexpr const char* kLimitedTokenId = "limited@pve!plan";
inline constexpr const char* kLimitedTokenSecret = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

// Three nodes (pve3 small), node-local LVM-thin, a shared Ceph pool, a GPU on pve1, and a second
// user whose token lacks VM.Allocate.
inline sim::pve::Scenario OperatorScenario() {
  sim::pve::Scenario scenario;
  scenario.name = "test";
  scenario.vmid_upper = 10000;
  scenario.nodes = {
      {.name = "pve1", .bridges = {"vmbr0", "vmbr1"}}, {.name = "pve2"}, {.name = "pve3", .cpus = 8, .memory_gib = 16}};
  scenario.storages = {sim::pve::LocalDirStorage(), sim::pve::LocalLvmThinStorage(), sim::pve::CephPoolStorage()};
  scenario.pci_mappings = {{.id = "gpu", .nodes = {"pve1"}}};
  scenario.roles["NoAllocate"] = {"VM.Audit",
                                  "VM.PowerMgmt",
                                  "VM.Config.CPU",
                                  "VM.Config.Memory",
                                  "VM.Config.Disk",
                                  "VM.Config.CDROM",
                                  "VM.Config.Network",
                                  "VM.Config.Options",
                                  "VM.Config.HWType",
                                  "Datastore.AllocateSpace",
                                  "Datastore.AllocateTemplate",
                                  "Datastore.Audit",
                                  "Sys.Audit",
                                  "Sys.AccessNetwork",
                                  "SDN.Use"};
  scenario.users.push_back({.userid = "limited@pve",
                            .password = "limited-password",
                            .tokens = {{.name = "plan", .secret = kLimitedTokenSecret}}});
  scenario.acls = {{.path = "/", .ugid = "limited@pve", .role = "NoAllocate"}};
  return scenario;
}

class OperatorWorld : public testing::WorldTest {
 protected:
  // TLS; the stand-in only once a test asks for it (StartOmni).
  WorldOptions MakeWorldOptions() const override {
    return {.scenario = OperatorScenario(),
            .tls = true,
            // What Omni advertises to machines; a loopback URL would make doctor warn (VMs cannot reach it).
            .siderolink_api_url = "https://omni.example.test:8090",
            .start_omni = false};
  }

  // config.yaml (caFile pinning the simulator's certificate), the secret, ca.pem, and limited.yaml
  // for the second user's token.
  void SetUp() override {
    WorldTest::SetUp();
    if (HasFatalFailure()) return;
    WriteCommandFiles();
    Write("limited-secret", kLimitedTokenSecret);
    Write("limited.yaml", world_->ProxmoxConfig(kLimitedTokenId, "limited-secret"));
  }

  // The stand-in, and the provider key beside the other files.
  void StartOmni() {
    ASSERT_TRUE(world_->StartOmni().ok());
    standin_ = &world_->standin();
    WriteCommandFiles();
  }

  // Runs the binary with the root flags first (--format goes before the command).
  testing::ProcessResult Run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {OP_BINARY, "--log-level", "error"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunProcess(argv, "", env, std::chrono::seconds{120});
  }

  static nlohmann::json ParseJson(const std::string& text) {
    return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  }
};

}  // namespace omni_proxmox::cli
