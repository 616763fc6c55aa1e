// SPDX-License-Identifier: Apache-2.0
// The `omni-proxmox pve-sim` command: flag and scenario errors are usage errors that name the fix.

#include <fstream>

#include "gtest/gtest.h"

#include "support/subprocess.h"

namespace omni_proxmox::sim::pve {
namespace {

using omni_proxmox::testing::RunProcess;

TEST(PveSimCommandTest, BadScenarioIsAUsageErrorNamingTheField) {
  std::string path = ::testing::TempDir() + "/bad-scenario.yaml";
  {
    std::ofstream out(path);
    out << "nodes: [{name: pve1, memroy_gib: 4}]\n";
  }
  auto result = RunProcess({OP_BINARY, "pve-sim", "--scenario", path, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("unknown field 'nodes[0].memroy_gib'"), std::string::npos) << result.err;
}

TEST(PveSimCommandTest, ListeningBeyondLoopbackWarnsThatAuthenticationIsNotReal) {
  // A bad scenario stops it before anything listens (tests listen on loopback only): the warning,
  // printed before the simulator starts, comes first.
  std::string path = ::testing::TempDir() + "/bad-scenario-wide.yaml";
  std::ofstream(path) << "nodes: [{name: pve1, memroy_gib: 4}]\n";
  auto wide = RunProcess({OP_BINARY, "pve-sim", "--scenario", path, "--listen", "0.0.0.0:0"});
  EXPECT_EQ(wide.exit_code, 2);
  EXPECT_NE(wide.err.find("pve-sim: warning: listening on 0.0.0.0 beyond loopback; the simulator's authentication "
                          "is not real"),
            std::string::npos)
      << wide.err;
  auto loopback = RunProcess({OP_BINARY, "pve-sim", "--scenario", path, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(loopback.exit_code, 2);
  EXPECT_EQ(loopback.err.find("beyond loopback"), std::string::npos) << loopback.err;
}

TEST(PveSimCommandTest, BadListenIsAUsageError) {
  auto result = RunProcess({OP_BINARY, "pve-sim", "--listen", "localhost"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--listen 'localhost' must be HOST:PORT"), std::string::npos) << result.err;
}

TEST(PveSimCommandTest, MissingScenarioFileIsAUsageError) {
  auto result = RunProcess({OP_BINARY, "pve-sim", "--scenario", "/nonexistent/scenario.yaml"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("scenario"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace omni_proxmox::sim::pve
