// SPDX-License-Identifier: Apache-2.0
#pragma once

// Test support for the stand-in's tests: a signed gRPC client written for the tests (it shares
// nothing with src/omni, see test_signer.h), resource builders, and join tokens computed from the
// protocol notes.

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cosi/state.grpc.pb.h"
#include "omni/management/management.grpc.pb.h"
#include "sim/omni/accounts.h"
#include "sim/omni/standin.h"
#include "sim/omni/test_signer.h"
#include "util/clock.h"

namespace omni_proxmox::sim::omni::standin_test {

namespace pb = ::cosi::resource;
using std::chrono::seconds;
// A signed client for the stand-in, written for the tests (see test_signer.h).
class Client {
 public:
  Client(const std::string& endpoint, const std::string& encoded_key, const util::Clock& clock,
         const std::string& ca_pem = "")
      : clock_(clock) {
    const auto host = endpoint.substr(endpoint.find("://") + 3);
    if (endpoint.rfind("https://", 0) == 0) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = ca_pem;
      channel_ = grpc::CreateChannel(host, grpc::SslCredentials(ssl));
    } else {
      channel_ = grpc::CreateChannel(host, grpc::InsecureChannelCredentials());
    }
    state_ = pb::State::NewStub(channel_);
    management_ = ::management::ManagementService::NewStub(channel_);
    key_ = *testing::DecodeServiceAccountKey(encoded_key);
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& method, std::int64_t skew_seconds = 0) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    const auto now = std::chrono::duration_cast<seconds>(clock_.Now().time_since_epoch()).count();
    auto md = testing::SignedMetadata(key_, method, now + skew_seconds);
    EXPECT_TRUE(md.ok()) << md.status();
    for (const auto& [k, v] : *md) ctx->AddMetadata(k, v);
    ctx->AddMetadata("providerid", "not-trusted");
    if (!replica_.empty()) ctx->AddMetadata("x-omni-proxmox-replica", replica_);
    ctx->set_deadline(std::chrono::system_clock::now() + seconds(20));
    return ctx;
  }

  grpc::Status Get(const std::string& ns, const std::string& type, const std::string& id, pb::Resource* out = nullptr) {
    pb::GetRequest req;
    req.set_namespace_(ns);
    req.set_type(type);
    req.set_id(id);
    pb::GetResponse resp;
    auto ctx = Context("/cosi.resource.State/Get");
    auto status = state_->Get(ctx.get(), req, &resp);
    if (out != nullptr) *out = resp.resource();
    return status;
  }

  grpc::Status List(const std::string& ns, const std::string& type, std::vector<pb::Resource>* out,
                    const pb::ListOptions& options = {}) {
    pb::ListRequest req;
    req.set_namespace_(ns);
    req.set_type(type);
    *req.mutable_options() = options;
    auto ctx = Context("/cosi.resource.State/List");
    auto reader = state_->List(ctx.get(), req);
    pb::ListResponse resp;
    while (reader->Read(&resp)) out->push_back(resp.resource());
    return reader->Finish();
  }

  grpc::Status Create(const pb::Resource& r, const std::string& owner, pb::Resource* out = nullptr) {
    pb::CreateRequest req;
    *req.mutable_resource() = r;
    req.mutable_options()->set_owner(owner);
    pb::CreateResponse resp;
    auto ctx = Context("/cosi.resource.State/Create");
    auto status = state_->Create(ctx.get(), req, &resp);
    if (out != nullptr) *out = resp.resource();
    return status;
  }

  grpc::Status Update(const pb::Resource& r, const std::string& owner, std::optional<std::string> phase = "running",
                      pb::Resource* out = nullptr) {
    pb::UpdateRequest req;
    *req.mutable_new_resource() = r;
    req.mutable_options()->set_owner(owner);
    if (phase) req.mutable_options()->set_expected_phase(*phase);
    pb::UpdateResponse resp;
    auto ctx = Context("/cosi.resource.State/Update");
    auto status = state_->Update(ctx.get(), req, &resp);
    if (out != nullptr) *out = resp.resource();
    return status;
  }

  grpc::Status Destroy(const std::string& ns, const std::string& type, const std::string& id,
                       const std::string& owner) {
    pb::DestroyRequest req;
    req.set_namespace_(ns);
    req.set_type(type);
    req.set_id(id);
    req.mutable_options()->set_owner(owner);
    pb::DestroyResponse resp;
    auto ctx = Context("/cosi.resource.State/Destroy");
    return state_->Destroy(ctx.get(), req, &resp);
  }

  grpc::Status Teardown(const std::string& ns, const std::string& type, const std::string& id, const std::string& owner,
                        bool* ready = nullptr) {
    pb::TeardownRequest req;
    req.set_namespace_(ns);
    req.set_type(type);
    req.set_id(id);
    req.mutable_options()->set_owner(owner);
    pb::TeardownResponse resp;
    auto ctx = Context("/cosi.resource.State/Teardown");
    auto status = state_->Teardown(ctx.get(), req, &resp);
    if (ready != nullptr) *ready = resp.destroy_ready();
    return status;
  }

  // Names a provider replica in every call, as the provider's clients do.
  void set_replica(std::string replica) { replica_ = std::move(replica); }

  pb::State::Stub& state() { return *state_; }
  ::management::ManagementService::Stub& management() { return *management_; }

 private:
  const util::Clock& clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::State::Stub> state_;
  std::unique_ptr<::management::ManagementService::Stub> management_;
  testing::SignerKey key_;
  std::string replica_;
};

