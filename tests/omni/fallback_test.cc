// SPDX-License-Identifier: Apache-2.0
// Version-skew fallbacks and watch recovery against small in-test gRPC servers. These play servers
// the stand-in deliberately does not imitate: an Omni without the Teardown / management RPCs, and a
// server that loses bookmarks between reconnects.
#include <httplib.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "cosi/state.grpc.pb.h"
#include "omni/encoding.h"
#include "omni/keys.h"
#include "omni/management_client.h"
#include "omni/schematic.h"
#include "omni/signer.h"
#include "omni/state_client.h"
#include "support/subprocess.h"

namespace omni_proxmox::omni {
namespace {

using namespace std::chrono_literals;
namespace pb = cosi::resource;

// The metadata of one call as the server saw it.
struct SeenCall {
  std::string method;
  std::multimap<std::string, std::string> metadata;
};

std::string One(const SeenCall& call, const std::string& key) {
  auto range = call.metadata.equal_range(key);
  if (range.first == range.second) return "<absent>";
  return range.first->second;
}

pb::Resource MakeResource(const std::string& id, int version, const std::string& phase = "running") {
  pb::Resource r;
  auto* md = r.mutable_metadata();
  md->set_namespace_("ns");
  md->set_type("T");
  md->set_id(id);
  md->set_version(std::to_string(version));
  md->set_phase(phase);
  md->set_owner("me");
  r.mutable_spec()->set_proto_spec("spec-" + id);
  return r;
}

// Serves Get/Update over one resource and a scripted Watch; every other method is Unimplemented, as on
// an Omni older than 1.8.
class OldState final : public pb::State::Service {
 public:
  grpc::Status Get(grpc::ServerContext* context, const pb::GetRequest* request, pb::GetResponse* response) override {
    std::lock_guard lock(mutex_);
    Record(context, "/cosi.resource.State/Get");
    if (request->id() != stored_.metadata().id()) return {grpc::StatusCode::NOT_FOUND, "not found"};
    *response->mutable_resource() = stored_;
    return grpc::Status::OK;
  }

  grpc::Status Update(grpc::ServerContext* context, const pb::UpdateRequest* request,
                      pb::UpdateResponse* response) override {
    std::lock_guard lock(mutex_);
    Record(context, "/cosi.resource.State/Update");
    last_update_ = *request;
    if (throttle_updates_ > 0) {
      --throttle_updates_;
      return {grpc::StatusCode::DEADLINE_EXCEEDED, "rate limited"};
    }
    if (request->new_resource().metadata().version() != stored_.metadata().version()) {
      return {grpc::StatusCode::FAILED_PRECONDITION, "version conflict"};
    }
    stored_ = request->new_resource();
    stored_.mutable_metadata()->set_version(std::to_string(std::stoi(stored_.metadata().version()) + 1));
    *response->mutable_resource() = stored_;
    return grpc::Status::OK;
  }

  // Open 1: bootstrap a+b, then fail. Open 2 (resume): "invalid bookmark". Open 3 (resync): only a is
  // left; then stay open until the client goes away.
  grpc::Status Watch(grpc::ServerContext* context, const pb::WatchRequest* request,
                     grpc::ServerWriter<pb::WatchResponse>* writer) override {
    int open;
    {
      std::lock_guard lock(mutex_);
      Record(context, "/cosi.resource.State/Watch");
      watch_requests_.push_back(*request);
      open = static_cast<int>(watch_requests_.size());
    }
    writer->Write(pb::WatchResponse());  // "established"
    auto event = [](pb::WatchResponse& response, pb::EventType type, const std::string& id,
                    const std::string& bookmark) {
      auto* e = response.add_event();
      e->set_event_type(type);
      *e->mutable_resource() = MakeResource(id, 1);
      if (type == pb::BOOTSTRAPPED) e->mutable_resource()->mutable_metadata()->clear_id();
      e->set_bookmark(bookmark);
    };
    if (open == 1) {
      pb::WatchResponse response;
      event(response, pb::CREATED, "a", "b1");
      event(response, pb::CREATED, "b", "b2");
      event(response, pb::BOOTSTRAPPED, "", "b3");
      writer->Write(response);
      return {grpc::StatusCode::UNAVAILABLE, "server going away"};
    }
    if (open == 2) return {grpc::StatusCode::FAILED_PRECONDITION, "invalid bookmark"};
    pb::WatchResponse response;
    event(response, pb::CREATED, "a", "c1");
    event(response, pb::BOOTSTRAPPED, "", "c2");
    writer->Write(response);
    while (!context->IsCancelled()) {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, 5ms);
    }
    return grpc::Status::CANCELLED;
  }

