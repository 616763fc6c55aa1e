// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox gc` as a process against the simulator and the stand-in: orphans and unused ISOs
// are listed, --delete removes exactly those, foreign and other providers' VMs are never touched,
// an offline node's VM is left alone, and exit codes tell scripts what happened.

#include <signal.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "provider_world.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr const char* kTalosStem = "talos-0123456789abcdef-v1.10.4-nocloud-amd64.iso";
constexpr const char* kCidataStem = "omni-cidata-workers-gone-0123abcd.iso";

class GcCommandTest : public ProviderWorld {
 protected:
  void SetUp() override {
    ProviderWorld::SetUp();
    talos_iso_ = Scoped(kTalosStem);
    cidata_iso_ = Scoped(kCidataStem);
  }
  // Our ISO names carry this provider and this Omni.
  std::string talos_iso_, cidata_iso_;

  // Ours without a request, a foreign VM, another provider's VM; two unused ISOs of our naming and
  // one that is not ours.
  void Plant() {
    CreateVm("pve1", 500, "workers-gone", Markers("proxmox", "workers-gone"));
    CreateVm("pve1", 600, "database", "prod");
    CreateVm("pve2", 700, "lab-x", Markers("proxmox-lab", "lab-x"));
    UploadIso("pve1", talos_iso_);
    UploadIso("pve1", cidata_iso_);
    UploadIso("pve1", "debian-12.iso");
  }
};

TEST_F(GcCommandTest, ReportsOnlyOurGarbageAndExitsOne) {
  Plant();
  auto table = Run("gc", {"--grace-period", "0s"});
  EXPECT_EQ(table.exit_code, 1) << table.err;
  EXPECT_THAT(table.out, HasSubstr("orphan_vm"));
  EXPECT_THAT(table.out, HasSubstr("VM 500 (workers-gone)"));
  EXPECT_THAT(table.out, HasSubstr(std::string("local:iso/") + talos_iso_));
  EXPECT_THAT(table.out, HasSubstr(std::string("local:iso/") + cidata_iso_));
  EXPECT_THAT(table.out, HasSubstr("3 found; run 'omni-proxmox gc --delete'"));
  EXPECT_THAT(table.out, ::testing::Not(HasSubstr("database")));
  EXPECT_THAT(table.out, ::testing::Not(HasSubstr("lab-x")));
  EXPECT_THAT(table.out, ::testing::Not(HasSubstr("debian-12")));

  auto json_run = Run("gc", {"--grace-period", "0s"}, /*json=*/true);
  EXPECT_EQ(json_run.exit_code, 1) << json_run.err;
  const Json report = Json::parse(json_run.out);
  EXPECT_EQ(report["mode"], "report");
  EXPECT_EQ(report["provider_id"], "proxmox");
  ASSERT_EQ(report["findings"].size(), 3u) << report.dump(1);
  EXPECT_EQ(report["findings"][0]["kind"], "orphan_vm");
  EXPECT_EQ(report["findings"][0]["vmid"], 500);
  EXPECT_EQ(report["findings"][0]["request_id"], "workers-gone");
  EXPECT_EQ(report["findings"][0]["deleted"], false);
  EXPECT_EQ(report["remaining"], 3);
  // Reporting changed nothing.
  EXPECT_TRUE(HasVm(500));
  EXPECT_TRUE(HasVolume(std::string("local:iso/") + cidata_iso_));

  // Everything is younger than a long grace period: nothing to report.
  auto young = Run("gc", {"--grace-period", "1h"});
  EXPECT_EQ(young.exit_code, 0) << young.out << young.err;
  EXPECT_THAT(young.out, HasSubstr("No garbage for provider 'proxmox'"));
}

