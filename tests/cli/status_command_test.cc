// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox status` as a process: an unregistered provider, a healthy provider with a
// provisioned request (table and JSON), an orphan VM, and a request whose VM was deleted behind
// the provider's back.

#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "provider_world.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

class StatusCommandTest : public ProviderWorld {};

TEST_F(StatusCommandTest, RegisteredButNeverRunNeedsAttentionAndAgreesWithDoctor) {
  // InfraProviders/proxmox exists (as after omnictl infraprovider create); no run has reported yet.
  auto table = Run("status", {});
  EXPECT_EQ(table.exit_code, 1) << table.err;
  EXPECT_THAT(table.out, HasSubstr("registered in Omni, but it has not run yet"));
  EXPECT_THAT(table.out, HasSubstr("No MachineRequests for this provider."));
  auto json_run = Run("status", {}, /*json=*/true);
  EXPECT_EQ(json_run.exit_code, 1);
  const Json status = Json::parse(json_run.out);
  EXPECT_EQ(status["ok"], false);
  EXPECT_EQ(status["provider"]["registered"], true);  // doctor's "provider registered" passes too
  EXPECT_EQ(status["provider"]["reported"], false);
  EXPECT_TRUE(status["provider"]["heartbeat_age_seconds"].is_null());
}

TEST_F(StatusCommandTest, UnregisteredProviderIsNamedWithTheFix) {
  ASSERT_TRUE(standin_->RemoveInfraProvider("proxmox").ok());
  auto table = Run("status", {});
  EXPECT_EQ(table.exit_code, 1) << table.err;
  EXPECT_THAT(table.out, HasSubstr("not registered: InfraProviders/proxmox does not exist; create it with omnictl "
                                   "infraprovider create proxmox"));
}

TEST_F(StatusCommandTest, HealthyThenOrphanThenMissingVm) {
  ASSERT_TRUE(standin_
                  ->ApplyMachineClass("workers",
                                      "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n")
                  .ok());
  testing::ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0"},
      {}, Path("provider.log"));
  ASSERT_TRUE(standin_->WaitFor(
      [&] { return standin_->ProviderConnected("proxmox") && standin_->ProviderStatusPublished("proxmox"); },
      std::chrono::seconds{60}))
      << provider.Log();
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 1).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return standin_->JoinedMachines().size() == 1; }, std::chrono::seconds{90}))
      << provider.Log();

  // The status may trail the join by one pass: poll until PROVISIONED.
  Json status;
  testing::ProcessResult healthy;
  ASSERT_TRUE(Eventually([&] {
    healthy = Run("status", {}, /*json=*/true);
    status = Json::parse(healthy.out, nullptr, false);
    return healthy.exit_code == 0 && status["requests"].size() == 1 && status["requests"][0]["stage"] == "PROVISIONED";
  })) << healthy.out
      << healthy.err;
  EXPECT_EQ(status["ok"], true);
  EXPECT_EQ(status["provider"]["registered"], true);
  EXPECT_EQ(status["provider"]["connected"], true);
  ASSERT_EQ(status["requests"].size(), 1u);
  const Json request = status["requests"][0];
  EXPECT_EQ(request["stage"], "PROVISIONED");
  EXPECT_EQ(request["power"], "running");
  EXPECT_EQ(request["request_set"], "workers");
  const int vmid = request["vmid"];
  EXPECT_GT(vmid, 0);
  EXPECT_FALSE(request["node"].get<std::string>().empty());
  // Omni has seen the machine connect (InfraMachineRegistration + Machines, readable by the provider key).
  EXPECT_EQ(request["machine_connected"], true);
  EXPECT_TRUE(request["machine_seen_seconds_ago"].is_number()) << request.dump();
  EXPECT_TRUE(request["waiting_for_machine_seconds"].is_null()) << request.dump();
  auto table = Run("status", {});
  EXPECT_EQ(table.exit_code, 0) << table.out;
  EXPECT_THAT(table.out, HasSubstr("MACHINE IN OMNI"));
  EXPECT_THAT(table.out, HasSubstr("connected (first "));
  EXPECT_THAT(table.out, HasSubstr("REQUEST"));
  EXPECT_THAT(table.out, HasSubstr("PROVISIONED"));
  EXPECT_THAT(table.out, HasSubstr("All is well."));

  // A VM with our markers and no request: an orphan.
  CreateVm("pve2", 900, "workers-gone", Markers("proxmox", "workers-gone"));
  auto orphaned = Run("status", {"--grace-period", "0s"}, /*json=*/true);
  EXPECT_EQ(orphaned.exit_code, 1);
  status = Json::parse(orphaned.out);
  ASSERT_EQ(status["orphans"].size(), 1u) << status.dump(1);
  EXPECT_EQ(status["orphans"][0]["vmid"], 900);
  table = Run("status", {"--grace-period", "0s"});
  EXPECT_THAT(table.out, HasSubstr("Orphan VMs"));
  EXPECT_THAT(table.out, HasSubstr("VM 900 (workers-gone)"));

  // Its node goes offline: the VM's power is unknown, but it is not missing.
  const std::string node = request["node"];
  ASSERT_TRUE(sim_->SetNodeOnline(node, false).ok());
  auto offline = Run("status", {}, /*json=*/true);
  status = Json::parse(offline.out);
  EXPECT_EQ(status["requests"][0]["power"], "unknown") << status.dump(1);
  EXPECT_EQ(status["requests"][0]["vm_missing"], false);
  EXPECT_EQ(status["missing_vms"], 0);
  ASSERT_TRUE(sim_->SetNodeOnline(node, true).ok());

  // The provider stops and the request's VM disappears: the request's VM is missing.
  provider.Signal(SIGTERM);
  ASSERT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();
  ASSERT_TRUE(sim_->DeleteVmOutOfBand(vmid).ok());
  auto missing = Run("status", {}, /*json=*/true);
  EXPECT_EQ(missing.exit_code, 1);
  status = Json::parse(missing.out);
  EXPECT_EQ(status["missing_vms"], 1);
  EXPECT_EQ(status["requests"][0]["vm_missing"], true);
  EXPECT_EQ(status["requests"][0]["power"], "missing");
}

