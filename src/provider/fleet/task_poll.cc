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
// The first poll comes at this share of the expected duration, so an ordinary task is seen done
// on the first or second poll.
constexpr double kFirstPollShare = 0.9;
constexpr double kAverageWeight = 0.25;  // of the newest duration

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
}  // namespace

milliseconds TaskPollPacer::ExpectedLocked(const std::string& upid) const {
  auto it = expected_ms_.find(UpidType(upid));
  if (it == expected_ms_.end()) return milliseconds{0};
  return std::min(milliseconds{static_cast<long long>(it->second * kFirstPollShare)}, kLongestExpected);
}

milliseconds TaskPollPacer::Next(const std::string& upid) {
  const auto now = clock_.Monotonic();
  absl::MutexLock lock(&mutex_);
  if (tracked_.size() > kPruneAbove) {
    std::erase_if(tracked_, [&](const auto& entry) { return now - entry.second.first_seen > kStaleEntry; });
  }
  auto [it, inserted] = tracked_.try_emplace(upid, Tracked{.first_seen = now, .last_running_age = std::nullopt});
  const auto age = std::chrono::duration_cast<milliseconds>(now - it->second.first_seen);
  const milliseconds expected = ExpectedLocked(upid);
  if (age < expected) return expected - age;
  return TaskPollInterval(age - expected, max_);
}

void TaskPollPacer::SawRunning(const std::string& upid) {
  const auto now = clock_.Monotonic();
  absl::MutexLock lock(&mutex_);
  auto it = tracked_.find(upid);
  if (it == tracked_.end()) return;
  it->second.last_running_age = std::chrono::duration_cast<milliseconds>(now - it->second.first_seen);
}

void TaskPollPacer::Finished(const std::string& upid) {
  const auto now = clock_.Monotonic();
  absl::MutexLock lock(&mutex_);
  auto it = tracked_.find(upid);
  if (it == tracked_.end()) return;
  const double done_at = std::chrono::duration<double, std::milli>(now - it->second.first_seen).count();
  const double running_at =
      it->second.last_running_age ? static_cast<double>(it->second.last_running_age->count()) : 0.0;
  const double took = (running_at + done_at) / 2;  // it ended somewhere in between
  tracked_.erase(it);
  const std::string type = UpidType(upid);
  if (type.empty()) return;
  auto [average, fresh] = expected_ms_.try_emplace(type, took);
  if (!fresh) average->second += kAverageWeight * (took - average->second);
}

void TaskPollPacer::Done(const std::string& upid) {
  absl::MutexLock lock(&mutex_);
  tracked_.erase(upid);
}

milliseconds TaskPollPacer::ExpectedForTest(const std::string& type) const {
  absl::MutexLock lock(&mutex_);
  auto it = expected_ms_.find(type);
  return it == expected_ms_.end() ? milliseconds{0} : milliseconds{static_cast<long long>(it->second)};
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
