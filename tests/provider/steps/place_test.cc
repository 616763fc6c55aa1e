// SPDX-License-Identifier: Apache-2.0
// The "place" step against the simulator: where it puts a VM, how it spreads a set, and what it
// says when nothing fits or Proxmox cannot be read.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "provider/steps/step_world.h"
#include "provider/steps/steps_internal.h"

namespace omni_proxmox::provider::steptest {
namespace {

using ::testing::HasSubstr;

class PlaceTest : public StepWorld {};

TEST_F(PlaceTest, ChoosesANodeAndStoragesAndRecordsThem) {
  auto place = steps::MakePlace(*services_);
  auto request = NewRequest("workers-aaaaaa");
  const StepResult result = place->Run(request->ctx);
  ASSERT_EQ(result.kind, StepResult::Kind::kNext) << result.error;
  EXPECT_THAT(request->machine.node(), ::testing::AnyOf("pve1", "pve2"));
  EXPECT_EQ(request->machine.boot_storage(), "local-lvm");
  EXPECT_EQ(request->machine.request_set(), "workers");

  // Done once placed: no Proxmox call at all.
  const auto listings = sim_->RequestCount("GET /nodes");
  const MachineSpec before = request->machine;
  EXPECT_EQ(place->Run(request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(sim_->RequestCount("GET /nodes"), listings);
  EXPECT_EQ(request->machine.SerializeAsString(), before.SerializeAsString());
}

TEST_F(PlaceTest, SpreadsASetOverTheNodesBeforeItsVmsExist) {
  auto place = steps::MakePlace(*services_);
  auto a = NewRequest("workers-aaaaaa");
  auto b = NewRequest("workers-bbbbbb");
  ASSERT_EQ(place->Run(a->ctx).kind, StepResult::Kind::kNext);
  ASSERT_EQ(place->Run(b->ctx).kind, StepResult::Kind::kNext);
  EXPECT_NE(a->machine.node(), b->machine.node()) << "the ledger's reservation counts the first placement";
  EXPECT_EQ(sim_->RequestCount("GET /nodes"), 1u) << "one listing serves both placements";
}

TEST_F(PlaceTest, NoMatchingStorageFailsTheRequestNamingTheSelector) {
  auto place = steps::MakePlace(*services_);
  auto request =
      NewRequest("workers-aaaaaa", "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"zfspool\"\n");
  const StepResult result = place->Run(request->ctx);
  EXPECT_EQ(result.kind, StepResult::Kind::kFailed);
  EXPECT_THAT(result.error, HasSubstr("storage_selector"));
  EXPECT_TRUE(request->machine.node().empty());
}

TEST_F(PlaceTest, ProxmoxThatCannotListIsATransientError) {
  sim_->SetFault("GET /nodes", {.error_rate = 1.0, .status_code = 500, .message = "proxy loop"});
  auto place = steps::MakePlace(*services_);
  auto request = NewRequest("workers-aaaaaa");
  const StepResult result = place->Run(request->ctx);
  EXPECT_EQ(result.kind, StepResult::Kind::kRetry);
  EXPECT_THAT(result.error, HasSubstr("cannot list Proxmox nodes"));
  sim_->ClearFaults();
  fleet_->InvalidatePlacement();
  EXPECT_EQ(place->Run(request->ctx).kind, StepResult::Kind::kNext);
}

}  // namespace
}  // namespace omni_proxmox::provider::steptest
