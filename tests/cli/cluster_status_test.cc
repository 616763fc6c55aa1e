// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox status --cluster NAME` and `--omni-operator-key-file` as processes against the
// stand-in and the Proxmox simulator: the flag rules, a key that may not read clusters, a cluster
// whose requests wait for a provider that is not running, then the same cluster provisioned, and
// the plain `status` reading machine links with the operator key.

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "provider_world.h"
#include "sim/omni/accounts.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kProviderData[] = "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n";
constexpr char kTemplate[] = R"(kind: Cluster
name: talos-default
kubernetes:
  version: v1.32.0
talos:
  version: v1.10.4
---
kind: ControlPlane
machineClass:
  name: small
  size: 1
---
kind: Workers
machineClass:
  name: small
  size: 2
)";

class ClusterStatusTest : public ProviderWorld {
 protected:
  void SetUp() override {
    ProviderWorld::SetUp();
    auto reader = standin_->CreateServiceAccount("status-reader", sim::omni::Role::kReader);
    ASSERT_TRUE(reader.ok()) << reader.status();
    // As omnictl serviceaccount create prints it.
    std::ofstream(dir_ / "reader.key") << "Created service account \"status-reader\"\n\nOMNI_ENDPOINT="
                                       << standin_->grpc_endpoint() << "\nOMNI_SERVICE_ACCOUNT_KEY=" << *reader << "\n";
  }

  testing::ProcessResult Cluster(const std::string& key_file, bool json) {
    return Run("status", {"--cluster", "talos-default", "--omni-operator-key-file", Path(key_file)}, json);
  }
};

