// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fmt/format.h"
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace omni_proxmox::sim::pve {
namespace {

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxBodyBytes = 64 * 1024 * 1024;  // uploads of ISOs fit

std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  if (code == 0) return "unknown OpenSSL error";
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof(buffer));
  return buffer;
}

std::string ToLower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string Trim(const std::string& text) {
  std::size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  std::size_t end = text.find_last_not_of(" \t\r");
  return text.substr(begin, end - begin + 1);
}

}  // namespace

std::string PercentDecode(const std::string& text, bool plus_as_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<TlsMaterial> GenerateSelfSignedCertificate(const std::string& common_name) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return absl::InternalError(fmt::format("generate tls key: {}", OpenSslError()));
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_guard(key, EVP_PKEY_free);
  X509* cert = X509_new();
  std::unique_ptr<X509, decltype(&X509_free)> cert_guard(cert, X509_free);
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3650L * 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("omni-proxmox pve-sim"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  for (const auto& [nid, value] :
       {std::pair{NID_subject_alt_name, std::string("DNS:localhost,IP:127.0.0.1,IP:::1,DNS:") + common_name},
        std::pair{NID_basic_constraints, std::string("critical,CA:TRUE")}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (ext == nullptr) return absl::InternalError(fmt::format("tls certificate extension: {}", OpenSslError()));
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert, key, EVP_sha256()) == 0) {
    return absl::InternalError(fmt::format("sign tls certificate: {}", OpenSslError()));
  }
  auto to_pem = [](auto write) {
    BIO* bio = BIO_new(BIO_s_mem());
    write(bio);
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    return pem;
  };
  TlsMaterial material;
  material.certificate_pem = to_pem([&](BIO* bio) { PEM_write_bio_X509(bio, cert); });
  material.private_key_pem =
      to_pem([&](BIO* bio) { PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr); });
  return material;
}

struct HttpServer::Connection {
  int fd = -1;
  SSL* ssl = nullptr;
  std::string peer;
  std::atomic<bool> done{false};
  std::jthread thread;
  std::string buffer;  // bytes read but not consumed

  // Returns bytes read, 0 on EOF/error.
  long Read(char* out, std::size_t size) {
    if (ssl != nullptr) {
      int n = SSL_read(ssl, out, static_cast<int>(size));
      return n > 0 ? n : 0;
    }
    while (true) {
      // Clients that write headers and body separately (Nagle) would otherwise wait for our
      // delayed ACK, about 40 ms per request.
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
      ssize_t n = ::recv(fd, out, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n > 0 ? n : 0;
    }
  }
  bool WriteAll(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      long n;
      if (ssl != nullptr) {
        n = SSL_write(ssl, data.data() + sent, static_cast<int>(data.size() - sent));
      } else {
        n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
      }
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }
  bool Fill() {
    char chunk[16384];
    long n = Read(chunk, sizeof(chunk));
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  // Reads until `delimiter` is buffered; returns its position or npos on EOF / limit.
  std::size_t ReadUntil(const std::string& delimiter, std::size_t limit) {
    std::size_t from = 0;
    while (true) {
      std::size_t pos = buffer.find(delimiter, from);
      if (pos != std::string::npos) return pos;
      if (buffer.size() > limit) return std::string::npos;
      from = buffer.size() >= delimiter.size() ? buffer.size() - delimiter.size() : 0;
      if (!Fill()) return std::string::npos;
    }
  }
  bool ReadExactly(std::size_t size, std::string& out) {
    while (buffer.size() < size) {
      if (!Fill()) return false;
    }
    out = buffer.substr(0, size);
    buffer.erase(0, size);
    return true;
  }
};

HttpServer::HttpServer() = default;
HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::Start(const std::string& bind_address, int port, const TlsMaterial* tls, Handler handler) {
  handler_ = std::move(handler);
  if (tls != nullptr) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) return absl::InternalError(fmt::format("tls context: {}", OpenSslError()));
    ssl_ctx_ = ctx;
    BIO* cert_bio = BIO_new_mem_buf(tls->certificate_pem.data(), static_cast<int>(tls->certificate_pem.size()));
    X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
    BIO_free(cert_bio);
    BIO* key_bio = BIO_new_mem_buf(tls->private_key_pem.data(), static_cast<int>(tls->private_key_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
    BIO_free(key_bio);
    bool ok = cert != nullptr && key != nullptr && SSL_CTX_use_certificate(ctx, cert) == 1 &&
              SSL_CTX_use_PrivateKey(ctx, key) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!ok) return absl::InternalError(fmt::format("tls certificate: {}", OpenSslError()));
  }
  sockaddr_in6 address6{};
  sockaddr_in address4{};
  bool v6 = bind_address.find(':') != std::string::npos;
  listen_fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return absl::InternalError(fmt::format("socket: {}", std::strerror(errno)));
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int rc;
  if (v6) {
    address6.sin6_family = AF_INET6;
    address6.sin6_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET6, bind_address.c_str(), &address6.sin6_addr) != 1) {
      return absl::InvalidArgumentError(fmt::format("listen address '{}' is not an IP address", bind_address));
    }
    rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address6), sizeof(address6));
  } else {
    address4.sin_family = AF_INET;
    address4.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, bind_address.c_str(), &address4.sin_addr) != 1) {
      return absl::InvalidArgumentError(
          fmt::format("listen address '{}' is not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)", bind_address));
    }
    rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address4), sizeof(address4));
  }
  if (rc != 0) {
    return absl::UnavailableError(fmt::format("bind {}:{}: {}", bind_address, port, std::strerror(errno)));
  }
  if (::listen(listen_fd_, 512) != 0) return absl::InternalError(fmt::format("listen: {}", std::strerror(errno)));
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length);
  port_ =
      ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return absl::InternalError("pipe");
  accept_thread_ = std::jthread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    char byte = 1;
    [[maybe_unused]] auto n = ::write(wake_pipe_[1], &byte, 1);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  std::list<std::unique_ptr<Connection>> connections;
  {
    std::lock_guard lock(mutex_);
    for (auto& connection : connections_) ::shutdown(connection->fd, SHUT_RDWR);
    connections.swap(connections_);
  }
  for (auto& connection : connections) {
    if (connection->thread.joinable()) connection->thread.join();
    ::close(connection->fd);
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : wake_pipe_) {
    if (fd >= 0) ::close(fd);
  }
  listen_fd_ = -1;
  wake_pipe_[0] = wake_pipe_[1] = -1;
  if (ssl_ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
  ssl_ctx_ = nullptr;
}

void HttpServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (stopping_.load() || (fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & POLLIN) == 0) continue;
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto connection = std::make_unique<Connection>();
    connection->fd = fd;
    char text[INET6_ADDRSTRLEN] = {0};
    if (peer.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, text, sizeof(text));
    } else {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, text, sizeof(text));
    }
    connection->peer = text;
    std::lock_guard lock(mutex_);
    // Reap connections whose threads have finished, so long runs do not accumulate them.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done.load()) {
        (*it)->thread.join();
        ::close((*it)->fd);
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    Connection* raw = connection.get();
    connections_.push_back(std::move(connection));
    raw->thread = std::jthread([this, raw] { Serve(raw); });
  }
}

void HttpServer::Serve(Connection* connection) {
  if (ssl_ctx_ != nullptr) {
    connection->ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
    SSL_set_fd(connection->ssl, connection->fd);
    if (SSL_accept(connection->ssl) != 1) {
      SSL_free(connection->ssl);
      connection->ssl = nullptr;
      ::shutdown(connection->fd, SHUT_RDWR);
      connection->done = true;
      return;
    }
  }
  while (!stopping_.load()) {
    std::size_t end = connection->ReadUntil("\r\n\r\n", kMaxHeaderBytes);
    if (end == std::string::npos) break;
    std::string head = connection->buffer.substr(0, end);
    connection->buffer.erase(0, end + 4);
    HttpRequest request;
    request.peer = connection->peer;
    std::size_t line_end = head.find("\r\n");
    std::string request_line = head.substr(0, line_end);
    std::size_t sp1 = request_line.find(' ');
    std::size_t sp2 = request_line.rfind(' ');
    if (sp1 == std::string::npos || sp2 == sp1) break;
    request.method = request_line.substr(0, sp1);
    request.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string version = request_line.substr(sp2 + 1);
    std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      std::size_t next = head.find("\r\n", pos);
      if (next == std::string::npos) next = head.size();
      std::string line = head.substr(pos, next - pos);
      pos = next + 2;
      std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = ToLower(Trim(line.substr(0, colon)));
      std::string value = Trim(line.substr(colon + 1));
      auto [it, inserted] = request.headers.emplace(name, value);
      if (!inserted) it->second += ", " + value;
    }
    std::size_t question = request.target.find('?');
    request.raw_path = request.target.substr(0, question);
    request.query = question == std::string::npos ? "" : request.target.substr(question + 1);
    request.path = PercentDecode(request.raw_path, false);
    bool ok = true;
    if (ToLower(request.Header("transfer-encoding")).find("chunked") != std::string::npos) {
      while (true) {
        std::size_t size_end = connection->ReadUntil("\r\n", kMaxHeaderBytes);
        if (size_end == std::string::npos) {
          ok = false;
          break;
        }
        std::size_t chunk_size = std::strtoul(connection->buffer.substr(0, size_end).c_str(), nullptr, 16);
        connection->buffer.erase(0, size_end + 2);
        std::string chunk;
        if (!connection->ReadExactly(chunk_size + 2, chunk) || request.body.size() + chunk_size > kMaxBodyBytes) {
          ok = false;
          break;
        }
        if (chunk_size == 0) break;
        request.body.append(chunk, 0, chunk_size);
      }
    } else if (auto length = request.Header("content-length"); !length.empty()) {
      std::size_t size = std::strtoul(length.c_str(), nullptr, 10);
      if (size > kMaxBodyBytes || !connection->ReadExactly(size, request.body)) ok = false;
    }
    if (!ok) break;
    HttpResponse response = handler_(request);
    if (response.drop_connection) break;
    bool close = ToLower(request.Header("connection")) == "close" || version == "HTTP/1.0";
    std::string out = fmt::format("HTTP/1.1 {} {}\r\n", response.status, response.reason);
    for (const auto& [name, value] : response.headers) out += fmt::format("{}: {}\r\n", name, value);
    out += fmt::format("Content-Length: {}\r\n", response.body.size());
    if (close) out += "Connection: close\r\n";
    out += "\r\n";
    if (request.method != "HEAD") out += response.body;
    if (!connection->WriteAll(out) || close) break;
  }
  if (connection->ssl != nullptr) {
    SSL_shutdown(connection->ssl);
    SSL_free(connection->ssl);
  }
  // The fd is closed by whoever joins this thread, so Stop() never shuts down a reused descriptor.
  ::shutdown(connection->fd, SHUT_RDWR);
  connection->done = true;
}

}  // namespace omni_proxmox::sim::pve
