// SPDX-License-Identifier: Apache-2.0
// The short crash torture and fault soak, part of the suite: a few kills and the soak's faults on
// a small set. The long runs are in torture_long_test.cc (`make torture`).

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "torture/torture_rig.h"

namespace omni_proxmox::torture {
namespace {

TEST(TortureTest, CrashTortureShort) {
  Workload workload;
  workload.name = "crash-short";
  workload.machines = 10;
  workload.cycles = 2;
  workload.kills = 6;
  workload.gc_mode = "delete";
  workload.gc_grace = "3s";
  workload.gc_interval = "2s";
  workload.convergence_deadline = std::chrono::seconds{180};
  ApplyEnvironmentOverrides(workload);
  const std::uint64_t seed = SeedFromEnvironment();
  fmt::print(stderr, "torture: seed {} (rerun with OP_TORTURE_SEED={})\n", seed, seed);
  Figures figures;
  const auto failure = RunWorkload(workload, seed, figures);
  fmt::print(stderr, "{}", FormatFigures(workload, figures));
  ASSERT_FALSE(failure.has_value()) << *failure;
  EXPECT_EQ(figures.kills, workload.kills);
  EXPECT_EQ(figures.max_vms_per_request, 1);
  EXPECT_EQ(figures.requests_seen, workload.machines * workload.cycles);
  EXPECT_EQ(figures.requests_provisioned, workload.machines * workload.cycles);
}

TEST(TortureTest, FaultSoakShort) {
  Workload workload;
  workload.name = "soak-short";
  workload.machines = 8;
  workload.cycles = 1;
  workload.kills = 2;
  workload.faults = true;
  workload.node_outages_per_phase = 1;
  workload.standin_restarts = 2;
  workload.gc_mode = "delete";
  workload.gc_grace = "3s";
  workload.gc_interval = "2s";
  workload.convergence_deadline = std::chrono::seconds{240};
  ApplyEnvironmentOverrides(workload);
  const std::uint64_t seed = SeedFromEnvironment();
  fmt::print(stderr, "torture: seed {} (rerun with OP_TORTURE_SEED={})\n", seed, seed);
  Figures figures;
  const auto failure = RunWorkload(workload, seed, figures);
  fmt::print(stderr, "{}", FormatFigures(workload, figures));
  ASSERT_FALSE(failure.has_value()) << *failure;
  EXPECT_EQ(figures.standin_restarts, 2);
  EXPECT_EQ(figures.max_vms_per_request, 1);
  EXPECT_EQ(figures.requests_provisioned, workload.machines * workload.cycles);
}

// Two replicas with the same key (issue 16): kills and pauses of either, the leader's lease moving
// between them, and no mutation from one while the other held the lease.
TEST(TortureTest, TwoReplicaTortureShort) {
  Workload workload;
  workload.name = "two-replicas-short";
  workload.replicas = 2;
  workload.machines = 8;
  workload.cycles = 1;
  workload.kills = 3;
  workload.pauses = 3;
  workload.gc_mode = "delete";
  workload.gc_grace = "3s";
  workload.gc_interval = "2s";
  workload.convergence_deadline = std::chrono::seconds{180};
  ApplyEnvironmentOverrides(workload);
  const std::uint64_t seed = SeedFromEnvironment();
  fmt::print(stderr, "torture: seed {} (rerun with OP_TORTURE_SEED={})\n", seed, seed);
  Figures figures;
  const auto failure = RunWorkload(workload, seed, figures);
  fmt::print(stderr, "{}", FormatFigures(workload, figures));
  ASSERT_FALSE(failure.has_value()) << *failure;
  EXPECT_EQ(figures.kills + figures.pauses, workload.kills + workload.pauses);
  EXPECT_EQ(figures.max_vms_per_request, 1);
  EXPECT_EQ(figures.requests_provisioned, workload.machines * workload.cycles);
  EXPECT_EQ(figures.fencing_violations, 0);
  EXPECT_GT(figures.mutations_checked, 0);
}

// The checker must be able to fail: a second VM with a live request's markers is reported.
TEST(TortureTest, CheckerReportsAPlantedDuplicateVm) {
  Workload workload;
  workload.name = "self-test";
  workload.machines = 2;
  workload.cycles = 1;
  workload.kills = 0;
  workload.plant_duplicate_vm = true;
  workload.keep_logs_on_failure = false;
  Figures figures;
  const auto failure = RunWorkload(workload, SeedFromEnvironment(), figures);
  ASSERT_TRUE(failure.has_value());
  EXPECT_NE(failure->find("invariant 'at most one VM per request' broken: 2 VMs carry request"), std::string::npos)
      << *failure;
  EXPECT_NE(failure->find("vm 99999"), std::string::npos) << *failure;
  EXPECT_EQ(figures.max_vms_per_request, 2);
}

}  // namespace
}  // namespace omni_proxmox::torture
