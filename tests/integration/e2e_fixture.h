// SPDX-License-Identifier: Apache-2.0
#pragma once

// The provider end to end over real sockets, assembled as `omni-proxmox run` assembles it
// (provider::Provider): the Proxmox simulator, the Omni stand-in, and the provider over clients of
// both. Shared by the end-to-end suites; each test starts the provider.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "omni/join_config.h"
#include "omni/management_client.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/model/providerdata.h"
#include "provider/provider.h"
#include "pve/client.h"
#include "pve/limited_client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/sim_pve_client.h"
#include "support/standin_client_options.h"
#include "util/metrics.h"
#include "util/random.h"

namespace omni_proxmox::provider::e2e {

using Json = nlohmann::json;
using Stage = specs::MachineRequestStatusSpec;
using std::chrono::milliseconds;

// Four nodes with a bridge, local ISO storage per node, LVM-thin per node and a shared Ceph RBD pool.
inline constexpr const char* kDefaultScenario = R"yaml(
cluster:
  name: e2e
  vmid_range: [100, 100000]
nodes:
  - {name: pve1, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve2, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve3, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve4, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
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

// `scenario` with one more storage (a YAML flow mapping) listed first among its storages.
inline std::string WithStorage(std::string scenario, std::string_view storage) {
  constexpr std::string_view kStorages = "storages:\n";
  const auto at = scenario.find(kStorages);
  if (at == std::string::npos) return scenario;  // a scenario without storages: the simulator will say so
  scenario.insert(at + kStorages.size(), fmt::format("  - {}\n", storage));
  return scenario;
}

// Config values as text, whether the simulator keeps them as JSON numbers or strings.
inline std::string Str(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

class E2EFixture : public ::testing::Test {
 protected:
  // The simulated cluster; a suite overrides it for a different layout.
  virtual std::string Scenario() const { return kDefaultScenario; }

  void SetUp() override {
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox"});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);

    sim::pve::SimulatorOptions sim_options;
    sim_options.scenario_yaml = Scenario();
    sim_options.time_scale = 25;
    sim_options.on_vm_started = [this](const sim::pve::VmBootInfo& boot) {
      auto joined = standin_->MachineJoined(boot.user_data, boot.smbios_uuid);
      std::lock_guard lock(mutex_);
      boots_.push_back(boot);
      if (joined.ok()) {
        joined_.insert(boot.smbios_uuid);
      } else {
        join_errors_.push_back(std::string(joined.message()));
      }
    };
    auto sim = sim::pve::Simulator::Start(sim_options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);

    auto pve = testing::SimPveClient(*sim_);
    ASSERT_TRUE(pve.ok()) << pve.status();
    pve_http_ = std::move(*pve);

    auto omni_options = testing::StandInClientOptions(*standin_, &random_);
    ASSERT_TRUE(omni_options.ok()) << omni_options.status();
    auto state = omni::MakeGrpcStateClient(*omni_options);
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = std::move(*state);
    auto management = omni::MakeGrpcManagementClient(*omni_options);
    ASSERT_TRUE(management.ok()) << management.status();
    management_ = std::move(*management);

    auto provider =
        Provider::Assemble(Options(), *pve_http_, *state_, *management_, metrics_, util::RealClock(), random_);
    ASSERT_TRUE(provider.ok()) << provider.status();
    provider_ = std::move(*provider);
    pve_ = &provider_->pve();
  }

  // The provider as `run` assembles it, with quicker polls, heartbeat and resync; two heavy tasks
  // per node (below run's default of 4) so the limit is exercised.
  virtual ProviderOptions Options() const {
    ProviderOptions options;
    options.info = {.id = "proxmox",
                    .name = "Proxmox",
                    .description = "omni-proxmox under test",
                    .icon = "",
                    .schema = ProviderDataJsonSchema(),
                    .version = "test"};
    options.concurrency = 8;
    options.limits.max_tasks_per_node = kTasksPerNode;
    options.image_factory_url = standin_->factory_url();
    options.fleet.task_poll = milliseconds{100};
    options.retry.failed_base = milliseconds{2000};
    options.retry.failed_max = milliseconds{2000};
    options.steps.shutdown_timeout = std::chrono::seconds{5};
    options.heartbeat_interval = milliseconds{1000};
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

  void TearDown() override {
    if (provider_) provider_->Stop();
    provider_.reset();
  }

  std::vector<omni::Resource> Statuses() {
    auto list =
        state_->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), {}});
    return list.ok() ? *list : std::vector<omni::Resource>{};
  }

  std::map<std::string, Stage> StatusSpecs() {
    std::map<std::string, Stage> out;
    for (const auto& r : Statuses()) {
      Stage spec;
      if (omni::DecodeSpec(r, spec).ok()) out[r.metadata.id] = spec;
    }
    return out;
  }

  int Provisioned() {
    int n = 0;
    for (const auto& [id, spec] : StatusSpecs()) n += spec.stage() == Stage::PROVISIONED;
    return n;
  }

  Json Vms() { return sim_->StateForTest()["vms"]; }

  int MachineRequests() {
    auto list = state_->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), {}});
    return list.ok() ? static_cast<int>(list->size()) : -1;
  }

  bool WaitFor(const std::function<bool()>& predicate, std::chrono::seconds timeout = std::chrono::seconds{60}) {
    return standin_->WaitFor(predicate, timeout);
  }

  // The Omni instance our VMs and ISOs are marked with (markers.h Scope).
  std::string OurInstance() const { return omni::InstanceIdOfJoinToken(standin_->JoinToken("proxmox")); }

  std::string Dump() {
    std::string out;
    for (const auto& [id, spec] : StatusSpecs()) {
      out += fmt::format("{}: stage={} status={} error={}\n", id, static_cast<int>(spec.stage()), spec.status(),
                         spec.error());
    }
    std::lock_guard lock(mutex_);
    for (const auto& e : join_errors_) out += "join error: " + e + "\n";
    return out;
  }

  static constexpr int kTasksPerNode = 2;

  util::Random random_{42};
  util::MetricsRegistry metrics_;
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::unique_ptr<pve::Client> pve_http_;
  std::unique_ptr<omni::StateClient> state_;
  std::unique_ptr<omni::ManagementClient> management_;
  std::unique_ptr<Provider> provider_;
  pve::LimitedClient* pve_ = nullptr;  // the provider's Proxmox client (limits and metrics)

  std::mutex mutex_;
  std::set<std::string> joined_;
  std::vector<std::string> join_errors_;
  std::vector<sim::pve::VmBootInfo> boots_;  // what each VM booted with, in start order
};

}  // namespace omni_proxmox::provider::e2e