  std::vector<SeenCall> calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::vector<pb::WatchRequest> watch_requests() {
    std::lock_guard lock(mutex_);
    return watch_requests_;
  }
  pb::UpdateRequest last_update() {
    std::lock_guard lock(mutex_);
    return last_update_;
  }
  void ThrottleUpdates(int n) {
    std::lock_guard lock(mutex_);
    throttle_updates_ = n;
  }
  void Store(pb::Resource r) {
    std::lock_guard lock(mutex_);
    stored_ = std::move(r);
  }

 private:
  void Record(grpc::ServerContext* context, std::string method) {
    SeenCall call{std::move(method), {}};
    for (const auto& [k, v] : context->client_metadata()) {
      call.metadata.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
    }
    calls_.push_back(std::move(call));
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  pb::Resource stored_;
  int throttle_updates_ = 0;
  pb::UpdateRequest last_update_;
  std::vector<SeenCall> calls_;
  std::vector<pb::WatchRequest> watch_requests_;
};

class FallbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto key = GenerateInfraProviderKey("px", std::chrono::hours(24), util::RealClock());
    ASSERT_TRUE(key.ok());
    options_.endpoint = fmt::format("http://127.0.0.1:{}/ignored/path", port_);
    options_.key = key->key;
    options_.reconnect_base = 5ms;
    options_.reconnect_max = 50ms;
    auto client = MakeGrpcStateClient(options_);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  void TearDown() override {
    client_.reset();
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }

  OldState service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  ClientOptions options_;
  std::unique_ptr<StateClient> client_;
};

TEST_F(FallbackTest, EveryCallIsSignedAndCarriesProviderId) {
  service_.Store(MakeResource("x", 3));
  ASSERT_TRUE(client_->Get({"ns", "T", "x"}).ok());
  auto calls = service_.calls();
  ASSERT_EQ(calls.size(), 1u);
  const SeenCall& call = calls[0];
  EXPECT_EQ(One(call, "providerid"), "px");
  EXPECT_EQ(call.metadata.count("runtime"), 0u);  // would route to the Talos proxy
  std::string timestamp = One(call, "x-sidero-timestamp");
  EXPECT_EQ(One(call, "x-sidero-payload"),
            BuildSignaturePayload("/cosi.resource.State/Get", {{"x-sidero-timestamp", timestamp}}));
  std::string header = One(call, "x-sidero-signature");
  EXPECT_EQ(header.rfind("siderov1 infra-provider:px ", 0), 0u) << header;
  EXPECT_EQ(std::count(header.begin(), header.end(), ' '), 3);
}

TEST_F(FallbackTest, TeardownFallsBackToGetAndUpdate) {
  pb::Resource r = MakeResource("x", 3);
  r.mutable_metadata()->add_finalizers("other.Controller");
  service_.Store(r);
  auto ready = client_->Teardown({"ns", "T", "x"}, "me");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_FALSE(*ready);  // a finalizer is still there
  pb::UpdateRequest update = service_.last_update();
  EXPECT_EQ(update.new_resource().metadata().phase(), "tearingDown");
  EXPECT_EQ(update.new_resource().metadata().version(), "3");
  EXPECT_EQ(update.new_resource().metadata().owner(), "me");
  EXPECT_EQ(update.options().owner(), "me");
  ASSERT_TRUE(update.options().has_expected_phase());
  EXPECT_EQ(update.options().expected_phase(), "running");
  EXPECT_EQ(update.new_resource().spec().proto_spec(), "spec-x");
  // Already tearing down: no second update; the Teardown RPC is not retried either.
  auto again = client_->Teardown({"ns", "T", "x"}, "me");
  ASSERT_TRUE(again.ok());
  int updates = 0;
  for (const auto& call : service_.calls()) updates += call.method == "/cosi.resource.State/Update";
  EXPECT_EQ(updates, 1);
}

TEST_F(FallbackTest, FinalizerUpdateSendsNoExpectedPhaseAndOwnerFromResource) {
  service_.Store(MakeResource("x", 7, "tearingDown"));
  auto updated = client_->AddFinalizer({"ns", "T", "x"}, "px.ProvisionController");
  ASSERT_TRUE(updated.ok()) << updated.status();
  pb::UpdateRequest update = service_.last_update();
  EXPECT_FALSE(update.options().has_expected_phase());
  EXPECT_EQ(update.options().owner(), "me");
  EXPECT_EQ(update.new_resource().metadata().phase(), "tearingDown");
  EXPECT_EQ(update.new_resource().metadata().finalizers_size(), 1);
  EXPECT_EQ(updated->metadata.version, "8");
}

TEST_F(FallbackTest, ThrottledWritesAreRetriedFromAFreshRead) {
  service_.Store(MakeResource("x", 2));
  service_.ThrottleUpdates(2);
  auto modified = client_->Modify({"ns", "T", "x"}, "me", [](Resource& r) {
    r.metadata.labels["k"] = "v";
    return absl::OkStatus();
  });
  ASSERT_TRUE(modified.ok()) << modified.status();
  EXPECT_EQ(modified->metadata.version, "3");
  EXPECT_EQ(modified->metadata.labels.at("k"), "v");
  // A plain Update is not retried: the caller sees the throttling.
  service_.ThrottleUpdates(1);
  Resource stale = *modified;
  EXPECT_EQ(client_->Update(stale, "me").status().code(), absl::StatusCode::kDeadlineExceeded);
  // Never more than conflict_attempts tries.
  service_.ThrottleUpdates(1000);
  auto gave_up = client_->Modify({"ns", "T", "x"}, "me", [](Resource&) { return absl::OkStatus(); });
  EXPECT_EQ(gave_up.status().code(), absl::StatusCode::kAborted);
}

TEST_F(FallbackTest, WatchResyncsWhenTheBookmarkIsRejected) {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<WatchEvent> events;
  auto watch = client_->Watch({"ns", "T", std::nullopt, {LabelTerm::Equal("k", "v")}, true}, [&](const WatchEvent& e) {
    std::lock_guard lock(mutex);
    events.push_back(e);
    cv.notify_all();
  });
  ASSERT_TRUE(watch.ok());
  auto count = [&](EventType type, const std::string& id) {
    int n = 0;
    for (const auto& e : events) n += e.type == type && e.resource.metadata.id == id;
    return n;
  };
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(cv.wait_for(lock, 20s, [&] { return count(EventType::kBootstrapped, "") == 2; }));
    EXPECT_EQ(count(EventType::kCreated, "a"), 1);
    EXPECT_EQ(count(EventType::kCreated, "b"), 1);
    EXPECT_EQ(count(EventType::kUpdated, "a"), 1);    // replayed during the resync
    EXPECT_EQ(count(EventType::kDestroyed, "b"), 1);  // vanished while we were away
  }
  auto requests = service_.watch_requests();
  ASSERT_GE(requests.size(), 3u);
  EXPECT_EQ(requests[0].api_version(), 1);
  EXPECT_TRUE(requests[0].options().bootstrap_contents());
  EXPECT_TRUE(requests[0].options().aggregated());
  ASSERT_EQ(requests[0].options().label_query_size(), 1);
  EXPECT_EQ(requests[0].options().label_query(0).terms(0).key(), "k");
  EXPECT_FALSE(requests[1].options().bootstrap_contents());
  EXPECT_EQ(requests[1].options().start_from_bookmark(), "b3");
  EXPECT_TRUE(requests[2].options().bootstrap_contents());
  EXPECT_FALSE(requests[2].options().has_start_from_bookmark());
  auto health = (*watch)->Health();
  EXPECT_EQ(health.resyncs, 1);
  EXPECT_EQ(health.reconnects, 2);
  // Each stream open was signed afresh.
  int signed_opens = 0;
  for (const auto& call : service_.calls()) {
    signed_opens += call.method == "/cosi.resource.State/Watch" && call.metadata.count("x-sidero-signature") == 1;
  }
  EXPECT_EQ(signed_opens, static_cast<int>(requests.size()));
}