TEST_F(ClusterStatusTest, ClusterNeedsAnOperatorKey) {
  auto result = Run("status", {"--cluster", "talos-default"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--cluster needs --omni-operator-key-file"));
  auto unreadable = Cluster("no-such.key", false);
  EXPECT_EQ(unreadable.exit_code, 2);
  EXPECT_THAT(unreadable.err, HasSubstr("--omni-operator-key-file"));
  std::ofstream(dir_ / "garbage.key") << "not a key\n";
  auto garbage = Cluster("garbage.key", false);
  EXPECT_EQ(garbage.exit_code, 2);
  EXPECT_THAT(garbage.err, HasSubstr("omnictl serviceaccount create"));
}

TEST_F(ClusterStatusTest, TheProviderKeyMayNotReadClusters) {
  ASSERT_TRUE(standin_->ApplyMachineClass("small", kProviderData).ok());
  ASSERT_TRUE(standin_->SyncClusterTemplate(kTemplate).ok());
  auto result = Cluster("key", false);
  EXPECT_EQ(result.exit_code, 1) << result.out;
  EXPECT_THAT(result.err, HasSubstr("may not read Clusters.omni.sidero.dev: it needs the Reader role"));
  EXPECT_EQ(result.err.find(standin_->provider_key()), std::string::npos);  // no secret in the error
}

TEST_F(ClusterStatusTest, AMissingClusterIsNamed) {
  auto result = Cluster("reader.key", false);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("cluster 'talos-default' does not exist in Omni"));
}

TEST_F(ClusterStatusTest, WaitingForTheProviderThenProvisioned) {
  ASSERT_TRUE(standin_->ApplyMachineClass("small", kProviderData).ok());
  ASSERT_TRUE(standin_->SyncClusterTemplate(kTemplate).ok());
  // Omni's controllers make a request set per machine set, then a request per machine.
  ASSERT_TRUE(Eventually([&] {
    const Json status = Json::parse(Cluster("reader.key", true).out, nullptr, false);
    return status.is_object() && status["requests"].size() == 3;
  }));

  auto waiting = Cluster("reader.key", true);
  EXPECT_EQ(waiting.exit_code, 1) << waiting.out;
  Json status = Json::parse(waiting.out);
  EXPECT_EQ(status["ok"], false);
  EXPECT_EQ(status["key"]["name"], "status-reader");
  EXPECT_EQ(status["cluster"]["talos_version"], "1.10.4");
  ASSERT_EQ(status["machine_sets"].size(), 2u) << status.dump(1);
  for (const auto& set : status["machine_sets"]) {
    EXPECT_EQ(set["request_set"], true) << set.dump();
    EXPECT_EQ(set["provider_id"], "proxmox");
  }
  for (const auto& request : status["requests"]) {
    EXPECT_EQ(request["stage"], "PENDING") << request.dump();
    EXPECT_THAT(request["where"].get<std::string>(),
                HasSubstr("waiting for provider 'proxmox', which is not connected (it has never sent a heartbeat)"));
  }
  auto table = Cluster("reader.key", false);
  EXPECT_EQ(table.exit_code, 1);
  EXPECT_THAT(table.out, HasSubstr("Cluster    talos-default (Talos 1.10.4, Kubernetes 1.32.0)"));
  EXPECT_THAT(table.out, HasSubstr("Read with  the operator key 'status-reader'"));
  EXPECT_THAT(table.out, HasSubstr("talos-default-control-planes"));
  EXPECT_THAT(table.out, HasSubstr("talos-default-workers"));
  EXPECT_THAT(table.out, HasSubstr("Where it is stuck:"));

  testing::ChildProcess provider(
      {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-api-endpoint", standin_->grpc_endpoint(),
       "--omni-service-account-key-file", Path("key"), "--listen", "127.0.0.1:0"},
      {}, Path("provider.log"));
  testing::ProcessResult done;
  ASSERT_TRUE(Eventually([&] {
    done = Cluster("reader.key", true);
    const Json now = Json::parse(done.out, nullptr, false);
    if (done.exit_code != 0 || !now.is_object() || now["requests"].size() != 3) return false;
    // A machine can join before the provider has written PROVISIONED: its VM boots as soon as
    // the start task ends, and the status write follows.
    for (const auto& request : now["requests"]) {
      if (request["in_machine_set"] != true || request["stage"] != "PROVISIONED") return false;
    }
    return true;
  })) << done.out
      << done.err << provider.Log();
  status = Json::parse(done.out);
  EXPECT_EQ(status["ok"], true);
  for (const auto& set : status["machine_sets"]) {
    EXPECT_EQ(set["machines_bound"], set["machines_wanted"]) << set.dump();
    EXPECT_EQ(set["phase"], "Running") << set.dump();
  }
  ASSERT_EQ(status["requests"].size(), 3u);
  for (const auto& request : status["requests"]) {
    EXPECT_EQ(request["stage"], "PROVISIONED") << request.dump();
    EXPECT_EQ(request["machine_joined"], true);
    EXPECT_EQ(request["in_machine_set"], true);
    EXPECT_EQ(request["where"], "");
  }
  table = Cluster("reader.key", false);
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_THAT(table.out, HasSubstr("Every machine set has the machines it asks for."));

  // The provider's own view, with the machines' links read by the operator key.
  auto plain = Run("status", {"--omni-operator-key-file", Path("reader.key")}, /*json=*/true);
  EXPECT_EQ(plain.exit_code, 0) << plain.out << plain.err;
  status = Json::parse(plain.out);
  EXPECT_EQ(status["keys"]["operator"], "status-reader");
  ASSERT_EQ(status["requests"].size(), 3u);
  for (const auto& request : status["requests"]) EXPECT_EQ(request["machine_link_up"], true) << request.dump();
  auto plain_table = Run("status", {"--omni-operator-key-file", Path("reader.key")});
  EXPECT_THAT(plain_table.out, HasSubstr("operator key 'status-reader' (machine links)"));
  EXPECT_THAT(plain_table.out, HasSubstr(", link up)"));

  // Scaled down: Omni tears the workers' requests down; the view follows.
  std::string scaled(kTemplate);
  scaled.replace(scaled.rfind("size: 2"), 7, "size: 0");
  ASSERT_TRUE(standin_->SyncClusterTemplate(scaled).ok());
  ASSERT_TRUE(Eventually([&] {
    const Json now = Json::parse(Cluster("reader.key", true).out, nullptr, false);
    return now.is_object() && now["requests"].size() == 1;
  })) << provider.Log();
}

}  // namespace
}  // namespace omni_proxmox::cli
