// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <stop_token>

namespace omni_proxmox::util {

// Time source injected everywhere time matters, so tests and simulators control it.
// SystemTime is shown to humans and sent over the wire; MonotonicTime measures intervals.
// Waiting goes through the clock too (WaitUntil), so code that sleeps until a deadline runs on
// simulated time in tests, as Envoy's SimulatedTimeSystem fires timers when time advances.
// Implementations are thread-safe.
class Clock {
 public:
  using SystemTime = std::chrono::system_clock::time_point;
  using MonotonicTime = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  virtual SystemTime Now() const = 0;
  virtual MonotonicTime Monotonic() const = 0;

  // Blocks on `cv` (with `lock` released meanwhile) until it is notified, `stop` is requested, or
  // this clock reaches `deadline`. It may also return early (spuriously): callers re-check their
  // condition and the time in a loop. The default waits in real time.
  virtual void WaitUntil(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                         std::stop_token stop = {}) const;

  // Sleeps until `deadline` on this clock or until `stop` is requested.
  void SleepUntil(MonotonicTime deadline, std::stop_token stop = {}) const;
  void SleepFor(std::chrono::nanoseconds duration, std::stop_token stop = {}) const {
    SleepUntil(Monotonic() + duration, std::move(stop));
  }
};

// The real clocks.
const Clock& RealClock();

// A clock that moves only when told to. Waiters (WaitUntil) are woken by every Advance, so a
// test drives timers by advancing time instead of sleeping. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(SystemTime start = SystemTime{std::chrono::seconds{1'700'000'000}});

  SystemTime Now() const override;
  MonotonicTime Monotonic() const override;
  void WaitUntil(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                 std::stop_token stop = {}) const override;
  void Advance(std::chrono::nanoseconds by);
  // Threads blocked in WaitUntil right now (a test waits for the code under test to park).
  int Waiters() const;

 private:
  mutable std::mutex mutex_;
  SystemTime now_;
  MonotonicTime monotonic_;
  mutable std::multiset<std::condition_variable_any*> waiters_;  // guarded by mutex_
};

// A clock running `scale` times faster than real time from the moment it is made, for
// simulators whose tasks and ticket lifetimes should pass quickly. Thread-safe.
class ScaledClock final : public Clock {
 public:
  explicit ScaledClock(double scale, const Clock& base = RealClock());

  SystemTime Now() const override;
  MonotonicTime Monotonic() const override;
  void WaitUntil(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                 std::stop_token stop = {}) const override;
  double scale() const { return scale_; }

 private:
  std::chrono::nanoseconds Elapsed() const;

  double scale_;
  const Clock& base_;
  SystemTime start_system_;
  MonotonicTime start_monotonic_;
};

}  // namespace omni_proxmox::util
