// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/task_poll.h"

#include <algorithm>

namespace omni_proxmox::provider {

using std::chrono::milliseconds;

namespace {
// Entries of machines deleted mid-task are never Done(); anything this old is no longer polled.
constexpr auto kStaleEntry = std::chrono::hours(6);
constexpr std::size_t kPruneAbove = 4096;
}  // namespace

milliseconds TaskPollInterval(milliseconds age, milliseconds max) {
  const milliseconds floor = std::min(kFirstTaskPoll, max);  // a faster configured poll (demo) wins
  return std::clamp(age / 3, floor, std::max(floor, max));
}

namespace {
// A learned duration is trusted up to this long: a kind whose tasks vary (downloads of different
// sizes) must not make a short one wait for a long first poll.
constexpr milliseconds kLongestExpected{10'000};
// Nor shorter than this: a poll the moment a task starts finds nearly every one still running.
constexpr double kShortestExpectedMs = 50;
// Past its expected time a task is polled at least this soon again (it is a little slower).
constexpr milliseconds kAfterExpected{100};
// A task already done at its first poll may have ended earlier still: the estimate shrinks by this
// share, at most once per expected duration, so a burst of tasks started together shrinks it once.
constexpr double kShrinkShare = 0.03;
// A task seen running past its expected time ended between that poll and the next; the estimate
// moves up to this point between the two (biased late: one more early poll costs a request).
constexpr double kBracketPoint = 0.75;
constexpr double kLargestGrowth = 1.25;
// Unknown kinds: the waiters other than the scout poll this much slower than `max` on their own;
// the scout's end wakes them first.
constexpr int kWaiterSlowdown = 3;
// The scout is polled at a fifth of its age, at least this far apart.
constexpr int kScoutShare = 5;
constexpr milliseconds kScoutFloor{100};

// "UPID:node:pid:pstart:starttime:type:id:user:": the type field, or "" when malformed.
std::string UpidType(const std::string& upid) {
  std::size_t pos = 0;
  for (int field = 0; field < 5; ++field) {
    pos = upid.find(':', pos);
    if (pos == std::string::npos) return "";
    ++pos;
  }
  const std::size_t end = upid.find(':', pos);
  return end == std::string::npos ? "" : upid.substr(pos, end - pos);
}

double Ms(util::Clock::MonotonicTime::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
}  // namespace

void TaskPollPacer::SetWakeListener(WakeListener listener) {
  absl::MutexLock lock(&listener_mutex_);
  listener_ = std::move(listener);
}

milliseconds TaskPollPacer::ExpectedLocked(const std::string& type) const {
  auto it = kinds_.find(type);
  if (it == kinds_.end() || it->second.expected_ms <= 0) return milliseconds{0};
  return std::min(milliseconds{static_cast<long long>(it->second.expected_ms)}, kLongestExpected);
}

milliseconds TaskPollPacer::Next(const std::string& upid, const std::string& asker) {
  const auto now = clock_.Monotonic();
  absl::MutexLock lock(&mutex_);
  if (tracked_.size() > kPruneAbove) {
    std::erase_if(tracked_, [&](const auto& entry) { return now - entry.second.first_seen > kStaleEntry; });
  }
  auto [it, inserted] = tracked_.try_emplace(upid);
  Tracked& task = it->second;
  if (inserted) {
    task.first_seen = now;
    task.type = UpidType(upid);
  }
  if (!asker.empty()) task.askers.insert(asker);
  const auto age = std::chrono::duration_cast<milliseconds>(now - task.first_seen);
  if (task.type.empty()) return TaskPollInterval(age, max_);
  const milliseconds expected = ExpectedLocked(task.type);
  if (expected.count() > 0) {
    if (age < expected) return expected - age;
    return std::clamp((age - expected) / 3, std::min(kAfterExpected, max_), max_);
  }
  Kind& kind = kinds_[task.type];
  const bool scout_lost = kind.scout.empty() || !tracked_.contains(kind.scout) || now - kind.scout_polled > 2 * max_;
  if (scout_lost || kind.scout == upid) {
    kind.scout = upid;
    kind.scout_polled = now;
    // Finer than a lone task's schedule: what the scout learns sets every other task's first poll.
    return std::clamp(age / kScoutShare, std::min(kScoutFloor, max_), max_);
  }
  return kWaiterSlowdown * max_;
}

void TaskPollPacer::SawRunning(const std::string& upid) {
  const auto now = clock_.Monotonic();
  absl::MutexLock lock(&mutex_);
  auto it = tracked_.find(upid);
  if (it == tracked_.end()) return;
  it->second.last_running_age = std::chrono::duration_cast<milliseconds>(now - it->second.first_seen);
}

bool TaskPollPacer::LearnLocked(Kind& kind, std::optional<double> running_ms, double done_ms,
                                util::Clock::MonotonicTime now) {
  double& expected = kind.expected_ms;
  const bool unknown = expected <= 0;
  if (unknown) {
    // It ended between the last poll that saw it running and this one: the end of that span, so
    // the tasks of its kind started with it are seen done at their first poll (the scout's polls
    // keep the span within a fifth of its age). A task already done at its first poll ended
    // sometime before, so a late poll never teaches a longer duration.
    expected = running_ms ? done_ms : done_ms / 2;
    kind.last_shrink = now;
  } else if (running_ms && *running_ms >= expected * 0.99) {
    // Still running when it should have been done: slower than the estimate, which grows by at
    // most a quarter per task, so one slow task does not delay the first polls of the next ones.
    const double bracket = *running_ms + kBracketPoint * (done_ms - *running_ms);
    expected = std::min(std::max(expected, bracket), expected * kLargestGrowth);
  } else if (!running_ms && done_ms < expected) {
    expected = done_ms;  // done before it was expected (looked at early): at most this long
  } else if (!running_ms && Ms(now - kind.last_shrink) >= expected) {
    expected *= 1 - kShrinkShare;
    kind.last_shrink = now;
  }
  expected = std::max(expected, kShortestExpectedMs);
  return unknown;
}

void TaskPollPacer::Finished(const std::string& upid, const std::string& by) {
  const auto now = clock_.Monotonic();
  std::vector<std::pair<std::string, milliseconds>> wakes;
  {
    absl::MutexLock lock(&mutex_);
    auto it = tracked_.find(upid);
    if (it == tracked_.end()) return;
    Tracked task = std::move(it->second);
    tracked_.erase(it);
    // Whoever else waits on this very task (a shared download) can go on now.
    for (const auto& asker : task.askers) {
      if (asker != by) wakes.emplace_back(asker, milliseconds{0});
    }
    if (!task.type.empty()) {
      Kind& kind = kinds_[task.type];
      if (kind.scout == upid) kind.scout.clear();
      std::optional<double> running_ms;
      if (task.last_running_age) running_ms = static_cast<double>(task.last_running_age->count());
      if (LearnLocked(kind, running_ms, Ms(now - task.first_seen), now)) {
        // The kind is known now: every other task of it is looked at when it should be done.
        const milliseconds expected = ExpectedLocked(task.type);
        for (const auto& [other_upid, other] : tracked_) {
          if (other.type != task.type) continue;
          const auto age = std::chrono::duration_cast<milliseconds>(now - other.first_seen);
          const milliseconds after = age < expected ? expected - age : milliseconds{0};
          for (const auto& asker : other.askers) {
            if (asker != by) wakes.emplace_back(asker, after);
          }
        }
      }
    }
  }
  if (wakes.empty()) return;
  WakeListener listener;
  {
    absl::MutexLock lock(&listener_mutex_);
    listener = listener_;
  }
  if (!listener) return;
  for (const auto& [asker, after] : wakes) listener(asker, after);
}

void TaskPollPacer::Done(const std::string& upid) {
  absl::MutexLock lock(&mutex_);
  auto it = tracked_.find(upid);
  if (it == tracked_.end()) return;
  if (auto kind = kinds_.find(it->second.type); kind != kinds_.end() && kind->second.scout == upid) {
    kind->second.scout.clear();
  }
  tracked_.erase(it);
}

milliseconds TaskPollPacer::ExpectedForTest(const std::string& type) const {
  absl::MutexLock lock(&mutex_);
  auto it = kinds_.find(type);
  return it == kinds_.end() ? milliseconds{0} : milliseconds{static_cast<long long>(it->second.expected_ms)};
}

std::size_t TaskPollPacer::TrackedForTest() const {
  absl::MutexLock lock(&mutex_);
  return tracked_.size();
}

namespace {
constexpr auto kFinishedKept = std::chrono::minutes(1);
constexpr std::size_t kBoardPruneAbove = 1024;
}  // namespace

std::optional<TaskStatusBoard::Reading> TaskStatusBoard::Recent(const std::string& upid, milliseconds running_fresh,
                                                                const std::string& asker) const {
  const auto now = clock_.Monotonic();
  absl::MutexLock lock(&mutex_);
  auto it = readings_.find(upid);
  if (it == readings_.end() || it->second.by == asker) return std::nullopt;
  const auto age = now - it->second.at;
  if (it->second.status.running ? age >= running_fresh : age >= kFinishedKept) return std::nullopt;
  return it->second;
}

void TaskStatusBoard::Record(const std::string& upid, const pve::TaskStatus& status, const std::string& by) {
  const auto now = clock_.Monotonic();
  absl::MutexLock lock(&mutex_);
  if (readings_.size() > kBoardPruneAbove) {
    // Waiters of a task stop asking once it finished; running tasks are re-recorded every poll.
    std::erase_if(readings_, [&](const auto& entry) { return now - entry.second.at >= kFinishedKept; });
  }
  readings_[upid] = Reading{.status = status, .at = now, .by = by};
}

void TaskStatusBoard::Forget(const std::string& upid) {
  absl::MutexLock lock(&mutex_);
  readings_.erase(upid);
}

std::size_t TaskStatusBoard::SizeForTest() const {
  absl::MutexLock lock(&mutex_);
  return readings_.size();
}

}  // namespace omni_proxmox::provider
