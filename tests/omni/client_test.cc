// SPDX-License-Identifier: Apache-2.0
// The gRPC State/Management clients against the Omni stand-in (src/sim/omni), over loopback.
#include <condition_variable>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "omni/join_config.h"
#include "omni/keys.h"
#include "omni/management_client.h"
#include "omni/provider_status.h"
#include "omni/schematic.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/machine.pb.h"
#include "sim/omni/standin.h"
#include "support/switch_gate.h"

namespace omni_proxmox::omni {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 20s;

// Collects watch events from the watch thread; tests wait on conditions with a deadline.
class EventLog {
 public:
  WatchCallback Callback() {
    return [this](const WatchEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      cv_.notify_all();
    };
  }
  bool WaitFor(const std::function<bool(const std::vector<WatchEvent>&)>& predicate) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, kDeadline, [&] { return predicate(events_); });
  }
  std::vector<WatchEvent> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<WatchEvent> events_;
};

bool Has(const std::vector<WatchEvent>& events, EventType type, const std::string& id) {
  for (const auto& e : events) {
    if (e.type == type && e.resource.metadata.id == id) return true;
  }
  return false;
}

// Waits for a condition on something the watch thread updates (health), with a deadline.
bool Eventually(const std::function<bool()>& predicate) {
  auto until = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < until) {
    if (predicate()) return true;
    std::this_thread::yield();
  }
  return predicate();
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sim::omni::StandInOptions options;
    options.provider_id = "proxmox";
    auto standin = sim::omni::StandIn::Start(options);
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = *std::move(standin);
    auto key = DecodeServiceAccountKey(standin_->provider_key());
    ASSERT_TRUE(key.ok()) << key.status();
    options_.endpoint = standin_->grpc_endpoint();
    options_.key = *key;
    options_.reconnect_base = 10ms;
    options_.reconnect_max = 100ms;
    options_.call_timeout = 10s;
    auto state = MakeGrpcStateClient(options_);
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = *std::move(state);
  }

  Resource MachineState(const std::string& id, const std::string& node) {
    provider::MachineSpec spec;
    spec.set_uuid("uuid-" + id);
    spec.set_node(node);
    spec.set_vmid(101);
    Resource r;
    r.metadata.ns = ProviderNamespace("proxmox");
    r.metadata.type = ProviderMachineType("proxmox");
    r.metadata.id = id;
    r.metadata.labels["app"] = "test";
    r.metadata.annotations[std::string(kAnnotationStep)] = "createVM";
    EncodeSpec(spec, r);
    return r;
  }

  // Omni's controllers create a MachineRequest for a MachineRequestSet of one.
  // The request set is admitted once the provider has published its status; publish one without a
  // schema (these tests are about the client, not the providerdata).
  Resource WaitForMachineRequest() {
    EXPECT_TRUE(standin_->PublishProviderStatusForTest("proxmox").ok());
    EXPECT_TRUE(standin_->ApplyMachineClass("mc", "cores: 2\n").ok());
    EXPECT_TRUE(standin_->ScaleMachineRequestSet("set1", "mc", 1).ok());
    std::vector<Resource> requests;
    EXPECT_TRUE(Eventually([&] {
      auto listed = state_->List({std::string(kNamespaceInfraProvider), std::string(kTypeMachineRequest), {}});
      if (!listed.ok() || listed->empty()) return false;
      requests = *listed;
      return true;
    }));
    return requests.empty() ? Resource{} : requests.front();
  }

  std::unique_ptr<sim::omni::StandIn> standin_;
  ClientOptions options_;
  std::unique_ptr<StateClient> state_;
};

