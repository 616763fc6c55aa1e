// SPDX-License-Identifier: Apache-2.0
// The read-only endpoints `plan` uses beyond the provider subset: node bridges and hardware
// mappings, validated against the official schema like every other endpoint.

#include <set>

#include <gtest/gtest.h>

#include "sim/pve/simulator.h"
#include "sim_test_util.h"

namespace omni_proxmox::sim::pve {
namespace {

using testing::SimClient;
using testing::TokenHeader;

constexpr const char* kScenario = R"yaml(
nodes:
  - {name: pve1, bridges: [vmbr0, vmbr1]}
  - {name: pve2, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, images], size_gib: 100}
mappings:
  pci: [{id: gpu, nodes: [pve1]}]
  usb: [{id: dongle, nodes: []}]
users:
  - userid: root@pam
    password: pve-sim-root
    tokens: [{name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}]
  - userid: audit@pve
    password: audit-password
    tokens: [{name: ro, secret: 11111111-2222-4333-8444-555555555555, privsep: false}]
acls:
  - {path: /nodes, ugid: audit@pve, role: PVEAuditor}
)yaml";

class NetworkMappingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = Simulator::Start({.scenario_yaml = kScenario});
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    client_ = std::make_unique<SimClient>(*sim_, TokenHeader(*sim_));
  }

  static std::set<std::string> Ifaces(const nlohmann::json& list) {
    std::set<std::string> out;
    for (const auto& entry : list) out.insert(entry["iface"].get<std::string>());
    return out;
  }

  std::unique_ptr<Simulator> sim_;
  std::unique_ptr<SimClient> client_;
};

TEST_F(NetworkMappingTest, NodeNetworkListsTheScenarioBridges) {
  auto all = client_->Get("/nodes/pve1/network");
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(Ifaces(all.data()), (std::set<std::string>{"vmbr0", "vmbr1"}));
  for (const auto& entry : all.data()) {
    EXPECT_EQ(entry["type"], "bridge");
    EXPECT_EQ(entry["active"], 1);
  }
  auto bridges = client_->Get("/nodes/pve2/network?type=any_bridge");
  ASSERT_EQ(bridges.status, 200) << bridges.body;
  EXPECT_EQ(Ifaces(bridges.data()), (std::set<std::string>{"vmbr0"}));
  auto bonds = client_->Get("/nodes/pve2/network?type=bond");
  ASSERT_EQ(bonds.status, 200) << bonds.body;
  EXPECT_TRUE(bonds.data().empty());
}

TEST_F(NetworkMappingTest, NodeNetworkIsValidatedAndProxied) {
  auto bad = client_->Get("/nodes/pve1/network?type=wifi");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("type"), std::string::npos);
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  auto offline = client_->Get("/nodes/pve2/network");
  EXPECT_EQ(offline.status, 595);
}

TEST_F(NetworkMappingTest, MappingsListTheirNodesAndNeedMappingPrivileges) {
  auto pci = client_->Get("/cluster/mapping/pci");
  ASSERT_EQ(pci.status, 200) << pci.body;
  ASSERT_EQ(pci.data().size(), 1u);
  EXPECT_EQ(pci.data()[0]["id"], "gpu");
  ASSERT_EQ(pci.data()[0]["map"].size(), 1u);
  EXPECT_NE(pci.data()[0]["map"][0].get<std::string>().find("node=pve1"), std::string::npos);

  auto usb = client_->Get("/cluster/mapping/usb");
  ASSERT_EQ(usb.status, 200) << usb.body;
  ASSERT_EQ(usb.data().size(), 1u);
  EXPECT_EQ(usb.data()[0]["map"].size(), 2u);  // no node list: every node

  // Without Mapping.Audit/Use/Modify the entries are hidden, not refused (as in PVE).
  SimClient auditor(*sim_, "PVEAPIToken=audit@pve!ro=11111111-2222-4333-8444-555555555555");
  auto hidden = auditor.Get("/cluster/mapping/pci");
  ASSERT_EQ(hidden.status, 200) << hidden.body;
  EXPECT_TRUE(hidden.data().empty());
}

}  // namespace
}  // namespace omni_proxmox::sim::pve
