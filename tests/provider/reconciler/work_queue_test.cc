#include "provider/reconciler/work_queue.h"

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

namespace omni_proxmox::provider {
namespace {

using std::chrono::milliseconds;

bool WaitUntil(const std::function<bool()>& predicate, milliseconds timeout = milliseconds{10'000}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(milliseconds{2});
  }
  return predicate();
}

TEST(WorkQueueTest, NeverRunsOneKeyOnTwoWorkersAndMergesDuplicates) {
  util::Random random(1);
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
        std::this_thread::sleep_for(milliseconds{5});
        std::lock_guard lock(mutex);
        running.erase(key);
        return Outcome::Done();
      },
      util::RealClock(), random);
  queue.Start();
  for (int round = 0; round < 20; ++round) {
    for (const char* key : {"a", "b", "c"}) queue.Add(key);
  }
  ASSERT_TRUE(WaitUntil([&] { return queue.IdleFor(milliseconds{0}); }));
  queue.Stop();
  EXPECT_EQ(overlaps.load(), 0);
  for (const char* key : {"a", "b", "c"}) {
    EXPECT_GE(runs[key], 1);
    EXPECT_LE(runs[key], 20) << "duplicates while queued merge into one run";
  }
}

TEST(WorkQueueTest, AddDuringProcessingRunsAgainAfterwards) {
  util::Random random(1);
  std::atomic<int> runs{0};
  WorkQueue* self = nullptr;
  WorkQueue queue(
      {.workers = 2},
      [&](const std::string& key) {
        if (runs.fetch_add(1) == 0) self->Add(key);  // an event arrives mid-reconcile
        return Outcome::Done();
      },
      util::RealClock(), random);
  self = &queue;
  queue.Start();
  queue.Add("k");
  ASSERT_TRUE(WaitUntil([&] { return runs.load() == 2 && queue.IdleFor(milliseconds{0}); }));
}

TEST(WorkQueueTest, RequeueAfterWaitsThenRuns) {
  util::Random random(1);
  std::atomic<int> runs{0};
  WorkQueue queue(
      {.workers = 1},
      [&](const std::string&) {
        return runs.fetch_add(1) == 0 ? Outcome::RequeueAfter(milliseconds{50}) : Outcome::Done();
      },
      util::RealClock(), random);
  queue.Start();
  const auto start = std::chrono::steady_clock::now();
  queue.Add("k");
  ASSERT_TRUE(WaitUntil([&] { return runs.load() == 2; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds{50});
}

TEST(WorkQueueTest, ErrorsBackOffAndEventuallySucceed) {
  util::Random random(1);
  std::atomic<int> runs{0};
  WorkQueue queue(
      {.workers = 1, .error_base = milliseconds{5}, .error_max = milliseconds{40}},
      [&](const std::string&) {
        return runs.fetch_add(1) < 4 ? Outcome::Error(absl::UnavailableError("proxmox down")) : Outcome::Done();
      },
      util::RealClock(), random);
  queue.Start();
  queue.Add("k");
  ASSERT_TRUE(WaitUntil([&] { return runs.load() == 5 && queue.IdleFor(milliseconds{1000}); }));
}

TEST(WorkQueueTest, ThrowingHandlerIsAnErrorNotACrash) {
  util::Random random(1);
  std::atomic<int> runs{0};
  WorkQueue queue(
      {.workers = 1, .error_base = milliseconds{5}, .error_max = milliseconds{10}},
      [&](const std::string&) -> Outcome {
        if (runs.fetch_add(1) == 0) throw std::runtime_error("bug");
        return Outcome::Done();
      },
      util::RealClock(), random);
  queue.Start();
  queue.Add("k");
  ASSERT_TRUE(WaitUntil([&] { return runs.load() == 2; }));
}

}  // namespace
}  // namespace omni_proxmox::provider
