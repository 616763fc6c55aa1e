// SPDX-License-Identifier: Apache-2.0
#include "util/clock.h"

namespace omni_proxmox::util {
namespace {

class SystemClockImpl final : public Clock {
 public:
  SystemTime Now() const override { return std::chrono::system_clock::now(); }
  MonotonicTime Monotonic() const override { return std::chrono::steady_clock::now(); }
};

// A manual clock's waiter also wakes this often in real time: a notification sent between the
// waiter's last check and its wait (Advance holds no lock of the waiter's) is then late, never lost.
constexpr std::chrono::milliseconds kManualWaitSlice{10};

}  // namespace

void Clock::WaitUntil(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                      std::stop_token stop) const {
  const auto remaining = deadline - Monotonic();
  if (remaining <= std::chrono::nanoseconds::zero()) return;
  cv.wait_for(lock, stop, remaining, [] { return false; });
}

void Clock::SleepUntil(MonotonicTime deadline, std::stop_token stop) const {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  while (!stop.stop_requested() && Monotonic() < deadline) WaitUntil(cv, lock, deadline, stop);
}

const Clock& RealClock() {
  static const SystemClockImpl clock;
  return clock;
}

ManualClock::ManualClock(SystemTime start) : now_(start), monotonic_(MonotonicTime{std::chrono::hours{1}}) {}

Clock::SystemTime ManualClock::Now() const {
  std::lock_guard lock(mutex_);
  return now_;
}

Clock::MonotonicTime ManualClock::Monotonic() const {
  std::lock_guard lock(mutex_);
  return monotonic_;
}

void ManualClock::WaitUntil(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                            std::stop_token stop) const {
  std::multiset<std::condition_variable_any*>::iterator registered;
  {
    std::lock_guard guard(mutex_);
    if (monotonic_ >= deadline) return;
    registered = waiters_.insert(&cv);
  }
  cv.wait_for(lock, stop, kManualWaitSlice, [] { return false; });
  std::lock_guard guard(mutex_);
  waiters_.erase(registered);
}

void ManualClock::Advance(std::chrono::nanoseconds by) {
  std::multiset<std::condition_variable_any*> to_wake;
  {
    std::lock_guard lock(mutex_);
    now_ += std::chrono::duration_cast<SystemTime::duration>(by);
    monotonic_ += by;
    to_wake = waiters_;
  }
  // A waiter deregisters under mutex_ after its wait returns, and its cv lives at least that long;
  // notifying one that already left is harmless.
  for (auto* cv : to_wake) cv->notify_all();
}

int ManualClock::Waiters() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(waiters_.size());
}

ScaledClock::ScaledClock(double scale, const Clock& base)
    : scale_(scale), base_(base), start_system_(base.Now()), start_monotonic_(base.Monotonic()) {}

std::chrono::nanoseconds ScaledClock::Elapsed() const {
  auto real = base_.Monotonic() - start_monotonic_;
  return std::chrono::nanoseconds{static_cast<std::int64_t>(static_cast<double>(real.count()) * scale_)};
}

Clock::SystemTime ScaledClock::Now() const {
  return start_system_ + std::chrono::duration_cast<SystemTime::duration>(Elapsed());
}

Clock::MonotonicTime ScaledClock::Monotonic() const { return start_monotonic_ + Elapsed(); }

void ScaledClock::WaitUntil(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                            std::stop_token stop) const {
  const auto remaining = deadline - Monotonic();
  if (remaining <= std::chrono::nanoseconds::zero()) return;
  const auto real =
      std::chrono::nanoseconds{static_cast<std::int64_t>(static_cast<double>(remaining.count()) / scale_)};
  cv.wait_for(lock, stop, real, [] { return false; });
}

}  // namespace omni_proxmox::util
