#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "util/clock.h"

namespace omni_proxmox::provider {

// How long to wait before polling a Proxmox task again, given how long we have known it.
// Most tasks we start (start, small config changes, uploads) finish within a second, and each
// poll is observed up to one interval late, so a fixed 1 s poll made every wait up to 1 s longer.
// Polling at a third of the task's age keeps that lateness under ~33 % of the task's duration
// while a long task (ISO download) still settles at `max` polls. `kFirstTaskPoll` is the floor.
inline constexpr std::chrono::milliseconds kFirstTaskPoll{250};

std::chrono::milliseconds TaskPollInterval(std::chrono::milliseconds age, std::chrono::milliseconds max);

// Remembers when each in-flight task was first seen (by UPID text) so requeued passes, which
// keep no memory of their own, can pace their polls by task age. Thread-safe.
class TaskPollPacer {
 public:
  explicit TaskPollPacer(const util::Clock& clock, std::chrono::milliseconds max) : clock_(clock), max_(max) {}

  // The delay before the next poll of `upid`; the first call for a UPID starts its age.
  std::chrono::milliseconds Next(const std::string& upid);
  // The task finished (or was forgotten): drop its entry.
  void Done(const std::string& upid);
  std::size_t TrackedForTest() const;

 private:
  const util::Clock& clock_;
  const std::chrono::milliseconds max_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, util::Clock::MonotonicTime> first_seen_;
};

}  // namespace omni_proxmox::provider