TEST_F(ClientTest, CreateGetUpdateListDestroyPrivateState) {
  std::string owner = ProvisionControllerName("proxmox");
  auto created = state_->Create(MachineState("req-1", "pve1"), owner);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->metadata.version, "1");
  EXPECT_EQ(created->metadata.owner, owner);
  EXPECT_EQ(created->metadata.phase, kPhaseRunning);
  EXPECT_EQ(state_->Create(MachineState("req-1", "pve1"), owner).status().code(), absl::StatusCode::kAlreadyExists);

  auto got = state_->Get(created->pointer());
  ASSERT_TRUE(got.ok()) << got.status();
  provider::MachineSpec spec;
  ASSERT_TRUE(DecodeSpec(*got, spec).ok());
  EXPECT_EQ(spec.node(), "pve1");
  EXPECT_EQ(spec.vmid(), 101);
  EXPECT_EQ(got->yaml_spec, created->yaml_spec);
  EXPECT_NE(got->yaml_spec.find("node: pve1"), std::string::npos) << got->yaml_spec;
  EXPECT_EQ(got->metadata.annotations.at(std::string(kAnnotationStep)), "createVM");

  Resource next = *got;
  spec.set_vm_create_task("UPID:pve1:1");
  EncodeSpec(spec, next);
  auto updated = state_->Update(next, owner);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->metadata.version, "2");
  // A stale version is a conflict; Modify re-reads and retries.
  EXPECT_EQ(state_->Update(next, owner).status().code(), absl::StatusCode::kFailedPrecondition);
  auto modified = state_->Modify(next.pointer(), owner, [](Resource& r) {
    r.metadata.annotations[std::string(kAnnotationStep)] = "startVM";
    return absl::OkStatus();
  });
  ASSERT_TRUE(modified.ok()) << modified.status();
  EXPECT_EQ(modified->metadata.version, "3");
  // Another owner may not write it.
  Resource foreign = *modified;
  EXPECT_EQ(state_->Update(foreign, "someone-else").status().code(), absl::StatusCode::kPermissionDenied);

  ASSERT_TRUE(state_->Create(MachineState("req-2", "pve2"), owner).ok());
  Resource unlabelled = MachineState("req-3", "pve2");
  unlabelled.metadata.labels.clear();
  ASSERT_TRUE(state_->Create(unlabelled, owner).ok());
  auto all = state_->List({ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), {}});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 3u);
  auto labelled =
      state_->List({ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), {LabelTerm::Equal("app", "test")}});
  ASSERT_TRUE(labelled.ok());
  ASSERT_EQ(labelled->size(), 2u);
  EXPECT_EQ((*labelled)[0].metadata.id, "req-1");
  EXPECT_EQ((*labelled)[1].metadata.id, "req-2");

  ASSERT_TRUE(state_->Destroy(modified->pointer(), owner).ok());
  EXPECT_EQ(state_->Get(modified->pointer()).status().code(), absl::StatusCode::kNotFound);
}

// Omni keeps a Create's timestamps (omni-protocol.md section 8): unset ones must not reach it as
// 1970-01-01, and the next Update moves `updated` on while `created` stays.
TEST_F(ClientTest, CreateStampsCreatedAndUpdatedAsTheGoClientDoes) {
  const std::string owner = ProvisionControllerName("proxmox");
  const auto before = std::chrono::system_clock::now() - 1s;
  auto created = state_->Create(MachineState("req-t", "pve1"), owner);
  ASSERT_TRUE(created.ok()) << created.status();
  const auto after = std::chrono::system_clock::now() + 1s;
  auto stored = standin_->state().Get(ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), "req-t");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_GE(stored->created, before);
  EXPECT_LE(stored->created, after);
  EXPECT_EQ(stored->updated, stored->created);
  EXPECT_EQ(created->metadata.created, stored->created);

  // A caller's own timestamps are sent as they are.
  Resource dated = MachineState("req-dated", "pve1");
  dated.metadata.created = dated.metadata.updated = util::Clock::SystemTime{std::chrono::seconds{1'750'000'000}};
  ASSERT_TRUE(state_->Create(dated, owner).ok());
  auto stored_dated = standin_->state().Get(ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), "req-dated");
  ASSERT_TRUE(stored_dated.ok());
  EXPECT_EQ(stored_dated->created, dated.metadata.created);

  auto modified = state_->Modify(created->pointer(), owner, [](Resource& r) {
    r.metadata.annotations["touched"] = "yes";
    return absl::OkStatus();
  });
  ASSERT_TRUE(modified.ok()) << modified.status();
  EXPECT_EQ(modified->metadata.created, stored->created);
  EXPECT_GE(modified->metadata.updated, stored->updated);
}

