// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/journal.h"

#include <ctime>

#include <fmt/format.h>

#include "provider/machine.pb.h"

namespace omni_proxmox::sim::omni {
namespace {

std::string Rfc3339(util::Clock::SystemTime t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, ms % 1000);
}

std::int64_t Nanos(util::Clock::MonotonicTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

template <typename T>
void Bounded(std::deque<T>& records, std::size_t capacity, std::uint64_t& dropped) {
  while (records.size() > capacity) {
    records.pop_front();
    ++dropped;
  }
}

}  // namespace

bool IsLeaderLease(const std::string& type, const std::string& id) {
  constexpr std::string_view kPrefix = "Leases.";
  constexpr std::string_view kSuffix = ".infraprovider.sidero.dev";
  return id == "leader" && type.size() > kPrefix.size() + kSuffix.size() && type.starts_with(kPrefix) &&
         type.ends_with(kSuffix);
}

Journal::Journal(const util::Clock& clock, std::size_t capacity) : clock_(clock), capacity_(capacity) {}

void Journal::RecordMutation(std::string replica, std::string caller, std::string method, std::string ns,
                             std::string type, std::string id) {
  MutationRecord record{.at = clock_.Monotonic(),
                        .wall = clock_.Now(),
                        .replica = std::move(replica),
                        .caller = std::move(caller),
                        .method = std::move(method),
                        .ns = std::move(ns),
                        .type = std::move(type),
                        .id = std::move(id)};
  std::lock_guard lock(mutex_);
  mutations_.push_back(std::move(record));
  Bounded(mutations_, capacity_, dropped_);
}

void Journal::ObserveEvent(const Event& event) {
  const Resource& r = event.resource;
  if (!IsLeaderLease(r.type, r.id)) return;
  if (event.type != EventType::kCreated && event.type != EventType::kUpdated && event.type != EventType::kDestroyed) {
    return;
  }
  LeaseRecord record{.at = clock_.Monotonic(),
                     .wall = clock_.Now(),
                     .ns = r.ns,
                     .type = r.type,
                     .version = r.version,
                     .destroyed = event.type == EventType::kDestroyed};
  provider::LeaseSpec spec;
  // A spec that does not decode names nobody: the check then treats the lease as unheld.
  if (!record.destroyed && spec.ParseFromString(r.proto_spec)) {
    record.holder = spec.holder_identity();
    record.transitions = spec.leader_transitions();
  }
  std::lock_guard lock(mutex_);
  leases_.push_back(std::move(record));
  Bounded(leases_, capacity_, dropped_);
}

std::vector<MutationRecord> Journal::Mutations() const {
  std::lock_guard lock(mutex_);
  return {mutations_.begin(), mutations_.end()};
}

std::vector<LeaseRecord> Journal::LeaseHistory() const {
  std::lock_guard lock(mutex_);
  return {leases_.begin(), leases_.end()};
}

std::uint64_t Journal::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

nlohmann::json Journal::ToJson() const {
  nlohmann::json mutations = nlohmann::json::array();
  nlohmann::json leases = nlohmann::json::array();
  std::lock_guard lock(mutex_);
  for (const auto& m : mutations_) {
    mutations.push_back({{"monotonic_ns", Nanos(m.at)},
                         {"time", Rfc3339(m.wall)},
                         {"replica", m.replica},
                         {"caller", m.caller},
                         {"method", m.method},
                         {"namespace", m.ns},
                         {"type", m.type},
                         {"id", m.id}});
  }
  for (const auto& l : leases_) {
    leases.push_back({{"monotonic_ns", Nanos(l.at)},
                      {"time", Rfc3339(l.wall)},
                      {"namespace", l.ns},
                      {"type", l.type},
                      {"version", l.version},
                      {"holder", l.holder},
                      {"transitions", l.transitions},
                      {"destroyed", l.destroyed}});
  }
  return {{"clock", "monotonic"}, {"dropped", dropped_}, {"mutations", mutations}, {"lease_history", leases}};
}

}  // namespace omni_proxmox::sim::omni
