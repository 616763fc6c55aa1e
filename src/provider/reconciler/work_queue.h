// SPDX-License-Identifier: Apache-2.0
#pragma once

// The queue between the watches and the step runner: a keyed, deduplicating work queue with
// delayed requeue, drained by a fixed pool of workers. A key is never handed to two workers at
// once; a key added while it is being processed is processed again afterwards (once, however
// often it was added). Waiting for Proxmox means requeueing with a delay, never a sleeping
// worker. Delays run on the injected clock, so tests drive them with simulated time.
// Thread-safe.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

#include "util/backoff.h"
#include "util/clock.h"
#include "util/random.h"

namespace omni_proxmox::provider {

// What one reconcile pass asks for next.
struct Outcome {
  enum class Kind { kDone, kRequeueAfter, kError };
  Kind kind = Kind::kDone;
  std::chrono::milliseconds after{0};
  absl::Status error;

  static Outcome Done() { return {}; }
  static Outcome RequeueAfter(std::chrono::milliseconds d) { return {Kind::kRequeueAfter, d, absl::OkStatus()}; }
  static Outcome Error(absl::Status s) { return {Kind::kError, {}, std::move(s)}; }
};

class WorkQueue {
 public:
  using Handler = std::function<Outcome(const std::string& key)>;

  struct Options {
    int workers = 8;
    // Per-key backoff after errors (util::BackoffDelay): 500 ms, x2 with jitter, capped at 60 s,
    // never giving up.
    std::chrono::milliseconds error_base{500};
    std::chrono::milliseconds error_max{60'000};
  };

  WorkQueue(Options options, Handler handler, const util::Clock& clock, util::Random& random);
  ~WorkQueue();  // stops the workers; in-flight handlers finish first

  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Start();
  void Stop();

  // Queues `key` now (or keeps its earlier due time if that is sooner).
  void Add(const std::string& key);
  void AddAfter(const std::string& key, std::chrono::milliseconds delay);

  // Keys queued or being processed.
  std::size_t Size() const;
  // Number of keys being processed right now.
  int Active() const;
  // True when nothing is queued for the next `horizon` and no worker is busy.
  bool IdleFor(std::chrono::milliseconds horizon) const;

 private:
  void WorkerLoop(std::stop_token stop);
  void Finish(const std::string& key, const Outcome& outcome);

  const Options options_;
  const Handler handler_;
  const util::Clock& clock_;
  util::Random& random_;

  mutable std::mutex mutex_;
  // One idle worker (the timekeeper) sleeps until the earliest due key; the others sleep until
  // handed work. Waking every idle worker at each due time cost more CPU than the reconciles.
  std::condition_variable_any timekeeper_wake_;
  std::condition_variable_any idle_wake_;
  bool timekeeper_waiting_ = false;                        // guarded by mutex_
  std::map<std::string, util::Clock::MonotonicTime> due_;  // queued keys and when they are due
  std::set<std::string> processing_;
  std::set<std::string> dirty_;  // added while processing: run again right after
  std::map<std::string, std::pair<util::Clock::MonotonicTime, int>> failures_;  // key -> (since, count)
  std::vector<std::jthread> workers_;
  bool stopping_ = false;
};

}  // namespace omni_proxmox::provider
