// SPDX-License-Identifier: Apache-2.0
// Leader election against the Omni stand-in on simulated time: the tests call the elector's
// acquire-or-renew step themselves and advance the clock between calls, so each rule of
// client-go's semantics is exercised deterministically.

#include "provider/leader/leader_elector.h"

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/world.h"
#include "omni/specs.h"
#include "provider/machine.pb.h"
#include "sim/omni/standin.h"

namespace omni_proxmox::provider {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

class LeaderElectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox", .clock = &clock_});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    auto options = cli::StandInClientOptions(*standin_, &random_, clock_);
    ASSERT_TRUE(options.ok()) << options.status();
    auto state = omni::MakeGrpcStateClient(*options);
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = std::move(*state);
  }

  std::unique_ptr<LeaderElector> Elector(const std::string& identity) {
    return std::make_unique<LeaderElector>(LeaderOptions{.identity = identity}, "proxmox", *state_, clock_, random_);
  }

  LeaseSpec Lease() {
    auto r = state_->Get({omni::ProviderNamespace("proxmox"), LeaseType("proxmox"), kLeaseId});
    EXPECT_TRUE(r.ok()) << r.status();
    LeaseSpec spec;
    if (r.ok()) {
      EXPECT_TRUE(omni::DecodeSpec(*r, spec).ok());
    }
    return spec;
  }

  util::ManualClock clock_{util::RealClock().Now()};
  util::Random random_{3};
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<omni::StateClient> state_;
};

TEST_F(LeaderElectorTest, TheFirstCandidateCreatesTheLeaseAndTheSecondStandsBy) {
  auto a = Elector("host-a_1_aaaaaaaa");
  auto b = Elector("host-b_2_bbbbbbbb");
  ASSERT_TRUE(a->TryAcquireOrRenew()) << a->Status().last_error;
  EXPECT_TRUE(a->Check().ok());
  EXPECT_FALSE(b->TryAcquireOrRenew());
  EXPECT_EQ(b->Status().holder, "host-a_1_aaaaaaaa");
  const LeaseSpec lease = Lease();
  EXPECT_EQ(lease.holder_identity(), "host-a_1_aaaaaaaa");
  EXPECT_EQ(lease.lease_duration_seconds(), 15);
  EXPECT_EQ(lease.leader_transitions(), 0);
  EXPECT_FALSE(lease.holder_process().empty());
}

TEST_F(LeaderElectorTest, AStandbyTakesOverOnlyAfterTheLeaseDurationWithoutRenewal) {
  auto a = Elector("host-a_1_aaaaaaaa");
  auto b = Elector("host-b_2_bbbbbbbb");
  ASSERT_TRUE(a->TryAcquireOrRenew());
  ASSERT_FALSE(b->TryAcquireOrRenew());  // b starts its own count from here
  // The leader renews every two seconds: the standby never sees the lease expire.
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(seconds{2});
    ASSERT_TRUE(a->TryAcquireOrRenew());
    ASSERT_FALSE(b->TryAcquireOrRenew());
  }
  // The leader goes silent: 14 s after b last saw a change it still waits, at 15 s it takes over.
  clock_.Advance(seconds{14});
  EXPECT_FALSE(b->TryAcquireOrRenew());
  clock_.Advance(seconds{1});
  ASSERT_TRUE(b->TryAcquireOrRenew()) << b->Status().last_error;
  EXPECT_EQ(Lease().holder_identity(), "host-b_2_bbbbbbbb");
  EXPECT_EQ(Lease().leader_transitions(), 1);
  // The old leader's own renew is a compare-and-swap on a version it no longer holds.
  EXPECT_FALSE(a->TryAcquireOrRenew());
  EXPECT_EQ(Lease().holder_identity(), "host-b_2_bbbbbbbb");
}

