#include "util/backoff.h"

#include <algorithm>

namespace omni_proxmox::util {

std::chrono::milliseconds Backoff::Next() {
  // Cap the exponent before shifting so the product cannot overflow.
  const int exponent = std::min(attempt_, 30);
  ++attempt_;
  const long long ceiling = std::min<long long>(static_cast<long long>(base_.count()) << exponent, max_.count());
  const long long floor = ceiling / 2;
  const long long jitter = static_cast<long long>(random_.Uniform(static_cast<std::uint64_t>(ceiling - floor) + 1));
  return std::chrono::milliseconds{floor + jitter};
}

}  // namespace omni_proxmox::util