// A teardown stuck on a lock someone else holds on the VM: `status` shows the retrying error
// (from our state: Omni removed the MachineRequestStatus before the VM's removal began) and needs
// attention, until the lock goes and the request is gone.
TEST_F(StatusCommandTest, TeardownRetryingOnALockIsShownWithItsError) {
  ASSERT_TRUE(standin_
                  ->ApplyMachineClass("workers",
                                      "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n")
                  .ok());
  testing::ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0"},
      {}, Path("provider.log"));
  // Omni admits the request set only once the provider has published its status.
  ASSERT_TRUE(standin_->WaitFor([&] { return standin_->ProviderStatusPublished("proxmox"); }, std::chrono::seconds{30}))
      << provider.Log();
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 1).ok());
  Json status;
  ASSERT_TRUE(Eventually([&] {
    status = Json::parse(Run("status", {}, /*json=*/true).out, nullptr, false);
    return status.is_object() && status["requests"].size() == 1 && status["requests"][0]["stage"] == "PROVISIONED";
  })) << provider.Log();
  const int vmid = status["requests"][0]["vmid"];
  ASSERT_TRUE(sim_->HoldVmLock(vmid, std::chrono::hours{1}).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());

  const std::string lock_error =
      fmt::format("can't lock file '/var/lock/qemu-server/lock-{}.conf' - got timeout", vmid);
  testing::ProcessResult retrying;
  ASSERT_TRUE(Eventually([&] {
    retrying = Run("status", {}, /*json=*/true);
    status = Json::parse(retrying.out, nullptr, false);
    return status.is_object() && status["teardowns_retrying"] == 1;
  })) << retrying.out
      << provider.Log();
  EXPECT_EQ(retrying.exit_code, 1);
  const Json request = status["requests"][0];
  EXPECT_EQ(request["step"], "tearing down");
  EXPECT_EQ(request["teardown_retrying"], true);
  EXPECT_THAT(request["error"].get<std::string>(), HasSubstr("removeVm: shutdown of VM"));
  EXPECT_THAT(request["error"].get<std::string>(), HasSubstr(lock_error));
  EXPECT_THAT(request["error"].get<std::string>(),
              ::testing::ContainsRegex("failed [0-9]+ times; (next try in|trying)"));
  auto table = Run("status", {});
  EXPECT_THAT(table.out, HasSubstr("can't lock file"));
  EXPECT_THAT(table.out, HasSubstr("1 teardowns retrying"));
  EXPECT_THAT(provider.Log(), HasSubstr("teardown step removeVm failed"));

  ASSERT_TRUE(sim_->HoldVmLock(vmid, std::chrono::milliseconds{0}).ok());
  ASSERT_TRUE(Eventually([&] {
    status = Json::parse(Run("status", {}, /*json=*/true).out, nullptr, false);
    return status.is_object() && status["requests"].empty() && !HasVm(vmid);
  })) << status.dump(1)
      << provider.Log();
  EXPECT_EQ(status["teardowns_retrying"], 0);
}

TEST_F(StatusCommandTest, UsageErrorsExitTwo) {
  auto bad = Run("status", {"--grace-period", "-1m"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--grace-period"));
  auto help = testing::RunProcess({OP_BINARY, "status", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Examples:"));
}

TEST_F(StatusCommandTest, MultiLineErrorsAreFoldedIntoTheirCell) {
  testing::ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0"},
      {}, Path("provider.log"));
  ASSERT_TRUE(standin_->WaitFor(
      [&] { return standin_->ProviderConnected("proxmox") && standin_->ProviderStatusPublished("proxmox"); },
      std::chrono::seconds{60}))
      << provider.Log();
  // Omni would refuse this providerdata today; a request set admitted under an older schema left it.
  ASSERT_TRUE(
      standin_
          ->PlantMachineRequest("old-1", "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type = \"rbd\"\n")
          .ok());
  testing::ProcessResult json_run;
  ASSERT_TRUE(Eventually([&] {
    json_run = Run("status", {}, /*json=*/true);
    const Json status = Json::parse(json_run.out, nullptr, false);
    return status.is_object() && status["requests"].size() == 1 && status["requests"][0]["stage"] == "FAILED";
  })) << json_run.out
      << provider.Log();
  const Json status = Json::parse(json_run.out);
  const std::string error = status["requests"][0]["error"];
  EXPECT_NE(error.find('\n'), std::string::npos) << error;  // JSON carries the caret block whole
  auto table = Run("status", {});
  std::size_t row = table.out.find("old-1");
  ASSERT_NE(row, std::string::npos) << table.out;
  const std::string line = table.out.substr(row, table.out.find('\n', row) - row);
  EXPECT_NE(line.find("FAILED"), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find("| ....^"), std::string::npos) << table.out;  // no raw caret lines in the table
}

}  // namespace
}  // namespace omni_proxmox::cli