TEST_F(LeaderElectorTest, TheGateClosesAtTheRenewDeadlineBeforeAnyoneMayTakeOver) {
  auto a = Elector("host-a_1_aaaaaaaa");
  ASSERT_TRUE(a->TryAcquireOrRenew());
  a->Start();  // leading: the gate reads the leading flag set by the loop
  ASSERT_TRUE([&] {
    for (int i = 0; i < 500 && !a->Leading(); ++i) std::this_thread::sleep_for(milliseconds{2});
    return a->Leading();
  }());
  a->Stop();  // nothing renews from here
  clock_.Advance(milliseconds{9'999});
  EXPECT_TRUE(a->Check().ok()) << "within the renew deadline of the last renew sent";
  clock_.Advance(milliseconds{1});
  const absl::Status closed = a->Check();
  EXPECT_EQ(closed.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(closed.message()), HasSubstr("could not renew its leader lease"));
}

TEST_F(LeaderElectorTest, AStandbyIsFencedAndSaysWhoLeads) {
  auto a = Elector("host-a_1_aaaaaaaa");
  auto b = Elector("host-b_2_bbbbbbbb");
  ASSERT_TRUE(a->TryAcquireOrRenew());
  ASSERT_FALSE(b->TryAcquireOrRenew());
  const absl::Status closed = b->Check();
  EXPECT_EQ(closed.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(closed.message()), HasSubstr("standby"));
  EXPECT_THAT(std::string(closed.message()), HasSubstr("host-a_1_aaaaaaaa"));
}

TEST_F(LeaderElectorTest, AReleasedLeaseIsTakenAtOnce) {
  auto a = Elector("host-a_1_aaaaaaaa");
  auto b = Elector("host-b_2_bbbbbbbb");
  a->Start();
  ASSERT_TRUE([&] {
    for (int i = 0; i < 500 && !a->Leading(); ++i) std::this_thread::sleep_for(milliseconds{2});
    return a->Leading();
  }());
  ASSERT_FALSE(b->TryAcquireOrRenew());
  ASSERT_TRUE(a->Release().ok());
  EXPECT_FALSE(a->Leading());
  EXPECT_EQ(Lease().holder_identity(), "");
  EXPECT_TRUE(b->TryAcquireOrRenew()) << "no wait for the lease duration";
  EXPECT_EQ(Lease().leader_transitions(), 1);
}

TEST_F(LeaderElectorTest, AHolderWhoseProcessIsProvablyGoneIsReplacedAtOnce) {
  auto a = Elector("host-a_1_aaaaaaaa");
  ASSERT_TRUE(a->TryAcquireOrRenew());
  // a's record names this process; pretend a different, dead process on this host held it.
  auto current = state_->Get({omni::ProviderNamespace("proxmox"), LeaseType("proxmox"), kLeaseId});
  ASSERT_TRUE(current.ok());
  LeaseSpec spec = Lease();
  std::string process = spec.holder_process();
  process = process.substr(0, process.rfind('/') + 1) + "999999";
  spec.set_holder_identity("host-a_999999_deadbeef");
  spec.set_holder_process(process);
  omni::EncodeSpec(spec, *current);
  ASSERT_TRUE(state_->Update(*current, "proxmox.ProvisionController").ok());
  a.reset();

  auto b = Elector("host-a_2_bbbbbbbb");
  b->process_alive = [](long pid) { return pid != 999999; };
  EXPECT_TRUE(b->TryAcquireOrRenew()) << "the holder's pid is gone on this kernel and in this pid namespace";

  // Another host's (or another pid namespace's) process proves nothing: the lease must expire.
  auto c = Elector("host-c_3_cccccccc");
  c->process_alive = [](long) { return false; };
  LeaseSpec taken = Lease();
  ASSERT_EQ(taken.holder_identity(), "host-a_2_bbbbbbbb");
  auto again = state_->Get({omni::ProviderNamespace("proxmox"), LeaseType("proxmox"), kLeaseId});
  taken.set_holder_process("other-boot/pid:[1]/42");
  omni::EncodeSpec(taken, *again);
  ASSERT_TRUE(state_->Update(*again, "proxmox.ProvisionController").ok());
  EXPECT_FALSE(c->TryAcquireOrRenew());
}

// What real Omni enforces on a provider's private type, and the stand-in with it (omni-protocol.md
// §8.1): the type's suffix and namespace are the caller's own, writes are compare-and-swap on the
// version, and the owner must match.
TEST_F(LeaderElectorTest, TheStandInEnforcesOmnisRulesOnTheLeaseType) {
  auto a = Elector("host-a_1_aaaaaaaa");
  ASSERT_TRUE(a->TryAcquireOrRenew());
  const std::string owner = "proxmox.ProvisionController";
  omni::Resource foreign;
  foreign.metadata.ns = omni::ProviderNamespace("proxmox");
  foreign.metadata.type = LeaseType("other");
  foreign.metadata.id = kLeaseId;
  omni::EncodeSpec(LeaseSpec{}, foreign);
  EXPECT_EQ(state_->Create(foreign, owner).status().code(), absl::StatusCode::kInvalidArgument)
      << "another provider's type suffix";
  foreign.metadata.ns = omni::ProviderNamespace("other");
  foreign.metadata.type = LeaseType("other");
  EXPECT_EQ(state_->Create(foreign, owner).status().code(), absl::StatusCode::kPermissionDenied)
      << "another provider's namespace";

  auto lease = state_->Get({omni::ProviderNamespace("proxmox"), LeaseType("proxmox"), kLeaseId});
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(state_->Update(*lease, owner).ok());
  EXPECT_EQ(state_->Update(*lease, owner).status().code(), absl::StatusCode::kFailedPrecondition)
      << "a write from a stale version";
  auto fresh = state_->Get(lease->pointer());
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(state_->Update(*fresh, "someone.Else").status().code(), absl::StatusCode::kPermissionDenied)
      << "another owner";
}

TEST(LeaderOptionsTest, RulesNameTheFlags) {
  EXPECT_TRUE(ValidateLeaderOptions({}).ok());
  const auto message = [](LeaderOptions o) { return std::string(ValidateLeaderOptions(o).message()); };
  EXPECT_THAT(message({.renew_deadline = seconds{15}}), HasSubstr("--leader-renew-deadline 15s must be shorter"));
  EXPECT_THAT(message({.retry_period = seconds{10}}), HasSubstr("--leader-retry-period 10s must be shorter"));
  EXPECT_THAT(message({.lease_duration = seconds{0}}), HasSubstr("must be positive"));
}

TEST(LeaderIdentityTest, HostPidAndARandomSuffix) {
  util::Random random(1);
  const std::string identity = LeaderIdentity(random);
  EXPECT_THAT(identity, ::testing::MatchesRegex(".+_[0-9]+_[0-9a-f]{8}"));
  EXPECT_NE(identity, LeaderIdentity(random));
}

}  // namespace
}  // namespace omni_proxmox::provider
