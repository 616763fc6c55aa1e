// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/task_poll.h"

#include <set>
#include <utility>
#include <vector>

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
  const std::string create4 = "UPID:pve1:0000E:0005:6B0582D4:qmcreate:104:root@pam!omni:";
  const std::string start = "UPID:pve1:0000C:0003:6B0582D2:qmstart:101:root@pam!omni:";
  EXPECT_EQ(pacer.Next(create1), milliseconds{100});  // nothing learned yet: polled as the scout
  clock.Advance(milliseconds{1900});
  pacer.SawRunning(create1);
  clock.Advance(milliseconds{100});
  pacer.Finished(create1);  // ended between 1.9 s and 2 s: taken as 2 s
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{2000});
  EXPECT_EQ(pacer.TrackedForTest(), 0u);

  // The next create is first polled when it should be done, then soon and backing off from there.
  EXPECT_EQ(pacer.Next(create2), milliseconds{2000});
  clock.Advance(milliseconds{2000});
  EXPECT_EQ(pacer.Next(create2), milliseconds{100});
  clock.Advance(milliseconds{3000});
  EXPECT_EQ(pacer.Next(create2), milliseconds{1000});
  // Another kind is not affected.
  EXPECT_EQ(pacer.Next(start), milliseconds{100});
  // One slow create (seen running at 5 s, done by 5.2 s) raises the estimate by a quarter at most.
  pacer.SawRunning(create2);
  clock.Advance(milliseconds{200});
  pacer.Finished(create2);
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{2500});

  // Done at its first poll: it may have ended earlier, so the estimate shrinks a little, and not
  // again for a task that ends within one expected duration of that (a burst teaches it once).
  EXPECT_EQ(pacer.Next(create3), milliseconds{2500});
  EXPECT_EQ(pacer.Next(create4), milliseconds{2500});
  clock.Advance(milliseconds{2510});
  pacer.Finished(create3);
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{2425});
  pacer.Finished(create4);
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{2425});
  // Seen done before it was expected (its pass ran early): it took at most that long.
  const std::string create5 = "UPID:pve1:0000F:0006:6B0582D5:qmcreate:105:root@pam!omni:";
  (void)pacer.Next(create5);
  clock.Advance(milliseconds{1500});
  pacer.Finished(create5);
  EXPECT_EQ(pacer.ExpectedForTest("qmcreate"), milliseconds{1500});
}

TEST(TaskPollPacer, WhileAKindIsUnknownOneTaskIsPolledAndItsEndWakesTheOthers) {
  util::ManualClock clock;
  TaskPollPacer pacer(clock, milliseconds{1000});
  std::vector<std::pair<std::string, milliseconds>> woken;
  pacer.SetWakeListener([&](const std::string& asker, milliseconds after) { woken.emplace_back(asker, after); });
  const std::string scout = "UPID:pve1:0000A:0001:6B0582D0:qmdestroy:101:root@pam!omni:";
  const std::string second = "UPID:pve2:0000B:0002:6B0582D1:qmdestroy:102:root@pam!omni:";
  const std::string third = "UPID:pve3:0000C:0003:6B0582D2:qmdestroy:103:root@pam!omni:";
  EXPECT_EQ(pacer.Next(scout, "r1"), milliseconds{100});
  clock.Advance(milliseconds{100});
  // The others wait to be woken (at most three times the longest poll interval).
  EXPECT_EQ(pacer.Next(second, "r2"), milliseconds{3000});
  EXPECT_EQ(pacer.Next(third, "r3"), milliseconds{3000});
  clock.Advance(milliseconds{1400});
  EXPECT_EQ(pacer.Next(scout, "r1"), milliseconds{300});  // the scout is polled at a fifth of its age
  pacer.SawRunning(scout);
  clock.Advance(milliseconds{300});
  pacer.Finished(scout, "r1");  // between 1.5 s and 1.8 s: taken as 1.8 s
  EXPECT_EQ(pacer.ExpectedForTest("qmdestroy"), milliseconds{1800});
  // The others are woken when their own task should be done (they started 0.1 s later); the
  // scout's own request is not.
  ASSERT_EQ(woken.size(), 2u);
  EXPECT_EQ(woken[0].second, milliseconds{100});
  EXPECT_EQ(woken[1].second, milliseconds{100});
  std::set<std::string> askers{woken[0].first, woken[1].first};
  EXPECT_EQ(askers, (std::set<std::string>{"r2", "r3"}));

  // A scout whose request stopped asking is replaced by the next task asked about.
  const std::string a = "UPID:pve1:0000D:0004:6B0582D3:imgdel:101@local:root@pam!omni:";
  const std::string b = "UPID:pve2:0000E:0005:6B0582D4:imgdel:102@local:root@pam!omni:";
  EXPECT_EQ(pacer.Next(a, "r1"), milliseconds{100});
  EXPECT_EQ(pacer.Next(b, "r2"), milliseconds{3000});
  clock.Advance(milliseconds{2001});
  EXPECT_EQ(pacer.Next(b, "r2"), milliseconds{400});
}

TEST(TaskPollPacer, AFinishedTaskWakesTheOthersWaitingOnIt) {
  util::ManualClock clock;
  TaskPollPacer pacer(clock, milliseconds{1000});
  std::vector<std::pair<std::string, milliseconds>> woken;
  pacer.SetWakeListener([&](const std::string& asker, milliseconds after) { woken.emplace_back(asker, after); });
  const std::string download = "UPID:pve1:0000A:0001:6B0582D0:download:talos.iso:root@pam!omni:";
  (void)pacer.Next(download, "r1");
  (void)pacer.Next(download, "r2");
  (void)pacer.Next(download, "r3");
  clock.Advance(milliseconds{3000});
  pacer.Finished(download, "r2");
  ASSERT_EQ(woken.size(), 2u);
  EXPECT_EQ(woken[0], std::make_pair(std::string("r1"), milliseconds{0}));
  EXPECT_EQ(woken[1], std::make_pair(std::string("r3"), milliseconds{0}));
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
