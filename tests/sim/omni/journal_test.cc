// SPDX-License-Identifier: Apache-2.0
// The stand-in's mutation journal and lease history (sim/omni/journal.h): what two replicas sent,
// in order, with the replica each named, and who held the leader lease from which version on.

#include "sim/omni/journal.h"

#include <httplib.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "provider/machine.pb.h"
#include "sim/omni/standin.h"
#include "sim/omni/standin_client.h"

namespace omni_proxmox::sim::omni {
namespace {

using namespace standin_test;  // NOLINT: the tests' own client and builders

constexpr char kPrivateNs[] = "infra-provider:proxmox";
constexpr char kLeaseType[] = "Leases.proxmox.infraprovider.sidero.dev";
constexpr char kStateType[] = "Machine.proxmox.infraprovider.sidero.dev";
constexpr char kOwner[] = "proxmox.ProvisionController";

provider::LeaseSpec Lease(const std::string& holder, std::int64_t transitions) {
  provider::LeaseSpec spec;
  spec.set_holder_identity(holder);
  spec.set_lease_duration_seconds(15);
  spec.set_leader_transitions(transitions);
  return spec;
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto standin = StandIn::Start({.provider_id = "proxmox", .control_port = 0});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    a_ = std::make_unique<Client>(standin_->grpc_endpoint(), standin_->provider_key(), util::RealClock());
    a_->set_replica("host-a_1_aaaaaaaa");
    b_ = std::make_unique<Client>(standin_->grpc_endpoint(), standin_->provider_key(), util::RealClock());
    b_->set_replica("host-b_2_bbbbbbbb");
  }

  std::unique_ptr<StandIn> standin_;
  std::unique_ptr<Client> a_;
  std::unique_ptr<Client> b_;
};

TEST_F(JournalTest, RecordsEachReplicasMutationsAndWhoHeldTheLeaseFromWhichVersion) {
  const auto started = util::RealClock().Monotonic();
  pb::Resource lease;
  ASSERT_TRUE(
      a_->Create(MakeProto(kPrivateNs, kLeaseType, "leader", Lease("host-a_1_aaaaaaaa", 0)), kOwner, &lease).ok());
  ASSERT_TRUE(a_->Create(MakeProto(kPrivateNs, kStateType, "req-1", provider::MachineSpec()), kOwner).ok());
  // Reads are not mutations.
  ASSERT_TRUE(b_->Get(kPrivateNs, kLeaseType, "leader").ok());
  // b takes the lease over (compare-and-swap on version 1), then writes.
  pb::Resource takeover = lease;
  takeover.mutable_spec()->set_proto_spec(Lease("host-b_2_bbbbbbbb", 1).SerializeAsString());
  ASSERT_TRUE(b_->Update(takeover, kOwner).ok());
  ASSERT_TRUE(b_->Destroy(kPrivateNs, kStateType, "req-1", kOwner).ok());
  // A write that fails (stale version) was still sent: it is in the journal, the lease is not moved.
  EXPECT_FALSE(a_->Update(lease, kOwner).ok());

  const auto mutations = standin_->journal().Mutations();
  ASSERT_EQ(mutations.size(), 5u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"host-a_1_aaaaaaaa", "/cosi.resource.State/Create"},
      {"host-a_1_aaaaaaaa", "/cosi.resource.State/Create"},
      {"host-b_2_bbbbbbbb", "/cosi.resource.State/Update"},
      {"host-b_2_bbbbbbbb", "/cosi.resource.State/Destroy"},
      {"host-a_1_aaaaaaaa", "/cosi.resource.State/Update"}};
  for (std::size_t i = 0; i < mutations.size(); ++i) {
    EXPECT_EQ(mutations[i].replica, expected[i].first) << i;
    EXPECT_EQ(mutations[i].method, expected[i].second) << i;
    EXPECT_EQ(mutations[i].caller, "proxmox@infra-provider.serviceaccount.omni.sidero.dev") << i;
    EXPECT_GE(mutations[i].at, i == 0 ? started : mutations[i - 1].at) << i;
  }
  EXPECT_EQ(mutations[1].type, kStateType);
  EXPECT_EQ(mutations[1].id, "req-1");

