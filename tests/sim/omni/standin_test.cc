// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/standin.h"

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>

#include "gtest/gtest.h"
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cosi/meta.pb.h"
#include "cosi/state.grpc.pb.h"
#include "omni/management/management.grpc.pb.h"
#include "omni/specs/omni.pb.h"
#include "sim/omni/accounts.h"
#include "sim/omni/standin_client.h"
#include "sim/omni/test_signer.h"

namespace omni_proxmox::sim::omni {
namespace {

namespace pb = ::cosi::resource;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kWait = milliseconds(10000);
constexpr char kPid[] = "proxmox";

using namespace standin_test;  // NOLINT: the tests' own client and builders

class StandInTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StandInOptions options;
    options.clock = &clock_;
    keys_dir_ =
        std::filesystem::temp_directory_path() / ("omnisim-test-" + std::to_string(::getpid()) + "-" +
                                                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    options.keys_dir = keys_dir_.string();
    auto standin = StandIn::Start(options);
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    provider_ = std::make_unique<Client>(standin_->grpc_endpoint(), standin_->provider_key(), clock_);
    admin_ = std::make_unique<Client>(standin_->grpc_endpoint(), standin_->admin_key(), clock_);
  }
  void TearDown() override {
    standin_.reset();
    std::filesystem::remove_all(keys_dir_);
  }

  std::vector<Resource> Requests() {
    return *standin_->state().List("infra-provider", "MachineRequests.omni.sidero.dev");
  }

  // A machine request created the way Omni's controller does (owner "", labelled), for a provider
  // that has published its status (schema-less: admission has its tests in standin_fidelity_test).
  std::string MakeRequestFor(const std::string& provider) {
    EXPECT_TRUE(standin_->PublishProviderStatusForTest(provider).ok());
    EXPECT_TRUE(standin_->ApplyMachineClass("cls-" + provider, "node: pve1\n", ForProvider(provider)).ok());
    EXPECT_TRUE(standin_->ScaleMachineRequestSet("set-" + provider, "cls-" + provider, 1).ok());
    std::string id;
    EXPECT_TRUE(standin_->WaitFor(
        [&] {
          for (const auto& r : Requests()) {
            if (r.labels.count("omni.sidero.dev/machine-request-set") &&
                r.labels.at("omni.sidero.dev/machine-request-set") == "set-" + provider) {
              id = r.id;
              return true;
            }
          }
          return false;
        },
        kWait));
    return id;
  }

