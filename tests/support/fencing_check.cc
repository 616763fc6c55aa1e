// SPDX-License-Identifier: Apache-2.0
#include "support/fencing_check.h"

#include <algorithm>

#include <fmt/format.h>

namespace omni_proxmox::testing {
namespace {

// The moment to judge a mutation stamped at `t` by: `t`, or when its sender stopped running if
// it was not running at `t`.
std::pair<MonotonicTime, bool> JudgedAt(const ReplicaMutation& m, const std::vector<NotRunning>& not_running) {
  for (const auto& gap : not_running) {
    if (gap.replica == m.replica && gap.from <= m.at && (!gap.until || m.at < *gap.until)) return {gap.from, true};
  }
  return {m.at, false};
}

// The holder at `t`: the last version applied at or before `t` ("" before the first).
const LeaseVersion* VersionAt(const std::vector<LeaseVersion>& history, MonotonicTime t) {
  auto after = std::upper_bound(history.begin(), history.end(), t,
                                [](MonotonicTime time, const LeaseVersion& v) { return time < v.at; });
  return after == history.begin() ? nullptr : &*(after - 1);
}

}  // namespace

std::string SecondsAfter(MonotonicTime origin, MonotonicTime t) {
  return fmt::format("{:.3f} s", std::chrono::duration<double>(t - origin).count());
}

FencingReport CheckFencing(const std::vector<LeaseVersion>& history, std::vector<ReplicaMutation> mutations,
                           const std::vector<NotRunning>& not_running) {
  FencingReport report;
  report.lease_versions = static_cast<int>(history.size());
  for (std::size_t i = 0; i < history.size(); ++i) {
    if (i == 0 || history[i].holder != history[i - 1].holder) ++report.holder_changes;
  }
  std::sort(mutations.begin(), mutations.end(),
            [](const ReplicaMutation& a, const ReplicaMutation& b) { return a.at < b.at; });
  const MonotonicTime origin = !history.empty()     ? history.front().at
                               : !mutations.empty() ? mutations.front().at
                                                    : MonotonicTime{};
  for (const auto& m : mutations) {
    ++report.checked;
    ++report.by_replica[m.replica];
    const auto [judged, stopped] = JudgedAt(m, not_running);
    if (stopped) ++report.judged_at_stop;
    const LeaseVersion* version = VersionAt(history, judged);
    if (version != nullptr && version->holder == m.replica) continue;
    report.violations.push_back(fmt::format(
        "{} by {} arrived at {}{} while {} held the lease (version {} since {})", m.what, m.replica,
        SecondsAfter(origin, m.at),
        stopped ? fmt::format(" (judged at {}, when it stopped)", SecondsAfter(origin, judged)) : "",
        version == nullptr        ? "nobody yet"
        : version->holder.empty() ? "nobody (released)"
                                  : version->holder,
        version == nullptr ? 0 : version->version, version == nullptr ? "-" : SecondsAfter(origin, version->at)));
  }
  return report;
}

std::vector<LeaseVersion> LeaseVersions(const sim::omni::Journal& omni, const std::string& lease_type) {
  std::vector<LeaseVersion> out;
  for (const auto& record : omni.LeaseHistory()) {
    if (record.type != lease_type) continue;
    out.push_back({.at = record.at, .version = record.version, .holder = record.destroyed ? "" : record.holder});
  }
  std::stable_sort(out.begin(), out.end(), [](const LeaseVersion& a, const LeaseVersion& b) { return a.at < b.at; });
  return out;
}

std::vector<ReplicaMutation> ReplicaMutations(const sim::omni::Journal& omni, const sim::pve::Journal& pve) {
  std::vector<ReplicaMutation> out;
  for (const auto& m : omni.Mutations()) {
    if (m.replica.empty() || sim::omni::IsLeaderLease(m.type, m.id)) continue;
    std::string method = m.method.substr(m.method.rfind('/') + 1);
    out.push_back(
        {.at = m.at,
         .replica = m.replica,
         .what = m.type.empty() ? fmt::format("omni {}", method) : fmt::format("omni {} {}/{}", method, m.type, m.id)});
  }
  for (const auto& m : pve.Mutations()) {
    if (m.replica.empty()) continue;
    out.push_back(
        {.at = m.at, .replica = m.replica, .what = fmt::format("proxmox {} {} ({})", m.method, m.path, m.status)});
  }
  return out;
}

}  // namespace omni_proxmox::testing