TEST_F(ClientTest, CreateOrUpdateConverges) {
  std::string owner = ProvisionControllerName("proxmox");
  auto first = state_->CreateOrUpdate(MachineState("req-9", "pve1"), owner);
  ASSERT_TRUE(first.ok()) << first.status();
  auto same = state_->CreateOrUpdate(MachineState("req-9", "pve1"), owner);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->metadata.version, first->metadata.version);  // nothing changed: no write
  auto moved = state_->CreateOrUpdate(MachineState("req-9", "pve2"), owner);
  ASSERT_TRUE(moved.ok());
  EXPECT_NE(moved->metadata.version, first->metadata.version);
}

TEST_F(ClientTest, TeardownAndFinalizersOnOwnResources) {
  std::string owner = ProvisionControllerName("proxmox");
  auto created = state_->Create(MachineState("req-t", "pve1"), owner);
  ASSERT_TRUE(created.ok());
  auto with_finalizer = state_->AddFinalizer(created->pointer(), "test.Finalizer");
  ASSERT_TRUE(with_finalizer.ok()) << with_finalizer.status();
  EXPECT_TRUE(with_finalizer->HasFinalizer("test.Finalizer"));
  EXPECT_EQ(state_->Destroy(created->pointer(), owner).code(), absl::StatusCode::kFailedPrecondition);
  auto ready = state_->Teardown(created->pointer(), owner);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_FALSE(*ready);
  auto torn = state_->Get(created->pointer());
  ASSERT_TRUE(torn.ok());
  EXPECT_TRUE(torn->tearing_down());
  ASSERT_TRUE(state_->RemoveFinalizer(created->pointer(), "test.Finalizer").ok());
  auto again = state_->Teardown(created->pointer(), owner);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);
  EXPECT_TRUE(state_->Destroy(created->pointer(), owner).ok());
}

