// SPDX-License-Identifier: Apache-2.0
#include "util/backoff.h"

#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

using std::chrono::milliseconds;

TEST(BackoffTest, GrowsExponentiallyWithinJitterBounds) {
  Random random(7);
  Backoff backoff(milliseconds{100}, milliseconds{10'000}, random);
  for (int n = 0; n < 6; ++n) {
    const auto ceiling = milliseconds{100LL << n};
    const auto delay = backoff.Next();
    EXPECT_GE(delay, ceiling / 2) << "attempt " << n;
    EXPECT_LE(delay, ceiling) << "attempt " << n;
  }
}

TEST(BackoffTest, NeverExceedsCapEvenAfterManyAttempts) {
  Random random(1);
  Backoff backoff(milliseconds{250}, milliseconds{5'000}, random);
  for (int n = 0; n < 200; ++n) EXPECT_LE(backoff.Next(), milliseconds{5'000});
  EXPECT_EQ(backoff.attempts(), 200);
}

TEST(BackoffTest, ResetStartsOver) {
  Random random(3);
  Backoff backoff(milliseconds{100}, milliseconds{10'000}, random);
  for (int n = 0; n < 10; ++n) backoff.Next();
  backoff.Reset();
  EXPECT_LE(backoff.Next(), milliseconds{100});
}

TEST(BackoffTest, SameSeedSameDelays) {
  Random a(42), b(42);
  Backoff first(milliseconds{10}, milliseconds{1'000}, a);
  Backoff second(milliseconds{10}, milliseconds{1'000}, b);
  for (int n = 0; n < 20; ++n) EXPECT_EQ(first.Next(), second.Next());
}

}  // namespace
}  // namespace omni_proxmox::util
