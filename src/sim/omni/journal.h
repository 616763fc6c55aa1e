// SPDX-License-Identifier: Apache-2.0
#pragma once

// The stand-in's record of who changed what, for checkers of runs with two provider replicas
// (issue 16): every mutating call it admitted (Create, Update, Destroy, Teardown,
// TeardownAndDestroy, CreateSchematicFromRaw) with the replica the caller named in its
// x-omni-proxmox-replica metadata, and the history of each provider's leader lease
// (Leases.<pid>.infraprovider.sidero.dev/leader): which holder every version names, from when.
//
// Times are taken on `clock`'s monotonic time, util::RealClock() (the host's CLOCK_MONOTONIC)
// unless a test injects another, never the stand-in's own (possibly simulated) clock: the
// Proxmox simulator's journal uses the same source, so a checker compares the two and its own
// SIGKILL and SIGSTOP times, across processes on one host too.
//   - A mutation is stamped when the stand-in admitted it (signature and access rules passed),
//     before it is applied: the moment the sender's request reached Omni.
//   - A lease version is stamped when the store applied it, under the store's lock: the moment
//     it became what every later reader sees.
// Omni does not decode provider-private types; the journal does (LeaseSpec from the shared
// generated protos) only to name the holder.
//
// Thread-safe. Keeps the newest `capacity` records of each kind and counts what it dropped.

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

#include "sim/omni/state_store.h"
#include "util/clock.h"

namespace omni_proxmox::sim::omni {

struct MutationRecord {
  util::Clock::MonotonicTime at{};  // when the call was admitted
  util::Clock::SystemTime wall{};   // the same moment for people
  std::string replica;              // x-omni-proxmox-replica; "" when the caller sent none
  std::string caller;        // the signing identity, e.g. "proxmox@infra-provider.serviceaccount.omni.sidero.dev"
  std::string method;        // "/cosi.resource.State/Update"
  std::string ns, type, id;  // empty for CreateSchematicFromRaw
};

struct LeaseRecord {
  util::Clock::MonotonicTime at{};  // when this version was applied
  util::Clock::SystemTime wall{};
  std::string ns;
  std::string type;  // "Leases.<pid>.infraprovider.sidero.dev"
  std::uint64_t version = 0;
  std::string holder;  // LeaseSpec.holder_identity; "" = released (or destroyed)
  std::int64_t transitions = 0;
  bool destroyed = false;
};

// "Leases.<pid>.infraprovider.sidero.dev" with id "leader".
bool IsLeaderLease(const std::string& type, const std::string& id);

class Journal {
 public:
  explicit Journal(const util::Clock& clock, std::size_t capacity = 200'000);

  void RecordMutation(std::string replica, std::string caller, std::string method, std::string ns, std::string type,
                      std::string id);
  // Fed every event the store publishes (StateStore::SetPublishHook); keeps those of leader leases.
  void ObserveEvent(const Event& event);

  std::vector<MutationRecord> Mutations() const;
  std::vector<LeaseRecord> LeaseHistory() const;
  std::uint64_t dropped() const;
  // {"clock": "monotonic", "dropped": N, "mutations": [...], "lease_history": [...]}; each record
  // with "monotonic_ns" (on the journal's clock) and "time" (RFC 3339, UTC).
  nlohmann::json ToJson() const;

 private:
  const util::Clock& clock_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<MutationRecord> mutations_;  // guarded by mutex_
  std::deque<LeaseRecord> leases_;        // guarded by mutex_
  std::uint64_t dropped_ = 0;             // guarded by mutex_
};

}  // namespace omni_proxmox::sim::omni
