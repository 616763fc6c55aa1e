// SPDX-License-Identifier: Apache-2.0
#pragma once

// The Proxmox simulator's record of who changed what, for checkers of runs with two provider
// replicas (issue 16): every request under /api2/json whose method is not GET or HEAD (what a
// provider's mutation gate guards), with the replica it named in its X-Omni-Proxmox-Replica
// header, the path, and the status it was answered with (0: the connection was dropped).
//
// A request is stamped when it arrived, before the simulator looked at it, on `clock`'s
// monotonic time: util::RealClock() (the host's CLOCK_MONOTONIC) unless a test injects another,
// never the simulated cluster clock (which may run faster). The Omni stand-in's journal and lease
// history use the same source, so a checker compares all of them and its own SIGKILL and SIGSTOP
// times, across processes on one host too.
//
// Thread-safe. Keeps the newest `capacity` records and counts what it dropped.

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

#include "util/clock.h"

namespace omni_proxmox::sim::pve {

struct MutationRecord {
  util::Clock::MonotonicTime at{};  // when the request arrived
  util::Clock::SystemTime wall{};   // the same moment for people
  std::string replica;              // X-Omni-Proxmox-Replica; "" when the client sent none
  std::string method;               // "POST"
  std::string path;                 // below /api2/json, e.g. "/nodes/pve1/qemu"
  int status = 0;                   // the answer's status; 0 when the connection was dropped
};

class Journal {
 public:
  explicit Journal(const util::Clock& clock, std::size_t capacity = 200'000);

  // Whether a request of `method` for `path` (as sent, with /api2/json) is one the journal keeps.
  static bool Mutating(const std::string& method, const std::string& path);
  struct Arrival {
    util::Clock::MonotonicTime at;
    util::Clock::SystemTime wall;
  };
  // Taken when a request arrives, for Record.
  Arrival Stamp() const { return {clock_.Monotonic(), clock_.Now()}; }
  // Keeps the request (if Mutating) as arrived at `arrival` and answered with `status` (0: dropped).
  void Record(const Arrival& arrival, const std::string& method, const std::string& path, std::string replica,
              int status);

  std::vector<MutationRecord> Mutations() const;
  std::uint64_t dropped() const;
  // {"clock": "monotonic", "dropped": N, "mutations": [{"monotonic_ns", "time" (RFC 3339, UTC),
  // "replica", "method", "path", "status"}, ...]} in arrival order.
  nlohmann::json ToJson() const;

 private:
  const util::Clock& clock_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<MutationRecord> records_;  // guarded by mutex_, in arrival order
  std::uint64_t dropped_ = 0;           // guarded by mutex_
};

}  // namespace omni_proxmox::sim::pve
