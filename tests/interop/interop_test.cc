// SPDX-License-Identifier: Apache-2.0
// The interop suite (issue #6): the reference Go implementations against our code, over loopback.
//  1. ReferenceServer: our C++ StateClient against cosi-project/runtime's in-memory state served over
//     gRPC, where go-api-signature verifies every call's signature (and refuses tampered ones).
//  2. StandIn: cosi-project/runtime's Go client, signing with go-api-signature, runs one script against our
//     Omni stand-in and against the reference server; both outcomes must be identical. With Omni's typed
//     resources (siderolabs/omni/client) it then meets the infra-provider rules only the stand-in has.
//  3. Keys: a key made by our stand-in is accepted by go-api-signature, and one made by go-api-signature
//     is accepted by our client.
// The Go side is tests/interop/go (one program, `interop-go`), built by the ctest fixture interop.go_build.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cosi/state.grpc.pb.h"
#include "omni/encoding.h"
#include "omni/keys.h"
#include "omni/signer.h"
#include "omni/signing.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "sim/omni/standin.h"
#include "support/subprocess.h"

namespace omni_proxmox::interop {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using omni::EventType;
using omni::LabelTerm;
using omni::Resource;
using omni::ResourcePointer;

// Generous: the machine has 2 shared cores and the tests run in parallel.
constexpr auto kDeadline = 60s;
constexpr char kProviderId[] = "proxmox";
constexpr char kNamespace[] = "infra-provider:proxmox";
constexpr char kType[] = "Machines.proxmox.infraprovider.sidero.dev";
constexpr char kOwner[] = "proxmox.ProvisionController";

// The Go program, or empty when CMake found no suitable Go (the tests then skip).
std::string GoBinary() { return OP_INTEROP_GO_BINARY; }

#define REQUIRE_GO()                                                                                     \
  do {                                                                                                   \
    if (GoBinary().empty()) GTEST_SKIP() << "Go >= 1.26.2 not found at configure time: interop skipped"; \
    ASSERT_TRUE(std::filesystem::exists(GoBinary()))                                                     \
        << GoBinary() << " is missing: run the suite with `ctest -R interop`, whose fixture builds it";  \
  } while (false)

// A per-test directory (tests run in parallel processes), removed with everything in it at the end.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    std::string pattern = (std::filesystem::path(::testing::TempDir()) / "op-interop-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~ScopedTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

bool Eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = kDeadline) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (predicate()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return predicate();
}