TEST_F(ClientTest, FinalizerOnlyUpdateOfMachineRequestKeepsEverythingElse) {
  Resource request = WaitForMachineRequest();
  ASSERT_FALSE(request.metadata.id.empty());
  std::string finalizer = ProvisionControllerName("proxmox");
  auto added = state_->AddFinalizer(request.pointer(), finalizer);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_TRUE(added->HasFinalizer(finalizer));
  EXPECT_EQ(added->proto_spec, request.proto_spec);
  EXPECT_EQ(added->metadata.labels, request.metadata.labels);
  EXPECT_EQ(added->metadata.owner, request.metadata.owner);
  specs::MachineRequestSpec spec;
  ASSERT_TRUE(DecodeSpec(*added, spec).ok());
  EXPECT_FALSE(spec.talos_version().empty());
  // Adding twice is a no-op; removing restores the original finalizers.
  auto twice = state_->AddFinalizer(request.pointer(), finalizer);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->metadata.version, added->metadata.version);
  auto removed = state_->RemoveFinalizer(request.pointer(), finalizer);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->metadata.finalizers, request.metadata.finalizers);
  // Omni forbids a provider to change anything else on a MachineRequest.
  Resource edited = *removed;
  edited.metadata.labels["sneaky"] = "1";
  EXPECT_EQ(state_->Update(edited, edited.metadata.owner, std::nullopt).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(ClientTest, WrongOrRevokedKeyIsRefused) {
  auto stranger = GenerateInfraProviderKey("proxmox", std::chrono::hours(24), util::RealClock());
  ASSERT_TRUE(stranger.ok());
  ClientOptions options = options_;
  options.key = stranger->key;
  auto client = MakeGrpcStateClient(options);
  ASSERT_TRUE(client.ok());
  auto got = (*client)->List({std::string(kNamespaceInfraProvider), std::string(kTypeMachineRequest), {}});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnauthenticated) << got.status();
  // The real key works until revoked.
  ASSERT_TRUE(state_->List({std::string(kNamespaceInfraProvider), std::string(kTypeMachineRequest), {}}).ok());
  ASSERT_TRUE(standin_->RevokeKey(standin_->provider_key()).ok());
  EXPECT_EQ(state_->List({std::string(kNamespaceInfraProvider), std::string(kTypeMachineRequest), {}}).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(ClientTest, JoinConfigIsAcceptedByOmni) {
  auto params = FetchConnectionParams(*state_, "proxmox");
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->mode, JoinMode::kV2);
  EXPECT_EQ(params->join_token.Reveal(), standin_->JoinToken("proxmox"));
  Resource request = WaitForMachineRequest();
  auto args = BuildJoinArgs(*params, "proxmox", request.metadata.id, false);
  ASSERT_TRUE(args.ok()) << args.status();
  ASSERT_TRUE(standin_->MachineJoined(args->config, "0d6e4a4c-1111-2222-3333-444455556666").ok());
  auto joined = standin_->JoinedMachines();
  ASSERT_EQ(joined.size(), 1u);
  EXPECT_EQ(joined[0].machine_request, request.metadata.id);
  EXPECT_EQ(joined[0].provider_id, "proxmox");
  // A token for another request ID does not verify against this provider's join token.
  ConnectionParams forged = *params;
  forged.join_token = util::Secret<std::string>("not-the-token");
  auto bad = BuildJoinArgs(forged, "proxmox", request.metadata.id, false);
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(standin_->MachineJoined(bad->config, "0d6e4a4c-1111-2222-3333-777755556666").ok());
}

TEST_F(ClientTest, LegacyJoinParamsWhenOmniPredatesProviderJoinConfig) {
  // An Omni before 1.0 has no ProviderJoinConfig type: the provider must use ConnectionParams (token v1).
  ASSERT_TRUE(standin_->state()
                  .Destroy("meta", std::string(kTypeResourceDefinition), "providerjoinconfigs.omni.sidero.dev", "")
                  .ok());
  auto params = FetchConnectionParams(*state_, "proxmox");
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->mode, JoinMode::kLegacy);
  EXPECT_NE(params->join_token.Reveal(), standin_->JoinToken("proxmox"));
  Resource request = WaitForMachineRequest();
  auto args = BuildJoinArgs(*params, "proxmox", request.metadata.id, false);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_NE(args->api_url.find("jointoken=v1%3A"), std::string::npos) << args->api_url;
  ASSERT_TRUE(standin_->MachineJoined(args->config, "0d6e4a4c-1111-2222-3333-888855556666").ok());
  auto joined = standin_->JoinedMachines();
  ASSERT_EQ(joined.size(), 1u);
  EXPECT_EQ(joined[0].machine_request, request.metadata.id);
}

