// SPDX-License-Identifier: Apache-2.0
#include "cli/status_server.h"

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "util/metrics.h"

namespace omni_proxmox::cli {
namespace {

constexpr char kFlag[] = "--listen";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";

absl::Status ListenSyntaxError(std::string_view value, std::string_view problem) {
  return absl::InvalidArgumentError(
      fmt::format("{} '{}': {}; use HOST:PORT, :PORT or [IPV6]:PORT, e.g. 127.0.0.1:9090", kFlag, value, problem));
}

// Repeats the bind that failed inside httplib (which keeps no errno) to tell the operator why.
std::string DiagnoseBindFailure(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) return fmt::format("cannot resolve host '{}': {}", host, gai_strerror(rc));
  int error = 0;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    const bool bound = bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    if (!bound) error = errno;
    close(fd);
    if (bound) {
      error = 0;
      break;
    }
  }
  freeaddrinfo(result);
  switch (error) {
    case 0:
      return "bind failed, but the address is free now; retry";
    case EADDRINUSE:
      return "address already in use; stop the other listener or choose another port";
    case EADDRNOTAVAIL:
      return "address not available on this host; use a local address or 0.0.0.0";
    case EACCES:
      return "permission denied; use a port above 1023 or grant CAP_NET_BIND_SERVICE";
    default:
      return std::generic_category().message(error);
  }
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view value) {
  if (value.empty()) return ListenSyntaxError(value, "empty");
  ListenAddress out;
  std::string_view port_text;
  if (value.front() == '[') {
    const std::size_t close = value.find(']');
    if (close == std::string_view::npos) return ListenSyntaxError(value, "missing ']' after the IPv6 address");
    out.host = std::string(value.substr(1, close - 1));
    if (out.host.empty()) return ListenSyntaxError(value, "empty IPv6 address");
    if (close + 1 >= value.size() || value[close + 1] != ':') {
      return ListenSyntaxError(value, "missing ':PORT' after the IPv6 address");
    }
    port_text = value.substr(close + 2);
  } else {
    const std::size_t colon = value.rfind(':');
    if (colon == std::string_view::npos) return ListenSyntaxError(value, "missing ':PORT'");
    out.host = std::string(value.substr(0, colon));
    if (out.host.find(':') != std::string::npos) {
      return ListenSyntaxError(value, "an IPv6 address must be in brackets");
    }
    if (out.host.empty()) out.host = "0.0.0.0";
    port_text = value.substr(colon + 1);
  }
  if (port_text.empty()) return ListenSyntaxError(value, "missing port");
  int port = -1;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return ListenSyntaxError(value, fmt::format("port '{}' is not a number from 0 to 65535", port_text));
  }
  out.port = port;
  return out;
}

StatusServer::StatusServer(StatusServerOptions options, std::string host)
    : options_(std::move(options)), host_(std::move(host)), server_(std::make_unique<httplib::Server>()) {}

absl::StatusOr<std::unique_ptr<StatusServer>> StatusServer::Start(StatusServerOptions options) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress(options.listen);
  if (!address.ok()) return address.status();
  const std::string listen = options.listen;
  std::unique_ptr<StatusServer> server(new StatusServer(std::move(options), address->host));
  httplib::Server& http = *server->server_;

  // httplib's default also sets SO_REUSEPORT, which would let a second process bind the same port
  // and silently split the scrapes; SO_REUSEADDR alone still allows a quick restart.
  http.set_socket_options([](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  StatusServer* self = server.get();
  http.Get("/healthz",
           [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", kTextContentType); });
  http.Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    absl::Status ready = self->options_.readiness ? self->options_.readiness() : absl::OkStatus();
    if (ready.ok()) {
      std::string text = self->options_.ready_text ? self->options_.ready_text() : "";
      res.set_content(text.empty() ? "ok" : text, kTextContentType);
    } else {
      res.status = 503;
      res.set_content(std::string(ready.message()), kTextContentType);
    }
  });
  http.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    res.set_content(self->options_.metrics != nullptr ? self->options_.metrics->RenderText() : std::string(),
                    util::kPrometheusTextContentType);
  });
  // Unrouted paths already get 404; give them a body that says what exists.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) res.set_content("not found; try /healthz, /readyz or /metrics", kTextContentType);
  });

  int port = -1;
  if (address->port == 0) {
    port = http.bind_to_any_port(address->host);
  } else if (http.bind_to_port(address->host, address->port)) {
    port = address->port;
  }
  if (port <= 0) {
    return absl::UnavailableError(
        fmt::format("{} {}: cannot listen: {}", kFlag, listen, DiagnoseBindFailure(address->host, address->port)));
  }
  server->port_ = port;

  std::promise<void> finished;
  server->finished_ = finished.get_future();
  server->thread_ = std::jthread([self, finished = std::move(finished)]() mutable {
    self->server_->listen_after_bind();
    finished.set_value();
  });
  return server;
}

void StatusServer::Stop() {
  if (!thread_.joinable()) return;
  // httplib's stop() does nothing until the listen loop has started, so repeat it until the loop
  // has returned; normally the first call suffices.
  do {
    server_->stop();
  } while (finished_.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready);
  thread_.join();
}

StatusServer::~StatusServer() { Stop(); }

}  // namespace omni_proxmox::cli
