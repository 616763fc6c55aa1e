// SPDX-License-Identifier: Apache-2.0
#pragma once

// The two-replica fencing check (issue 16): no replica mutates Proxmox or Omni while another holds
// the leader lease. Inputs are the simulators' journals (sim/pve/journal.h, sim/omni/journal.h)
// and the test's record of when it paused or killed each replica, all on the host's monotonic
// clock, the one clock they share.
//
// The rule: a mutation replica R sent is legal only if R held the lease when it was sent, per the
// lease history (the holder each version names, from the moment the stand-in applied it until the
// next version). The send time is not recorded anywhere; its best upper bound is used:
//   - the journal's arrival stamp, normally. The fencing argument (docs/state-and-ownership.md)
//     is what makes that enough: a leader's gate closes renew_deadline after it sent its last
//     successful renew, and nobody can take the lease over before lease_duration after that renew
//     was applied, so a request sent through an open gate arrives inside the sender's term unless it
//     spent more than lease_duration - renew_deadline on the way.
//   - the moment R stopped running, when the stamp falls while R was stopped (SIGSTOP) or dead
//     (SIGKILL): a process that does not run sends nothing, so what arrives then was written
//     before (a request already in the server's socket buffer). A mutation stamped after R woke up
//     is judged at its stamp: a paused leader must not send anything once it runs again.
// Writes of the lease itself are the election, not mutations, and calls that name no replica are
// the test's own.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sim/omni/journal.h"
#include "sim/pve/journal.h"

namespace omni_proxmox::testing {

using MonotonicTime = std::chrono::steady_clock::time_point;

struct LeaseVersion {
  MonotonicTime at;
  std::uint64_t version = 0;
  std::string holder;  // "" = released
};

struct ReplicaMutation {
  MonotonicTime at;     // the journal's arrival stamp
  std::string replica;  // the identity the replica sent
  std::string what;     // for the report: "proxmox POST /nodes/pve1/qemu", "omni Update Machine.../id"
};

// A time replica `replica` did not run: [from, until); `until` unset when it was killed.
struct NotRunning {
  std::string replica;
  MonotonicTime from;
  std::optional<MonotonicTime> until;
};

struct FencingReport {
  int checked = 0;                        // mutations judged
  std::map<std::string, int> by_replica;  // mutations per replica identity
  int judged_at_stop = 0;                 // stamped while the sender was stopped or dead
  std::vector<std::string> violations;    // each with the mutation, the time and who held the lease
  int lease_versions = 0;
  int holder_changes = 0;  // versions naming another holder than the one before (released counts)
};

FencingReport CheckFencing(const std::vector<LeaseVersion>& history, std::vector<ReplicaMutation> mutations,
                           const std::vector<NotRunning>& not_running);

// From the stand-in's lease history (the leader lease of `lease_type`).
std::vector<LeaseVersion> LeaseVersions(const sim::omni::Journal& omni, const std::string& lease_type);
// Both journals' mutations sent by a replica (a non-empty replica name), without lease writes.
std::vector<ReplicaMutation> ReplicaMutations(const sim::omni::Journal& omni, const sim::pve::Journal& pve);

// "12.345 s" after `origin`, for reports.
std::string SecondsAfter(MonotonicTime origin, MonotonicTime t);

}  // namespace omni_proxmox::testing