TEST_F(ClientTest, ProviderStatusAndHeartbeatMakeOmniSeeUsConnected) {
  ProviderInfo info{"proxmox", "Proxmox", "VMs on Proxmox VE", "PHN2Zz48L3N2Zz4", R"({"type":"object"})", "0.1.0"};
  auto published = PublishProviderStatus(*state_, info);
  ASSERT_TRUE(published.ok()) << published.status();
  specs::InfraProviderStatusSpec status;
  ASSERT_TRUE(DecodeSpec(*state_->Get(published->pointer()), status).ok());
  EXPECT_EQ(status.name(), "Proxmox");
  EXPECT_EQ(status.schema(), R"({"type":"object"})");
  ASSERT_TRUE(PublishProviderStatus(*state_, info).ok());  // idempotent on restart

  EXPECT_FALSE(standin_->ProviderConnected("proxmox"));
  auto beat = PublishHeartbeat(*state_, "proxmox", util::RealClock().Now(), "");
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(beat->metadata.owner, HealthControllerName("proxmox"));
  EXPECT_TRUE(standin_->ProviderConnected("proxmox"));
  auto again = PublishHeartbeat(*state_, "proxmox", util::RealClock().Now(), "omni watch: reconnecting");
  ASSERT_TRUE(again.ok()) << again.status();
  specs::InfraProviderHealthStatusSpec health;
  ASSERT_TRUE(DecodeSpec(*again, health).ok());
  EXPECT_EQ(health.error(), "omni watch: reconnecting");
  // Omni allows these only under the provider's own ID.
  EXPECT_FALSE(PublishHeartbeat(*state_, "someone-else", util::RealClock().Now(), "").ok());
}

TEST_F(ClientTest, SchematicAndBootAssetThroughOmni) {
  auto management = MakeGrpcManagementClient(options_);
  ASSERT_TRUE(management.ok()) << management.status();
  auto factory = FetchImageFactoryBaseUrl(*state_);
  ASSERT_TRUE(factory.ok()) << factory.status();
  BootAssetResolver resolver(**management, *factory);
  auto yaml = BuildSchematicYaml({}, {});
  ASSERT_TRUE(yaml.ok());
  auto id = resolver.EnsureSchematic(*yaml, "1.10.4");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_FALSE(id->empty());
  BootAssetRequest request;
  request.schematic_id = *id;
  request.talos_version = "1.10.4";
  auto asset = resolver.Resolve(request);
  ASSERT_TRUE(asset.ok()) << asset.status();
  EXPECT_NE(asset->url.find(*id), std::string::npos) << asset->url;
  EXPECT_NE(asset->url.find("nocloud-amd64.iso"), std::string::npos) << asset->url;
}

TEST_F(ClientTest, WatchDeliversBootstrapThenChangesAndSurvivesRestart) {
  std::string owner = ProvisionControllerName("proxmox");
  ASSERT_TRUE(state_->Create(MachineState("before", "pve1"), owner).ok());
  EventLog log;
  auto watch = state_->Watch({ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), std::nullopt, {}, true},
                             log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(log.WaitFor([](const auto& events) { return Has(events, EventType::kBootstrapped, ""); }));
  auto events = log.events();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].type, EventType::kCreated);
  EXPECT_EQ(events[0].resource.metadata.id, "before");
  EXPECT_TRUE((*watch)->Health().connected);
  EXPECT_TRUE((*watch)->Health().bootstrapped);

  auto during = state_->Create(MachineState("live", "pve1"), owner);
  ASSERT_TRUE(during.ok());
  ASSERT_TRUE(log.WaitFor([](const auto& e) { return Has(e, EventType::kCreated, "live"); }));

  // Omni goes away: the watch reports it and keeps trying; calls fail with Unavailable.
  standin_->StopServing();
  ASSERT_TRUE(Eventually([&] { return !(*watch)->Health().connected; }));
  EXPECT_FALSE((*watch)->Health().last_error.empty());
  EXPECT_EQ(state_->Get(during->pointer()).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(standin_->ResumeServing().ok());
  ASSERT_TRUE(Eventually([&] { return (*watch)->Health().connected; }));
  EXPECT_GE((*watch)->Health().reconnects, 1);

  ASSERT_TRUE(state_->Create(MachineState("after", "pve2"), owner).ok());
  ASSERT_TRUE(state_->Destroy(during->pointer(), owner).ok());
  ASSERT_TRUE(log.WaitFor(
      [](const auto& e) { return Has(e, EventType::kCreated, "after") && Has(e, EventType::kDestroyed, "live"); }));
  // Resumed from the bookmark: nothing was replayed.
  int created_before = 0;
  for (const auto& e : log.events())
    created_before += e.type == EventType::kCreated && e.resource.metadata.id == "before";
  EXPECT_EQ(created_before, 1);
}

