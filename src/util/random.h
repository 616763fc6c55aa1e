// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <mutex>
#include <random>

namespace omni_proxmox::util {

// Source of randomness injected where behaviour depends on chance (jitter, simulator
// shuffles, fault injection), so tests fix the seed. Thread-safe.
class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}

  // Uniform in [0, bound). REQUIRES: bound > 0.
  std::uint64_t Uniform(std::uint64_t bound) {
    std::lock_guard lock(mutex_);
    return std::uniform_int_distribution<std::uint64_t>(0, bound - 1)(engine_);
  }

  // Uniform in [0, 1).
  double UnitInterval() {
    std::lock_guard lock(mutex_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(engine_);
  }

  // True with probability p.
  bool Bernoulli(double p) { return UnitInterval() < p; }

  // A seed from the operating system, for production use.
  static std::uint64_t SeedFromDevice() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }

 private:
  std::mutex mutex_;
  std::mt19937_64 engine_;
};

}  // namespace omni_proxmox::util
