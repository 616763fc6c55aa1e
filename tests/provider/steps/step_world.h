// SPDX-License-Identifier: Apache-2.0
#pragma once

// What a step or the step runner needs, on simulated time: the Proxmox simulator and the Omni
// stand-in in process (real sockets) with clients for both (support/world_test.h), the fleet's views, Omni's boot
// assets and join configuration, all on one util::ManualClock the test advances. A step's wait is a clock advance,
// never a sleep: Proxmox's tasks end when the clock passes their duration.

#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "omni/specs/omni.pb.h"
#include "provider/fleet/fleet_view.h"
#include "provider/machine.pb.h"
#include "provider/model/providerdata.h"
#include "provider/placement/placement.h"
#include "provider/reconciler/step.h"
#include "provider/steps/services.h"
#include "pve/limited_client.h"
#include "sim/pve/scenario_builder.h"
#include "support/world_test.h"
#include "util/clock.h"

namespace omni_proxmox::provider::steptest {

// Two nodes with local ISO storage and LVM-thin, a shared Ceph pool; tasks of a few seconds.
inline sim::pve::Scenario TwoNodeScenario() {
  sim::pve::Scenario scenario;
  scenario.name = "steps";
  scenario.vmid_upper = 100000;
  scenario.nodes = sim::pve::NumberedNodes(2, 16, 64);
  scenario.storages = {sim::pve::LocalDirStorage(), sim::pve::LocalLvmThinStorage(), sim::pve::CephPoolStorage()};
  scenario.task_seconds = sim::pve::QuickTaskSeconds();
  return scenario;
}

inline constexpr const char* kWorkerData =
    "cores: 2\nmemory: 2048\ndisk_size: 10\nnetwork_bridge: vmbr0\nstorage_selector: type == \"lvmthin\"\n";

class StepWorld : public omni_proxmox::testing::WorldTest {
 protected:
  // Everything on clock_: the simulator's tasks, the stand-in, the Omni clients' signatures.
  cli::WorldOptions MakeWorldOptions() const override {
    return {.scenario = TwoNodeScenario(), .clock = &clock_, .omni_clock = &clock_};
  }

  void SetUp() override {
    WorldTest::SetUp();
    if (HasFatalFailure()) return;
    pve_http_ = &world_->pve();
    // No provider runs here; its status is published as it would be at startup, so Omni admits
    // request sets against the provider's real schema.
    ASSERT_TRUE(standin_->PublishProviderStatusForTest("proxmox", provider::ProviderDataJsonSchema()).ok());
    limited_ = std::make_unique<pve::LimitedClient>(
        *pve_http_, pve::LimitOptions{.max_tasks_per_node = 2, .requests_per_second = 0}, clock_, nullptr);
    fleet_ = std::make_unique<FleetView>(FleetOptions{.provider_id = "proxmox"}, *limited_, limited_.get(), clock_);
    assets_ = std::make_unique<BootAssets>(world_->management(), standin_->factory_url());
    join_ = std::make_unique<JoinConfigCache>(world_->state(), "proxmox", std::chrono::seconds{60}, clock_);
    services_ = std::make_unique<StepServices>(StepServices{.options = {},
                                                            .pve = *limited_,
                                                            .fleet = *fleet_,
                                                            .assets = *assets_,
                                                            .join = *join_,
                                                            .clock = clock_,
                                                            .random = world_->random(),
                                                            .counters = counters_});
  }

  // The parts over the world go before it.
  void TearDown() override {
    services_.reset();
    join_.reset();
    assets_.reset();
    fleet_.reset();
    limited_.reset();
    WorldTest::TearDown();
  }

  // A step context for request `id` of set `set`, with `providerdata` parsed and compiled.
  struct Request {
    specs::MachineRequestSpec spec;
    ProviderData data;
    std::optional<CompiledSelectors> selectors;
    MachineSpec machine;
    StepContext ctx;
    int saves = 0;
  };
  std::unique_ptr<Request> NewRequest(const std::string& id, const std::string& providerdata = kWorkerData,
                                      const std::string& set = "workers") {
    auto request = std::make_unique<Request>();
    request->spec.set_talos_version("1.10.4");
    request->spec.set_provider_data(providerdata);
    auto parsed = ParseProviderData(providerdata);
    EXPECT_TRUE(parsed.ok()) << parsed.ErrorSummary();
    request->data = *parsed.data;
    auto selectors = CompiledSelectors::Compile(request->data);
    EXPECT_TRUE(selectors.ok()) << selectors.status();
    request->selectors = *selectors;
    request->machine.set_uuid("6f1c1f8e-7c1e-4b1a-9a3e-0d2c6b5e4f10");
    request->ctx.request_id = id;
    request->ctx.request_set = set;
    request->ctx.request = &request->spec;
    request->ctx.data = &request->data;
    request->ctx.selectors = &*request->selectors;
    request->ctx.machine = &request->machine;
    request->ctx.log = log_.get();
    Request* raw = request.get();
    request->ctx.save_now = [raw] {
      ++raw->saves;
      return absl::OkStatus();
    };
    return request;
  }

  // Runs `step` until it is done or fails, advancing simulated time by each wait; the last result.
  StepResult RunToEnd(Step& step, StepContext& ctx, int max_passes = 50) {
    StepResult result;
    for (int pass = 0; pass < max_passes; ++pass) {
      result = step.Run(ctx);
      if (result.kind != StepResult::Kind::kWait) return result;
      clock_.Advance(std::max(result.after, std::chrono::milliseconds{1}));
    }
    return result;
  }

  util::ManualClock clock_{util::RealClock().Now()};
  std::shared_ptr<spdlog::logger> log_ = spdlog::default_logger();
  pve::Client* pve_http_ = nullptr;  // the world's client of the simulator
  std::unique_ptr<pve::LimitedClient> limited_;
  std::unique_ptr<FleetView> fleet_;
  std::unique_ptr<BootAssets> assets_;
  std::unique_ptr<JoinConfigCache> join_;
  ProviderCounters counters_;
  std::unique_ptr<StepServices> services_;
};

}  // namespace omni_proxmox::provider::steptest
