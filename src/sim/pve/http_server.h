// SPDX-License-Identifier: Apache-2.0
#pragma once

// A small HTTP/1.1 server (plain or TLS) used by the PVE simulator. cpp-httplib cannot set the
// reason phrase, and Proxmox puts its error text there, so the simulator speaks HTTP itself.

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace omni_proxmox::sim::pve {

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: path plus optional ?query
  std::string path;    // percent-decoded path without the query
  std::string raw_path;
  std::string query;                           // raw query string, without '?'
  std::map<std::string, std::string> headers;  // names lower-cased; repeated headers joined with ", "
  std::string body;
  std::string peer;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string reason = "OK";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool drop_connection = false;  // close the socket without writing anything
};

// Self-signed certificate and key in PEM, generated with OpenSSL for "localhost" and 127.0.0.1.
struct TlsMaterial {
  std::string certificate_pem;
  std::string private_key_pem;
};
absl::StatusOr<TlsMaterial> GenerateSelfSignedCertificate(const std::string& common_name);

// Serves connections on one listening socket, one thread per open connection (keep-alive).
// The handler runs concurrently on those threads and must be thread-safe. Stop() (also run by the
// destructor) closes every socket and joins every thread.
class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting. `tls` may be null for plain HTTP.
  absl::Status Start(const std::string& bind_address, int port, const TlsMaterial* tls, Handler handler);
  void Stop();
  int port() const { return port_; }

 private:
  struct Connection;
  void AcceptLoop();
  void Serve(Connection* connection);

  Handler handler_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int port_ = 0;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*, kept opaque so this header needs no OpenSSL
  std::atomic<bool> stopping_{false};
  std::jthread accept_thread_;
  std::mutex mutex_;
  std::list<std::unique_ptr<Connection>> connections_;
};

// Percent-decodes `text`; with `plus_as_space`, '+' becomes ' ' (form encoding).
std::string PercentDecode(const std::string& text, bool plus_as_space);

}  // namespace omni_proxmox::sim::pve