template <typename Spec>
inline pb::Resource MakeProto(const std::string& ns, const std::string& type, const std::string& id, const Spec& spec,
                              std::map<std::string, std::string> labels = {}) {
  pb::Resource r;
  auto* md = r.mutable_metadata();
  md->set_namespace_(ns);
  md->set_type(type);
  md->set_id(id);
  md->set_version("undefined");
  md->set_phase("running");
  for (const auto& [k, v] : labels) (*md->mutable_labels())[k] = v;
  r.mutable_spec()->set_proto_spec(spec.SerializeAsString());
  return r;
}

inline std::string Label(const pb::Resource& r, const std::string& key) {
  auto it = r.metadata().labels().find(key);
  return it == r.metadata().labels().end() ? "" : it->second;
}

// A v2 join token computed here from the protocol notes (HMAC over Go's JSON of extra_data).
inline std::string MakeToken(const std::string& base, const std::string& provider, const std::string& request) {
  const std::string extra = R"({"omni.sidero.dev/infra-provider-id":")" + provider +
                            R"(","omni.sidero.dev/machine-request":")" + request + R"("})";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), base.data(), static_cast<int>(base.size()), reinterpret_cast<const unsigned char*>(extra.data()),
       extra.size(), mac, &len);
  const std::string json = R"({"extra_data":)" + extra + R"(,"signature":")" +
                           Base64Encode(std::string(reinterpret_cast<char*>(mac), len)) + R"("})";
  return "v2:" + Base64Encode(json);
}

inline std::string Sha256HexForTest(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    char buf[3];
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    out += buf;
  }
  return out;
}

inline MachineClassOptions ForProvider(const std::string& provider) {
  MachineClassOptions options;
  options.provider_id = provider;
  return options;
}

inline std::string UserData(const std::string& token) {
  std::string escaped;
  for (char c : token) {
    if (c == ':' || c == '=' || c == '+' || c == '/') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      escaped += buf;
    } else {
      escaped += c;
    }
  }
  return "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://127.0.0.1:8090?jointoken=" + escaped +
         "\n---\napiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fdae:41e4:649b:9303::1]:8091'\n";
}

}  // namespace omni_proxmox::sim::omni::standin_test
