// SPDX-License-Identifier: Apache-2.0
// The long crash torture and fault soak behind `make torture` (not part of the suite): 30
// machines, several cycles, at least 25 kills; two replicas with at least 25 kills and pauses of
// either; the soak with every fault and two stand-in restarts. The figures printed at the end go to
// docs/reliability.md.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "torture/torture_rig.h"

namespace omni_proxmox::torture {
namespace {

void RunAndReport(Workload workload) {
  ApplyEnvironmentOverrides(workload);
  const std::uint64_t seed = SeedFromEnvironment();
  fmt::print(stderr, "torture: seed {} (rerun with OP_TORTURE_SEED={})\n", seed, seed);
  Figures figures;
  const auto failure = RunWorkload(workload, seed, figures);
  fmt::print("{}", FormatFigures(workload, figures));
  ASSERT_FALSE(failure.has_value()) << *failure;
  EXPECT_EQ(figures.max_vms_per_request, 1);
  EXPECT_EQ(figures.requests_seen, workload.machines * workload.cycles);
  EXPECT_EQ(figures.requests_provisioned, workload.machines * workload.cycles);
  EXPECT_EQ(figures.kills + figures.pauses, workload.kills + workload.pauses);
  EXPECT_EQ(figures.fencing_violations, 0);
}

TEST(TortureLong, CrashTorture) {
  Workload workload;
  workload.name = "crash-long";
  workload.machines = 30;
  workload.cycles = 4;
  workload.kills = 32;
  workload.gc_mode = "delete";
  workload.gc_grace = "3s";
  workload.gc_interval = "2s";
  workload.convergence_deadline = std::chrono::seconds{600};
  RunAndReport(workload);
}

// Two replicas with the same key (issue 16): 28 kills and pauses of either replica; on top of the
// invariants above, no mutation from one replica while the other held the leader lease.
TEST(TortureLong, TwoReplicaTorture) {
  Workload workload;
  workload.name = "two-replicas-long";
  workload.replicas = 2;
  workload.machines = 30;
  workload.cycles = 3;
  workload.kills = 14;
  workload.pauses = 14;
  workload.leader_local_takeover = false;  // every takeover on the lease's expiry, as on two hosts
  workload.gc_mode = "delete";
  workload.gc_grace = "3s";
  workload.gc_interval = "2s";
  workload.convergence_deadline = std::chrono::seconds{600};
  RunAndReport(workload);
}

TEST(TortureLong, FaultSoak) {
  Workload workload;
  workload.name = "soak-long";
  workload.machines = 30;
  workload.cycles = 3;
  workload.kills = 6;
  workload.faults = true;
  workload.node_outages_per_phase = 2;
  workload.standin_restarts = 2;
  workload.gc_mode = "delete";
  workload.gc_grace = "3s";
  workload.gc_interval = "2s";
  workload.convergence_deadline = std::chrono::seconds{900};
  RunAndReport(workload);
}

}  // namespace
}  // namespace omni_proxmox::torture
