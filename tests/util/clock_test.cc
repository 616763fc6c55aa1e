// SPDX-License-Identifier: Apache-2.0
#include "util/clock.h"

#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

using namespace std::chrono_literals;

TEST(ManualClockTest, MovesOnlyWhenAdvanced) {
  ManualClock clock;
  const auto wall = clock.Now();
  const auto mono = clock.Monotonic();
  EXPECT_EQ(clock.Now(), wall);
  clock.Advance(90min);
  EXPECT_EQ(clock.Now() - wall, 90min);
  EXPECT_EQ(clock.Monotonic() - mono, 90min);
}

TEST(ScaledClockTest, RunsFasterThanItsBase) {
  ManualClock base;
  ScaledClock scaled(60.0, base);
  const auto start = scaled.Now();
  base.Advance(1s);
  EXPECT_EQ(scaled.Now() - start, 60s);
  base.Advance(2min);
  EXPECT_EQ(scaled.Now() - start, 60s + 120min);
}

TEST(RealClockTest, IsMonotonic) {
  const auto a = RealClock().Monotonic();
  const auto b = RealClock().Monotonic();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace omni_proxmox::util
