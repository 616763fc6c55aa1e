// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/journal.h"

#include <algorithm>
#include <ctime>

#include "fmt/format.h"

namespace omni_proxmox::sim::pve {
namespace {

std::string Rfc3339(util::Clock::SystemTime t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, ms % 1000);
}

constexpr std::string_view kApi = "/api2/json";

}  // namespace

Journal::Journal(const util::Clock& clock, std::size_t capacity) : clock_(clock), capacity_(capacity) {}

bool Journal::Mutating(const std::string& method, const std::string& path) {
  return method != "GET" && method != "HEAD" && path.starts_with(kApi);
}

void Journal::Record(const Arrival& arrival, const std::string& method, const std::string& path, std::string replica,
                     int status) {
  if (!Mutating(method, path)) return;
  MutationRecord record{.at = arrival.at,
                        .wall = arrival.wall,
                        .replica = std::move(replica),
                        .method = method,
                        .path = path.substr(kApi.size()),
                        .status = status};
  std::lock_guard lock(mutex_);
  // Requests answered out of order (a slow one, a delayed fault) go where they arrived.
  auto at = std::upper_bound(records_.begin(), records_.end(), record.at,
                             [](util::Clock::MonotonicTime t, const MutationRecord& r) { return t < r.at; });
  records_.insert(at, std::move(record));
  while (records_.size() > capacity_) {
    records_.pop_front();
    ++dropped_;
  }
}

std::vector<MutationRecord> Journal::Mutations() const {
  std::lock_guard lock(mutex_);
  return {records_.begin(), records_.end()};
}

std::uint64_t Journal::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

nlohmann::json Journal::ToJson() const {
  nlohmann::json mutations = nlohmann::json::array();
  std::lock_guard lock(mutex_);
  for (const auto& r : records_) {
    mutations.push_back(
        {{"monotonic_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(r.at.time_since_epoch()).count()},
         {"time", Rfc3339(r.wall)},
         {"replica", r.replica},
         {"method", r.method},
         {"path", r.path},
         {"status", r.status}});
  }
  return {{"clock", "monotonic"}, {"dropped", dropped_}, {"mutations", mutations}};
}

}  // namespace omni_proxmox::sim::pve
