// SPDX-License-Identifier: Apache-2.0
#include "util/duration.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, UnitsAndPlainSeconds) {
  EXPECT_EQ(*ParseDuration("500ms", "--x"), milliseconds{500});
  EXPECT_EQ(*ParseDuration("15s", "--x"), milliseconds{15'000});
  EXPECT_EQ(*ParseDuration("15", "--x"), milliseconds{15'000});
  EXPECT_EQ(*ParseDuration("10m", "--x"), milliseconds{600'000});
  EXPECT_EQ(*ParseDuration("2h", "--x"), milliseconds{7'200'000});
  EXPECT_EQ(*ParseDuration("0s", "--x"), milliseconds{0});
}

TEST(ParseDuration, ErrorsNameTheFlagAndShowExamples) {
  for (const char* bad : {"", "s", "ms", "-1s", "1.5s", "10 s", "5d", "soon", "99999999999h"}) {
    auto parsed = ParseDuration(bad, "--leader-lease-duration");
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), ::testing::HasSubstr("--leader-lease-duration"));
    EXPECT_THAT(std::string(parsed.status().message()), ::testing::HasSubstr("e.g. 500ms, 90s"));
  }
}

}  // namespace
}  // namespace omni_proxmox::util
