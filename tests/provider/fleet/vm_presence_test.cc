// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/vm_presence.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "provider/ownership/markers.h"

namespace omni_proxmox::provider {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const Scope kScope{.provider_id = "proxmox", .instance = "omni-a"};

pve::ClusterResource Vm(pve::Vmid vmid, const std::string& node, const std::string& request,
                        const std::string& instance = "omni-a") {
  pve::ClusterResource vm;
  vm.id = fmt::format("qemu/{}", vmid);
  vm.type = "qemu";
  vm.node = node;
  vm.vmid = vmid;
  vm.name = VmNameFor(request);
  vm.tags = fmt::format("{};{};{};{}", kManagedTag, ProviderTag("proxmox"), InstanceTag(instance), RequestTag(request));
  vm.status = "running";
  return vm;
}

TEST(VmPresenceTest, MissingAfterTwoListingsWithoutItThenBackWhenListedAgain) {
  VmPresence presence;
  const std::vector<ProvisionedVm> provisioned = {{.request_id = "r1", .vmid = 105, .node = "pve1"}};
  EXPECT_EQ(presence.Of("r1"), VmPresence::Verdict::kUnknown);
  EXPECT_THAT(presence.Observe({Vm(105, "pve1", "r1")}, kScope, provisioned), ElementsAre("r1"));
  EXPECT_EQ(presence.Of("r1"), VmPresence::Verdict::kPresent);
  // Migrated: still present, and now last seen on its new node.
  EXPECT_THAT(presence.Observe({Vm(105, "pve2", "r1")}, kScope, provisioned), IsEmpty());
  // One listing without it is not enough (a listing taken mid-change); two are.
  EXPECT_THAT(presence.Observe({}, kScope, provisioned), IsEmpty());
  EXPECT_EQ(presence.Of("r1"), VmPresence::Verdict::kPresent);
  EXPECT_THAT(presence.Observe({}, kScope, provisioned), ElementsAre("r1"));
  MissingVm missing;
  ASSERT_EQ(presence.Of("r1", &missing), VmPresence::Verdict::kMissing);
  EXPECT_EQ(missing.node, "pve2");
  EXPECT_EQ(missing.vmid, 105u);
  EXPECT_EQ(presence.Missing().size(), 1u);
  EXPECT_THAT(VmGoneMessage(missing),
              ::testing::StartsWith("VM gone: Proxmox no longer lists it; last seen on node pve2 as VM 105."));
  EXPECT_THAT(presence.Observe({}, kScope, provisioned), IsEmpty());  // no news while it stays gone
  EXPECT_THAT(presence.Observe({Vm(105, "pve2", "r1")}, kScope, provisioned), ElementsAre("r1"));
  EXPECT_TRUE(presence.Missing().empty());
}

TEST(VmPresenceTest, AnotherOmnisVmDoesNotCountAndForgottenRequestsAreDropped) {
  VmPresence presence(/*confirmations=*/1);
  const std::vector<ProvisionedVm> provisioned = {{.request_id = "r1", .vmid = 105, .node = "pve1"}};
  // The same request ID under another Omni is not this request's VM.
  EXPECT_THAT(presence.Observe({Vm(105, "pve1", "r1", "omni-b")}, kScope, provisioned), ElementsAre("r1"));
  MissingVm missing;
  ASSERT_EQ(presence.Of("r1", &missing), VmPresence::Verdict::kMissing);
  EXPECT_EQ(missing.node, "pve1");  // from our state: never seen
  // Torn down (no longer provisioned): forgotten, so nothing is reported missing.
  EXPECT_THAT(presence.Observe({}, kScope, {}), IsEmpty());
  EXPECT_EQ(presence.Of("r1"), VmPresence::Verdict::kUnknown);
  EXPECT_TRUE(presence.Missing().empty());
}

TEST(VmPresenceTest, GoProviderVmIsKnownByItsVmid) {
  VmPresence presence(/*confirmations=*/1);
  const std::vector<ProvisionedVm> provisioned = {{.request_id = "go", .vmid = 300, .node = "pve3", .markers = false}};
  pve::ClusterResource vm;
  vm.type = "qemu";
  vm.node = "pve3";
  vm.vmid = 300;
  EXPECT_THAT(presence.Observe({vm}, kScope, provisioned), ElementsAre("go"));
  EXPECT_EQ(presence.Of("go"), VmPresence::Verdict::kPresent);
  EXPECT_THAT(presence.Observe({}, kScope, provisioned), ElementsAre("go"));
  EXPECT_EQ(presence.Of("go"), VmPresence::Verdict::kMissing);
}

}  // namespace
}  // namespace omni_proxmox::provider