TEST_F(ClientTest, SingleResourceWatchSeesItsChanges) {
  std::string owner = ProvisionControllerName("proxmox");
  EventLog log;
  auto watch = state_->Watch(
      {ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), std::string("one"), {}, true}, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(Eventually([&] { return (*watch)->Health().connected; }));
  auto created = state_->Create(MachineState("one", "pve1"), owner);
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(state_->Create(MachineState("two", "pve1"), owner).ok());
  ASSERT_TRUE(state_
                  ->Modify(created->pointer(), owner,
                           [](Resource& r) {
                             r.metadata.annotations[std::string(kAnnotationStep)] = "startVM";
                             return absl::OkStatus();
                           })
                  .ok());
  ASSERT_TRUE(log.WaitFor([](const auto& e) { return Has(e, EventType::kUpdated, "one"); }));
  for (const auto& e : log.events()) {
    EXPECT_NE(e.resource.metadata.id, "two");
    EXPECT_NE(e.type, EventType::kErrored) << e.error;
  }
  EXPECT_EQ((*watch)->Health().reconnects, 0) << (*watch)->Health().last_error;
}

TEST_F(ClientTest, MachineRequestWatchFollowsTheRequestSet) {
  EventLog log;
  auto watch = state_->Watch({std::string(kNamespaceInfraProvider),
                              std::string(kTypeMachineRequest),
                              std::nullopt,
                              {LabelTerm::Exists(std::string(kLabelMachineRequestSet))},
                              true},
                             log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(log.WaitFor([](const auto& e) { return Has(e, EventType::kBootstrapped, ""); }));
  ASSERT_TRUE(standin_->PublishProviderStatusForTest("proxmox").ok());
  ASSERT_TRUE(standin_->ApplyMachineClass("mc", "cores: 2\n").ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("set1", "mc", 2).ok());
  auto created = [](const std::vector<WatchEvent>& events) {
    std::set<std::string> ids;
    for (const auto& e : events) {
      if (e.type == EventType::kCreated) ids.insert(e.resource.metadata.id);
    }
    return ids;
  };
  ASSERT_TRUE(log.WaitFor([&](const auto& e) { return created(e).size() == 2; }));
  for (const auto& id : created(log.events())) {
    EXPECT_EQ(id.rfind("set1-", 0), 0u) << id;
    auto request = state_->Get({std::string(kNamespaceInfraProvider), std::string(kTypeMachineRequest), id});
    ASSERT_TRUE(request.ok()) << request.status();
    EXPECT_EQ(request->metadata.labels.at(std::string(kLabelInfraProviderId)), "proxmox");
    ASSERT_TRUE(state_->AddFinalizer(request->pointer(), ProvisionControllerName("proxmox")).ok());
  }
  // Scaling down tears the requests down; our finalizer keeps them until we let go.
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("set1", "mc", 0).ok());
  auto tearing = [](const std::vector<WatchEvent>& events) {
    std::set<std::string> ids;
    for (const auto& e : events) {
      if (e.type == EventType::kUpdated && e.resource.tearing_down()) ids.insert(e.resource.metadata.id);
    }
    return ids;
  };
  ASSERT_TRUE(log.WaitFor([&](const auto& e) { return tearing(e).size() == 2; }));
  for (const auto& id : tearing(log.events())) {
    ASSERT_TRUE(state_
                    ->RemoveFinalizer({std::string(kNamespaceInfraProvider), std::string(kTypeMachineRequest), id},
                                      ProvisionControllerName("proxmox"))
                    .ok());
  }
  ASSERT_TRUE(log.WaitFor([&](const auto& e) {
    int destroyed = 0;
    for (const auto& event : e) destroyed += event.type == EventType::kDestroyed;
    return destroyed == 2;
  }));
}

}  // namespace
}  // namespace omni_proxmox::omni

