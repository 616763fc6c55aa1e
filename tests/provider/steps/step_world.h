// SPDX-License-Identifier: Apache-2.0
#pragma once

// What a step or the step runner needs, on simulated time: the Proxmox simulator and the Omni
// stand-in in process (real sockets), clients for both, the fleet's views, Omni's boot assets and
// join configuration, all on one util::ManualClock the test advances. A step's wait is a clock
// advance, never a sleep: Proxmox's tasks end when the clock passes their duration.

#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "omni/management_client.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/fleet/fleet_view.h"
#include "provider/machine.pb.h"
#include "provider/model/providerdata.h"
#include "provider/placement/placement.h"
#include "provider/reconciler/step.h"
#include "provider/steps/services.h"
#include "pve/limited_client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/sim_pve_client.h"
#include "support/standin_client_options.h"
#include "util/clock.h"
#include "util/random.h"

namespace omni_proxmox::provider::steptest {

// Two nodes with local ISO storage and LVM-thin, a shared Ceph pool; tasks of a few seconds.
inline constexpr const char* kStepScenario = R"yaml(
cluster:
  name: steps
  vmid_range: [100, 100000]
nodes:
  - {name: pve1, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve2, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup], size_gib: 100}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 500}
  - {id: vm_ssd, type: rbd, content: [images], shared: true, size_gib: 4000}
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
tasks:
  durations: {qmcreate: 2, qmstart: 1, qmstop: 1, qmshutdown: 1, qmconfig: 0.5, download: 5, imgcopy: 1, qmdestroy: 2, imgdel: 0.5}
)yaml";

inline constexpr const char* kWorkerData =
    "cores: 2\nmemory: 2048\ndisk_size: 10\nnetwork_bridge: vmbr0\nstorage_selector: type == \"lvmthin\"\n";

class StepWorld : public ::testing::Test {
 protected:
  void SetUp() override {
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox", .clock = &clock_});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    // No provider runs here; its status is published as it would be at startup, so Omni admits
    // request sets against the provider's real schema.
    ASSERT_TRUE(standin_->PublishProviderStatusForTest("proxmox", provider::ProviderDataJsonSchema()).ok());
    sim::pve::SimulatorOptions sim_options;
    sim_options.scenario_yaml = kStepScenario;
    sim_options.clock = &clock_;
    auto sim = sim::pve::Simulator::Start(sim_options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    auto pve = omni_proxmox::testing::SimPveClient(*sim_);
    ASSERT_TRUE(pve.ok()) << pve.status();
    pve_http_ = std::move(*pve);
    limited_ = std::make_unique<pve::LimitedClient>(
        *pve_http_, pve::LimitOptions{.max_tasks_per_node = 2, .requests_per_second = 0}, clock_, nullptr);
    auto omni_options = omni_proxmox::testing::StandInClientOptions(*standin_, &random_);
    ASSERT_TRUE(omni_options.ok()) << omni_options.status();
    omni_options->clock = &clock_;
    auto state = omni::MakeGrpcStateClient(*omni_options);
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = std::move(*state);
    auto management = omni::MakeGrpcManagementClient(*omni_options);
    ASSERT_TRUE(management.ok()) << management.status();
    management_ = std::move(*management);
    fleet_ = std::make_unique<FleetView>(FleetOptions{.provider_id = "proxmox"}, *limited_, limited_.get(), clock_);
    assets_ = std::make_unique<BootAssets>(*management_, standin_->factory_url());
    join_ = std::make_unique<JoinConfigCache>(*state_, "proxmox", std::chrono::seconds{60}, clock_);
    services_ = std::make_unique<StepServices>(StepServices{.options = {},
                                                            .pve = *limited_,
                                                            .fleet = *fleet_,
                                                            .assets = *assets_,
                                                            .join = *join_,
                                                            .clock = clock_,
                                                            .random = random_,
                                                            .counters = counters_});
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

  nlohmann::json Vms() { return sim_->StateForTest()["vms"]; }
  bool HasVolume(const std::string& volid) {
    const nlohmann::json state = sim_->StateForTest();  // the loop below must not outlive it
    for (const auto& v : state["volumes"]) {
      if (v.value("volid", "") == volid) return true;
    }
    return false;
  }

  util::ManualClock clock_{util::RealClock().Now()};
  util::Random random_{42};
  std::shared_ptr<spdlog::logger> log_ = spdlog::default_logger();
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::unique_ptr<pve::Client> pve_http_;
  std::unique_ptr<pve::LimitedClient> limited_;
  std::unique_ptr<omni::StateClient> state_;
  std::unique_ptr<omni::ManagementClient> management_;
  std::unique_ptr<FleetView> fleet_;
  std::unique_ptr<BootAssets> assets_;
  std::unique_ptr<JoinConfigCache> join_;
  ProviderCounters counters_;
  std::unique_ptr<StepServices> services_;
};

}  // namespace omni_proxmox::provider::steptest