// Runs `interop-go <args>` to completion; its stdout is one JSON document.
json RunGo(const std::vector<std::string>& args) {
  std::vector<std::string> argv{GoBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = testing::RunProcess(argv, "", {}, std::chrono::seconds{120});
  EXPECT_EQ(result.exit_code, 0) << "interop-go " << args.front() << " failed:\n" << result.err << result.out;
  if (result.exit_code != 0) return json::object();
  return json::parse(result.out, nullptr, /*allow_exceptions=*/false);
}

// `interop-go serve`: cosi-project/runtime's in-memory state over gRPC on 127.0.0.1, verifying every call
// with go-api-signature against the trusted keys. It reports each call on stdout as a JSON line.
class ReferenceServer {
 public:
  // `trust` are flags: --trust-public-key FILE / --trust-key FILE.
  static std::unique_ptr<ReferenceServer> Start(const std::filesystem::path& dir,
                                                const std::vector<std::string>& trust) {
    std::vector<std::string> argv{GoBinary(), "serve"};
    argv.insert(argv.end(), trust.begin(), trust.end());
    auto server = std::unique_ptr<ReferenceServer>(new ReferenceServer);
    server->process_ = std::make_unique<testing::ChildProcess>(argv, std::vector<std::string>{},
                                                               (dir / "reference-server.log").string());
    bool listening = Eventually([&] {
      for (const auto& line : server->Lines()) {
        if (line.value("event", "") == "listening") {
          server->port_ = line.value("port", 0);
          return true;
        }
      }
      return false;
    });
    EXPECT_TRUE(listening) << "reference server did not start:\n" << server->process_->Log();
    return listening ? std::move(server) : nullptr;
  }

  ~ReferenceServer() {
    process_->Signal(SIGTERM);
    process_->Wait(std::chrono::seconds{10});
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  // Every JSON line printed so far.
  std::vector<json> Lines() const {
    std::vector<json> lines;
    std::istringstream log(process_->Log());
    for (std::string line; std::getline(log, line);) {
      if (line.empty() || line.front() != '{') continue;
      auto parsed = json::parse(line, nullptr, false);
      if (!parsed.is_discarded()) lines.push_back(std::move(parsed));
    }
    return lines;
  }
  std::vector<json> Lines(const std::string& event) const {
    std::vector<json> selected;
    for (auto& line : Lines()) {
      if (line.value("event", "") == event) selected.push_back(std::move(line));
    }
    return selected;
  }
  std::string Log() const { return process_->Log(); }

  // Breaks every open Watch stream with UNAVAILABLE, as a lost connection would; returns how many.
  int DropWatches() {
    const size_t before = Lines("dropped").size();
    process_->Signal(SIGUSR1);
    int count = -1;
    Eventually([&] {
      auto dropped = Lines("dropped");
      if (dropped.size() <= before) return false;
      count = dropped.back().value("count", -1);
      return true;
    });
    return count;
  }

 private:
  ReferenceServer() = default;
  std::unique_ptr<testing::ChildProcess> process_;
  int port_ = 0;
};

Resource MakeResource(const std::string& id, std::map<std::string, std::string> labels, const std::string& spec) {
  Resource resource;
  resource.metadata.ns = kNamespace;
  resource.metadata.type = kType;
  resource.metadata.id = id;
  resource.metadata.labels = std::move(labels);
  resource.proto_spec = spec;
  resource.yaml_spec = "value: " + spec + "\n";
  return resource;
}

ResourcePointer Pointer(const std::string& id) { return {kNamespace, kType, id}; }

std::vector<std::string> Ids(const std::vector<Resource>& resources) {
  std::vector<std::string> ids;
  for (const auto& r : resources) ids.push_back(r.metadata.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

// Collects watch events from the watch thread.
class EventLog {
 public:
  omni::WatchCallback Callback() {
    return [this](const omni::WatchEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(Render(event));
    };
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  size_t size() const { return events().size(); }
  // "created a@1 running", "bootstrapped", ...
  static std::string Render(const omni::WatchEvent& event) {
    const auto& md = event.resource.metadata;
    auto describe = [&](const char* type) { return fmt::format("{} {}@{} {}", type, md.id, md.version, md.phase); };
    switch (event.type) {
      case EventType::kCreated:
        return describe("created");
      case EventType::kUpdated:
        return describe("updated");
      case EventType::kDestroyed:
        return describe("destroyed");
      case EventType::kBootstrapped:
        return "bootstrapped";
      case EventType::kErrored:
        return "errored: " + event.error;
    }
    return "unknown";
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> events_;
};

// --- Scenario 1: our client against the reference COSI state server ---------------------------------------

class ReferenceServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_GO();
    auto key = omni::GenerateInfraProviderKey(kProviderId, std::chrono::hours(24 * 365), util::RealClock());
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = *std::move(key);
    // The server trusts only our public key, as Omni does after `omnictl infraprovider create`.
    WriteFile(dir_ / "provider.pub", key_.armored_public_key);
    server_ = ReferenceServer::Start(dir_.path(), {"--trust-public-key", (dir_ / "provider.pub").string()});
    ASSERT_NE(server_, nullptr);
    options_.endpoint = server_->endpoint();
    options_.key = key_.key;
    options_.reconnect_base = 2s;  // long enough that the test's writes land while a dropped watch is away
    options_.reconnect_max = 4s;
    auto client = omni::MakeGrpcStateClient(options_);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  void TearDown() override {
    if (!server_) return;
    // Every call our client made was verified by go-api-signature, as our key's identity.
    EXPECT_TRUE(server_->Lines("refused").empty()) << server_->Log();
    for (const auto& call : server_->Lines("call")) {
      EXPECT_EQ(call.value("identity", ""), "infra-provider:proxmox");
      EXPECT_EQ(call.value("fingerprint", ""), key_.fingerprint);
      EXPECT_EQ(call["providerid"], json::array({"proxmox"}));
    }
  }

  absl::StatusOr<Resource> Create(const std::string& id, std::map<std::string, std::string> labels,
                                  const std::string& spec) {
    return client_->Create(MakeResource(id, std::move(labels), spec), kOwner);
  }

  ScopedTempDir dir_;  // declared first: outlives the server writing its log there
  omni::GeneratedKey key_;
  std::unique_ptr<ReferenceServer> server_;
  omni::ClientOptions options_;
  std::unique_ptr<omni::StateClient> client_;
};

TEST_F(ReferenceServerTest, CreateUpdateConflictsAndLabelQueries) {
  auto a = Create("a", {{"env", "prod"}, {"tier", "web"}, {"rank", "10"}}, "spec-a1");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->metadata.version, "1");
  EXPECT_EQ(a->metadata.owner, kOwner);
  EXPECT_EQ(a->metadata.phase, omni::kPhaseRunning);
  ASSERT_TRUE(Create("b", {{"env", "dev"}, {"rank", "9"}}, "spec-b1").ok());
  ASSERT_TRUE(Create("c", {{"env", "prod"}, {"tier", "db"}, {"rank", "2"}}, "spec-c1").ok());
  EXPECT_EQ(Create("a", {}, "again").status().code(), absl::StatusCode::kAlreadyExists);

  auto read = client_->Get(Pointer("a"));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->proto_spec, "spec-a1");  // opaque spec bytes round-trip through the reference server
  EXPECT_EQ(read->metadata.labels.at("tier"), "web");
  EXPECT_EQ(client_->Get(Pointer("missing")).status().code(), absl::StatusCode::kNotFound);

  Resource stale = *read;
  read->proto_spec = "spec-a2";
  auto updated = client_->Update(*read, kOwner);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->metadata.version, "2");
  stale.proto_spec = "spec-a3";
  EXPECT_EQ(client_->Update(stale, kOwner).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(omni::IsRetryableWrite(client_->Update(stale, kOwner).status()));
  updated->metadata.owner = "someone.else";
  EXPECT_EQ(client_->Update(*updated, "someone.else").status().code(), absl::StatusCode::kPermissionDenied);

  // Read-modify-write retries the conflict a concurrent writer causes.
  int attempts = 0;
  auto modified = client_->Modify(Pointer("a"), kOwner, [&](Resource& r) {
    if (++attempts == 1) {
      Resource racing = r;
      racing.proto_spec = "written-by-someone-else";
      EXPECT_TRUE(client_->Update(racing, kOwner).ok());
    }
    r.metadata.annotations["infra.omni.sidero.dev/step"] = "interop";
    return absl::OkStatus();
  });
  ASSERT_TRUE(modified.ok()) << modified.status();
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(modified->metadata.version, "4");
  EXPECT_EQ(modified->metadata.annotations.at("infra.omni.sidero.dev/step"), "interop");

  auto list = [&](omni::LabelQuery query) {
    auto items = client_->List({kNamespace, kType, std::move(query)});
    EXPECT_TRUE(items.ok()) << items.status();
    return items.ok() ? Ids(*items) : std::vector<std::string>{};
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(list({}), (V{"a", "b", "c"}));
  EXPECT_EQ(list({LabelTerm::Equal("env", "prod")}), (V{"a", "c"}));
  EXPECT_EQ(list({LabelTerm::Equal("env", "prod"), LabelTerm::Exists("tier")}), (V{"a", "c"}));
  EXPECT_EQ(list({{"tier", LabelTerm::Op::kExists, {}, true}}), (V{"b"}));
  EXPECT_EQ(list({{"env", LabelTerm::Op::kIn, {"dev", "qa"}, false}}), (V{"b"}));
  EXPECT_EQ(list({{"env", LabelTerm::Op::kEqual, {"prod"}, true}}), (V{"b"}));
  EXPECT_EQ(list({{"rank", LabelTerm::Op::kLtNumeric, {"3"}, false}}), (V{"c"}));
  EXPECT_EQ(list({{"rank", LabelTerm::Op::kLt, {"3"}, false}}), (V{"a", "c"}));  // lexical: "10" < "3"
  EXPECT_EQ(list({{"rank", LabelTerm::Op::kLteNumeric, {"9"}, false}}), (V{"b", "c"}));

  // CreateOrUpdate: creates once, then updates labels and spec in place.
  auto desired = MakeResource("e", {{"env", "qa"}}, "spec-e1");
  auto created = client_->CreateOrUpdate(desired, kOwner);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->metadata.version, "1");
  desired.metadata.labels["env"] = "prod";
  desired.proto_spec = "spec-e2";
  auto replaced = client_->CreateOrUpdate(desired, kOwner);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(replaced->metadata.version, "2");
  EXPECT_EQ(list({LabelTerm::Equal("env", "prod")}), (V{"a", "c", "e"}));
}

TEST_F(ReferenceServerTest, FinalizersBlockDestroyAndTeardownPhase) {
  ASSERT_TRUE(Create("a", {}, "spec").ok());
  auto with_finalizer = client_->AddFinalizer(Pointer("a"), "interop.Finalizer");
  ASSERT_TRUE(with_finalizer.ok()) << with_finalizer.status();
  EXPECT_TRUE(with_finalizer->HasFinalizer("interop.Finalizer"));
  EXPECT_EQ(with_finalizer->metadata.version, "2");
  auto again = client_->AddFinalizer(Pointer("a"), "interop.Finalizer");  // already there: no write
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->metadata.version, "2");

  auto ready = client_->Teardown(Pointer("a"), kOwner);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_FALSE(*ready);  // the finalizer is still there
  auto torn = client_->Get(Pointer("a"));
  ASSERT_TRUE(torn.ok()) << torn.status();
  EXPECT_TRUE(torn->tearing_down());
  EXPECT_EQ(client_->Destroy(Pointer("a"), kOwner).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->Destroy(Pointer("a"), "someone.else").code(), absl::StatusCode::kPermissionDenied);
  // The reference checks the owner only when Teardown changes the phase; once tearing down, it just reports.
  auto foreign_teardown = client_->Teardown(Pointer("a"), "someone.else");
  ASSERT_TRUE(foreign_teardown.ok()) << foreign_teardown.status();
  EXPECT_FALSE(*foreign_teardown);
  ASSERT_TRUE(client_->Create(MakeResource("b", {}, "spec"), kOwner).ok());
  EXPECT_EQ(client_->Teardown(Pointer("b"), "someone.else").status().code(), absl::StatusCode::kPermissionDenied);

  // Writes expecting "running" are refused once tearing down; "any phase" passes.
  Resource edit = *torn;
  edit.proto_spec = "spec-2";
  EXPECT_EQ(client_->Update(edit, kOwner).status().code(), absl::StatusCode::kInvalidArgument);
  auto any_phase = client_->Update(edit, kOwner, std::nullopt);
  ASSERT_TRUE(any_phase.ok()) << any_phase.status();
  EXPECT_EQ(any_phase->metadata.phase, omni::kPhaseTearingDown);

  auto removed = client_->RemoveFinalizer(Pointer("a"), "interop.Finalizer");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_TRUE(removed->metadata.finalizers.empty());
  ready = client_->Teardown(Pointer("a"), kOwner);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(*ready);
  EXPECT_TRUE(client_->Destroy(Pointer("a"), kOwner).ok());
  EXPECT_EQ(client_->Get(Pointer("a")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Destroy(Pointer("a"), kOwner).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Teardown(Pointer("a"), kOwner).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ReferenceServerTest, WatchBootstrapsAndResumesFromBookmark) {
  ASSERT_TRUE(Create("b", {{"env", "dev"}}, "spec-b1").ok());
  ASSERT_TRUE(Create("c", {{"env", "prod"}}, "spec-c1").ok());

  EventLog log;
  auto watch = client_->Watch({kNamespace, kType, std::nullopt, {}, true}, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(Eventually([&] { return log.size() >= 3; })) << ::testing::PrintToString(log.events());
  EXPECT_EQ(log.events(), (std::vector<std::string>{"created b@1 running", "created c@1 running", "bootstrapped"}));
  EXPECT_TRUE((*watch)->Health().bootstrapped);

  auto b = client_->Get(Pointer("b"));
  ASSERT_TRUE(b.ok());
  b->proto_spec = "spec-b2";
  ASSERT_TRUE(client_->Update(*b, kOwner).ok());
  ASSERT_TRUE(Eventually([&] { return log.size() >= 4; }));

  // Break the stream, then write while the client waits to reconnect (reconnect_base 2 s): only a resume
  // from the bookmark (not a re-bootstrap) delivers exactly these events and nothing else.
  ASSERT_EQ(server_->DropWatches(), 1);
  ASSERT_TRUE(Create("d", {{"env", "dev"}}, "spec-d1").ok());
  ASSERT_TRUE(client_->Teardown(Pointer("c"), kOwner).ok());
  ASSERT_TRUE(client_->Destroy(Pointer("c"), kOwner).ok());

  ASSERT_TRUE(Eventually([&] { return log.size() >= 7; })) << ::testing::PrintToString(log.events());
  EXPECT_TRUE(Eventually([&] { return (*watch)->Health().connected; }));
  std::this_thread::sleep_for(300ms);  // nothing further (no replayed bootstrap) may follow
  EXPECT_EQ(log.events(), (std::vector<std::string>{"created b@1 running", "created c@1 running", "bootstrapped",
                                                    "updated b@2 running", "created d@1 running",
                                                    "updated c@2 tearingDown", "destroyed c@2 tearingDown"}));
  auto health = (*watch)->Health();
  EXPECT_EQ(health.reconnects, 1);
  EXPECT_EQ(health.resyncs, 0);

  // What the reference server saw: a bootstrap open, then a resume that carried our last bookmark.
  auto opens = server_->Lines("watch");
  ASSERT_EQ(opens.size(), 2u) << server_->Log();
  EXPECT_TRUE(opens[0].value("bootstrap_contents", false));
  EXPECT_FALSE(opens[0].value("start_from_bookmark", true));
  EXPECT_EQ(opens[0].value("api_version", 0), 1);
  EXPECT_FALSE(opens[1].value("bootstrap_contents", true));
  EXPECT_TRUE(opens[1].value("start_from_bookmark", false));

  // A label-filtered watch: only matching resources, and an update that stops matching is a destroy.
  EventLog dev;
  auto dev_watch =
      client_->Watch({kNamespace, kType, std::nullopt, {LabelTerm::Equal("env", "dev")}, true}, dev.Callback());
  ASSERT_TRUE(dev_watch.ok()) << dev_watch.status();
  ASSERT_TRUE(Eventually([&] { return dev.size() >= 3; })) << ::testing::PrintToString(dev.events());
  auto d = client_->Get(Pointer("d"));
  ASSERT_TRUE(d.ok());
  d->metadata.labels["env"] = "prod";
  ASSERT_TRUE(client_->Update(*d, kOwner).ok());
  ASSERT_TRUE(Eventually([&] { return dev.size() >= 4; })) << ::testing::PrintToString(dev.events());
  EXPECT_EQ(dev.events(), (std::vector<std::string>{"created b@2 running", "created d@1 running", "bootstrapped",
                                                    "destroyed d@2 running"}));
  EXPECT_EQ(server_->Lines("watch").back().value("label_queries", 0), 1);
}

// Raw calls with hand-made metadata: the reference verifier must refuse everything but a valid signature.
TEST_F(ReferenceServerTest, GoApiSignatureRefusesUnsignedAndTamperedCalls) {
  auto signer = omni::RequestSigner::Create(key_.key, util::RealClock(), true);
  ASSERT_TRUE(signer.ok()) << signer.status();
  auto channel = grpc::CreateChannel(server_->endpoint().substr(7), grpc::InsecureChannelCredentials());
  auto stub = cosi::resource::State::NewStub(channel);
  const std::string get_method = "/cosi.resource.State/Get";

  auto call_get = [&](const omni::GrpcMetadata& metadata) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kDeadline);
    for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
    cosi::resource::GetRequest request;
    request.set_namespace_(kNamespace);
    request.set_type(kType);
    request.set_id("missing");
    cosi::resource::GetResponse response;
    return stub->Get(&context, request, &response).error_code();
  };
  auto signed_metadata = [&](const std::string& method) {
    auto metadata = (*signer)->Sign(method, {{"providerid", kProviderId}});
    EXPECT_TRUE(metadata.ok()) << metadata.status();
    return metadata.ok() ? *metadata : omni::GrpcMetadata{};
  };
  auto replace = [](omni::GrpcMetadata metadata, std::string_view key, const std::string& value) {
    for (auto& [k, v] : metadata) {
      if (k == key) v = value;
    }
    return metadata;
  };
  auto header = [](const omni::GrpcMetadata& metadata, std::string_view key) {
    for (const auto& [k, v] : metadata) {
      if (k == key) return v;
    }
    return std::string();
  };

  // A valid signature passes verification (and the reference state answers NotFound).
  EXPECT_EQ(call_get(signed_metadata(get_method)), grpc::StatusCode::NOT_FOUND);
  size_t accepted = server_->Lines("call").size();
  EXPECT_EQ(accepted, 1u);

  EXPECT_EQ(call_get({{"providerid", kProviderId}}), grpc::StatusCode::UNAUTHENTICATED);  // unsigned

  // One flipped bit in the signature's last byte (inside the Ed25519 S value).
  auto good = signed_metadata(get_method);
  std::string signature_header = header(good, omni::kSignatureHeader);
  auto last_space = signature_header.rfind(' ');
  auto signature = omni::Base64Decode(signature_header.substr(last_space + 1));
  ASSERT_TRUE(signature.ok()) << signature.status();
  signature->back() ^= 0x01;
  EXPECT_EQ(call_get(replace(good, omni::kSignatureHeader,
                             signature_header.substr(0, last_space + 1) + omni::Base64Encode(*signature))),
            grpc::StatusCode::UNAUTHENTICATED);

  // A changed payload that still matches the headers: the signature no longer covers it.
  good = signed_metadata(get_method);
  std::string timestamp = header(good, omni::kTimestampHeader);
  std::string moved = std::to_string(std::stoll(timestamp) - 1);
  std::string payload = header(good, omni::kPayloadHeader);
  payload.replace(payload.find(timestamp), timestamp.size(), moved);
  EXPECT_EQ(call_get(replace(replace(good, omni::kTimestampHeader, moved), omni::kPayloadHeader, payload)),
            grpc::StatusCode::UNAUTHENTICATED);

  // A signature for another method, or a header not covered the way it is sent.
  EXPECT_EQ(call_get(signed_metadata("/cosi.resource.State/Destroy")), grpc::StatusCode::UNAUTHENTICATED);
  auto with_namespace = signed_metadata(get_method);
  with_namespace.emplace_back("namespace", "smuggled");
  EXPECT_EQ(call_get(with_namespace), grpc::StatusCode::UNAUTHENTICATED);

  // A well-formed signature by a key the server does not trust.
  auto stranger = omni::GenerateInfraProviderKey("stranger", std::chrono::hours(24), util::RealClock());
  ASSERT_TRUE(stranger.ok());
  auto stranger_signer = omni::RequestSigner::Create(stranger->key, util::RealClock(), true);
  ASSERT_TRUE(stranger_signer.ok());
  auto stranger_metadata = (*stranger_signer)->Sign(get_method, {});
  ASSERT_TRUE(stranger_metadata.ok());
  EXPECT_EQ(call_get(*stranger_metadata), grpc::StatusCode::UNAUTHENTICATED);

  // An unsigned stream open is refused too.
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kDeadline);
    cosi::resource::WatchRequest request;
    request.set_namespace_(kNamespace);
    request.set_type(kType);
    request.set_api_version(1);
    auto reader = stub->Watch(&context, request);
    cosi::resource::WatchResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  EXPECT_EQ(server_->Lines("call").size(), accepted);
  EXPECT_EQ(server_->Lines("refused").size(), 7u) << server_->Log();
  server_.reset();  // the refusals were intended: skip TearDown's "nothing refused" check
}

// --- Scenario 2: the reference Go client against our stand-in ---------------------------------------------

// The steps of `interop-go script`, one line each, for readable failure output.
std::vector<std::string> Steps(const json& outcome) {
  std::vector<std::string> steps;
  for (const auto& step : outcome.value("steps", json::array())) steps.push_back(step.dump());
  return steps;
}

json StepNamed(const json& outcome, const std::string& name) {
  for (const auto& step : outcome.value("steps", json::array())) {
    if (step.value("step", "") == name) return step;
  }
  ADD_FAILURE() << "no step " << name << " in " << outcome.dump();
  return json::object();
}

TEST(StandInInteropTest, GoClientScriptBehavesAsOnTheReferenceServer) {
  REQUIRE_GO();
  ScopedTempDir dir;
  sim::omni::StandInOptions options;
  options.provider_id = kProviderId;
  auto standin = sim::omni::StandIn::Start(options);
  ASSERT_TRUE(standin.ok()) << standin.status();
  const auto key_file = dir / "proxmox.key";
  WriteFile(key_file, (*standin)->provider_key());

  // The client with Omni's call options (gzip, ...) and the bare cosi-project/runtime adapter.
  json on_standin = RunGo({"script", "--endpoint", (*standin)->grpc_endpoint(), "--key-file", key_file.string()});
  auto second = sim::omni::StandIn::Start(options);  // the script starts from an empty state
  ASSERT_TRUE(second.ok()) << second.status();
  const auto second_key_file = dir / "second.key";
  WriteFile(second_key_file, (*second)->provider_key());
  json on_standin_bare = RunGo({"script", "--client", "runtime", "--endpoint", (*second)->grpc_endpoint(), "--key-file",
                                second_key_file.string()});
  ASSERT_FALSE(Steps(on_standin).empty()) << on_standin.dump();
  EXPECT_EQ(Steps(on_standin_bare), Steps(on_standin));

  auto reference = ReferenceServer::Start(dir.path(), {"--trust-key", key_file.string()});
  ASSERT_NE(reference, nullptr);
  json on_reference = RunGo({"script", "--endpoint", reference->endpoint(), "--key-file", key_file.string()});
  ASSERT_FALSE(Steps(on_reference).empty()) << on_reference.dump();
  EXPECT_TRUE(reference->Lines("refused").empty()) << reference->Log();

  // Identical behaviour, step by step, except for divergences already reported (each names its step).
  const std::map<std::string, std::string> known_divergences = {};
  auto expected = Steps(on_reference);
  auto actual = Steps(on_standin);
  for (size_t i = 0; i < std::max(expected.size(), actual.size()); ++i) {
    const std::string want = i < expected.size() ? expected[i] : "<missing>";
    const std::string got = i < actual.size() ? actual[i] : "<missing>";
    auto step_name = i < expected.size() ? json::parse(want).value("step", "") : std::string();
    if (auto known = known_divergences.find(step_name); known != known_divergences.end()) {
      std::cout << (got == want ? "known divergence now fixed (drop it from the list): "
                                : "known stand-in divergence: ")
                << step_name << ": " << known->second << "\n  stand-in:  " << got << "\n  reference: " << want << "\n";
      continue;
    }
    EXPECT_EQ(got, want) << "step " << i << ": stand-in (left) differs from the reference server (right)";
  }

  // And the behaviour is the one the protocol notes describe (so that equality is not vacuous).
  EXPECT_EQ(StepNamed(on_standin, "create a").value("version", ""), "1");
  EXPECT_EQ(StepNamed(on_standin, "create a again").value("error", ""), "conflict");
  EXPECT_EQ(StepNamed(on_standin, "update a stale").value("error", ""), "conflict");
  EXPECT_EQ(StepNamed(on_standin, "update a wrong owner").value("error", ""), "owner-conflict");
  EXPECT_EQ(StepNamed(on_standin, "list env=prod")["ids"], json::array({"a@2", "c@1"}));
  EXPECT_EQ(StepNamed(on_standin, "teardown a").value("destroy_ready", true), false);
  EXPECT_EQ(StepNamed(on_standin, "destroy a with finalizer").value("error", ""), "conflict");
  EXPECT_EQ(StepNamed(on_reference, "teardown a wrong owner when torn down").value("destroy_ready", true), false);
  EXPECT_EQ(StepNamed(on_standin, "teardown wrong owner").value("error", ""), "owner-conflict");
  EXPECT_EQ(StepNamed(on_standin, "update a expecting running").value("error", ""), "phase-conflict");
  EXPECT_EQ(StepNamed(on_standin, "teardown a again").value("destroy_ready", false), true);
  EXPECT_EQ(StepNamed(on_standin, "get destroyed a").value("error", ""), "not-found");
  EXPECT_EQ(StepNamed(on_standin, "watch bootstrap")["events"],
            json::array({"created b@1 running", "created c@1 running", "bootstrapped", "noop"}));
  EXPECT_EQ(StepNamed(on_standin, "watch resumed events")["events"],
            json::array({"created d@1 running", "updated c@2 tearingDown", "destroyed c@2 tearingDown"}));
  EXPECT_EQ(StepNamed(on_standin, "watch env=dev after relabel")["events"], json::array({"destroyed d@2 running"}));
  EXPECT_EQ(StepNamed(on_standin, "watch invalid bookmark").value("error", ""), "invalid-bookmark");
}

// Omni's infra-provider rules (no counterpart in the reference server) as the reference Go client meets them:
// the stand-in must accept the Go client's finalizer-only writes byte for byte and refuse the rest.
TEST(StandInInteropTest, GoClientMeetsOmniInfraProviderRules) {
  REQUIRE_GO();
  ScopedTempDir dir;
  sim::omni::StandInOptions options;
  options.provider_id = kProviderId;
  // The Go client creates its InfraProviderStatus itself below; the request sets come first, so
  // admission (which needs that status) is off here: this test is about the Go client's writes.
  options.omni_admission = false;
  auto started = sim::omni::StandIn::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  auto& standin = *started;
  ASSERT_TRUE(standin->ApplyMachineClass("small", "cores: 2\n").ok());
  ASSERT_TRUE(standin->ScaleMachineRequestSet("workers", "small", 2).ok());
  // Another provider's request must stay invisible to ours.
  ASSERT_TRUE(standin->AddInfraProvider("other").ok());
  ASSERT_TRUE(standin->ApplyMachineClass("theirs", "cores: 1\n", {.provider_id = "other"}).ok());
  ASSERT_TRUE(standin->ScaleMachineRequestSet("others", "theirs", 1).ok());
  auto requests = [&] { return standin->state().List("infra-provider", "MachineRequests.omni.sidero.dev"); };
  ASSERT_TRUE(standin->WaitFor([&] { return requests().ok() && requests()->size() == 3; }, kDeadline));

  const auto key_file = dir / "proxmox.key";
  WriteFile(key_file, standin->provider_key());
  json outcome = RunGo({"omni-script", "--endpoint", standin->grpc_endpoint(), "--key-file", key_file.string()});
  ASSERT_FALSE(Steps(outcome).empty()) << outcome.dump();

  auto listed = StepNamed(outcome, "list machine requests");
  ASSERT_EQ(listed["ids"].size(), 2u) << listed.dump();
  EXPECT_EQ(listed.value("labels", ""), "proxmox");  // every visible request carries our provider label
  const std::string request_id = listed["ids"][0];
  EXPECT_EQ(request_id.rfind("workers-", 0), 0u) << request_id;

  EXPECT_FALSE(StepNamed(outcome, "add finalizer to machine request").contains("error"))
      << StepNamed(outcome, "add finalizer to machine request").dump();
  EXPECT_EQ(StepNamed(outcome, "get machine request")["finalizers"], json::array({"proxmox.ProvisionController"}));
  EXPECT_FALSE(StepNamed(outcome, "remove finalizer from machine request").contains("error"))
      << StepNamed(outcome, "remove finalizer from machine request").dump();
  // Omni's own MachineRequestSpec type decodes what the stand-in stored.
  EXPECT_EQ(listed.value("spec", ""), "talos_version=1.10.4 provider_data=\"cores: 2\\n\"");
  EXPECT_EQ(StepNamed(outcome, "update machine request labels").value("error", ""), "owner-conflict");
  EXPECT_EQ(StepNamed(outcome, "update machine request spec").value("error", ""), "owner-conflict");
  EXPECT_EQ(StepNamed(outcome, "destroy machine request").value("error", ""), "owner-conflict");
  EXPECT_FALSE(StepNamed(outcome, "create machine request status").contains("error"))
      << StepNamed(outcome, "create machine request status").dump();
  auto status = StepNamed(outcome, "get machine request status");
  EXPECT_EQ(status.value("labels", ""), "omni.sidero.dev/infra-provider-id=proxmox");  // set by Omni on Create
  EXPECT_EQ(status.value("spec", ""), "stage=PROVISIONING status=interop");
  EXPECT_EQ(StepNamed(outcome, "destroy machine request status wrong owner").value("error", ""), "owner-conflict");
  EXPECT_EQ(StepNamed(outcome, "create provider status for another id").value("error", ""), "code:InvalidArgument");
  EXPECT_FALSE(StepNamed(outcome, "create provider status").contains("error"))
      << StepNamed(outcome, "create provider status").dump();
  EXPECT_EQ(StepNamed(outcome, "list clusters").value("error", ""), "code:PermissionDenied");

  // The world the stand-in kept: the request is untouched apart from its version, the rest as written.
  auto request = standin->state().Get("infra-provider", "MachineRequests.omni.sidero.dev", request_id);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->version, 3u);  // finalizer added, then removed
  EXPECT_TRUE(request->finalizers.empty());
  EXPECT_EQ(request->labels.count("tampered"), 0u);
  // Omni's cleanup controller claims the status the Go client created (asynchronously).
  EXPECT_TRUE(standin->WaitFor(
      [&] {
        auto status = standin->state().Get("infra-provider", "MachineRequestStatuses.omni.sidero.dev", request_id);
        return status.ok() && status->HasFinalizer("MachineRequestStatusCleanupController");
      },
      kDeadline));
  // What the Go client encoded with Omni's MachineRequestStatusSpec decodes with our proto.
  auto stored_status = standin->state().Get("infra-provider", "MachineRequestStatuses.omni.sidero.dev", request_id);
  ASSERT_TRUE(stored_status.ok()) << stored_status.status();
  specs::MachineRequestStatusSpec status_spec;
  ASSERT_TRUE(status_spec.ParseFromString(stored_status->proto_spec));
  EXPECT_EQ(status_spec.stage(), specs::MachineRequestStatusSpec::PROVISIONING);
  EXPECT_EQ(status_spec.status(), "interop");
  EXPECT_TRUE(standin->state().Get("infra-provider", "InfraProviderStatuses.omni.sidero.dev", kProviderId).ok());
}

// --- Scenario 3: keys both ways ----------------------------------------------------------------------------

// What go-api-signature says about a key, checked against what our side computes.
void ExpectAcceptedByGoApiSignature(const std::filesystem::path& key_file, const std::string& encoded,
                                    const std::string& expected_name) {
  auto key = omni::DecodeServiceAccountKey(encoded);
  ASSERT_TRUE(key.ok()) << key.status();
  auto ours = omni::PgpSigningKey::Load(key->armored_private_key, util::RealClock().Now());
  ASSERT_TRUE(ours.ok()) << ours.status();

  const std::string data = R"({"headers":{"x-sidero-timestamp":["1"]},"method":"/cosi.resource.State/Get"})";
  json info = RunGo({"keyinfo", "--key-file", key_file.string(), "--sign", data});
  EXPECT_EQ(info.value("name", ""), expected_name);
  EXPECT_EQ(info.value("fingerprint", ""), (*ours)->info().fingerprint);
  EXPECT_TRUE(info.value("private", false));
  EXPECT_TRUE(info.value("unlocked", false));
  EXPECT_FALSE(info.value("expired", true));
  EXPECT_EQ(info.value("omni_validation", ""), "ok");  // Omni's registration rules: lifetime, email UID
  EXPECT_TRUE(info.value("self_verified", false));

  // A signature made by go-api-signature with this key verifies with our librnp-based code.
  auto signature = omni::Base64Decode(info.value("signature", ""));
  ASSERT_TRUE(signature.ok()) << signature.status();
  auto armored_public = (*ours)->ArmoredPublicKey();
  ASSERT_TRUE(armored_public.ok());
  EXPECT_TRUE(omni::VerifyDetachedSignature(*armored_public, data, *signature, util::RealClock().Now()).ok());
  EXPECT_FALSE(omni::VerifyDetachedSignature(*armored_public, data + " ", *signature, util::RealClock().Now()).ok());
}

TEST(KeysInteropTest, StandInProviderKeyIsAcceptedByGoApiSignature) {
  REQUIRE_GO();
  ScopedTempDir dir;
  sim::omni::StandInOptions options;
  options.provider_id = kProviderId;
  auto standin = sim::omni::StandIn::Start(options);
  ASSERT_TRUE(standin.ok()) << standin.status();
  WriteFile(dir / "proxmox.key", (*standin)->provider_key());
  ExpectAcceptedByGoApiSignature(dir / "proxmox.key", (*standin)->provider_key(), "infra-provider:proxmox");
}

TEST(KeysInteropTest, ClientGeneratedKeyIsAcceptedByGoApiSignature) {
  REQUIRE_GO();
  ScopedTempDir dir;
  auto key = omni::GenerateInfraProviderKey("generated", std::chrono::hours(24 * 365), util::RealClock());
  ASSERT_TRUE(key.ok()) << key.status();
  WriteFile(dir / "generated.key", key->encoded.Reveal());
  ExpectAcceptedByGoApiSignature(dir / "generated.key", key->encoded.Reveal(), "infra-provider:generated");
}

TEST(KeysInteropTest, GoApiSignatureKeyIsAcceptedByOurClient) {
  REQUIRE_GO();
  ScopedTempDir dir;
  const auto key_file = dir / "interop.key";
  json generated = RunGo({"keygen", "--provider-id", "interop", "--out", key_file.string()});
  ASSERT_EQ(generated.value("name", ""), "infra-provider:interop");

  std::ifstream in(key_file);
  std::string encoded((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto key = omni::DecodeServiceAccountKey(encoded);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->name, "infra-provider:interop");
  auto provider_id = omni::ProviderIdFromKeyName(key->name);
  ASSERT_TRUE(provider_id.ok()) << provider_id.status();
  EXPECT_EQ(*provider_id, "interop");
  auto signer = omni::RequestSigner::Create(*key, util::RealClock(), /*require_infra_provider=*/true);
  ASSERT_TRUE(signer.ok()) << signer.status();
  EXPECT_EQ((*signer)->fingerprint(), generated.value("fingerprint", ""));

  // Our client signs with the Go-made key and the reference server's go-api-signature verifier agrees.
  auto server = ReferenceServer::Start(dir.path(), {"--trust-key", key_file.string()});
  ASSERT_NE(server, nullptr);
  omni::ClientOptions options;
  options.endpoint = server->endpoint();
  options.key = *key;
  auto client = omni::MakeGrpcStateClient(options);
  ASSERT_TRUE(client.ok()) << client.status();
  Resource resource;
  resource.metadata = {.ns = "infra-provider:interop", .type = "Machines.interop.infraprovider.sidero.dev", .id = "m1"};
  resource.proto_spec = "spec";
  auto created = (*client)->Create(resource, "interop.ProvisionController");
  ASSERT_TRUE(created.ok()) << created.status();
  auto read = (*client)->Get(resource.pointer());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->proto_spec, "spec");
  EXPECT_TRUE(server->Lines("refused").empty()) << server->Log();
  auto calls = server->Lines("call");
  ASSERT_EQ(calls.size(), 2u) << server->Log();
  for (const auto& call : calls) {
    EXPECT_EQ(call.value("identity", ""), "infra-provider:interop");
    EXPECT_EQ(call.value("fingerprint", ""), generated.value("fingerprint", ""));
    EXPECT_EQ(call["providerid"], json::array({"interop"}));
  }
}

}  // namespace
}  // namespace omni_proxmox::interop
