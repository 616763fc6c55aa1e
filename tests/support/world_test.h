// SPDX-License-Identifier: Apache-2.0
#pragma once

// The gtest side of cli::World (src/cli/world.h): a fixture that starts one world per test case
// from the suite's options, a scratch directory per test case with the files `omni-proxmox
// <command>` reads, helpers that look at or plant things in the simulated cluster, and waits that
// poll. The end-to-end suites, the CLI tests and the step tests derive their fixtures from it.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/world.h"
#include "provider/provider.h"
#include "pve/client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"

namespace omni_proxmox::testing {

// Calls `predicate` every `every` until it holds (true) or `timeout` passes (false). For
// conditions nothing notifies about: simulator state, metrics, the output of a command.
bool Eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every = std::chrono::milliseconds{100});

// The provider as the tests assemble it: the world's defaults with quick task polls, a 5 s
// shutdown timeout and a 1 s heartbeat, named as a provider under test.
provider::ProviderOptions QuickProviderOptions(const cli::World& world);

class WorldTest : public ::testing::Test {
 protected:
  // The world of this suite; by default the simulator's built-in cluster at 25 times real time.
  virtual cli::WorldOptions MakeWorldOptions() const;

  void SetUp() override;
  void TearDown() override;  // the world stops (its provider first), the scratch directory goes

  // Writes config.yaml, secret, key and ca.pem for the world as it is now into the scratch
  // directory (again on each call); files() names them.
  const cli::CommandFiles& WriteCommandFiles();
  const cli::CommandFiles& files() const { return files_; }
  // A file of this test case's scratch directory.
  std::string Path(const std::string& name) const;
  void Write(const std::string& name, const std::string& content) const;

  // The simulator's VMs (its state document's "vms").
  nlohmann::json Vms() const;
  bool HasVm(int vmid) const;
  bool HasVolume(const std::string& volid) const;
  // A VM on `node` with `tags` (empty: none), created through the Proxmox API and waited for.
  void CreateVm(const std::string& node, int vmid, const std::string& name, const std::string& tags);

  std::unique_ptr<cli::World> world_;
  // The world's parts, named for brevity; standin_ is null while the stand-in does not run.
  sim::pve::Simulator* sim_ = nullptr;
  sim::omni::StandIn* standin_ = nullptr;
  std::filesystem::path dir_;  // this test case's scratch directory

 private:
  cli::CommandFiles files_;
};

}  // namespace omni_proxmox::testing
