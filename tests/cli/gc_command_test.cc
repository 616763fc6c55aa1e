// `omni-proxmox gc` as a process against the simulator and the stand-in: orphans and unused ISOs
// are listed, --delete removes exactly those, foreign and other providers' VMs are never touched,
// an offline node's VM is left alone, and exit codes tell scripts what happened.

#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "provider_world.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr const char* kTalosIso = "talos-0123456789abcdef-v1.10.4-nocloud-amd64.iso";
constexpr const char* kCidataIso = "omni-cidata-workers-gone-0123abcd.iso";

class GcCommandTest : public ProviderWorld {
 protected:
  // Ours without a request, a foreign VM, another provider's VM; two unused ISOs of our naming and
  // one that is not ours.
  void Plant() {
    CreateVm("pve1", 500, "workers-gone", Markers("proxmox", "workers-gone"));
    CreateVm("pve1", 600, "database", "prod");
    CreateVm("pve2", 700, "lab-x", Markers("proxmox-lab", "lab-x"));
    UploadIso("pve1", kTalosIso);
    UploadIso("pve1", kCidataIso);
    UploadIso("pve1", "debian-12.iso");
  }
};

TEST_F(GcCommandTest, ReportsOnlyOurGarbageAndExitsOne) {
  Plant();
  auto table = Run("gc", {"--grace-period", "0s"});
  EXPECT_EQ(table.exit_code, 1) << table.err;
  EXPECT_THAT(table.out, HasSubstr("orphan_vm"));
  EXPECT_THAT(table.out, HasSubstr("VM 500 (workers-gone)"));
  EXPECT_THAT(table.out, HasSubstr(std::string("local:iso/") + kTalosIso));
  EXPECT_THAT(table.out, HasSubstr(std::string("local:iso/") + kCidataIso));
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
  EXPECT_TRUE(HasVolume(std::string("local:iso/") + kCidataIso));

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
  EXPECT_FALSE(HasVolume(std::string("local:iso/") + kTalosIso));
  EXPECT_FALSE(HasVolume(std::string("local:iso/") + kCidataIso));
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
    return !HasVm(500) && !HasVolume(std::string("local:iso/") + kTalosIso) &&
           !HasVolume(std::string("local:iso/") + kCidataIso);
  })) << provider.Log();
  EXPECT_TRUE(HasVm(600));
  EXPECT_TRUE(HasVm(700));
  EXPECT_TRUE(HasVolume("local:iso/debian-12.iso"));
  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{60}), 0) << provider.Log();
  EXPECT_THAT(provider.Log(), HasSubstr("orphan VM 500 (workers-gone) on pve1: request workers-gone no longer exists"));
}

}  // namespace
}  // namespace omni_proxmox::cli
