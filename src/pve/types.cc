// SPDX-License-Identifier: Apache-2.0
#include "pve/types.h"

#include <charconv>
#include <string_view>

namespace omni_proxmox::pve {

namespace {
constexpr std::string_view kWarningsPrefix = "WARNINGS: ";

// "WARNINGS: <n>" exactly (PVE's status_is_error treats it as success); -1 when not of that form.
int ParseWarnings(std::string_view s) {
  if (s.substr(0, kWarningsPrefix.size()) != kWarningsPrefix) return -1;
  s.remove_prefix(kWarningsPrefix.size());
  int n = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || n < 0) return -1;
  return n;
}
}  // namespace

bool TaskStatus::Succeeded() const {
  if (running || !exit_status.has_value()) return false;
  return *exit_status == "OK" || ParseWarnings(*exit_status) >= 0;
}

int TaskStatus::Warnings() const {
  if (!exit_status.has_value()) return 0;
  int n = ParseWarnings(*exit_status);
  return n < 0 ? 0 : n;
}

}  // namespace omni_proxmox::pve
