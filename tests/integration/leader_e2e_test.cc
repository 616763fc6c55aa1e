// SPDX-License-Identifier: Apache-2.0
// Two replicas, one writer (issue 16), end to end: two `omni-proxmox run` processes with the same
// key against one Proxmox simulator and one Omni stand-in. Exactly one leads; ten machines are
// requested; the leader is SIGKILLed mid-provisioning; the standby takes the lease over once it
// expired (no same-host shortcut: as on two hosts) and finishes; scaling to 0 leaves no VM and no
// ISO of ours; and the journals show no mutation from a replica while the other held the lease.

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "omni/specs/omni.pb.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/fencing_check.h"
#include "support/replica_process.h"

namespace omni_proxmox {
namespace {

using Json = nlohmann::json;
using Stage = specs::MachineRequestStatusSpec;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ReplicaProcess;
using SteadyClock = std::chrono::steady_clock;

constexpr char kSet[] = "workers";
constexpr char kLeaseType[] = "Leases.proxmox.infraprovider.sidero.dev";
constexpr auto kLeaseDuration = seconds{3};

// Four nodes; tasks long enough (real time) that a kill lands while most machines are unfinished.
constexpr const char* kScenario = R"yaml(
cluster:
  name: ha
  vmid_range: [100, 100000]
nodes:
  - {name: pve1, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve2, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve3, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve4, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup], size_gib: 200}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 2000}
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
tasks:
  durations: {qmcreate: 1, qmstart: 0.4, qmstop: 0.2, qmshutdown: 0.3, qmconfig: 0.05, download: 1, imgcopy: 0.1, qmdestroy: 0.5, imgdel: 0.1}
)yaml";
constexpr const char* kWorkerClass =
    "cores: 1\nmemory: 2048\ndisk_size: 5\nnetwork_bridge: vmbr0\nstorage_selector: type == \"lvmthin\"\n";

class LeaderE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-leader-e2e-{}", getpid());
    std::filesystem::create_directories(dir_);
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox"});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    sim::pve::SimulatorOptions options;
    options.scenario_yaml = kScenario;
    options.on_vm_started = [this](const sim::pve::VmBootInfo& boot) {
      (void)standin_->MachineJoined(boot.user_data, boot.smbios_uuid);
    };
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    Write("config.yaml", fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n",
                                     sim_->base_url(), sim_->default_token_id(), (dir_ / "secret").string()));
    Write("secret", sim_->default_token_secret());
    Write("key", standin_->provider_key());
    ASSERT_TRUE(standin_->ApplyMachineClass(kSet, kWorkerClass).ok());
  }

  void TearDown() override {
    if (HasFailure()) {
      fmt::print(stderr, "logs kept in {}\n", dir_.string());
    } else {
      std::filesystem::remove_all(dir_);
    }
  }

  void Write(const std::string& name, const std::string& content) { std::ofstream(dir_ / name) << content; }

  std::unique_ptr<ReplicaProcess> StartReplica(const std::string& name) {
    auto replica = std::make_unique<ReplicaProcess>(
        std::vector<std::string>{OP_BINARY, "run", "--config-file", (dir_ / "config.yaml").string(),
                                 "--omni-api-endpoint", standin_->grpc_endpoint(), "--omni-service-account-key-file",
                                 (dir_ / "key").string(), "--listen", "127.0.0.1:0", "--leader-lease-duration", "3s",
                                 "--leader-renew-deadline", "2s", "--leader-retry-period", "500ms",
                                 // Both replicas run on this host; take the two-host path (wait for expiry).
                                 "--leader-local-takeover=false", "--gc-mode", "delete", "--gc-grace-period", "2s",
                                 "--gc-interval", "1s"},
        (dir_ / (name + ".log")).string());
    EXPECT_TRUE(replica->WaitStarted(seconds{30})) << replica->Log();
    return replica;
  }

  // The holder and when the stand-in applied the version that named it.
  std::pair<std::string, SteadyClock::time_point> Holder() const {
    const auto history = testing::LeaseVersions(standin_->journal(), kLeaseType);
    if (history.empty()) return {"", {}};
    // The version that first named the current holder in a row of renewals.
    std::size_t first = history.size() - 1;
    while (first > 0 && history[first - 1].holder == history.back().holder) --first;
    return {history.back().holder, history[first].at};
  }

  int Provisioned() const {
    int n = 0;
    const auto statuses = standin_->state().List("infra-provider", "MachineRequestStatuses.omni.sidero.dev");
    for (const auto& r : statuses.value_or(std::vector<sim::omni::Resource>{})) {
      Stage spec;
      if (spec.ParseFromString(r.proto_spec) && spec.stage() == Stage::PROVISIONED) ++n;
    }
    return n;
  }
  int Requests() const {
    return static_cast<int>(standin_->state().List("infra-provider", "MachineRequests.omni.sidero.dev")->size());
  }
  // VM IDs per request, from the ownership tags.
  std::map<std::string, std::vector<int>> VmsByRequest() const {
    std::map<std::string, std::vector<int>> out;
    const Json state = sim_->StateForTest();
    for (const auto& vm : state["vms"]) {
      const Json& config = vm["config"];
      const std::string tags = config.contains("tags") ? config["tags"].get<std::string>() : "";
      const auto at = tags.find("omni-request.");
      if (tags.find("omni-provider.proxmox") == std::string::npos || at == std::string::npos) continue;
      const auto end = tags.find_first_of(";, ", at);
      out[tags.substr(at + 13, end == std::string::npos ? std::string::npos : end - at - 13)].push_back(
          vm["vmid"].get<int>());
    }
    return out;
  }
  int Vms() const { return static_cast<int>(sim_->StateForTest()["vms"].size()); }
  std::vector<std::string> IsosOfOurs() const {
    std::vector<std::string> out;
    const Json state = sim_->StateForTest();
    for (const auto& volume : state["volumes"]) {
      const std::string volid = volume["volid"];
      if (volid.find(":iso/talos-") != std::string::npos || volid.find("omni-cidata-") != std::string::npos) {
        out.push_back(volid);
      }
    }
    return out;
  }

  bool Eventually(const std::function<bool()>& condition, seconds timeout) const {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      if (condition()) return true;
      std::this_thread::sleep_for(milliseconds{50});
    }
    return condition();
  }

  std::filesystem::path dir_;
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
};

