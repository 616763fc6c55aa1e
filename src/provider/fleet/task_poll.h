// SPDX-License-Identifier: Apache-2.0
#pragma once

// Part of the fleet's shared views of Proxmox (fleet_view.h): how often to poll each task in
// flight, and the last reading of a task several requests wait on.

#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "pve/types.h"
#include "util/clock.h"

namespace omni_proxmox::provider {

// How long to wait before polling a Proxmox task again, given how long we have known it.
// Most tasks we start (start, small config changes, uploads) finish within a second, and each
// poll is observed up to one interval late, so a fixed 1 s poll made every wait up to 1 s longer.
// Polling at a third of the task's age keeps that lateness under ~33 % of the task's duration
// while a long task (ISO download) still settles at `max` polls. `kFirstTaskPoll` is the floor.
inline constexpr std::chrono::milliseconds kFirstTaskPoll{250};

std::chrono::milliseconds TaskPollInterval(std::chrono::milliseconds age, std::chrono::milliseconds max);

// Remembers when each in-flight task was first seen (by UPID text) and who waits on it, so
// requeued passes, which keep no memory of their own, can pace their polls by task age. It learns
// how long each kind of task (the UPID's type: qmcreate, qmstart, download...) takes on this
// cluster: a task of a known kind is first polled when it is expected to be done, then as a fresh
// task from there, so a 2 s create costs one poll instead of six.
//
// While a kind is still unknown, one task of it (the scout: the first one asked about) is polled
// by age; the others of that kind wait (up to `3 * max`) to be woken: when the scout ends, the kind
// is known and every waiter of that kind is woken when its own task should be done. Thirty creates
// started at once so cost one polled schedule instead of thirty. A task seen finished wakes the
// other requests waiting on the same task (a shared Talos ISO download) at once. Thread-safe.
class TaskPollPacer {
 public:
  // Asked to bring `asker` back after the delay (the work queue's AddAfter).
  using WakeListener = std::function<void(const std::string& asker, std::chrono::milliseconds after)>;

  explicit TaskPollPacer(const util::Clock& clock, std::chrono::milliseconds max) : clock_(clock), max_(max) {}

  void SetWakeListener(WakeListener listener);
  // The delay before the next poll of `upid` by `asker` (a request ID, "" for none); the first call
  // for a UPID starts its age.
  std::chrono::milliseconds Next(const std::string& upid, const std::string& asker = "");
  // A poll saw the task still running.
  void SawRunning(const std::string& upid);
  // A poll saw the task finished, which teaches the pacer how long its kind takes (learn rule in
  // task_poll.cc) and wakes who else waits on it, or on a task of its kind that should be done now.
  // `by` is the request that polled it (not woken).
  void Finished(const std::string& upid, const std::string& by = "");
  // The task is forgotten (gone, or its UPID unreadable): drop its entry.
  void Done(const std::string& upid);
  std::size_t TrackedForTest() const;
  // The learned duration of a kind of task; zero while unknown.
  std::chrono::milliseconds ExpectedForTest(const std::string& type) const;

 private:
  struct Tracked {
    util::Clock::MonotonicTime first_seen{};
    std::optional<std::chrono::milliseconds> last_running_age;
    std::string type;
    std::set<std::string> askers;
  };
  struct Kind {
    double expected_ms = 0;  // 0 while unknown
    util::Clock::MonotonicTime last_shrink{};
    std::string scout;  // while unknown: the UPID polled by age
    util::Clock::MonotonicTime scout_polled{};
  };
  std::chrono::milliseconds ExpectedLocked(const std::string& type) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  // Updates the kind's estimate from one finished task; true when the kind was unknown before.
  bool LearnLocked(Kind& kind, std::optional<double> running_ms, double done_ms, util::Clock::MonotonicTime now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const util::Clock& clock_;
  const std::chrono::milliseconds max_;
  mutable absl::Mutex mutex_;
  std::unordered_map<std::string, Tracked> tracked_ ABSL_GUARDED_BY(mutex_);
  std::unordered_map<std::string, Kind> kinds_ ABSL_GUARDED_BY(mutex_);  // by UPID type
  absl::Mutex listener_mutex_;
  WakeListener listener_ ABSL_GUARDED_BY(listener_mutex_);
};

// What the last poll of each task said, so the requests waiting on one task (every request
// placed on a node waits for that node's Talos ISO download) share one poll per interval
// instead of each polling it. Thread-safe.
class TaskStatusBoard {
 public:
  struct Reading {
    pve::TaskStatus status;
    util::Clock::MonotonicTime at{};
    std::string by;  // who polled
  };

  explicit TaskStatusBoard(const util::Clock& clock) : clock_(clock) {}

  // The last reading of `upid` by someone other than `asker`, if it still answers: a finished
  // task's for a minute (a finished task never changes), a running task's while younger than
  // `running_fresh`. A caller's own readings never stand in for its next poll.
  std::optional<Reading> Recent(const std::string& upid, std::chrono::milliseconds running_fresh,
                                const std::string& asker) const;
  void Record(const std::string& upid, const pve::TaskStatus& status, const std::string& by);
  void Forget(const std::string& upid);
  std::size_t SizeForTest() const;

 private:
  const util::Clock& clock_;
  mutable absl::Mutex mutex_;
  std::unordered_map<std::string, Reading> readings_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace omni_proxmox::provider
