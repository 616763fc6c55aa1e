// SPDX-License-Identifier: Apache-2.0
#pragma once

// Crash torture and fault soak (issue #9): the provider runs as a child process (`omni-proxmox
// run`) against the Proxmox simulator and the Omni stand-in hosted here; a set is scaled up and
// back to 0 several times while the provider is SIGKILLed at random moments (some timed, some
// while a create, an upload, a download or a delete is in flight) and restarted, optionally with
// the simulator injecting faults and the stand-in restarting. A checker thread samples both
// worlds continuously; each phase ends with a convergence wait and leftover checks.
//
// The same rig runs the short versions in the test suite and the long ones behind `make torture`.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace omni_proxmox::torture {

struct Workload {
  std::string name = "torture";
  int machines = 10;
  int cycles = 2;
  int kills = 5;  // SIGKILLs, spread over the phases (scale-up and scale-down of every cycle)
  // Fault soak: 10 % transient 5xx (some after the request took effect), lock timeouts, dropped
  // connections, failing tasks, slow tasks, nodes going offline (595) and coming back.
  bool faults = false;
  int node_outages_per_phase = 0;
  // Stand-in restarts: the first one keeps bookmarks (watch resume), the second is a new process
  // (bookmarks invalid, full resync); spread over the run.
  int standin_restarts = 0;
  // How long one phase may take to converge after its last disturbance.
  std::chrono::seconds convergence_deadline{240};
  // Passed to `run --gc-mode` when the provider has it; empty = the provider's default.
  std::string gc_mode;
  std::string gc_grace;     // e.g. "5s", for --gc-grace-period when gc_mode is set
  std::string gc_interval;  // e.g. "2s", for --gc-interval when gc_mode is set
  // Self-test of the checker: after the first scale-up, plant a second VM carrying the markers of
  // a live request (as a buggy provider would create); the run must then fail naming it.
  bool plant_duplicate_vm = false;
  // A failed run keeps its directory (provider log, state) for the post-mortem; the checker's
  // self-test, which fails on purpose, does not.
  bool keep_logs_on_failure = true;
  // Two replicas, one writer (issue 16): this many `run` processes with the same key; every kill or
  // pause hits one of them at random, and the journals must show no mutation from a replica while
  // another held the leader lease (support/fencing_check.h; checked in every mode).
  int replicas = 1;
  // SIGSTOP, then SIGCONT 0.5 s to lease duration + 3 s later, spread over the phases like kills.
  int pauses = 0;
  // run's --leader-* flags when replicas > 1 (short, so takeovers happen within a phase).
  std::string leader_lease_duration = "3s";
  std::string leader_renew_deadline = "2s";
  std::string leader_retry_period = "500ms";
  // false: a replica waits for a killed leader's lease to expire, as on two hosts; true: it sees on
  // this host that the holder's process is gone and takes over at once.
  bool leader_local_takeover = true;
};

struct PhaseFigures {
  std::string what;  // "cycle 1: 0 -> 30"
  int kills = 0;
  int pauses = 0;
  double seconds_to_converge = 0;        // from the scale command
  double seconds_after_disturbance = 0;  // from the last kill, outage or stand-in restart
};

struct Figures {
  std::uint64_t seed = 0;
  int kills = 0;
  std::map<std::string, int> kills_by_moment;  // "timed", "mid-create", "mid-upload", ...
  int kills_mid_work = 0;                      // kills while some request was not yet PROVISIONED or not yet torn down
  int provider_starts = 0;
  int kills_of_leader = 0;  // kills of the replica the lease named
  int pauses = 0;           // SIGSTOP/SIGCONT
  int pauses_of_leader = 0;
  // From the journals (support/fencing_check.h).
  int lease_holder_changes = 0;
  int mutations_checked = 0;  // mutations sent by replicas
  int judged_at_stop = 0;     // arrived while their sender was stopped or dead
  int fencing_violations = 0;
  int vms_created = 0;          // qmcreate tasks that succeeded
  int vm_create_calls = 0;      // POST /nodes/{node}/qemu served
  int inherited_creates = 0;    // requests with a VM (or a create in flight) but not PROVISIONED at a kill
  int inherited_teardowns = 0;  // requests being torn down at a kill
  int max_vms_per_request = 0;  // the most VMs ever seen carrying one request's markers
  int requests_seen = 0;
  int requests_provisioned = 0;  // seen PROVISIONED at least once
  int node_outages = 0;
  int standin_restarts = 0;
  int tasks_failed_on_purpose = 0;
  std::uint64_t samples = 0;  // checker passes
  int talos_isos_left = 0;
  std::vector<std::string> talos_isos;  // what remains at the end
  std::vector<PhaseFigures> phases;
  double total_seconds = 0;
};

// Runs the workload. Returns nullopt when every invariant held, else a message naming the broken
// invariant with its evidence (VM list, statuses, provider log tail). `figures` is filled either way.
std::optional<std::string> RunWorkload(const Workload& workload, std::uint64_t seed, Figures& figures);

// OP_TORTURE_SEED when set, else a fresh seed (printed by the caller, so a failure can be rerun).
std::uint64_t SeedFromEnvironment();

// OP_TORTURE_BINARY runs another build of the provider than the one next to the test.
// OP_TORTURE_MACHINES, OP_TORTURE_CYCLES, OP_TORTURE_KILLS and OP_TORTURE_PAUSES, when set, replace the workload's
// figures (to reproduce a failure on a smaller scale, or to run longer).
void ApplyEnvironmentOverrides(Workload& workload);

// The figures as the lines docs/reliability.md quotes.
std::string FormatFigures(const Workload& workload, const Figures& figures);

}  // namespace omni_proxmox::torture