namespace omni_proxmox::omni {
namespace {

using testing::SwitchGate;

// With the gate closed, no write reaches Omni (the stand-in accepts no signed Create or Update);
// reads and watches go on.
TEST_F(ClientTest, AClosedMutationGateSendsNoWrite) {
  SwitchGate gate;
  ClientOptions options = options_;
  options.mutation_gate = &gate;
  options.replica = "host-a_1_aaaaaaaa";
  auto state = MakeGrpcStateClient(options);
  ASSERT_TRUE(state.ok()) << state.status();
  gate.open = false;
  const std::string owner = ProvisionControllerName("proxmox");
  const auto before = standin_->SignedCalls();
  auto refused = (*state)->Create(MachineState("req-f", "pve1"), owner);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("this replica is a standby"));
  auto after = standin_->SignedCalls();
  EXPECT_EQ(after["/cosi.resource.State/Create"],
            before.count("/cosi.resource.State/Create") ? before.at("/cosi.resource.State/Create") : 0u);
  EXPECT_TRUE((*state)->List({ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), {}}).ok());
  gate.open = true;
  EXPECT_TRUE((*state)->Create(MachineState("req-f", "pve1"), owner).ok());
}

}  // namespace
}  // namespace omni_proxmox::omni

namespace omni_proxmox::omni {
namespace {

// Issue 15 item 2: after an Omni restart, a watch waiting out its backoff reconnects as soon as
// another call is answered (the heartbeat, in the provider), not when its delay runs out.
TEST_F(ClientTest, AWaitingWatchReconnectsAsSoonAsAnotherCallIsAnswered) {
  ClientOptions options = options_;
  options.reconnect_base = 30s;  // every delay 15-30 s: only the re-arm can bring it back sooner
  options.reconnect_max = 30s;
  auto client = MakeGrpcStateClient(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EventLog log;
  auto watch = (*client)->Watch({ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), std::nullopt, {}, true},
                                log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(Eventually([&] { return (*watch)->Health().connected; }));
  standin_->StopServing();
  ASSERT_TRUE(Eventually([&] { return !(*watch)->Health().connected; }));
  ASSERT_TRUE(standin_->ResumeServing().ok());
  // Nothing reconnects the watch by itself for at least 15 s; one answered call does at once.
  const auto answered = std::chrono::steady_clock::now();
  ASSERT_TRUE((*client)->List({ProviderNamespace("proxmox"), ProviderMachineType("proxmox"), {}}).ok());
  ASSERT_TRUE(Eventually([&] { return (*watch)->Health().connected; }));
  EXPECT_LT(std::chrono::steady_clock::now() - answered, 10s);
  EXPECT_EQ((*watch)->Health().reconnects, 1);
}

// Issue 15 items 1 and 8: a refusal names the endpoint and the key; a rejected key is counted.
TEST_F(ClientTest, ARefusedKeyIsNamedAndCounted) {
  ClientOptions options = options_;
  options.monitor = std::make_shared<CallMonitor>();
  auto client = MakeGrpcStateClient(options);
  ASSERT_TRUE(client.ok());
  const ListRequest requests{std::string(kNamespaceInfraProvider), std::string(kTypeMachineRequest), {}};
  ASSERT_TRUE((*client)->List(requests).ok());
  EXPECT_TRUE(options.monitor->ever_accepted());
  EXPECT_EQ(options.monitor->auth_failures(), 0u);
  ASSERT_TRUE(standin_->DestroyServiceAccount("infra-provider:proxmox").ok());
  auto refused = (*client)->List(requests);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr(fmt::format("invalid signature (Omni at {} does not accept the key "
                                               "'infra-provider:proxmox', fingerprint ",
                                               standin_->grpc_endpoint())));
  EXPECT_EQ(options.monitor->auth_failures(), 1u);
}

}  // namespace
}  // namespace omni_proxmox::omni
