// SPDX-License-Identifier: Apache-2.0
// The scenario builder renders documents the simulator runs as described: nodes, storages, users
// with their tokens and ACLs, the VMID range and task durations; the built-in cluster is the
// example scenario's (docs/pve-sim.md says so).

#include "sim/pve/scenario_builder.h"

#include <fstream>
#include <set>
#include <sstream>

#include "fmt/format.h"
#include "gtest/gtest.h"

#include "sim/pve/simulator.h"
#include "sim_test_util.h"
#include "util/clock.h"

namespace omni_proxmox::sim::pve {
namespace {

using nlohmann::json;
using testing::SimClient;

std::set<std::string> Strings(const json& list) {
  std::set<std::string> out;
  for (const auto& item : list) out.insert(item.get<std::string>());
  return out;
}

// What a scenario's simulator shows of its cluster: nodes and storages, content as sets (the
// simulator shuffles it as Proxmox's hash order would).
json Cluster(const Simulator& sim) {
  const json state = sim.StateForTest();
  json out = {{"nodes", state["nodes"]}, {"storages", json::array()}};
  for (auto storage : state["storages"]) {
    storage.erase("used_bytes");
    storage["content"] = Strings(storage["content"]);
    out["storages"].push_back(storage);
  }
  return out;
}

Scenario Small() {
  Scenario scenario;
  scenario.name = "small";
  scenario.vmid_lower = 200;
  scenario.vmid_upper = 300;
  scenario.nodes = NumberedNodes(2, 4, 8);
  scenario.nodes[1].bridges = {"vmbr0", "vmbr7"};
  scenario.storages = {LocalDirStorage(10),
                       LocalLvmThinStorage(20),
                       CephPoolStorage(30),
                       {.id = "fast", .type = "lvm", .content = {"images"}, .size_gib = 5, .nodes = {"pve2"}}};
  scenario.roles["Watcher"] = {"VM.Audit", "Sys.Audit"};
  scenario.users.push_back({.userid = "omni@pve",
                            .tokens = {{.name = "provider", .secret = "s3cr3t: with # odd 'chars'", .privsep = true}}});
  scenario.acls = {{.path = "/vms", .ugid = "omni@pve", .role = "Watcher"},
                   {.path = "/vms", .ugid = "omni@pve!provider", .role = "Watcher"}};
  scenario.task_seconds = {{"qmcreate", 0.25}};
  return scenario;
}

TEST(ScenarioBuilderTest, TheSimulatorRunsTheClusterDescribed) {
  util::ManualClock clock;
  auto sim = Simulator::Start({.scenario_yaml = Small().Yaml(), .clock = &clock});
  ASSERT_TRUE(sim.ok()) << sim.status() << "\n" << Small().Yaml();
  const json cluster = Cluster(**sim);
  EXPECT_EQ((*sim)->StateForTest()["cluster"]["name"], "small");
  ASSERT_EQ(cluster["nodes"].size(), 2u);
  EXPECT_EQ(cluster["nodes"][0]["name"], "pve1");
  EXPECT_EQ(cluster["nodes"][0]["cpus"], 4);
  EXPECT_EQ(cluster["nodes"][0]["memory_bytes"], 8LL << 30);
  EXPECT_EQ(Strings(cluster["nodes"][1]["bridges"]), (std::set<std::string>{"vmbr0", "vmbr7"}));
  ASSERT_EQ(cluster["storages"].size(), 4u);
  const json& local = cluster["storages"][0];
  EXPECT_EQ(local["id"], "local");
  EXPECT_EQ(local["type"], "dir");
  EXPECT_EQ(Strings(local["content"]), (std::set<std::string>{"iso", "vztmpl", "backup"}));
  EXPECT_EQ(local["size_bytes"], 10LL << 30);
  const json& ceph = cluster["storages"][2];
  EXPECT_EQ(ceph["id"], "vm_ssd");
  EXPECT_EQ(ceph["type"], "rbd");
  EXPECT_TRUE(ceph["shared"].get<bool>());
  EXPECT_FALSE(cluster["storages"][1]["shared"].get<bool>());

  // The first token is root's; the VMID range is the scenario's; "fast" exists on pve2 only.
  EXPECT_EQ((*sim)->default_token_id(), kRootTokenId);
  EXPECT_EQ((*sim)->default_token_secret(), kRootTokenSecret);
  SimClient root(**sim, testing::TokenHeader(**sim));
  EXPECT_EQ(root.Get("/cluster/nextid").data(), "200");
  EXPECT_EQ(root.Get("/nodes/pve1/storage/fast/status").data()["active"], 0);
  EXPECT_EQ(root.Get("/nodes/pve2/storage/fast/status").data()["active"], 1);

  // A create takes the scenario's 0.25 simulated seconds.
  auto created = root.PostJson("/nodes/pve1/qemu", {{"vmid", 200}, {"memory", "512"}, {"scsi0", "local-lvm:1"}});
  ASSERT_EQ(created.status, 200) << created.reason;
  const std::string status_path = fmt::format("/nodes/pve1/tasks/{}/status", created.data().get<std::string>());
  clock.Advance(std::chrono::milliseconds{200});
  EXPECT_EQ(root.Get(status_path).data()["status"], "running");
  clock.Advance(std::chrono::milliseconds{100});
  EXPECT_EQ(root.Get(status_path).data()["status"], "stopped");

  // The second user's token, whose secret needs quoting, has exactly its role on /vms.
  SimClient provider(**sim, "PVEAPIToken=omni@pve!provider=s3cr3t: with # odd 'chars'");
  auto permissions = provider.Get("/access/permissions");
  ASSERT_EQ(permissions.status, 200) << permissions.reason;
  EXPECT_EQ(permissions.data()["/vms"], json({{"Sys.Audit", 1}, {"VM.Audit", 1}}));
}

TEST(ScenarioBuilderTest, TheBuiltInClusterIsTheExampleScenarios) {
  std::ifstream file(std::string(OP_SOURCE_DIR) + "/docs/examples/pve-scenario.yaml");
  ASSERT_TRUE(file.good());
  std::stringstream example;
  example << file.rdbuf();
  auto from_example = Simulator::Start({.scenario_yaml = example.str()});
  ASSERT_TRUE(from_example.ok()) << from_example.status();
  auto built_in = Simulator::Start({});
  ASSERT_TRUE(built_in.ok()) << built_in.status();
  auto rendered = Simulator::Start({.scenario_yaml = DefaultScenario().Yaml()});
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(Cluster(**built_in), Cluster(**from_example));
  EXPECT_EQ(Cluster(**rendered), Cluster(**from_example));
  EXPECT_EQ((*built_in)->default_token_id(), (*from_example)->default_token_id());
  EXPECT_EQ((*built_in)->default_token_secret(), (*from_example)->default_token_secret());
}

}  // namespace
}  // namespace omni_proxmox::sim::pve
