// SPDX-License-Identifier: Apache-2.0
#include "provider/reconciler/work_queue.h"

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

namespace omni_proxmox::provider {
namespace {

using std::chrono::milliseconds;

// Waits (in real time) for the queue's worker threads to reach a state; the queue's own delays run
// on the test's ManualClock and pass only when the test advances it.
bool Eventually(const std::function<bool()>& predicate) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(milliseconds{1});
  }
  return predicate();
}

// A latch a handler blocks on until the test opens it.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
  }
  void Open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

TEST(WorkQueueTest, NeverRunsOneKeyOnTwoWorkersAndMergesDuplicates) {
  util::ManualClock clock;
  util::Random random(1);
  Gate gate;
  std::mutex mutex;
  std::set<std::string> running;
  std::atomic<int> overlaps{0};
  std::map<std::string, int> runs;
  WorkQueue queue(
      {.workers = 4},
      [&](const std::string& key) {
        {
          std::lock_guard lock(mutex);
          if (!running.insert(key).second) ++overlaps;
          ++runs[key];
        }
        gate.Wait();
        std::lock_guard lock(mutex);
        running.erase(key);
        return Outcome::Done();
      },
      clock, random);
  queue.Start();
  for (const char* key : {"a", "b", "c"}) queue.Add(key);
  ASSERT_TRUE(Eventually([&] { return queue.Active() == 3; }));
  // Each key is being processed: twenty more adds of each mark it for exactly one more run.
  for (int round = 0; round < 20; ++round) {
    for (const char* key : {"a", "b", "c"}) queue.Add(key);
  }
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return queue.IdleFor(milliseconds{0}); }));
  queue.Stop();
  EXPECT_EQ(overlaps.load(), 0);
  for (const char* key : {"a", "b", "c"}) EXPECT_EQ(runs[key], 2) << key;
}

TEST(WorkQueueTest, AddDuringProcessingRunsAgainAfterwards) {
  util::ManualClock clock;
  util::Random random(1);
  std::atomic<int> runs{0};
  WorkQueue* self = nullptr;
  WorkQueue queue(
      {.workers = 2},
      [&](const std::string& key) {
        if (runs.fetch_add(1) == 0) self->Add(key);  // an event arrives mid-reconcile
        return Outcome::Done();
      },
      clock, random);
  self = &queue;
  queue.Start();
  queue.Add("k");
  ASSERT_TRUE(Eventually([&] { return runs.load() == 2 && queue.IdleFor(milliseconds{0}); }));
}

TEST(WorkQueueTest, RequeueAfterRunsWhenItsTimeComesAndNotBefore) {
  util::ManualClock clock;
  util::Random random(1);
  std::atomic<int> runs{0};
  WorkQueue queue(
      {.workers = 1},
      [&](const std::string&) {
        return runs.fetch_add(1) == 0 ? Outcome::RequeueAfter(milliseconds{50}) : Outcome::Done();
      },
      clock, random);
  queue.Start();
  queue.Add("k");
  ASSERT_TRUE(Eventually([&] { return runs.load() == 1 && queue.Active() == 0; }));
  EXPECT_TRUE(queue.IdleFor(milliseconds{49})) << "due in 50 ms of the queue's clock";
  EXPECT_FALSE(queue.IdleFor(milliseconds{50}));
  clock.Advance(milliseconds{49});
  EXPECT_TRUE(queue.IdleFor(milliseconds{0}));
  EXPECT_EQ(runs.load(), 1);
  clock.Advance(milliseconds{1});
  ASSERT_TRUE(Eventually([&] { return runs.load() == 2 && queue.IdleFor(milliseconds{1'000'000}); }));
}

TEST(WorkQueueTest, ErrorsBackOffExponentiallyWithJitterAndEventuallySucceed) {
  util::ManualClock clock;
  util::Random random(1);
  std::atomic<int> runs{0};
  const milliseconds base{1000}, max{8000};
  WorkQueue queue(
      {.workers = 1, .error_base = base, .error_max = max},
      [&](const std::string&) {
        return runs.fetch_add(1) < 5 ? Outcome::Error(absl::UnavailableError("proxmox down")) : Outcome::Done();
      },
      clock, random);
  queue.Start();
  queue.Add("k");
  for (int error = 0; error < 5; ++error) {
    ASSERT_TRUE(Eventually([&] { return runs.load() == error + 1 && queue.Active() == 0; }));
    const milliseconds ceiling = std::min(base * (1 << error), max);
    EXPECT_TRUE(queue.IdleFor(ceiling / 2 - milliseconds{1})) << "error " << error;
    EXPECT_FALSE(queue.IdleFor(ceiling)) << "error " << error;
    clock.Advance(ceiling);
  }
  ASSERT_TRUE(Eventually([&] { return runs.load() == 6 && queue.IdleFor(milliseconds{1'000'000}); }));
}

TEST(WorkQueueTest, ThrowingHandlerIsAnErrorNotACrash) {
  util::ManualClock clock;
  util::Random random(1);
  std::atomic<int> runs{0};
  WorkQueue queue(
      {.workers = 1, .error_base = milliseconds{500}, .error_max = milliseconds{500}},
      [&](const std::string&) -> Outcome {
        if (runs.fetch_add(1) == 0) throw std::runtime_error("bug");
        return Outcome::Done();
      },
      clock, random);
  queue.Start();
  queue.Add("k");
  ASSERT_TRUE(Eventually([&] { return runs.load() == 1 && queue.Active() == 0; }));
  EXPECT_FALSE(queue.IdleFor(milliseconds{500})) << "retried with the error backoff";
  clock.Advance(milliseconds{500});
  ASSERT_TRUE(Eventually([&] { return runs.load() == 2; }));
}

}  // namespace
}  // namespace omni_proxmox::provider
