// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/task_poll.h"

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

TEST(TaskPollPacer, LearnsHowLongEachKindOfTaskTakesAndPollsWhenItShouldBeDone) {
  util::ManualClock clock;
  TaskPollPacer pacer(clock, milliseconds{1000});
  const std::string create1 = "UPID:pve1:0000A:0001:6B0582D0:qmcreate:101:root@pam!omni:";
  const std::string create2 = "UPID:pve1:0000B:0002:6B0582D1:qmcreate:102:root@pam!omni:";
  const std::string create3 = "UPID:pve1:0000D:0004:6B0582D3:qmcreate:103:root@pam!omni:";
  const std::string start = "UPID:pve1:0000C:0003:6B0582D2:qmstart:101:root@pam!omni:";
  EXPECT_EQ(pacer.Next(create1), milliseconds{250});  // nothing learned yet
  clock.Advance(milliseconds{1900});
  pacer.SawRunning(create1);
  clock.Advance(milliseconds{200});
  pacer.Finished(create1);  // ended between 1.9 s and 2.1 s
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{2000});
  EXPECT_EQ(pacer.TrackedForTest(), 0u);

  // The next create is first polled at 90 % of the learned 2 s, then as a fresh task from there.
  EXPECT_EQ(pacer.Next(create2), milliseconds{1800});
  clock.Advance(milliseconds{1800});
  EXPECT_EQ(pacer.Next(create2), milliseconds{250});
  clock.Advance(milliseconds{3000});
  EXPECT_EQ(pacer.Next(create2), milliseconds{1000});
  // Another kind is not affected.
  EXPECT_EQ(pacer.Next(start), milliseconds{250});
  // A moving average: one slow create (4.8-5.0 s) moves the estimate a quarter of the way.
  pacer.SawRunning(create2);
  clock.Advance(milliseconds{200});
  pacer.Finished(create2);
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{2725});

  // Already done at its first poll (a busy provider polled late): it ended sometime before, so
  // the estimate shrinks instead of learning the lateness.
  EXPECT_EQ(pacer.Next(create3), milliseconds{2452});
  clock.Advance(milliseconds{2452});
  pacer.Finished(create3);
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{2350});
}

TEST(TaskPollPacer, AForgottenTaskTeachesNothingAndLongKindsAreCapped) {
  util::ManualClock clock;
  TaskPollPacer pacer(clock, milliseconds{1000});
  const std::string download = "UPID:pve1:0000A:0001:6B0582D0:download:talos.iso:root@pam!omni:";
  (void)pacer.Next(download);
  clock.Advance(milliseconds{5000});
  pacer.Done(download);
  EXPECT_EQ(pacer.ExpectedForTest("download"), milliseconds{0});
  (void)pacer.Next(download);
  clock.Advance(milliseconds{59'000});
  pacer.SawRunning(download);
  clock.Advance(milliseconds{1'000});
  pacer.Finished(download);
  // A minute-long download never delays the first poll of the next one by more than 10 s.
  EXPECT_EQ(pacer.Next("UPID:pve1:0000B:0002:6B0582D1:download:other.iso:root@pam!omni:"), milliseconds{10'000});
  pacer.Finished("not a upid");  // unknown: ignored
}

TEST(TaskStatusBoard, SharesARunningReadingBrieflyAndAFinishedOneForAMinute) {
  util::ManualClock clock;
  TaskStatusBoard board(clock);
  pve::TaskStatus running;
  running.running = true;
  board.Record("UPID:a", running, "req-1");
  ASSERT_TRUE(board.Recent("UPID:a", milliseconds{500}, "req-2").has_value());
  EXPECT_FALSE(board.Recent("UPID:a", milliseconds{500}, "req-1").has_value()) << "its own reading: poll";
  clock.Advance(milliseconds{500});
  EXPECT_FALSE(board.Recent("UPID:a", milliseconds{500}, "req-2").has_value());  // stale: poll again
  pve::TaskStatus finished;
  finished.running = false;
  finished.exit_status = "OK";
  board.Record("UPID:a", finished, "req-2");
  clock.Advance(milliseconds{59'000});
  auto reading = board.Recent("UPID:a", milliseconds{1}, "req-1");
  ASSERT_TRUE(reading.has_value());
  EXPECT_TRUE(reading->status.Succeeded());
  clock.Advance(milliseconds{1'000});
  EXPECT_FALSE(board.Recent("UPID:a", milliseconds{1}, "req-1").has_value());
  board.Forget("UPID:a");
  EXPECT_EQ(board.SizeForTest(), 0u);
}

}  // namespace
}  // namespace omni_proxmox::provider
