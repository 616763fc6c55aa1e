// SPDX-License-Identifier: Apache-2.0
#include "util/backoff.h"

#include <algorithm>

namespace omni_proxmox::util {

std::chrono::milliseconds BackoffDelay(std::chrono::milliseconds base, std::chrono::milliseconds max, int attempt,
                                       Random& random) {
  // Cap the exponent before shifting so the product cannot overflow.
  const int exponent = std::clamp(attempt, 0, 30);
  const long long ceiling = std::min<long long>(static_cast<long long>(base.count()) << exponent, max.count());
  const long long floor = ceiling / 2;
  const long long jitter = static_cast<long long>(random.Uniform(static_cast<std::uint64_t>(ceiling - floor) + 1));
  return std::chrono::milliseconds{floor + jitter};
}

std::chrono::milliseconds Backoff::Next() { return BackoffDelay(base_, max_, attempt_++, random_); }

}  // namespace omni_proxmox::util
