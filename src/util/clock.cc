#include "util/clock.h"

namespace omni_proxmox::util {
namespace {

class SystemClockImpl final : public Clock {
 public:
  SystemTime Now() const override { return std::chrono::system_clock::now(); }
  MonotonicTime Monotonic() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

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

void ManualClock::Advance(std::chrono::nanoseconds by) {
  std::lock_guard lock(mutex_);
  now_ += std::chrono::duration_cast<SystemTime::duration>(by);
  monotonic_ += by;
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

}  // namespace omni_proxmox::util