TEST(ManagementFallback, FactoryAndUrlPatternWhenOmniLacksTheRpcs) {
  // A server with only the State service: every management call is Unimplemented.
  OldState state;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&state);
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  httplib::Server factory;
  std::mutex mutex;
  std::string received_body, received_type;
  factory.Post("/schematics", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex);
    received_body = req.body;
    received_type = req.get_header_value("Content-Type");
    if (req.body.find("bad") != std::string::npos) {
      res.status = 400;
      res.set_content("invalid schematic: bad", "text/plain");
      return;
    }
    res.set_content(fmt::format(R"({{"id":"{}"}})", Sha256Hex(req.body)), "application/json");
  });
  int factory_port = factory.bind_to_any_port("127.0.0.1");
  std::thread factory_thread([&] { factory.listen_after_bind(); });

  auto key = GenerateInfraProviderKey("px", std::chrono::hours(24), util::RealClock());
  ASSERT_TRUE(key.ok());
  ClientOptions options;
  options.endpoint = fmt::format("grpc://127.0.0.1:{}", port);
  options.key = key->key;
  auto management = MakeGrpcManagementClient(options);
  ASSERT_TRUE(management.ok());
  std::string factory_url = fmt::format("http://127.0.0.1:{}/", factory_port);
  BootAssetResolver resolver(**management, factory_url);
  std::string yaml = *BuildSchematicYaml({}, {});
  auto id = resolver.EnsureSchematic(yaml, "1.10.4");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, Sha256Hex(yaml));
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(received_body, yaml);
    EXPECT_EQ(received_type, "application/yaml");
  }
  auto rejected = resolver.EnsureSchematic("bad: yes\n", "1.10.4");
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(rejected.status().message()).find("invalid schematic: bad"), std::string::npos);

  BootAssetRequest request;
  request.schematic_id = *id;
  request.talos_version = "1.10.4";
  auto asset = resolver.Resolve(request);
  ASSERT_TRUE(asset.ok()) << asset.status();
  EXPECT_EQ(asset->url, fmt::format("http://127.0.0.1:{}/image/{}/v1.10.4/nocloud-amd64.iso", factory_port, *id));
  EXPECT_EQ(asset->storage_key, Sha256Hex(asset->url));
  EXPECT_TRUE(asset->headers.empty());

  factory.stop();
  factory_thread.join();
  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

TEST(ClientOptionsValidation, BadEndpointAndKeyFailUpFront) {
  auto key = GenerateInfraProviderKey("px", std::chrono::hours(24), util::RealClock());
  ASSERT_TRUE(key.ok());
  ClientOptions options;
  options.key = key->key;
  options.endpoint = "omni.example.com:443";
  EXPECT_EQ(MakeGrpcStateClient(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.endpoint = "https://omni.example.com";
  EXPECT_TRUE(MakeGrpcStateClient(options).ok());  // lazy: nothing dialled yet
  options.key.name = "automation";
  auto refused = MakeGrpcStateClient(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("infra-provider:"), std::string::npos);
}

}  // namespace
}  // namespace omni_proxmox::omni

namespace omni_proxmox::omni {
namespace {

// https endpoints: TLS with the given roots, refusal of an unknown issuer, and --insecure-skip-verify.
TEST(Tls, VerifiesTheServerUnlessToldNotTo) {
  char tmpl[] = "/tmp/optlsXXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto made = omni_proxmox::testing::RunProcess({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                                                 "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                                                 dir + "/key.pem", "-out", dir + "/cert.pem"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  std::string cert = read(dir + "/cert.pem");
  std::string key_pem = read(dir + "/key.pem");
  std::filesystem::remove_all(dir);

  OldState service;
  service.Store(MakeResource("x", 1));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key_pem, cert});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  auto key = GenerateInfraProviderKey("px", std::chrono::hours(24), util::RealClock());
  ASSERT_TRUE(key.ok());
  ClientOptions options;
  // An IP literal: no DNS lookup, and the certificate is checked against its IP SAN.
  options.endpoint = fmt::format("https://127.0.0.1:{}", port);
  options.key = key->key;
  options.call_timeout = 5s;
  options.reconnect_base = 10ms;
  options.reconnect_max = 100ms;

  options.tls_root_certs_pem = cert;
  auto trusted = MakeGrpcStateClient(options);
  ASSERT_TRUE(trusted.ok());
  EXPECT_TRUE((*trusted)->Get({"ns", "T", "x"}).ok());

  options.tls_root_certs_pem.clear();  // system roots do not know our self-signed issuer
  auto untrusted = MakeGrpcStateClient(options);
  ASSERT_TRUE(untrusted.ok());
  EXPECT_EQ((*untrusted)->Get({"ns", "T", "x"}).status().code(), absl::StatusCode::kUnavailable);

  options.insecure_skip_verify = true;
  auto skipping = MakeGrpcStateClient(options);
  ASSERT_TRUE(skipping.ok());
  EXPECT_TRUE((*skipping)->Get({"ns", "T", "x"}).ok());

  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

}  // namespace
}  // namespace omni_proxmox::omni