TEST_F(GcCommandTest, DeleteRemovesOrphansAndIsosOnlyThenIsClean) {
  Plant();
  // An orphan on a node that goes offline cannot be proven old or read: it stays.
  CreateVm("pve3", 800, "workers-offline", Markers("proxmox", "workers-offline"));
  ASSERT_TRUE(sim_->SetNodeOnline("pve3", false).ok());

  auto deleted = Run("gc", {"--delete", "--grace-period", "0s"}, /*json=*/true);
  EXPECT_EQ(deleted.exit_code, 0) << deleted.out << deleted.err;
  const Json report = Json::parse(deleted.out);
  EXPECT_EQ(report["mode"], "delete");
  EXPECT_EQ(report["deleted"], 3) << report.dump(1);
  EXPECT_EQ(report["remaining"], 0);
  EXPECT_FALSE(HasVm(500));
  EXPECT_FALSE(HasVolume(std::string("local:iso/") + talos_iso_));
  EXPECT_FALSE(HasVolume(std::string("local:iso/") + cidata_iso_));
  EXPECT_TRUE(HasVm(600));
  EXPECT_TRUE(HasVm(700));
  EXPECT_TRUE(HasVm(800));
  EXPECT_TRUE(HasVolume("local:iso/debian-12.iso"));

  auto again = Run("gc", {"--grace-period", "0s"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;

  // Back online, the remaining orphan is found.
  ASSERT_TRUE(sim_->SetNodeOnline("pve3", true).ok());
  auto online = Run("gc", {"--grace-period", "0s"});
  EXPECT_EQ(online.exit_code, 1);
  EXPECT_THAT(online.out, HasSubstr("VM 800 (workers-offline)"));
}

TEST_F(GcCommandTest, UsageErrorsExitTwoAndUnreachableOmniExitsOne) {
  auto bad_grace = Run("gc", {"--grace-period", "soon"});
  EXPECT_EQ(bad_grace.exit_code, 2);
  EXPECT_THAT(bad_grace.err, HasSubstr("--grace-period 'soon' is not a duration"));
  auto unknown = Run("gc", {"--force"});
  EXPECT_EQ(unknown.exit_code, 2);
  auto bad_mode = testing::RunProcess({OP_BINARY, "run", "--gc-mode", "purge"});
  EXPECT_EQ(bad_mode.exit_code, 2);
  EXPECT_THAT(bad_mode.err, HasSubstr("--gc-mode 'purge' is not a mode"));
  auto help = testing::RunProcess({OP_BINARY, "gc", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Examples:"));
  EXPECT_THAT(help.out, HasSubstr("--delete"));

  // Omni down: nothing is judged, so nothing could be deleted by mistake.
  CreateVm("pve1", 500, "workers-gone", Markers("proxmox", "workers-gone"));
  standin_->StopServing();
  auto down = Run("gc", {"--delete", "--grace-period", "0s"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("cannot read Omni"));
  EXPECT_TRUE(HasVm(500));
}

TEST_F(GcCommandTest, RunInDeleteModeCollectsOrphansAndKeepsForeignVms) {
  Plant();
  testing::ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0", "--gc-mode", "delete",
       "--gc-grace-period", "0s", "--gc-interval", "1s"},
      {}, Path("provider.log"));
  EXPECT_TRUE(Eventually([&] {
    return !HasVm(500) && !HasVolume(std::string("local:iso/") + talos_iso_) &&
           !HasVolume(std::string("local:iso/") + cidata_iso_);
  })) << provider.Log();
  EXPECT_TRUE(HasVm(600));
  EXPECT_TRUE(HasVm(700));
  EXPECT_TRUE(HasVolume("local:iso/debian-12.iso"));
  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{60}), 0) << provider.Log();
  EXPECT_THAT(provider.Log(), HasSubstr("orphan VM 500 (workers-gone) on pve1: request workers-gone no longer exists"));
}

// The data-loss case from the field: two Omni instances whose providers both use the ID "proxmox"
// share one Proxmox cluster. Each Omni's `gc --delete` removes its own garbage and never a VM or
// ISO of the other, however orphaned it looks from there.
TEST_F(GcCommandTest, TwoOmniInstancesWithOneProviderIdNeverCollectEachOthers) {
  // Another Omni: its own random join token (the seed stands for that randomness).
  sim::omni::StandInOptions options_b;
  options_b.provider_id = "proxmox";
  options_b.seed = 2;
  auto second = sim::omni::StandIn::Start(options_b);
  ASSERT_TRUE(second.ok()) << second.status();
  std::ofstream(dir_ / "key-b") << (*second)->provider_key();
  const std::string instance_b = omni::InstanceIdOfJoinToken((*second)->JoinToken("proxmox"));
  ASSERT_NE(instance_b, Instance()) << "two Omni instances must not share an identity";
  const auto gc_from_b = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {OP_BINARY,
                                     "--format",
                                     "json",
                                     "gc",
                                     "--config-file",
                                     Path("config.yaml"),
                                     "--omni-api-endpoint",
                                     (*second)->grpc_endpoint(),
                                     "--omni-service-account-key-file",
                                     Path("key-b")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::RunProcess(argv, "", {}, std::chrono::seconds{120});
  };

  // Omni A's provider runs two live machines.
  ASSERT_TRUE(standin_
                  ->ApplyMachineClass("workers",
                                      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: type == "
                                      "\"lvmthin\"\n")
                  .ok());
  testing::ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0"},
      {}, Path("provider.log"));
  ASSERT_TRUE(standin_->WaitFor(
      [&] { return standin_->ProviderConnected("proxmox") && standin_->ProviderStatusPublished("proxmox"); },
      std::chrono::seconds{30}))
      << provider.Log();
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 2).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return standin_->JoinedMachines().size() == 2; }, std::chrono::seconds{60}))
      << provider.Log();
  const nlohmann::json live = sim_->StateForTest()["vms"];
  ASSERT_EQ(live.size(), 2u);
  for (const auto& vm : live) {
    EXPECT_THAT(vm["config"]["tags"].get<std::string>(), HasSubstr("omni-instance." + Instance())) << vm.dump();
  }
  // And an orphan of Omni B's, with one of B's cloud-init ISOs.
  const std::string b_markers = fmt::format("{};{};{};{}", provider::kManagedTag, provider::ProviderTag("proxmox"),
                                            provider::InstanceTag(instance_b), provider::RequestTag("workers-b-gone"));
  CreateVm("pve3", 900, "workers-b-gone", b_markers);
  const std::string b_iso = provider::ScopedIsoName("omni-cidata-workers-b-gone-0123abcd.iso",
                                                    {.provider_id = "proxmox", .instance = instance_b});
  UploadIso("pve3", b_iso);

  // From Omni B: A's live VMs are not B's orphans. B's orphan and ISO go.
  auto from_b = gc_from_b({"--delete", "--grace-period", "0s"});
  EXPECT_EQ(from_b.exit_code, 0) << from_b.out << from_b.err;
  const Json b_report = Json::parse(from_b.out);
  EXPECT_EQ(b_report["deleted"], 2) << b_report.dump(1);
  for (const auto& finding : b_report["findings"]) {
    EXPECT_NE(finding.value("vmid", 0), live[0]["vmid"].get<int>());
    EXPECT_NE(finding.value("vmid", 0), live[1]["vmid"].get<int>());
  }
  EXPECT_FALSE(HasVm(900));
  EXPECT_FALSE(HasVolume("local:iso/" + b_iso));
  for (const auto& vm : live) EXPECT_TRUE(HasVm(vm["vmid"].get<int>()));

  // From Omni A, with B's orphan planted again: nothing of B's is touched.
  CreateVm("pve3", 901, "workers-b-gone", b_markers);
  UploadIso("pve3", b_iso);
  auto from_a = Run("gc", {"--delete", "--grace-period", "0s"}, /*json=*/true);
  EXPECT_EQ(from_a.exit_code, 0) << from_a.out << from_a.err;
  EXPECT_EQ(Json::parse(from_a.out)["deleted"], 0) << from_a.out;
  EXPECT_TRUE(HasVm(901));
  EXPECT_TRUE(HasVolume("local:iso/" + b_iso));
  for (const auto& vm : live) EXPECT_TRUE(HasVm(vm["vmid"].get<int>()));

  // A's teardown removes A's VMs only.
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(Eventually([&] { return sim_->StateForTest()["vms"].size() == 1; })) << provider.Log();
  EXPECT_TRUE(HasVm(901));
  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();
}

