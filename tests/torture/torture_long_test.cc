// SPDX-License-Identifier: Apache-2.0
// The long crash torture and fault soak behind `make torture` (not part of the suite): 30
// machines, several cycles, at least 25 kills; the soak with every fault and two stand-in
// restarts. The figures printed at the end go to docs/reliability.md.

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
