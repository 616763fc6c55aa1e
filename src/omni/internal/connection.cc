// SPDX-License-Identifier: Apache-2.0
#include "omni/internal/connection.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "omni/endpoint.h"
#include "omni/tls_roots.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni::internal {
namespace {

constexpr int kMaxMessageBytes = 32 * 1024 * 1024;  // Omni's constants.GRPCMaxMessageSize
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(const Endpoint& endpoint,
                                                                          const ClientOptions& options) {
  if (!endpoint.tls) return grpc::InsecureChannelCredentials();
  if (options.insecure_skip_verify) {
    grpc::experimental::TlsChannelCredentialsOptions tls;
    tls.set_verify_server_certs(false);
    tls.set_check_call_host(false);
    tls.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
    return grpc::experimental::TlsCredentials(tls);
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_root_certs_pem;
  if (ssl.pem_root_certs.empty()) {
    const RootsFile file = ResolveRootsFile(options.tls_ca_file, options.tls_ca_file_origin, ProcessEnv);
    auto roots = LoadRoots(file);
    // A bundle the operator chose must be usable; an unreadable system bundle leaves gRPC its own
    // default roots.
    if (!roots.ok() && !file.system) return roots.status();
    if (roots.ok()) ssl.pem_root_certs = std::move(roots->pem);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::Status FromGrpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      fmt::format("{}: {}", what, status.error_message()));
}

Connection::Connection(ClientOptions options, std::shared_ptr<grpc::Channel> channel,
                       std::unique_ptr<RequestSigner> signer)
    : options_(std::move(options)), channel_(std::move(channel)), signer_(std::move(signer)) {
  if (options_.random == nullptr) {
    own_random_ = std::make_unique<util::Random>(util::Random::SeedFromDevice());
    random_ = own_random_.get();
  } else {
    random_ = options_.random;
  }
  monitor_ = options_.monitor != nullptr ? options_.monitor : std::make_shared<CallMonitor>(*options_.clock);
  key_identity_ = {.endpoint = options_.endpoint,
                   .name = options_.key.name,
                   .identity = signer_->user_id(),
                   .fingerprint = signer_->fingerprint()};
}

absl::Status Connection::Finish(const grpc::Status& status, std::string_view method, std::string_view what) const {
  return monitor_->Record(FromGrpc(status, what), method, key_identity_);
}

absl::StatusOr<std::shared_ptr<Connection>> Connection::Create(const ClientOptions& options) {
  OP_ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(options.endpoint));
  if (options.clock == nullptr) return absl::InvalidArgumentError("omni client: clock must be set");
  OP_ASSIGN_OR_RETURN(auto signer,
                      RequestSigner::Create(options.key, *options.clock, options.require_infra_provider_key));
  ClientOptions copy = options;
  if (copy.provider_id.empty() && signer->provider_id()) copy.provider_id = *signer->provider_id();

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive.count()));
  // Long-lived watches can be idle for hours: keep pinging without data frames.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect on our schedule, not gRPC's default of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(options.reconnect_base.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options.reconnect_base.count()));
  // The channel's own reconnects stay within 2 s: a watch or a heartbeat after an Omni restart
  // otherwise found the channel waiting out up to reconnect_max (+20% jitter) on top of its own
  // delay, and new work came 17 s after Omni answered again. A TCP connect every 2 s is cheap.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(std::min(options.reconnect_max, std::chrono::milliseconds{2000}).count()));
  OP_ASSIGN_OR_RETURN(auto credentials, MakeCredentials(endpoint, options));
  auto channel = grpc::CreateCustomChannel(endpoint.Target(), credentials, args);
  return std::shared_ptr<Connection>(new Connection(std::move(copy), std::move(channel), std::move(signer)));
}

namespace {
bool Mutating(std::string_view method) {
  for (std::string_view m :
       {"/cosi.resource.State/Create", "/cosi.resource.State/Update", "/cosi.resource.State/Destroy",
        "/cosi.resource.State/Teardown", "/management.ManagementService/CreateSchematicFromRaw"}) {
    if (method == m) return true;
  }
  return false;
}
}  // namespace

absl::Status Connection::Prepare(grpc::ClientContext& context, std::string_view method, bool state_call,
                                 bool streaming) const {
  GrpcMetadata metadata;
  // "providerID" in Go; gRPC lowercases metadata keys.
  if (state_call && !options_.provider_id.empty()) metadata.emplace_back("providerid", options_.provider_id);
  OP_ASSIGN_OR_RETURN(metadata, signer_->Sign(method, std::move(metadata)));
  // After the signature, the last thing before the caller sends: a replica paused in between
  // loses nothing but the microseconds to the stub call.
  if (options_.mutation_gate != nullptr && Mutating(method)) {
    if (auto open = options_.mutation_gate->Check(); !open.ok()) {
      return absl::AbortedError(fmt::format("{}: not sent: {}", method, std::string(open.message())));
    }
  }
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
  if (!options_.replica.empty()) context.AddMetadata("x-omni-proxmox-replica", options_.replica);
  if (!streaming) context.set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
  return absl::OkStatus();
}

}  // namespace omni_proxmox::omni::internal