TEST_F(LeaderE2ETest, OneLeaderTheStandbyTakesOverAfterSigkillFinishesAndLeavesNothing) {
  auto first = StartReplica("replica-1");
  auto second = StartReplica("replica-2");
  ASSERT_FALSE(first->identity().empty());
  ASSERT_NE(first->identity(), second->identity());

  // Exactly one leader: the lease names it, its /readyz says ok, the other's says standby.
  ReplicaProcess* leader = nullptr;
  ReplicaProcess* standby = nullptr;
  ASSERT_TRUE(Eventually(
      [&] {
        const std::string holder = Holder().first;
        leader = holder == first->identity() ? first.get() : holder == second->identity() ? second.get() : nullptr;
        if (leader == nullptr) return false;
        standby = leader == first.get() ? second.get() : first.get();
        const auto leading = leader->Get("/readyz");
        const auto waiting = standby->Get("/readyz");
        return leading.status == 200 && leading.body.starts_with("ok") && waiting.status == 200 &&
               waiting.body.starts_with("standby");
      },
      seconds{30}))
      << first->Log() << second->Log();
  ASSERT_TRUE(Eventually([&] { return leader->Metric("omni_proxmox_leader") == 1.0; }, seconds{10}));
  EXPECT_EQ(standby->Metric("omni_proxmox_leader"), 0.0);

  ASSERT_TRUE(standin_->ScaleMachineRequestSet(kSet, kSet, 10).ok());
  // Mid-provisioning: some VMs made, not every request provisioned.
  ASSERT_TRUE(Eventually([&] { return VmsByRequest().size() >= 3; }, seconds{30})) << leader->Log();
  const int provisioned_at_kill = Provisioned();
  const auto killed_at = leader->Kill();
  ASSERT_LT(provisioned_at_kill, 10);

  ASSERT_TRUE(Eventually([&] { return Holder().first == standby->identity(); }, kLeaseDuration + seconds{10}))
      << standby->Log();
  const double takeover = std::chrono::duration<double>(Holder().second - killed_at).count();
  fmt::print(stderr, "leader killed with {} of 10 provisioned; the standby took the lease {:.2f} s later\n",
             provisioned_at_kill, takeover);
  EXPECT_LE(takeover, std::chrono::duration<double>(kLeaseDuration + seconds{5}).count());
  // It waited for the lease to expire: the killed leader had renewed less than 2 s (the renew deadline) before.
  EXPECT_GE(takeover, 1.0);
  EXPECT_TRUE(Eventually([&] { return standby->Get("/readyz").body.starts_with("ok"); }, seconds{10}));
  EXPECT_TRUE(Eventually([&] { return standby->Metric("omni_proxmox_leader") == 1.0; }, seconds{10}));

  ASSERT_TRUE(Eventually([&] { return Provisioned() == 10 && standin_->JoinedMachines().size() == 10; }, seconds{60}))
      << standby->Log();
  const auto vms = VmsByRequest();
  EXPECT_EQ(vms.size(), 10u);
  for (const auto& [request, ids] : vms) EXPECT_EQ(ids.size(), 1u) << request << ": " << fmt::format("{}", ids);

  ASSERT_TRUE(standin_->ScaleMachineRequestSet(kSet, kSet, 0).ok());
  ASSERT_TRUE(Eventually([&] { return Requests() == 0 && Vms() == 0 && IsosOfOurs().empty(); }, seconds{60}))
      << fmt::format("{} requests, {} VMs, ISOs: {}\n", Requests(), Vms(), fmt::join(IsosOfOurs(), ", "))
      << standby->Log();

  // SIGTERM hands the lease back.
  EXPECT_EQ(standby->Terminate(seconds{30}), 0) << standby->Log();
  EXPECT_EQ(Holder().first, "");

  auto report = testing::CheckFencing(testing::LeaseVersions(standin_->journal(), kLeaseType),
                                      testing::ReplicaMutations(standin_->journal(), sim_->journal()),
                                      {{.replica = leader->identity(), .from = killed_at, .until = {}}});
  fmt::print(stderr, "fencing: {} mutations checked ({}), {} lease versions, {} holder changes\n", report.checked,
             fmt::join(report.by_replica, ", "), report.lease_versions, report.holder_changes);
  EXPECT_TRUE(report.violations.empty()) << fmt::format("{}", fmt::join(report.violations, "\n"));
  EXPECT_GT(report.by_replica[leader->identity()], 0);
  EXPECT_GT(report.by_replica[standby->identity()], 0);
  EXPECT_EQ(report.by_replica.size(), 2u);
  EXPECT_EQ(standin_->journal().dropped(), 0u);
}

}  // namespace
}  // namespace omni_proxmox
