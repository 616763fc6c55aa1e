// SPDX-License-Identifier: Apache-2.0
#include "provider/reconciler/work_queue.h"

#include <algorithm>

namespace omni_proxmox::provider {

WorkQueue::WorkQueue(Options options, Handler handler, const util::Clock& clock, util::Random& random)
    : options_(options), handler_(std::move(handler)), clock_(clock), random_(random) {}

WorkQueue::~WorkQueue() { Stop(); }

void WorkQueue::Start() {
  std::lock_guard lock(mutex_);
  stopping_ = false;
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this](std::stop_token stop) { WorkerLoop(stop); });
  }
}

void WorkQueue::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& w : workers_) w.request_stop();
  }
  timekeeper_wake_.notify_all();
  idle_wake_.notify_all();
  std::vector<std::jthread> workers;
  {
    std::lock_guard lock(mutex_);
    workers.swap(workers_);
  }
  workers.clear();  // joins
}

void WorkQueue::Add(const std::string& key) { AddAfter(key, std::chrono::milliseconds{0}); }

void WorkQueue::AddAfter(const std::string& key, std::chrono::milliseconds delay) {
  {
    std::lock_guard lock(mutex_);
    if (processing_.contains(key) && delay.count() == 0) {
      dirty_.insert(key);
      return;
    }
    const auto when = clock_.Monotonic() + delay;
    auto [it, inserted] = due_.emplace(key, when);
    if (!inserted && when < it->second) it->second = when;
  }
  // The timekeeper re-reads the earliest due time; work due now also wakes an idle worker.
  timekeeper_wake_.notify_one();
  if (delay.count() <= 0) idle_wake_.notify_one();
}

std::size_t WorkQueue::Size() const {
  std::lock_guard lock(mutex_);
  std::set<std::string> keys = processing_;
  for (const auto& [k, _] : due_) keys.insert(k);
  return keys.size();
}

int WorkQueue::Active() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(processing_.size());
}

bool WorkQueue::IdleFor(std::chrono::milliseconds horizon) const {
  std::lock_guard lock(mutex_);
  if (!processing_.empty() || !dirty_.empty()) return false;
  const auto limit = clock_.Monotonic() + horizon;
  return std::none_of(due_.begin(), due_.end(), [&](const auto& entry) { return entry.second <= limit; });
}

void WorkQueue::WorkerLoop(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested() && !stopping_) {
    // The earliest due key that no other worker holds.
    auto next = due_.end();
    for (auto it = due_.begin(); it != due_.end(); ++it) {
      if (processing_.contains(it->first)) continue;
      if (next == due_.end() || it->second < next->second) next = it;
    }
    const auto now = clock_.Monotonic();
    if (next == due_.end() || next->second > now) {
      if (timekeeper_waiting_) {
        // Bounded, so a missed hand-over costs a second at most.
        clock_.WaitUntil(idle_wake_, lock, now + std::chrono::seconds{1}, stop);
        continue;
      }
      // On the queue's clock, so a test's simulated time fires due keys; bounded, so a clock that
      // jumps is noticed soon.
      auto deadline = now + std::chrono::milliseconds{200};
      if (next != due_.end()) deadline = std::min(deadline, next->second);
      timekeeper_waiting_ = true;
      clock_.WaitUntil(timekeeper_wake_, lock, deadline, stop);
      timekeeper_waiting_ = false;
      continue;
    }
    const std::string key = next->first;
    due_.erase(next);
    processing_.insert(key);
    // Someone else keeps time (and takes whatever else is due) while this worker reconciles.
    if (!timekeeper_waiting_ && !due_.empty()) idle_wake_.notify_one();
    lock.unlock();
    Outcome outcome;
    try {
      outcome = handler_(key);
    } catch (const std::exception& e) {
      outcome = Outcome::Error(absl::InternalError(std::string("reconcile threw: ") + e.what()));
    }
    lock.lock();
    processing_.erase(key);
    lock.unlock();
    Finish(key, outcome);
    lock.lock();
  }
}

void WorkQueue::Finish(const std::string& key, const Outcome& outcome) {
  std::chrono::milliseconds delay{-1};
  {
    std::lock_guard lock(mutex_);
    switch (outcome.kind) {
      case Outcome::Kind::kDone:
        failures_.erase(key);
        break;
      case Outcome::Kind::kRequeueAfter:
        failures_.erase(key);
        delay = outcome.after;
        break;
      case Outcome::Kind::kError: {
        auto& [since, count] = failures_[key];
        if (count == 0) since = clock_.Monotonic();
        delay = util::BackoffDelay(options_.error_base, options_.error_max, count, random_);
        ++count;
        break;
      }
    }
    if (dirty_.erase(key) > 0) {
      delay = delay.count() < 0 ? std::chrono::milliseconds{0} : std::min(delay, std::chrono::milliseconds{0});
    }
  }
  if (delay.count() >= 0) AddAfter(key, delay);
}

}  // namespace omni_proxmox::provider
