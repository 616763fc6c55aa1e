// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox pve-check` end to end: the real binary reads a config.yaml and checks a
// simulator over TLS (caFile), with the exit codes the command promises.

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/pve/scenario_builder.h"
#include "sim/pve/simulator.h"
#include "support/subprocess.h"

namespace omni_proxmox::pve {
namespace {

const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

// Two nodes of the simulator's default size with one directory storage; root@pam's token and a
// read-only auditor's.
sim::pve::Scenario Scenario() {
  sim::pve::Scenario scenario;
  scenario.nodes = sim::pve::NumberedNodes(2, 8, 32);
  scenario.storages = {{.id = "local", .content = {"iso", "images"}, .path = "/var/lib/vz"}};
  scenario.users.push_back(
      {.userid = "auditor@pve", .tokens = {{.name = "ro", .secret = "0a1b2c3d-0000-4000-8000-000000000001"}}});
  scenario.acls = {{.path = "/", .ugid = "auditor@pve", .role = "PVEAuditor"}};
  return scenario;
}

class PveCheckCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sim::pve::SimulatorOptions options;
    options.scenario_yaml = Scenario().Yaml();
    options.tls = true;
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    // A directory of this test's own: ctest runs test cases as parallel processes, and a shared
    // /tmp/pve-ca.pem would be overwritten by another test's simulator certificate.
    std::string pattern = ::testing::TempDir() + "pve-check-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    std::ofstream(dir_ + "/pve-ca.pem") << sim_->ca_certificate_pem();
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string WriteConfig(const std::string& name, const std::string& auth) {
    std::string path = dir_ + "/" + name;
    // A relative caFile resolves against the config file's directory.
    std::ofstream(path) << fmt::format("proxmox:\n  url: {}\n  caFile: pve-ca.pem\n{}", sim_->base_url(), auth);
    return path;
  }

  testing::ProcessResult Run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {OP_BINARY, "--log-level", "warn"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunProcess(argv, "", env, std::chrono::seconds(60));
  }

  std::unique_ptr<sim::pve::Simulator> sim_;
  std::string dir_;
};

TEST_F(PveCheckCliTest, HealthyClusterPasses) {
  std::string config =
      WriteConfig("ok.yaml", fmt::format("  tokenID: root@pam!omni\n  tokenSecretFile: {}/secret\n", dir_));
  std::ofstream(dir_ + "/secret") << "5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40\n";
  auto result = Run({"--format", "json", "pve-check", "--config", config});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  auto out = nlohmann::json::parse(result.out);
  EXPECT_TRUE(out["ok"].get<bool>());
  ASSERT_GE(out["checks"].size(), 5u) << result.out;
  for (const auto& check : out["checks"]) EXPECT_EQ(check["status"], "ok") << check.dump();
  EXPECT_EQ(result.out.find("5f0c3a52"), std::string::npos);

  auto table = Run({"pve-check", "--config", config});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("CHECK"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("storage pve2"), std::string::npos) << table.out;
}

TEST_F(PveCheckCliTest, FindingsExitOne) {
  std::string config =
      WriteConfig("ro.yaml", "  tokenID: auditor@pve!ro\n  tokenSecret: 0a1b2c3d-0000-4000-8000-000000000001\n");
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  auto result = Run({"--format", "json", "pve-check", "--config", config});
  ASSERT_EQ(result.exit_code, 1) << result.out << result.err;
  auto out = nlohmann::json::parse(result.out);
  EXPECT_FALSE(out["ok"].get<bool>());
  std::map<std::string, std::string> status;
  for (const auto& check : out["checks"]) status[check["check"]] = check["status"];
  EXPECT_EQ(status["connect"], "ok");
  EXPECT_EQ(status["privileges"], "fail");
  EXPECT_EQ(status["nodes"], "warn");
  EXPECT_NE(result.out.find("VM.Allocate on /vms"), std::string::npos) << result.out;
}

TEST_F(PveCheckCliTest, BadCredentialsAndBadConfig) {
  std::string wrong = WriteConfig("wrong.yaml", "  username: root\n  realm: pam\n  password: nope\n");
  auto denied = Run({"--format", "json", "pve-check", "--config", wrong});
  EXPECT_EQ(denied.exit_code, 1) << denied.out << denied.err;
  EXPECT_NE(denied.out.find("\"auth:"), std::string::npos) << denied.out;
  EXPECT_EQ(denied.out.find("nope"), std::string::npos) << denied.out;

  std::string broken = dir_ + "/broken.yaml";
  std::ofstream(broken) << "proxmox:\n  tokenID: root@pam!omni\n  tokenSecret: x\n";
  auto usage = Run({"pve-check", "--config", broken});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("proxmox.url: missing; set it to https://pve.example:8006/api2/json"), std::string::npos)
      << usage.err;

  // Without --config, the Go provider's environment variables.
  auto env =
      Run({"--format", "json", "pve-check"},
          {"PROXMOX_URL=" + sim_->base_url(), "PROXMOX_TOKEN_ID=root@pam!omni",
           "PROXMOX_TOKEN_SECRET=5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40", "PROXMOX_CA_FILE=" + dir_ + "/pve-ca.pem"});
  EXPECT_EQ(env.exit_code, 0) << env.out << env.err;
}

}  // namespace
}  // namespace omni_proxmox::pve