  const auto history = standin_->journal().LeaseHistory();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].version, 1u);
  EXPECT_EQ(history[0].holder, "host-a_1_aaaaaaaa");
  EXPECT_EQ(history[1].version, 2u);
  EXPECT_EQ(history[1].holder, "host-b_2_bbbbbbbb");
  EXPECT_EQ(history[1].transitions, 1);
  // Each version is stamped when it was applied: after its call was admitted, before the next call.
  EXPECT_GE(history[0].at, mutations[0].at);
  EXPECT_LE(history[0].at, mutations[1].at);
  EXPECT_GE(history[1].at, mutations[2].at);
  EXPECT_LE(history[1].at, mutations[3].at);
}

TEST_F(JournalTest, SchematicsAreMutationsAndRefusedSignaturesAreNot) {
  ::management::CreateSchematicFromRawRequest request;
  request.set_raw_schematic("customization:\n  extraKernelArgs: [console=ttyS0]\n");
  ::management::CreateSchematicResponse response;
  auto ctx = a_->Context("/management.ManagementService/CreateSchematicFromRaw");
  ASSERT_TRUE(a_->management().CreateSchematicFromRaw(ctx.get(), request, &response).ok());
  // Signed for another method: Omni refuses it before looking at it.
  auto stale = b_->Context("/cosi.resource.State/List");
  pb::CreateRequest create;
  *create.mutable_resource() = MakeProto(kPrivateNs, kStateType, "req-2", provider::MachineSpec());
  create.mutable_options()->set_owner(kOwner);
  pb::CreateResponse created;
  EXPECT_FALSE(b_->state().Create(stale.get(), create, &created).ok());

  const auto mutations = standin_->journal().Mutations();
  ASSERT_EQ(mutations.size(), 1u);
  EXPECT_EQ(mutations[0].method, "/management.ManagementService/CreateSchematicFromRaw");
  EXPECT_EQ(mutations[0].replica, "host-a_1_aaaaaaaa");
}

TEST_F(JournalTest, TheControlEndpointServesTheJournal) {
  pb::Resource lease;
  ASSERT_TRUE(
      a_->Create(MakeProto(kPrivateNs, kLeaseType, "leader", Lease("host-a_1_aaaaaaaa", 0)), kOwner, &lease).ok());
  pb::Resource released = lease;
  released.mutable_spec()->set_proto_spec(Lease("", 0).SerializeAsString());
  ASSERT_TRUE(a_->Update(released, kOwner).ok());

  httplib::Client control(standin_->control_url());
  auto reply = control.Get("/journal");
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 200);
  const auto body = nlohmann::json::parse(reply->body);
  EXPECT_EQ(body["clock"], "monotonic");
  EXPECT_EQ(body["dropped"], 0);
  ASSERT_EQ(body["mutations"].size(), 2u);
  EXPECT_EQ(body["mutations"][0]["replica"], "host-a_1_aaaaaaaa");
  EXPECT_EQ(body["mutations"][0]["type"], kLeaseType);
  EXPECT_TRUE(body["mutations"][0]["monotonic_ns"].is_number_integer());
  EXPECT_THAT(body["mutations"][0]["time"].get<std::string>(),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"));
  ASSERT_EQ(body["lease_history"].size(), 2u);
  EXPECT_EQ(body["lease_history"][0]["holder"], "host-a_1_aaaaaaaa");
  EXPECT_EQ(body["lease_history"][1]["holder"], "");  // released
  EXPECT_EQ(body["lease_history"][1]["version"], 2);
}

TEST(JournalCapacityTest, KeepsTheNewestRecordsAndCountsTheDropped) {
  util::ManualClock clock;
  Journal journal(clock, /*capacity=*/2);
  for (int i = 0; i < 5; ++i) {
    journal.RecordMutation("r", "c", "/cosi.resource.State/Update", "ns", "T", std::to_string(i));
    clock.Advance(std::chrono::seconds{1});
  }
  const auto kept = journal.Mutations();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].id, "3");
  EXPECT_EQ(kept[1].id, "4");
  EXPECT_EQ(kept[1].at - kept[0].at, std::chrono::seconds{1});
  EXPECT_EQ(journal.dropped(), 3u);
}

TEST(JournalLeaseTest, OnlyLeaderLeasesOfProvidersAreLeases) {
  EXPECT_TRUE(IsLeaderLease("Leases.proxmox.infraprovider.sidero.dev", "leader"));
  EXPECT_FALSE(IsLeaderLease("Leases.proxmox.infraprovider.sidero.dev", "other"));
  EXPECT_FALSE(IsLeaderLease("Machine.proxmox.infraprovider.sidero.dev", "leader"));
  EXPECT_FALSE(IsLeaderLease("Leases..infraprovider.sidero.dev", "leader"));
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
