// SPDX-License-Identifier: Apache-2.0
// The stand-in behaves as a real Omni 1.9 did where the two differed (issue 18, items 1-7;
// omni-protocol.md section 8): the first MachineRequestStatus update conflicts, providerdata is
// checked against the provider's published schema, creates keep the client's `updated`, a
// destroyed service account is refused at once while open watches go on, `omnictl infraprovider
// delete` leaves the heartbeat behind, a state directory survives restarts, and a busy port is
// refused.

#include <httplib.h>

#include <filesystem>

#include "gtest/gtest.h"

#include "omni/specs/omni.pb.h"
#include "sim/omni/providerdata_schema.h"
#include "sim/omni/standin.h"
#include "sim/omni/standin_client.h"

namespace omni_proxmox::sim::omni {
namespace {

using namespace standin_test;  // NOLINT: the tests' own client and builders
using std::chrono::milliseconds;

constexpr auto kWait = milliseconds(10000);
constexpr char kPid[] = "proxmox";
constexpr char kStatusType[] = "MachineRequestStatuses.omni.sidero.dev";
constexpr char kRequestType[] = "MachineRequests.omni.sidero.dev";

// The shape of the provider's schema (src/provider/model/providerdata.cc) in miniature.
constexpr char kSchema[] = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["storage_selector"],
  "properties": {
    "cores": {"type": "integer", "minimum": 1, "maximum": 512},
    "memory": {"type": "integer", "minimum": 2048, "description": "MiB"},
    "storage_selector": {"type": "string"},
    "placement": {"type": "string", "enum": ["spread", "binpack"]},
    "disks": {"type": "array", "items": {"type": "object", "additionalProperties": false,
              "properties": {"size": {"type": "integer", "minimum": 1}}}}
  }
})";

class StandInFidelityTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }

  void Start(StandInOptions options) {
    options.clock = &clock_;
    options.omni_admission = true;
    auto standin = StandIn::Start(options);
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    provider_ = std::make_unique<Client>(standin_->grpc_endpoint(), standin_->provider_key(), clock_);
    admin_ = std::make_unique<Client>(standin_->grpc_endpoint(), standin_->admin_key(), clock_);
  }

  util::ManualClock clock_{util::Clock::SystemTime{std::chrono::seconds(1'760'000'000)}};
  std::unique_ptr<StandIn> standin_;
  std::unique_ptr<Client> provider_;
  std::unique_ptr<Client> admin_;
};

TEST_F(StandInFidelityTest, FirstUpdateOfANewMachineRequestStatusConflictsLikeOmnisCleanupController) {
  specs::MachineRequestStatusSpec spec;
  spec.set_stage(specs::MachineRequestStatusSpec::PROVISIONING);
  pb::Resource created;
  ASSERT_TRUE(provider_->Create(MakeProto("infra-provider", kStatusType, "req-1", spec), "", &created).ok());
  EXPECT_EQ(created.metadata().version(), "1");  // the answer is the resource as created

  spec.set_status("Running Step: createVM (3/5)");
  pb::Resource update = created;
  update.mutable_spec()->set_proto_spec(spec.SerializeAsString());
  const auto conflict = provider_->Update(update, "");
  EXPECT_EQ(conflict.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(conflict.error_message().find("update conflict: expected version '1', actual version '2'"),
            std::string::npos)
      << conflict.error_message();

  // A retry from a fresh read succeeds and keeps Omni's finalizer.
  pb::Resource fresh;
  ASSERT_TRUE(provider_->Get("infra-provider", kStatusType, "req-1", &fresh).ok());
  ASSERT_EQ(fresh.metadata().finalizers_size(), 1);
  EXPECT_EQ(fresh.metadata().finalizers(0), "MachineRequestStatusCleanupController");
  fresh.mutable_spec()->set_proto_spec(spec.SerializeAsString());
  EXPECT_TRUE(provider_->Update(fresh, "").ok());
}

TEST_F(StandInFidelityTest, CreateKeepsTheTimestampsTheClientSent) {
  specs::MachineRequestStatusSpec spec;
  pb::Resource without = MakeProto("infra-provider", kStatusType, "no-times", spec);
  pb::Resource created;
  ASSERT_TRUE(provider_->Create(without, "", &created).ok());
  EXPECT_EQ(created.metadata().updated().seconds(), 0);  // Omni keeps what was (not) sent: 1970-01-01

  pb::Resource with = MakeProto("infra-provider", kStatusType, "with-times", spec);
  with.mutable_metadata()->mutable_created()->set_seconds(1'700'000'000);
  with.mutable_metadata()->mutable_updated()->set_seconds(1'700'000'001);
  ASSERT_TRUE(provider_->Create(with, "", &created).ok());
  EXPECT_EQ(created.metadata().created().seconds(), 1'700'000'000);
  EXPECT_EQ(created.metadata().updated().seconds(), 1'700'000'001);

  // An Update is stamped by the server.
  pb::Resource fresh;
  ASSERT_TRUE(provider_->Get("infra-provider", kStatusType, "with-times", &fresh).ok());
  EXPECT_EQ(fresh.metadata().updated().seconds(), 1'760'000'000);  // the finalizer's update, at clock_
}

TEST_F(StandInFidelityTest, MachineClassProviderDataIsCheckedAgainstThePublishedSchema) {
  ASSERT_TRUE(standin_->PublishProviderStatusForTest(kPid, kSchema).ok());
  const auto refused = standin_->ApplyMachineClass("bad", "memory: 1024\nbogus_field: 1\n");
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message(),
            "config value \".storage_selector\": is required - config value \".memory\": must be at least 2048 - "
            "config value \".\": has unknown properties: bogus_field");
  EXPECT_TRUE(standin_->ApplyMachineClass("good", "memory: 4096\nstorage_selector: name == \"local-lvm\"\n").ok());
}

TEST_F(StandInFidelityTest, SchemaMessagesForTypesEnumsAndNestedItems) {
  EXPECT_EQ(ValidateProviderData(kSchema, "storage_selector: x\ncores: four\nplacement: random\n").message(),
            "config value \".cores\": must be of type integer, not string - config value \".placement\": must be one "
            "of spread, binpack");
  EXPECT_EQ(
      ValidateProviderData(kSchema, "storage_selector: x\ndisks:\n  - size: 0\n  - size: 2\n    x: 1\n").message(),
      "config value \".disks[0].size\": must be at least 1 - config value \".disks[1]\": has unknown "
      "properties: x");
  EXPECT_EQ(ValidateProviderData(kSchema, "storage_selector: 'true'\n").code(), absl::StatusCode::kOk);
  EXPECT_EQ(ValidateProviderData("", "anything: 1\n").code(), absl::StatusCode::kOk);  // no schema published
}

TEST_F(StandInFidelityTest, ControlEndpointAnswers400WithOmnisMessages) {
  StandInOptions options;
  options.control_port = 0;
  standin_.reset();
  Start(options);
  ASSERT_TRUE(standin_->PublishProviderStatusForTest(kPid, kSchema).ok());
  httplib::Client control(standin_->control_url());
  auto res = control.Put("/machine-classes/small", "cores: 2\nmemory: 4096\n", "application/yaml");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(res->body, "config value \".storage_selector\": is required\n");
}

TEST_F(StandInFidelityTest, RequestSetForAProviderWithoutStatusIsRefused) {
  ASSERT_TRUE(standin_->ApplyMachineClass("small", "cores: 2\n").ok());  // nothing to check against yet
  const auto refused = standin_->ScaleMachineRequestSet("workers", "small", 1);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("failed to get provider \"proxmox\": resource "
                                   "InfraProviderStatuses.omni.sidero.dev(infra-provider/proxmox) doesn't exist"),
            std::string::npos)
      << refused.message();
  ASSERT_TRUE(standin_->PublishProviderStatusForTest(kPid, kSchema).ok());
  // The class was stored before the schema existed; the set is checked now.
  EXPECT_EQ(standin_->ScaleMachineRequestSet("workers", "small", 1).code(), absl::StatusCode::kInvalidArgument);
  // Bad providerdata can still reach a provider, as an older schema's request set leaves it.
  EXPECT_TRUE(standin_->PlantMachineRequest("old-1", "cores: 2\n").ok());
  EXPECT_TRUE(standin_->state().Get("infra-provider", kRequestType, "old-1").ok());
}

TEST_F(StandInFidelityTest, DestroyedServiceAccountIsRefusedAtOnceWhileOpenWatchesGoOn) {
  auto ctx = provider_->Context("/cosi.resource.State/Watch");
  pb::WatchRequest req;
  req.set_namespace_("infra-provider");
  req.set_type(kRequestType);
  req.set_api_version(1);
  auto reader = provider_->state().Watch(ctx.get(), req);
  pb::WatchResponse first;
  ASSERT_TRUE(reader->Read(&first));  // established

  ASSERT_TRUE(standin_->DestroyServiceAccount("infra-provider:proxmox").ok());
  const auto refused = provider_->Get("infra-provider", kRequestType, "any");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(refused.error_message(), "invalid signature");

  ASSERT_TRUE(standin_->PlantMachineRequest("after-destroy", "cores: 2\n").ok());
  pb::WatchResponse event;
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_EQ(event.event_size(), 1);
  EXPECT_EQ(event.event(0).resource().metadata().id(), "after-destroy");
  ctx->TryCancel();
}

TEST_F(StandInFidelityTest, DeletingTheInfraProviderLeavesItsHeartbeat) {
  specs::InfraProviderHealthStatusSpec health;
  health.mutable_last_heartbeat_timestamp()->set_seconds(1'760'000'000);
  ASSERT_TRUE(
      provider_
          ->Create(MakeProto("infra-provider-ephemeral", "InfraProviderHealthStatuses.omni.sidero.dev", kPid, health),
                   "")
          .ok());
  ASSERT_TRUE(standin_->PublishProviderStatusForTest(kPid).ok());

  ASSERT_TRUE(standin_->DeleteInfraProvider(kPid).ok());
  auto& state = standin_->state();
  EXPECT_FALSE(state.Get("infra-provider", "InfraProviders.omni.sidero.dev", kPid).ok());
  EXPECT_FALSE(state.Get("infra-provider", "InfraProviderStatuses.omni.sidero.dev", kPid).ok());
  EXPECT_TRUE(state.Get("infra-provider-ephemeral", "InfraProviderHealthStatuses.omni.sidero.dev", kPid).ok());
  EXPECT_EQ(provider_->Get("infra-provider", kRequestType, "any").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(StandInFidelityTest, OperatorServiceAccountReadsWhatTheProviderKeyMayNot) {
  auto key = standin_->CreateServiceAccount("status-reader", Role::kReader);
  ASSERT_TRUE(key.ok()) << key.status();
  Client reader(standin_->grpc_endpoint(), *key, clock_);
  std::vector<pb::Resource> sets;
  EXPECT_TRUE(reader.List("default", "MachineRequestSets.omni.sidero.dev", &sets).ok());
  EXPECT_EQ(provider_->List("default", "MachineRequestSets.omni.sidero.dev", &sets).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(standin_->CreateServiceAccount("status-reader", Role::kReader).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(StandInFidelityTest, StateDirKeepsKeysAndResourcesAcrossARestart) {
  const auto dir = std::filesystem::temp_directory_path() / ("omnisim-state-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  StandInOptions options;
  options.state_dir = dir.string();
  standin_.reset();
  Start(options);
  const std::string key = standin_->provider_key();
  const std::string token = standin_->JoinToken(kPid);
  const int port = standin_->grpc_port();
  specs::MachineRequestStatusSpec spec;
  ASSERT_TRUE(provider_->Create(MakeProto("infra-provider", kStatusType, "kept", spec), "").ok());
  specs::InfraProviderHealthStatusSpec health;
  ASSERT_TRUE(
      provider_
          ->Create(MakeProto("infra-provider-ephemeral", "InfraProviderHealthStatuses.omni.sidero.dev", kPid, health),
                   "")
          .ok());
  provider_.reset();
  admin_.reset();
  standin_.reset();

  Start(options);
  EXPECT_EQ(standin_->provider_key(), key);
  EXPECT_EQ(standin_->JoinToken(kPid), token);
  EXPECT_EQ(standin_->grpc_port(), port);  // ports left at 0 reuse the snapshot's
  pb::Resource kept;
  ASSERT_TRUE(provider_->Get("infra-provider", kStatusType, "kept", &kept).ok());  // the old key still signs
  EXPECT_EQ(kept.metadata().finalizers_size(), 1);
  EXPECT_FALSE(
      standin_->state().Get("infra-provider-ephemeral", "InfraProviderHealthStatuses.omni.sidero.dev", kPid).ok());
  standin_.reset();
  std::filesystem::remove_all(dir);
}

TEST_F(StandInFidelityTest, ASecondStandInOnTheSamePortsFailsWithAddressInUse) {
  StandInOptions options;
  options.grpc_port = standin_->grpc_port();
  options.clock = &clock_;
  auto second = StandIn::Start(options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("address already in use"), std::string::npos) << second.status();

  const int factory_port = std::stoi(standin_->factory_url().substr(standin_->factory_url().rfind(':') + 1));
  StandInOptions factory_clash;
  factory_clash.factory_port = factory_port;
  factory_clash.clock = &clock_;
  auto third = StandIn::Start(factory_clash);
  ASSERT_FALSE(third.ok());
  EXPECT_NE(third.status().message().find("address already in use"), std::string::npos) << third.status();
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
