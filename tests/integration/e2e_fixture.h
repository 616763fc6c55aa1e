// SPDX-License-Identifier: Apache-2.0
#pragma once

// The provider end to end over real sockets, assembled as `omni-proxmox run` assembles it
// (provider::Provider) in a simulated world (support/world_test.h): the Proxmox simulator, the
// Omni stand-in, and the provider over clients of both. Shared by the end-to-end suites; each
// test starts the provider.

#include <chrono>
#include <functional>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "omni/join_config.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/provider.h"
#include "pve/client.h"
#include "pve/limited_client.h"
#include "sim/pve/scenario_builder.h"
#include "support/world_test.h"

namespace omni_proxmox::provider::e2e {

using Json = nlohmann::json;
using Stage = specs::MachineRequestStatusSpec;
using std::chrono::milliseconds;

// Four nodes with a bridge, local ISO storage per node, LVM-thin per node and a shared Ceph RBD pool.
inline sim::pve::Scenario FourNodeScenario() {
  sim::pve::Scenario scenario;
  scenario.name = "e2e";
  scenario.vmid_upper = 100000;
  scenario.nodes = sim::pve::NumberedNodes(4, 16, 64);
  scenario.storages = {sim::pve::LocalDirStorage(), sim::pve::LocalLvmThinStorage(), sim::pve::CephPoolStorage()};
  scenario.task_seconds = sim::pve::QuickTaskSeconds();
  return scenario;
}

// Config values as text, whether the simulator keeps them as JSON numbers or strings.
inline std::string Str(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

class E2EFixture : public testing::WorldTest {
 protected:
  // The simulated cluster; a suite overrides it for a different layout.
  virtual sim::pve::Scenario Scenario() const { return FourNodeScenario(); }

  cli::WorldOptions MakeWorldOptions() const override { return {.scenario = Scenario(), .time_scale = 25}; }

  void SetUp() override {
    WorldTest::SetUp();
    if (HasFatalFailure()) return;
    auto provider = world_->AssembleProvider(Options());
    ASSERT_TRUE(provider.ok()) << provider.status();
    provider_ = *provider;
    state_ = &world_->state();
    pve_http_ = &world_->pve();
    pve_ = &provider_->pve();
  }

  // The provider as `run` assembles it, with quicker polls, heartbeat and resync; two heavy tasks
  // per node (below run's default of 4) so the limit is exercised.
  virtual ProviderOptions Options() const {
    ProviderOptions options = testing::QuickProviderOptions(*world_);
    options.concurrency = 8;
    options.limits.max_tasks_per_node = kTasksPerNode;
    options.retry.failed_base = milliseconds{2000};
    options.retry.failed_max = milliseconds{2000};
    options.resync_interval = milliseconds{3000};
    options.gc_mode = GcMode::kOff;
    return options;
  }

  // Starts the provider and waits for its InfraProviderStatus: Omni admits request sets only for a
  // provider that has published it (an operator applies classes once the provider runs).
  void StartProvider() {
    provider_->Start();
    ASSERT_TRUE(
        standin_->WaitFor([&] { return standin_->ProviderStatusPublished("proxmox"); }, std::chrono::seconds{30}))
        << "the provider did not publish its InfraProviderStatus";
  }

  std::map<std::string, Stage> StatusSpecs() { return world_->RequestStatuses(); }

  int Provisioned() {
    int n = 0;
    for (const auto& [id, spec] : StatusSpecs()) n += spec.stage() == Stage::PROVISIONED;
    return n;
  }

  int MachineRequests() { return world_->MachineRequestCount(); }

  // Waits on the stand-in's state changes (and `timeout`).
  bool WaitFor(const std::function<bool()>& predicate, std::chrono::seconds timeout = std::chrono::seconds{60}) {
    return standin_->WaitFor(predicate, timeout);
  }

  // The Omni instance our VMs and ISOs are marked with (markers.h Scope).
  std::string OurInstance() const { return omni::InstanceIdOfJoinToken(standin_->JoinToken("proxmox")); }

  std::string Dump() { return world_->Describe(); }

  static constexpr int kTasksPerNode = 2;

  Provider* provider_ = nullptr;
  omni::StateClient* state_ = nullptr;
  pve::Client* pve_http_ = nullptr;    // the world's client of the simulator
  pve::LimitedClient* pve_ = nullptr;  // the provider's Proxmox client (limits and metrics)
};

}  // namespace omni_proxmox::provider::e2e
