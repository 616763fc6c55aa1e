// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>

#include "util/random.h"

namespace omni_proxmox::util {

// The `attempt`-th delay (0 = the first) of the schedule below: uniform in
// [base * 2^attempt / 2, base * 2^attempt], never above `max`.
std::chrono::milliseconds BackoffDelay(std::chrono::milliseconds base, std::chrono::milliseconds max, int attempt,
                                       Random& random);

// Capped exponential backoff with full jitter: the n-th delay is uniform in
// [base * 2^n / 2, base * 2^n], never above `max`. Reset() after a success.
// Thread-compatible: one instance per retrying operation.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max, Random& random)
      : base_(base), max_(max), random_(random) {}

  std::chrono::milliseconds Next();
  void Reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds max_;
  Random& random_;
  int attempt_ = 0;
};

}  // namespace omni_proxmox::util
