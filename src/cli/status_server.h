// SPDX-License-Identifier: Apache-2.0
#pragma once

// The status HTTP server behind `omni-proxmox run --listen ADDR:PORT`:
//   GET /healthz  200 "ok" while the process runs (liveness)
//   GET /readyz   200 "ok" (or ready_text, e.g. "standby") when readiness returns OK, else 503 with its message
//   GET /metrics  the metrics registry in the Prometheus text format 0.0.4
//   anything else 404
// It serves on its own std::jthread; the object owns the thread and stops and joins it on Stop()
// or destruction. Thread-safe: Stop() and port() may be called from any thread. The readiness
// callback runs on server threads, possibly concurrently, so it must be thread-safe, and its
// message is served to anyone who can reach the port: it must not carry secrets.

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace omni_proxmox::util {
class MetricsRegistry;
}  // namespace omni_proxmox::util

namespace omni_proxmox::cli {

// `run --listen`'s default, and the environment variable both `run --listen` and `healthcheck
// --listen` fall back to, so a container sets the address once for the server and its probe.
inline constexpr std::string_view kDefaultListen = "127.0.0.1:9489";
inline constexpr std::string_view kListenEnv = "OMNI_PROXMOX_LISTEN";

struct ListenAddress {
  std::string host;  // "0.0.0.0" when the flag left it empty; IPv6 without brackets
  int port = 0;      // 0 picks a free port
};

// Parses the --listen value: "HOST:PORT", ":PORT" (all IPv4 interfaces) or "[IPV6]:PORT".
// Errors are InvalidArgument naming the flag, the value and the expected form.
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view value);

struct StatusServerOptions {
  std::string listen = "127.0.0.1:0";  // the --listen value
  // Null means always ready.
  std::function<absl::Status()> readiness;
  // The body of a ready answer (e.g. "standby" for a replica that does not hold the leader lease,
  // which is healthy and ready to take over); null or empty: "ok".
  std::function<std::string()> ready_text;
  // Borrowed; must outlive the server. Null serves an empty exposition.
  const util::MetricsRegistry* metrics = nullptr;
};

class StatusServer {
 public:
  // Binds and starts serving before returning, so a client may connect as soon as this returns.
  // Errors: InvalidArgument for a malformed --listen; Unavailable when the address cannot be bound
  // (already in use, not local, no permission), with the reason and the flag named.
  static absl::StatusOr<std::unique_ptr<StatusServer>> Start(StatusServerOptions options);

  ~StatusServer();
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // The bound port (the chosen one when --listen asked for port 0).
  int port() const { return port_; }
  const std::string& host() const { return host_; }

  // Stops accepting, waits for in-flight requests and joins the thread. Idempotent.
  void Stop();

 private:
  StatusServer(StatusServerOptions options, std::string host);

  StatusServerOptions options_;
  std::string host_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::future<void> finished_;  // ready once the listen loop has returned
  std::jthread thread_;
};

}  // namespace omni_proxmox::cli
