// SPDX-License-Identifier: Apache-2.0
#pragma once

// How long a request waits before its next attempt after a step failed: one policy for every
// step, instead of a delay chosen at each call site. A transient error (Proxmox or Omni briefly
// unavailable, a task that failed) is retried soon and then less often; a failure the cluster
// must change for (no room, no ISO storage) starts slower. Capped exponential with jitter
// (util::Backoff's schedule). Pure: the attempt count and the randomness are passed in.

#include <chrono>

#include "util/backoff.h"
#include "util/random.h"

namespace omni_proxmox::provider {

struct RetryPolicy {
  std::chrono::milliseconds transient_base{1000};
  std::chrono::milliseconds transient_max{60'000};
  std::chrono::milliseconds failed_base{60'000};
  std::chrono::milliseconds failed_max{600'000};

  // The delay before attempt `attempt` + 1 (attempt 0 is the first retry): uniform in
  // [d/2, d] for d = base * 2^attempt, never above max.
  std::chrono::milliseconds Transient(int attempt, util::Random& random) const {
    return Delay(transient_base, transient_max, attempt, random);
  }
  std::chrono::milliseconds Failed(int attempt, util::Random& random) const {
    return Delay(failed_base, failed_max, attempt, random);
  }

  static std::chrono::milliseconds Delay(std::chrono::milliseconds base, std::chrono::milliseconds max, int attempt,
                                         util::Random& random) {
    return util::BackoffDelay(base, max, attempt, random);
  }
};

}  // namespace omni_proxmox::provider
