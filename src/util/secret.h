// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <utility>

#include <fmt/format.h>

namespace omni_proxmox::util {

// Holds a secret (token secret, password, private key). Formatting it with fmt/spdlog
// prints "***", so a secret cannot reach a log line by accident; the value is read
// only through the explicitly named Reveal().
template <typename T = std::string>
class Secret {
 public:
  Secret() = default;
  explicit Secret(T value) : value_(std::move(value)) {}

  const T& Reveal() const { return value_; }
  bool empty() const { return value_.empty(); }

  friend bool operator==(const Secret& a, const Secret& b) { return a.value_ == b.value_; }

 private:
  T value_{};
};

}  // namespace omni_proxmox::util

template <typename T>
struct fmt::formatter<omni_proxmox::util::Secret<T>> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const omni_proxmox::util::Secret<T>&, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format("***", ctx);
  }
};
