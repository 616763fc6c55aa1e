// SPDX-License-Identifier: Apache-2.0
// The two-replica fencing check (support/fencing_check.h) on hand-made journals: it must accept
// what the fencing argument allows and name every mutation it does not.

#include "support/fencing_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace omni_proxmox::testing {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

class FencingCheckTest : public ::testing::Test {
 protected:
  MonotonicTime At(int ms) const { return origin_ + milliseconds{ms}; }
  ReplicaMutation By(const std::string& replica, int ms, const std::string& what = "proxmox POST /nodes/pve1/qemu") {
    return {.at = At(ms), .replica = replica, .what = what};
  }

  const MonotonicTime origin_ = std::chrono::steady_clock::now();
  // a holds from 0 ms (renewing at 500), b takes over at 4000 ms, releases at 9000 ms.
  const std::vector<LeaseVersion> history_ = {
      {At(0), 1, "a"}, {At(500), 2, "a"}, {At(4000), 3, "b"}, {At(9000), 4, ""}};
};

TEST_F(FencingCheckTest, MutationsInsideTheSendersTermsPass) {
  const auto report = CheckFencing(history_, {By("a", 10), By("a", 3999), By("b", 4000), By("b", 8999)}, {});
  EXPECT_TRUE(report.violations.empty()) << report.violations.front();
  EXPECT_EQ(report.checked, 4);
  EXPECT_EQ(report.by_replica.at("a"), 2);
  EXPECT_EQ(report.lease_versions, 4);
  EXPECT_EQ(report.holder_changes, 3);  // a, b, released
}

TEST_F(FencingCheckTest, AMutationWhileAnotherHoldsTheLeaseIsNamed) {
  const auto report = CheckFencing(history_, {By("b", 100, "omni Update Machine.proxmox/x"), By("a", 4001)}, {});
  ASSERT_EQ(report.violations.size(), 2u);
  EXPECT_THAT(report.violations[0], HasSubstr("omni Update Machine.proxmox/x by b arrived at 0.100 s while a held "
                                              "the lease (version 1 since 0.000 s)"));
  EXPECT_THAT(report.violations[1], HasSubstr("by a arrived at 4.001 s while b held the lease (version 3"));
}

TEST_F(FencingCheckTest, BeforeAnyLeaseAndAfterTheReleaseNobodyMayMutate) {
  std::vector<LeaseVersion> later = history_;
  for (auto& v : later) v.at += milliseconds{1000};
  const auto report = CheckFencing(later, {By("a", 500), By("b", 10'500)}, {});
  ASSERT_EQ(report.violations.size(), 2u);
  EXPECT_THAT(report.violations[0], HasSubstr("while nobody yet held the lease"));
  EXPECT_THAT(report.violations[1], HasSubstr("while nobody (released) held the lease"));
}

TEST_F(FencingCheckTest, WhatArrivesWhileTheSenderIsStoppedOrDeadIsJudgedWhenItStopped) {
  // a was stopped at 3900 ms and woke at 6000 ms; another replica c was killed at 8500 ms.
  const std::vector<NotRunning> gaps = {{.replica = "a", .from = At(3900), .until = At(6000)},
                                        {.replica = "b", .from = At(8500), .until = {}}};
  const auto report = CheckFencing(history_,
                                   {
                                       By("a", 4100),  // written before the stop, served late: judged at 3900
                                       By("b", 8600),  // b was dead: judged at 8500, when it held the lease
                                       By("a", 6001),  // after waking up: judged when it arrived
                                   },
                                   gaps);
  EXPECT_EQ(report.judged_at_stop, 2);
  ASSERT_EQ(report.violations.size(), 1u);
  EXPECT_THAT(report.violations[0], HasSubstr("by a arrived at 6.001 s while b held the lease"));
}

TEST_F(FencingCheckTest, AStopDoesNotExcuseWhatTheSenderCouldNotHaveSentInItsTerm) {
  // a stopped only after b had taken over: what arrives meanwhile was sent after a's term.
  const auto report = CheckFencing(history_, {By("a", 4600)}, {{.replica = "a", .from = At(4500), .until = At(7000)}});
  ASSERT_EQ(report.violations.size(), 1u);
  EXPECT_THAT(report.violations[0], HasSubstr("(judged at 4.500 s, when it stopped) while b held the lease"));
}

}  // namespace
}  // namespace omni_proxmox::testing
