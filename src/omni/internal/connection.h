// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include <grpcpp/grpcpp.h>

#include "omni/call_monitor.h"
#include "omni/client_options.h"
#include "omni/signer.h"
#include "util/random.h"

// One gRPC channel to Omni plus the request signer; shared by the State and Management clients.
// Thread-safe.
namespace omni_proxmox::omni::internal {

class Connection {
 public:
  static absl::StatusOr<std::shared_ptr<Connection>> Create(const ClientOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }
  util::Random& random() const { return *random_; }
  CallMonitor& monitor() const { return *monitor_; }

  // Signs `context` for `method` (a full method name) and sets a deadline of call_timeout unless
  // `streaming`. State calls also carry `providerid`.
  absl::Status Prepare(grpc::ClientContext& context, std::string_view method, bool state_call, bool streaming) const;
  // A finished call's status as absl::Status (FromGrpc, prefixed with `what`), recorded with the
  // monitor, which names the endpoint and the key in a refusal.
  absl::Status Finish(const grpc::Status& status, std::string_view method, std::string_view what) const;

 private:
  Connection(ClientOptions options, std::shared_ptr<grpc::Channel> channel, std::unique_ptr<RequestSigner> signer);
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<RequestSigner> signer_;
  std::unique_ptr<util::Random> own_random_;
  util::Random* random_;
  std::shared_ptr<CallMonitor> monitor_;
  KeyIdentity key_identity_;
};

// A grpc::Status as absl::Status with the same code, the message prefixed with `what`.
absl::Status FromGrpc(const grpc::Status& status, std::string_view what);

}  // namespace omni_proxmox::omni::internal
