#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

namespace omni_proxmox::util {

// Time source injected everywhere time matters, so tests and simulators control it.
// SystemTime is shown to humans and sent over the wire; MonotonicTime measures intervals.
// Implementations are thread-safe.
class Clock {
 public:
  using SystemTime = std::chrono::system_clock::time_point;
  using MonotonicTime = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  virtual SystemTime Now() const = 0;
  virtual MonotonicTime Monotonic() const = 0;
};

// The real clocks.
const Clock& RealClock();

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(SystemTime start = SystemTime{std::chrono::seconds{1'700'000'000}});

  SystemTime Now() const override;
  MonotonicTime Monotonic() const override;
  void Advance(std::chrono::nanoseconds by);

 private:
  mutable std::mutex mutex_;
  SystemTime now_;
  MonotonicTime monotonic_;
};

// A clock running `scale` times faster than real time from the moment it is made, for
// simulators whose tasks and ticket lifetimes should pass quickly. Thread-safe.
class ScaledClock final : public Clock {
 public:
  explicit ScaledClock(double scale, const Clock& base = RealClock());

  SystemTime Now() const override;
  MonotonicTime Monotonic() const override;
  double scale() const { return scale_; }

 private:
  std::chrono::nanoseconds Elapsed() const;

  double scale_;
  const Clock& base_;
  SystemTime start_system_;
  MonotonicTime start_monotonic_;
};

}  // namespace omni_proxmox::util
