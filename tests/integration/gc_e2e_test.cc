// SPDX-License-Identifier: Apache-2.0
// Garbage collection end to end: the provider's controller runs GC cycles against the Proxmox
// simulator and the Omni stand-in over real sockets. A MachineRequest destroyed behind the
// provider's back leaves an orphan VM that report mode only reports and delete mode deletes after
// the grace period; a foreign VM and another provider's VM are never touched; ISOs left after
// scaling to 0 are removed.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/state_client.h"
#include "provider/gc/collector.h"
#include "provider/model/providerdata.h"
#include "provider/ownership/markers.h"
#include "provider/provider.h"
#include "pve/client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/world_test.h"
#include "util/clock.h"

namespace omni_proxmox::provider {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Simulated time runs 25 times faster than real time, for Proxmox's tasks and for the ages GC
// compares with the grace period alike (both read `clock_`).
constexpr double kTimeScale = 25;
constexpr seconds kGrace{300};  // 12 s of real time

constexpr const char* kClass = "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n";

class GarbageE2ETest : public testing::WorldTest {
 protected:
  // The simulator's built-in cluster, on the scaled clock the provider shares.
  cli::WorldOptions MakeWorldOptions() const override { return {.clock = &clock_, .client_seed = 7}; }

  // The provider as `run --gc-mode <mode>` assembles it, on the scaled clock, with a fresh
  // registry per start.
  void StartProvider(GcMode mode) {
    ProviderOptions options = testing::QuickProviderOptions(*world_);
    options.info.description = "gc under test";
    options.resync_interval = milliseconds{2000};
    options.gc_mode = mode;
    options.gc_grace_period = kGrace;
    options.gc_interval = milliseconds{500};
    auto provider = world_->AssembleProvider(options);
    ASSERT_TRUE(provider.ok()) << provider.status();
    (*provider)->Start();
    // Omni admits request sets only once the provider has published its status.
    ASSERT_TRUE(standin_->WaitFor([&] { return standin_->ProviderStatusPublished("proxmox"); }, seconds{30}));
  }

  void StopProvider() { world_->StopProvider(); }

  double Metric(const std::string& series) {
    const std::string text = world_->metrics().RenderText();
    const auto at = text.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
  }

  std::vector<std::string> IsoVolumes(const std::string& prefix) {
    const Json state = sim_->StateForTest();
    std::vector<std::string> out;
    for (const auto& v : state["volumes"]) {
      const std::string volid = v.value("volid", "");
      if (volid.find(":iso/" + prefix) != std::string::npos) out.push_back(volid);
    }
    return out;
  }
  // Polls: several conditions here (metrics, simulator state) change without any Omni write.
  static bool WaitFor(const std::function<bool()>& predicate, seconds timeout = seconds{120}) {
    return testing::Eventually(predicate, timeout);
  }
  std::vector<omni::Resource> Requests() {
    auto list =
        world_->state().List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), {}});
    return list.ok() ? *list : std::vector<omni::Resource>{};
  }

  void CreateVm(int vmid, const std::string& name, const std::string& tags) {
    WorldTest::CreateVm("pve2", vmid, name, tags);
  }

  util::ScaledClock clock_{kTimeScale};
};

