#include "provider/reconciler/task_poll.h"

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

milliseconds TaskPollPacer::Next(const std::string& upid) {
  const auto now = clock_.Monotonic();
  std::lock_guard lock(mutex_);
  if (first_seen_.size() > kPruneAbove) {
    std::erase_if(first_seen_, [&](const auto& entry) { return now - entry.second > kStaleEntry; });
  }
  auto [it, inserted] = first_seen_.try_emplace(upid, now);
  return TaskPollInterval(std::chrono::duration_cast<milliseconds>(now - it->second), max_);
}

void TaskPollPacer::Done(const std::string& upid) {
  std::lock_guard lock(mutex_);
  first_seen_.erase(upid);
}

std::size_t TaskPollPacer::TrackedForTest() const {
  std::lock_guard lock(mutex_);
  return first_seen_.size();
}

}  // namespace omni_proxmox::provider