  util::ManualClock clock_{util::Clock::SystemTime{seconds(1'760'000'000)}};
  std::filesystem::path keys_dir_;
  std::unique_ptr<StandIn> standin_;
  std::unique_ptr<Client> provider_;
  std::unique_ptr<Client> admin_;
};

TEST_F(StandInTest, WritesKeysInTheServiceAccountFormat) {
  std::ifstream admin(keys_dir_ / "admin.key");
  std::ifstream provider(keys_dir_ / "proxmox.key");
  std::string admin_text((std::istreambuf_iterator<char>(admin)), {});
  std::string provider_text((std::istreambuf_iterator<char>(provider)), {});
  EXPECT_EQ(admin_text, standin_->admin_key());
  EXPECT_EQ(provider_text, standin_->provider_key());
  auto key = testing::DecodeServiceAccountKey(provider_text);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->name, "infra-provider:proxmox");
  EXPECT_EQ(std::filesystem::status(keys_dir_ / "proxmox.key").permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  EXPECT_EQ(standin_->grpc_endpoint().rfind("http://127.0.0.1:", 0), 0u);
}

TEST_F(StandInTest, SeedsWhatAProviderReadsAtStartup) {
  std::vector<pb::Resource> defs;
  ASSERT_TRUE(provider_->List("meta", "ResourceDefinitions.meta.cosi.dev", &defs).ok());
  bool has_join_config = false;
  for (const auto& d : defs) has_join_config |= d.metadata().id() == "providerjoinconfigs.omni.sidero.dev";
  EXPECT_TRUE(has_join_config);

  pb::Resource join;
  ASSERT_TRUE(provider_->Get("infra-provider", "ProviderJoinConfigs.omni.sidero.dev", kPid, &join).ok());
  EXPECT_EQ(Label(join, "omni.sidero.dev/infra-provider-id"), kPid);
  specs::ProviderJoinConfigSpec join_spec;
  ASSERT_TRUE(join_spec.ParseFromString(join.spec().proto_spec()));
  EXPECT_EQ(join_spec.join_token(), standin_->JoinToken(kPid));
  EXPECT_EQ(join_spec.join_token().size(), 32u);
  EXPECT_NE(join.spec().yaml_spec().find("join_token"), std::string::npos);

  pb::Resource siderolink;
  ASSERT_TRUE(provider_->Get("default", "SiderolinkAPIConfigs.omni.sidero.dev", "siderolink-config", &siderolink).ok());
  specs::SiderolinkAPIConfigSpec sl;
  ASSERT_TRUE(sl.ParseFromString(siderolink.spec().proto_spec()));
  EXPECT_EQ(sl.events_port(), 8091);
  EXPECT_EQ(sl.logs_port(), 8092);

  pb::Resource features;
  ASSERT_TRUE(provider_->Get("default", "FeaturesConfigs.omni.sidero.dev", "features-config", &features).ok());
  specs::FeaturesConfigSpec fs;
  ASSERT_TRUE(fs.ParseFromString(features.spec().proto_spec()));
  EXPECT_EQ(fs.image_factory_base_url(), standin_->factory_url());
}

TEST_F(StandInTest, UnsignedAndStaleCallsAreUnauthenticated) {
  clock_.Advance(std::chrono::hours(1));  // a signature 5 minutes "ago" must still be after key creation
  pb::GetRequest req;
  req.set_namespace_("infra-provider");
  req.set_type("ProviderJoinConfigs.omni.sidero.dev");
  req.set_id(kPid);
  pb::GetResponse resp;
  grpc::ClientContext unsigned_ctx;
  unsigned_ctx.AddMetadata("providerid", kPid);
  auto status = provider_->state().Get(&unsigned_ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(status.error_message(), "invalid signature");

  auto stale = provider_->Context("/cosi.resource.State/Get", -301);
  EXPECT_EQ(provider_->state().Get(stale.get(), req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Signed for another method.
  auto wrong_method = provider_->Context("/cosi.resource.State/List");
  EXPECT_EQ(provider_->state().Get(wrong_method.get(), req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto fresh = provider_->Context("/cosi.resource.State/Get", 120);
  EXPECT_TRUE(provider_->state().Get(fresh.get(), req, &resp).ok());
}

TEST_F(StandInTest, RevokedKeyIsRefused) {
  ASSERT_TRUE(provider_->Get("infra-provider", "ProviderJoinConfigs.omni.sidero.dev", kPid).ok());
  ASSERT_TRUE(standin_->RevokeKey(standin_->provider_key()).ok());
  EXPECT_EQ(provider_->Get("infra-provider", "ProviderJoinConfigs.omni.sidero.dev", kPid).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(StandInTest, CreateLabelsWithTheProviderIdFromTheKey) {
  specs::MachineRequestStatusSpec spec;
  spec.set_stage(specs::MachineRequestStatusSpec::PROVISIONING);
  pb::Resource created;
  auto status = provider_->Create(MakeProto("infra-provider", "MachineRequestStatuses.omni.sidero.dev", "r1", spec,
                                            {{"omni.sidero.dev/infra-provider-id", "someone-else"}}),
                                  "proxmox.ProvisionController", &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Label(created, "omni.sidero.dev/infra-provider-id"), kPid);
  EXPECT_EQ(created.metadata().version(), "1");
  EXPECT_EQ(created.metadata().owner(), "proxmox.ProvisionController");
}

TEST_F(StandInTest, SharedNamespacesAreFilteredByProviderLabel) {
  ASSERT_TRUE(standin_->AddInfraProvider("other").ok());
  const std::string mine = MakeRequestFor(kPid);
  const std::string theirs = MakeRequestFor("other");
  ASSERT_FALSE(mine.empty());
  ASSERT_FALSE(theirs.empty());

  std::vector<pb::Resource> listed;
  ASSERT_TRUE(provider_->List("infra-provider", "MachineRequests.omni.sidero.dev", &listed).ok());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].metadata().id(), mine);
  EXPECT_EQ(provider_->Get("infra-provider", "MachineRequests.omni.sidero.dev", theirs).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(provider_->Get("infra-provider", "MachineRequests.omni.sidero.dev", mine).ok());
  // The admin sees everything.
  std::vector<pb::Resource> all;
  ASSERT_TRUE(admin_->List("infra-provider", "MachineRequests.omni.sidero.dev", &all).ok());
  EXPECT_EQ(all.size(), 2u);

  // Updating or destroying someone else's resource: NotFound.
  specs::MachineRequestStatusSpec spec;
  ASSERT_TRUE(admin_
                  ->Create(MakeProto("infra-provider", "MachineRequestStatuses.omni.sidero.dev", theirs, spec,
                                     {{"omni.sidero.dev/infra-provider-id", "other"}}),
                           "other.ProvisionController")
                  .ok());
  pb::Resource foreign;
  ASSERT_TRUE(admin_->Get("infra-provider", "MachineRequestStatuses.omni.sidero.dev", theirs, &foreign).ok());
  EXPECT_EQ(provider_->Update(foreign, "other.ProvisionController").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(
      provider_
          ->Destroy("infra-provider", "MachineRequestStatuses.omni.sidero.dev", theirs, "other.ProvisionController")
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(
      provider_
          ->Teardown("infra-provider", "MachineRequestStatuses.omni.sidero.dev", theirs, "other.ProvisionController")
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
}

TEST_F(StandInTest, MachineRequestsAllowFinalizerOnlyUpdates) {
  const std::string id = MakeRequestFor(kPid);
  pb::Resource r;
  ASSERT_TRUE(provider_->Get("infra-provider", "MachineRequests.omni.sidero.dev", id, &r).ok());
  EXPECT_EQ(r.metadata().owner(), "");
  specs::MachineRequestSpec spec;
  ASSERT_TRUE(spec.ParseFromString(r.spec().proto_spec()));
  EXPECT_EQ(spec.provider_data(), "node: pve1\n");
  EXPECT_EQ(spec.talos_version(), "1.10.4");

  pb::Resource with_finalizer = r;
  with_finalizer.mutable_metadata()->add_finalizers("proxmox.ProvisionController");
  pb::Resource updated;
  auto status = provider_->Update(with_finalizer, "", std::nullopt, &updated);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(updated.metadata().finalizers_size(), 1);

  pb::Resource relabel = updated;
  (*relabel.mutable_metadata()->mutable_labels())["x"] = "y";
  EXPECT_EQ(provider_->Update(relabel, "", std::nullopt).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  pb::Resource respec = updated;
  spec.set_provider_data("node: pve2\n");
  respec.mutable_spec()->set_proto_spec(spec.SerializeAsString());
  EXPECT_EQ(provider_->Update(respec, "", std::nullopt).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  pb::Resource annotate = updated;
  (*annotate.mutable_metadata()->mutable_annotations())["a"] = "b";
  EXPECT_EQ(provider_->Update(annotate, "", std::nullopt).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  specs::MachineRequestSpec fresh;
  EXPECT_EQ(
      provider_->Create(MakeProto("infra-provider", "MachineRequests.omni.sidero.dev", "mine", fresh), "").error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(provider_->Destroy("infra-provider", "MachineRequests.omni.sidero.dev", id, "").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(provider_->Teardown("infra-provider", "MachineRequests.omni.sidero.dev", id, "").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(StandInTest, ProviderStatusIdMustEqualProviderId) {
  specs::InfraProviderStatusSpec spec;
  spec.set_name("Proxmox");
  EXPECT_EQ(provider_->Create(MakeProto("infra-provider", "InfraProviderStatuses.omni.sidero.dev", "other", spec), "")
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(
      provider_->Create(MakeProto("infra-provider", "InfraProviderStatuses.omni.sidero.dev", kPid, spec), "").ok());
}

TEST_F(StandInTest, PrivateNamespaceTypesNeedTheProviderSuffix) {
  specs::MachineRequestStatusSpec opaque;  // any bytes: private specs are stored verbatim
  auto bad = MakeProto("infra-provider:proxmox", "Machine.other.infraprovider.sidero.dev", "r1", opaque);
  EXPECT_EQ(provider_->Create(bad, "proxmox.ProvisionController").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto good = MakeProto("infra-provider:proxmox", "Machine.proxmox.infraprovider.sidero.dev", "r1", opaque);
  good.mutable_spec()->set_yaml_spec("vmid: 100\n");
  pb::Resource created;
  ASSERT_TRUE(provider_->Create(good, "proxmox.ProvisionController", &created).ok());
  EXPECT_EQ(created.spec().yaml_spec(), "vmid: 100\n");
  EXPECT_EQ(Label(created, "omni.sidero.dev/infra-provider-id"), "");  // private: not labelled
  auto foreign = MakeProto("infra-provider:other", "Machine.other.infraprovider.sidero.dev", "r1", opaque);
  EXPECT_EQ(provider_->Create(foreign, "x").error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(StandInTest, KnownSpecsMustDecode) {
  auto r =
      MakeProto("infra-provider", "MachineRequestStatuses.omni.sidero.dev", "r1", specs::MachineRequestStatusSpec());
  r.mutable_spec()->set_proto_spec("\xff\xff\xff");
  EXPECT_EQ(provider_->Create(r, "o").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r.clear_spec();
  auto missing_spec = provider_->Create(r, "o");
  EXPECT_EQ(missing_spec.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(missing_spec.error_message().find("spec"), std::string::npos);
  auto bad_phase =
      MakeProto("infra-provider", "MachineRequestStatuses.omni.sidero.dev", "r1", specs::MachineRequestStatusSpec());
  bad_phase.mutable_metadata()->set_phase("");
  EXPECT_EQ(provider_->Create(bad_phase, "o").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(StandInTest, UnregisteredProviderIsDenied) {
  ASSERT_TRUE(provider_->Get("infra-provider", "ProviderJoinConfigs.omni.sidero.dev", kPid).ok());
  ASSERT_TRUE(standin_->RemoveInfraProvider(kPid).ok());
  auto status = provider_->Get("infra-provider", "ProviderJoinConfigs.omni.sidero.dev", kPid);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(status.error_message().find("not registered"), std::string::npos);
}

TEST_F(StandInTest, OutsideInfraNamespacesOnlySomeReadsAreAllowed) {
  EXPECT_TRUE(provider_->Get("default", "SiderolinkAPIConfigs.omni.sidero.dev", "siderolink-config").ok());
  EXPECT_TRUE(provider_->Get("default", "ConnectionParams.omni.sidero.dev", "siderolink-config").ok());
  std::vector<pb::Resource> classes;
  EXPECT_EQ(provider_->List("default", "MachineClasses.omni.sidero.dev", &classes).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  pb::Resource sl;
  ASSERT_TRUE(admin_->Get("default", "SiderolinkAPIConfigs.omni.sidero.dev", "siderolink-config", &sl).ok());
  EXPECT_EQ(provider_->Update(sl, "").error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(StandInTest, RequestSetControllerCreatesAndTearsDownRequests) {
  MachineClassOptions small;
  small.kernel_args = {"console=ttyS0"};
  ASSERT_TRUE(standin_->ApplyMachineClass("small", "cores: 2\n", small).ok());
  ASSERT_TRUE(standin_->PublishProviderStatusForTest("proxmox").ok());  // as the provider does when it starts
  EXPECT_EQ(standin_->ScaleMachineRequestSet("workers", "missing", 1).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "small", 2).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return Requests().size() == 2; }, kWait));
  const std::regex id_pattern("workers-[a-z0-9]{6}");
  for (const auto& r : Requests()) {
    EXPECT_TRUE(std::regex_match(r.id, id_pattern)) << r.id;
    EXPECT_EQ(r.labels.at("omni.sidero.dev/machine-request-set"), "workers");
    EXPECT_EQ(r.labels.at("omni.sidero.dev/infra-provider-id"), kPid);
    specs::MachineRequestSpec spec;
    ASSERT_TRUE(spec.ParseFromString(r.proto_spec));
    EXPECT_EQ(spec.provider_data(), "cores: 2\n");
    ASSERT_EQ(spec.kernel_args_size(), 1);
  }
  // The provider holds one request with its finalizer; scaling down tears both... one down.
  const auto requests = Requests();
  const std::string last = requests.back().id;
  pb::Resource held;
  ASSERT_TRUE(provider_->Get("infra-provider", "MachineRequests.omni.sidero.dev", last, &held).ok());
  held.mutable_metadata()->add_finalizers("proxmox.ProvisionController");
  ASSERT_TRUE(provider_->Update(held, "", std::nullopt, &held).ok());

  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "small", 1).ok());
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        auto r = standin_->state().Get("infra-provider", "MachineRequests.omni.sidero.dev", last);
        return r.ok() && r->phase == Phase::kTearingDown;
      },
      kWait));
  // Omni waits for the provider's finalizer before destroying the request.
  ASSERT_TRUE(provider_->Get("infra-provider", "MachineRequests.omni.sidero.dev", last, &held).ok());
  EXPECT_EQ(held.metadata().phase(), "tearingDown");
  held.mutable_metadata()->clear_finalizers();
  ASSERT_TRUE(provider_->Update(held, "", std::nullopt).ok());
  ASSERT_TRUE(standin_->WaitFor(
      [&] { return !standin_->state().Get("infra-provider", "MachineRequests.omni.sidero.dev", last).ok(); }, kWait));
  EXPECT_EQ(Requests().size(), 1u);

  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "small", 0).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return Requests().empty(); }, kWait));
}

TEST_F(StandInTest, OmniPutsACleanupFinalizerOnEveryStatus) {
  const std::string id = MakeRequestFor(kPid);
  specs::MachineRequestStatusSpec spec;
  spec.set_id("uuid-1");
  ASSERT_TRUE(provider_
                  ->Create(MakeProto("infra-provider", "MachineRequestStatuses.omni.sidero.dev", id, spec),
                           "proxmox.ProvisionController")
                  .ok());
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        auto s = standin_->state().Get("infra-provider", "MachineRequestStatuses.omni.sidero.dev", id);
        return s.ok() && s->HasFinalizer("MachineRequestStatusCleanupController");
      },
      kWait));
  auto refused =
      provider_->Destroy("infra-provider", "MachineRequestStatuses.omni.sidero.dev", id, "proxmox.ProvisionController");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  bool ready = true;
  ASSERT_TRUE(provider_
                  ->Teardown("infra-provider", "MachineRequestStatuses.omni.sidero.dev", id,
                             "proxmox.ProvisionController", &ready)
                  .ok());
  EXPECT_FALSE(ready);
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        auto s = standin_->state().Get("infra-provider", "MachineRequestStatuses.omni.sidero.dev", id);
        return s.ok() && s->finalizers.empty();
      },
      kWait));
  EXPECT_TRUE(
      provider_->Destroy("infra-provider", "MachineRequestStatuses.omni.sidero.dev", id, "proxmox.ProvisionController")
          .ok());
}

TEST_F(StandInTest, MachineJoinsWithAValidTokenOnly) {
  const std::string id = MakeRequestFor(kPid);
  const std::string base = standin_->JoinToken(kPid);
  auto wrong_key = standin_->MachineJoined(UserData(MakeToken("not-the-token", kPid, id)), "uuid-1");
  EXPECT_EQ(wrong_key.code(), absl::StatusCode::kPermissionDenied);
  auto wrong_request = standin_->MachineJoined(UserData(MakeToken(base, kPid, "nope-123456")), "uuid-1");
  EXPECT_EQ(wrong_request.code(), absl::StatusCode::kFailedPrecondition);
  auto wrong_provider = standin_->MachineJoined(UserData(MakeToken(base, "other", id)), "uuid-1");
  EXPECT_EQ(wrong_provider.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(standin_->MachineJoined("#cloud-config\n", "uuid-1").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(standin_->JoinedMachines().empty());

  auto joined = standin_->MachineJoined(UserData(MakeToken(base, kPid, id)), "uuid-1");
  ASSERT_TRUE(joined.ok()) << joined;
  ASSERT_EQ(standin_->JoinedMachines().size(), 1u);
  EXPECT_EQ(standin_->JoinedMachines()[0].machine_request, id);

  std::vector<pb::Resource> registrations;
  pb::ListOptions options;
  auto* term = options.add_label_query()->add_terms();
  term->set_key("omni.sidero.dev/machine-request");
  term->set_op(pb::LabelTerm::EQUAL);
  term->add_value(id);
  ASSERT_TRUE(
      provider_->List("infra-provider", "InfraMachineRegistrations.omni.sidero.dev", &registrations, options).ok());
  ASSERT_EQ(registrations.size(), 1u);
  EXPECT_EQ(registrations[0].metadata().id(), "uuid-1");
  // The same machine cannot join for another request.
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("set-proxmox", "cls-proxmox", 2).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return Requests().size() == 2; }, kWait));
  const std::string other = Requests()[0].id == id ? Requests()[1].id : Requests()[0].id;
  EXPECT_EQ(standin_->MachineJoined(UserData(MakeToken(base, kPid, other)), "uuid-1").code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(StandInTest, ProviderIsConnectedOnlyWhileTheHeartbeatIsFresh) {
  EXPECT_FALSE(standin_->ProviderConnected(kPid));
  specs::InfraProviderHealthStatusSpec spec;
  spec.mutable_last_heartbeat_timestamp()->set_seconds(
      std::chrono::duration_cast<seconds>(clock_.Now().time_since_epoch()).count());
  ASSERT_TRUE(
      provider_
          ->Create(MakeProto("infra-provider-ephemeral", "InfraProviderHealthStatuses.omni.sidero.dev", kPid, spec),
                   "proxmox.ProviderHealthStatusController")
          .ok());
  EXPECT_TRUE(standin_->ProviderConnected(kPid));
  clock_.Advance(seconds(30));
  EXPECT_TRUE(standin_->ProviderConnected(kPid));
  clock_.Advance(seconds(1));
  EXPECT_FALSE(standin_->ProviderConnected(kPid));
}

// Reads one watch response or fails the test.
pb::WatchResponse ReadOne(grpc::ClientReader<pb::WatchResponse>& reader) {
  pb::WatchResponse resp;
  EXPECT_TRUE(reader.Read(&resp));
  return resp;
}

TEST_F(StandInTest, WatchBootstrapsFiltersAndResumesAcrossARestart) {
  ASSERT_TRUE(standin_->AddInfraProvider("other").ok());
  const std::string mine = MakeRequestFor(kPid);
  MakeRequestFor("other");

  pb::WatchRequest req;
  req.set_namespace_("infra-provider");
  req.set_type("MachineRequests.omni.sidero.dev");
  req.set_api_version(1);
  req.mutable_options()->set_bootstrap_contents(true);
  auto ctx = provider_->Context("/cosi.resource.State/Watch");
  auto reader = provider_->state().Watch(ctx.get(), req);
  EXPECT_EQ(ReadOne(*reader).event_size(), 0);  // "watch established"
  auto first = ReadOne(*reader);
  ASSERT_EQ(first.event_size(), 1);
  EXPECT_EQ(first.event(0).event_type(), pb::CREATED);
  EXPECT_EQ(first.event(0).resource().metadata().id(), mine);
  auto boot = ReadOne(*reader);
  ASSERT_EQ(boot.event_size(), 1);
  EXPECT_EQ(boot.event(0).event_type(), pb::BOOTSTRAPPED);
  EXPECT_EQ(boot.event(0).resource().metadata().id(), "");
  const std::string bookmark = boot.event(0).bookmark();
  ASSERT_FALSE(bookmark.empty());

  // The server goes away; the stream ends with an error.
  standin_->StopServing();
  pb::WatchResponse ignored;
  while (reader->Read(&ignored)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
  // Changes while it is down: another request of ours appears (scale the set up).
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("set-proxmox", "cls-proxmox", 2).ok());
  ASSERT_TRUE(standin_->WaitFor([&] { return Requests().size() == 3; }, kWait));
  ASSERT_TRUE(standin_->ResumeServing().ok());

  pb::WatchRequest resume = req;
  resume.mutable_options()->set_bootstrap_contents(false);
  resume.mutable_options()->set_start_from_bookmark(bookmark);
  auto ctx2 = provider_->Context("/cosi.resource.State/Watch");
  auto resumed = provider_->state().Watch(ctx2.get(), resume);
  EXPECT_EQ(ReadOne(*resumed).event_size(), 0);
  auto missed = ReadOne(*resumed);
  ASSERT_EQ(missed.event_size(), 1);
  EXPECT_EQ(missed.event(0).event_type(), pb::CREATED);
  EXPECT_NE(missed.event(0).resource().metadata().id(), mine);
  EXPECT_EQ(missed.event(0).resource().metadata().labels().at("omni.sidero.dev/infra-provider-id"), kPid);
  ctx2->TryCancel();

  pb::WatchRequest invalid = resume;
  invalid.mutable_options()->set_start_from_bookmark("not-a-bookmark");
  auto ctx3 = provider_->Context("/cosi.resource.State/Watch");
  auto refused = provider_->state().Watch(ctx3.get(), invalid);
  pb::WatchResponse resp;
  EXPECT_FALSE(refused->Read(&resp));
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(StandInTest, RestartAsNewProcessInvalidatesBookmarksAndEphemeralState) {
  const std::string id = MakeRequestFor(kPid);
  specs::InfraProviderHealthStatusSpec health;
  health.mutable_last_heartbeat_timestamp()->set_seconds(
      std::chrono::duration_cast<seconds>(clock_.Now().time_since_epoch()).count());
  ASSERT_TRUE(
      provider_
          ->Create(MakeProto("infra-provider-ephemeral", "InfraProviderHealthStatuses.omni.sidero.dev", kPid, health),
                   "proxmox.ProviderHealthStatusController")
          .ok());
  ASSERT_TRUE(standin_->ProviderConnected(kPid));

  pb::WatchRequest req;
  req.set_namespace_("infra-provider");
  req.set_type("MachineRequests.omni.sidero.dev");
  req.set_api_version(1);
  req.mutable_options()->set_bootstrap_bookmark(true);
  auto ctx = provider_->Context("/cosi.resource.State/Watch");
  auto reader = provider_->state().Watch(ctx.get(), req);
  EXPECT_EQ(ReadOne(*reader).event_size(), 0);
  const std::string bookmark = ReadOne(*reader).event(0).bookmark();
  ctx->TryCancel();

  ASSERT_TRUE(standin_->RestartAsNewProcess().ok());
  EXPECT_FALSE(standin_->ProviderConnected(kPid));  // the ephemeral namespace is gone
  EXPECT_TRUE(provider_->Get("infra-provider", "MachineRequests.omni.sidero.dev", id).ok());  // persistent state kept

  pb::WatchRequest resume = req;
  resume.mutable_options()->set_bootstrap_bookmark(false);
  resume.mutable_options()->set_start_from_bookmark(bookmark);
  auto ctx2 = provider_->Context("/cosi.resource.State/Watch");
  auto refused = provider_->state().Watch(ctx2.get(), resume);
  pb::WatchResponse resp;
  EXPECT_FALSE(refused->Read(&resp));
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(StandInTest, AggregatedWatchWithBootstrapBookmark) {
  pb::WatchRequest req;
  req.set_namespace_("infra-provider");
  req.set_type("MachineRequests.omni.sidero.dev");
  req.set_api_version(1);
  req.mutable_options()->set_aggregated(true);
  req.mutable_options()->set_bootstrap_bookmark(true);
  auto ctx = provider_->Context("/cosi.resource.State/Watch");
  auto reader = provider_->state().Watch(ctx.get(), req);
  EXPECT_EQ(ReadOne(*reader).event_size(), 0);
  auto noop = ReadOne(*reader);
  ASSERT_EQ(noop.event_size(), 1);
  EXPECT_EQ(noop.event(0).event_type(), pb::NOOP);
  EXPECT_TRUE(noop.event(0).has_bookmark());
  const std::string id = MakeRequestFor(kPid);
  auto created = ReadOne(*reader);
  ASSERT_GE(created.event_size(), 1);
  EXPECT_EQ(created.event(0).resource().metadata().id(), id);
  ctx->TryCancel();
}

TEST_F(StandInTest, ImageFactoryServesSchematicsAndImages) {
  httplib::Client http(standin_->factory_url());
  const std::string schematic =
      "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/qemu-guest-agent\n";
  auto post = http.Post("/schematics", schematic, "application/yaml");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 201);
  const std::string id = Sha256HexForTest(schematic);
  EXPECT_EQ(post->body, "{\"id\":\"" + id + "\"}\n");

  auto image = http.Get(("/image/" + id + "/v1.10.4/nocloud-amd64.iso").c_str());
  ASSERT_TRUE(image);
  EXPECT_EQ(image->status, 200);
  EXPECT_NE(image->body.find(id), std::string::npos);

  auto unknown = http.Get(("/image/" + std::string(64, 'a') + "/v1.10.4/nocloud-amd64.iso").c_str());
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto bad = http.Post("/schematics", "customisation: {}\n", "application/yaml");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("customisation"), std::string::npos);
}

TEST_F(StandInTest, ManagementApiCreatesSchematicsAndBootAssetUrls) {
  ::management::CreateSchematicFromRawRequest req;
  req.set_raw_schematic("customization:\n  extraKernelArgs:\n    - console=ttyS0\n");
  ::management::CreateSchematicResponse resp;
  auto ctx = provider_->Context("/management.ManagementService/CreateSchematicFromRaw");
  auto status = provider_->management().CreateSchematicFromRaw(ctx.get(), req, &resp);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.schematic_id(), Sha256HexForTest(req.raw_schematic()));

  ::management::GetBootAssetURLRequest url_req;
  url_req.set_talos_version("1.10.4");
  url_req.set_schematic_id(resp.schematic_id());
  url_req.set_boot_asset_kind(::management::GetBootAssetURLRequest::ISO);
  url_req.set_platform("nocloud");
  url_req.set_architecture("amd64");
  ::management::GetBootAssetURLResponse url_resp;
  auto ctx2 = provider_->Context("/management.ManagementService/GetBootAssetURL");
  ASSERT_TRUE(provider_->management().GetBootAssetURL(ctx2.get(), url_req, &url_resp).ok());
  EXPECT_EQ(url_resp.url(), standin_->factory_url() + "/image/" + resp.schematic_id() + "/v1.10.4/nocloud-amd64.iso");
  httplib::Client http(standin_->factory_url());
  auto image = http.Get(url_resp.url().substr(standin_->factory_url().size()).c_str());
  ASSERT_TRUE(image);
  EXPECT_EQ(image->status, 200);

  ::management::CreateSchematicFromRawRequest bad;
  bad.set_raw_schematic("nonsense: true\n");
  auto ctx3 = provider_->Context("/management.ManagementService/CreateSchematicFromRaw");
  EXPECT_EQ(provider_->management().CreateSchematicFromRaw(ctx3.get(), bad, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext unsigned_ctx;
  EXPECT_EQ(provider_->management().CreateSchematicFromRaw(&unsigned_ctx, req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST(StandInOptionsTest, BadProviderIdIsRefused) {
  StandInOptions options;
  options.provider_id = "bad id";
  auto standin = StandIn::Start(options);
  EXPECT_EQ(standin.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omni_proxmox::sim::omni

namespace omni_proxmox::sim::omni {
namespace {

TEST(StandInControlTest, ShellControlsDriveTheStandIn) {
  util::ManualClock clock{util::Clock::SystemTime{std::chrono::seconds(1'760'000'000)}};
  StandInOptions options;
  options.clock = &clock;
  options.control_port = 0;
  auto standin = StandIn::Start(options);
  ASSERT_TRUE(standin.ok()) << standin.status();
  ASSERT_FALSE((*standin)->control_url().empty());
  httplib::Client http((*standin)->control_url());
  auto klass = http.Put("/machine-classes/small", "cores: 2\n", "application/yaml");
  ASSERT_TRUE(klass);
  EXPECT_EQ(klass->status, 200);
  auto bad = http.Put("/machine-request-sets/workers?machine_class=small&count=x", "", "text/plain");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  auto missing = http.Put("/machine-request-sets/workers?machine_class=nope&count=1", "", "text/plain");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  // As in Omni, no request set before the provider has published its status.
  auto early = http.Put("/machine-request-sets/workers?machine_class=small&count=2", "", "text/plain");
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 409);
  EXPECT_NE(early->body.find("failed to get provider \"proxmox\""), std::string::npos) << early->body;
  ASSERT_TRUE((*standin)->PublishProviderStatusForTest("proxmox").ok());
  auto scale = http.Put("/machine-request-sets/workers?machine_class=small&count=2", "", "text/plain");
  ASSERT_TRUE(scale);
  EXPECT_EQ(scale->status, 200);
  ASSERT_TRUE((*standin)->WaitFor(
      [&] { return (*standin)->state().List("infra-provider", "MachineRequests.omni.sidero.dev")->size() == 2; },
      std::chrono::milliseconds(10000)));
  auto join = http.Post("/machines/uuid-1/join", "kind: SideroLinkConfig\napiUrl: https://x?jointoken=v2%3Awrong\n",
                        "application/yaml");
  ASSERT_TRUE(join);
  EXPECT_EQ(join->status, 400);  // not base64: malformed token
  auto status = http.Get("/status");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->status, 200);
  EXPECT_NE(status->body.find("\"machine_requests\""), std::string::npos);
  EXPECT_NE(status->body.find("workers-"), std::string::npos);
}

}  // namespace
}  // namespace omni_proxmox::sim::omni

namespace omni_proxmox::sim::omni {
namespace {

TEST(StandInTlsTest, ServesOverTlsWithASelfSignedCertificate) {
  util::ManualClock clock{util::Clock::SystemTime{std::chrono::seconds(1'760'000'000)}};
  StandInOptions options;
  options.clock = &clock;
  options.tls = true;
  auto standin = StandIn::Start(options);
  ASSERT_TRUE(standin.ok()) << standin.status();
  EXPECT_EQ((*standin)->grpc_endpoint().rfind("https://127.0.0.1:", 0), 0u);
  ASSERT_NE((*standin)->tls_ca_pem().find("BEGIN CERTIFICATE"), std::string::npos);
  Client tls((*standin)->grpc_endpoint(), (*standin)->provider_key(), clock, (*standin)->tls_ca_pem());
  auto status = tls.Get("infra-provider", "ProviderJoinConfigs.omni.sidero.dev", "proxmox");
  EXPECT_TRUE(status.ok()) << status.error_message();
  // A plaintext client cannot talk to it.
  Client plain("http://127.0.0.1:" + std::to_string((*standin)->grpc_port()), (*standin)->provider_key(), clock);
  EXPECT_EQ(plain.Get("infra-provider", "ProviderJoinConfigs.omni.sidero.dev", "proxmox").error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST(StandInTlsTest, HalfAKeyPairIsRefused) {
  StandInOptions options;
  options.tls = true;
  options.tls_cert_pem = "-----BEGIN CERTIFICATE-----";
  EXPECT_EQ(StandIn::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