TEST_F(GarbageE2ETest, OrphanReportedThenDeletedForeignKeptIsosRemovedAfterScaleToZero) {
  StartProvider(GcMode::kReport);
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 2).ok());
  ASSERT_TRUE(WaitFor([&] { return standin_->JoinedMachines().size() == 2; }));
  ASSERT_EQ(Vms().size(), 2u);
  // Someone else's VM, and a VM of another omni-proxmox provider whose request we cannot see.
  CreateVm(4242, "someone-elses", "prod");
  CreateVm(4343, "lab-x", fmt::format("{};{};{}", kManagedTag, ProviderTag("proxmox-lab"), RequestTag("lab-x")));

  // The provider is down while a MachineRequest disappears without its finalizer being honoured.
  StopProvider();
  const auto requests = Requests();
  ASSERT_EQ(requests.size(), 2u);
  const std::string gone = requests[0].metadata.id;
  int orphan_vmid = 0;
  for (const auto& vm : Vms()) {
    if (vm["config"].value("name", "") == VmNameFor(gone)) orphan_vmid = vm["vmid"];
  }
  ASSERT_NE(orphan_vmid, 0);
  auto& store = standin_->state();
  const std::string ns(omni::kNamespaceInfraProvider), type(omni::kTypeMachineRequest);
  ASSERT_TRUE(store
                  .Modify(ns, type, gone,
                          [](sim::omni::Resource& r) {
                            r.finalizers.clear();
                            return true;
                          })
                  .ok());
  auto stored = store.Get(ns, type, gone);
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(store.Destroy(ns, type, gone, stored->owner).ok());
  // The set controller replaces the request with a new one; keep the count at 1 so only one remains.
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 1).ok());

  // Report mode: the orphan is counted once it is older than the grace period, and left alone.
  StartProvider(GcMode::kReport);
  ASSERT_TRUE(WaitFor([&] { return Metric("omni_proxmox_gc_findings{kind=\"orphan_vm\"}") == 1; }))
      << world_->metrics().RenderText();
  EXPECT_TRUE(HasVm(orphan_vmid));
  EXPECT_EQ(Metric("omni_proxmox_gc_deleted_total{kind=\"orphan_vm\"}"), 0);

  // Delete mode: the orphan and its cloud-init ISO go; the foreign and the other provider's VMs stay.
  StartProvider(GcMode::kDelete);
  ASSERT_TRUE(WaitFor([&] { return !HasVm(orphan_vmid); })) << Vms().dump(1);
  ASSERT_TRUE(WaitFor([&] { return Metric("omni_proxmox_gc_deleted_total{kind=\"orphan_vm\"}") == 1; }))
      << world_->metrics().RenderText();
  EXPECT_TRUE(HasVm(4242));
  EXPECT_TRUE(HasVm(4343));
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& v : IsoVolumes("omni-cidata-")) {
      if (v.find(gone) != std::string::npos) return false;
    }
    return true;
  })) << sim_->StateForTest()["volumes"].dump(1);

  // Scale to 0: teardown removes the VMs and their cloud-init ISOs; GC then removes the shared
  // Talos ISO nothing uses any more.
  ASSERT_FALSE(IsoVolumes("talos-").empty());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(WaitFor([&] { return Requests().empty(); }));
  ASSERT_TRUE(WaitFor([&] { return IsoVolumes("talos-").empty() && IsoVolumes("omni-cidata-").empty(); }))
      << sim_->StateForTest()["volumes"].dump(1);
  EXPECT_TRUE(WaitFor([&] { return Metric("omni_proxmox_gc_deleted_total{kind=\"talos_iso\"}") >= 1; }))
      << world_->metrics().RenderText();
  EXPECT_TRUE(HasVm(4242));
  EXPECT_TRUE(HasVm(4343));
  EXPECT_EQ(Vms().size(), 2u);
}

TEST_F(GarbageE2ETest, NothingIsCollectedWhileOmniCannotBeRead) {
  // An orphan by its markers: its request never existed.
  CreateVm(4444, "workers-vanished",
           fmt::format("{};{};{};{}", kManagedTag, ProviderTag("proxmox"),
                       InstanceTag(omni::InstanceIdOfJoinToken(standin_->JoinToken("proxmox"))),
                       RequestTag("workers-vanished")));
  GarbageCollector collector({.provider_id = "proxmox",
                              .grace_period = seconds{0},
                              .shutdown_timeout = seconds{5},
                              .task_timeout = seconds{60}},
                             world_->pve(), world_->state(), clock_);
  standin_->StopServing();
  auto cycle = collector.RunCycle(GcMode::kDelete);
  EXPECT_TRUE(cycle.report.skipped);
  EXPECT_THAT(cycle.report.skip_reason, ::testing::HasSubstr("cannot read Omni"));
  EXPECT_TRUE(HasVm(4444));
  ASSERT_TRUE(standin_->ResumeServing().ok());
  ASSERT_TRUE(WaitFor([&] {
    cycle = collector.RunCycle(GcMode::kDelete);
    return !cycle.report.skipped;
  }));
  ASSERT_EQ(cycle.outcomes.size(), 1u);
  EXPECT_TRUE(cycle.outcomes[0].deleted) << cycle.outcomes[0].error;
  EXPECT_FALSE(HasVm(4444));
}

}  // namespace
}  // namespace omni_proxmox::provider