// VMs and ISOs from before the Omni marker, and the Go provider's cloud-init ISOs, name no Omni:
// `gc` lists them as kept with the reason, and removes them only with --include-unscoped.
TEST_F(GcCommandTest, WhatNamesNoOmniIsCollectedOnlyWithIncludeUnscoped) {
  CreateVm("pve1", 510, "workers-old", UnscopedMarkers("proxmox", "workers-old"));
  UploadIso("pve1", kTalosStem);
  UploadIso("pve1", "user-data-510.iso");
  UploadIso("pve1", "user-data-511.iso");

  auto kept = Run("gc", {"--delete", "--grace-period", "0s"});
  EXPECT_EQ(kept.exit_code, 0) << kept.out << kept.err;
  EXPECT_THAT(kept.out, HasSubstr("Kept (4)"));
  EXPECT_THAT(kept.out, HasSubstr("VM 510 (workers-old) on pve1: no request, but made before VMs were marked"));
  EXPECT_THAT(kept.out, HasSubstr("local:iso/user-data-511.iso on pve1: unused, but its name carries no Omni instance "
                                  "(the Go provider's name)"));
  EXPECT_TRUE(HasVm(510));
  EXPECT_TRUE(HasVolume("local:iso/user-data-511.iso"));

  auto collected = Run("gc", {"--delete", "--include-unscoped", "--grace-period", "0s"}, /*json=*/true);
  EXPECT_EQ(collected.exit_code, 0) << collected.out << collected.err;
  EXPECT_EQ(Json::parse(collected.out)["deleted"], 4) << collected.out;
  EXPECT_FALSE(HasVm(510));
  EXPECT_FALSE(HasVolume(std::string("local:iso/") + kTalosStem));
  EXPECT_FALSE(HasVolume("local:iso/user-data-510.iso"));
  EXPECT_FALSE(HasVolume("local:iso/user-data-511.iso"));
}

}  // namespace
}  // namespace omni_proxmox::cli
