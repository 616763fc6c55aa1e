#include "provider/reconciler/task_poll.h"

#include <gtest/gtest.h>

#include "util/clock.h"

namespace omni_proxmox::provider {
namespace {

using std::chrono::milliseconds;

TEST(TaskPollInterval, FreshTaskIsPolledAfterAQuarterSecond) {
  EXPECT_EQ(TaskPollInterval(milliseconds{0}, milliseconds{1000}), milliseconds{250});
  EXPECT_EQ(TaskPollInterval(milliseconds{600}, milliseconds{1000}), milliseconds{250});
}

TEST(TaskPollInterval, BacksOffWithAgeUpToTheConfiguredPoll) {
  EXPECT_EQ(TaskPollInterval(milliseconds{1500}, milliseconds{1000}), milliseconds{500});
  EXPECT_EQ(TaskPollInterval(milliseconds{2400}, milliseconds{1000}), milliseconds{800});
  EXPECT_EQ(TaskPollInterval(milliseconds{3000}, milliseconds{1000}), milliseconds{1000});
  EXPECT_EQ(TaskPollInterval(milliseconds{600'000}, milliseconds{1000}), milliseconds{1000});
}

TEST(TaskPollInterval, AFasterConfiguredPollIsNeverSlowedDown) {
  EXPECT_EQ(TaskPollInterval(milliseconds{0}, milliseconds{50}), milliseconds{50});
  EXPECT_EQ(TaskPollInterval(milliseconds{10'000}, milliseconds{50}), milliseconds{50});
}

TEST(TaskPollPacer, AgesEachTaskFromItsFirstSightingAndForgetsFinishedOnes) {
  util::ManualClock clock;
  TaskPollPacer pacer(clock, milliseconds{1000});
  EXPECT_EQ(pacer.Next("UPID:a"), milliseconds{250});
  clock.Advance(milliseconds{1800});
  EXPECT_EQ(pacer.Next("UPID:a"), milliseconds{600});
  EXPECT_EQ(pacer.Next("UPID:b"), milliseconds{250});  // a new task starts fresh
  EXPECT_EQ(pacer.TrackedForTest(), 2u);
  pacer.Done("UPID:a");
  EXPECT_EQ(pacer.TrackedForTest(), 1u);
  clock.Advance(milliseconds{5000});
  EXPECT_EQ(pacer.Next("UPID:a"), milliseconds{250});  // a forgotten UPID seen again is fresh
  EXPECT_EQ(pacer.Next("UPID:b"), milliseconds{1000});
}

}  // namespace
}  // namespace omni_proxmox::provider
