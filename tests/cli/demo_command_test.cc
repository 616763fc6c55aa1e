// SPDX-License-Identifier: Apache-2.0
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::RunProcess;

TEST(DemoCommandTest, JsonSummaryShowsEveryMachineProvisionedJoinedAndRemoved) {
  auto result = RunProcess({OP_BINARY, "--format", "json", "demo", "--fast"}, "", {}, std::chrono::seconds{120});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  auto summary = nlohmann::json::parse(result.out);
  EXPECT_EQ(summary["machines_provisioned"], 6);
  EXPECT_EQ(summary["machines_joined"], 6);
  EXPECT_EQ(summary["vms_remaining"], 0);
  EXPECT_EQ(summary["vms_created"], 6);
  EXPECT_LT(summary["duration_s"].get<double>(), 60.0);
}

TEST(DemoCommandTest, TableOutputEndsWithSummary) {
  auto result = RunProcess({OP_BINARY, "demo", "--fast", "--machines", "2"}, "", {}, std::chrono::seconds{120});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, ::testing::HasSubstr("Proxmox VMs made by the provider"));
  EXPECT_THAT(result.out, ::testing::HasSubstr("VMs remaining after scale-0  0"));
  EXPECT_THAT(result.out, ::testing::HasSubstr("result                       OK"));
}

}  // namespace
}  // namespace omni_proxmox::cli
