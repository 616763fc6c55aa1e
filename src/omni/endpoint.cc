// SPDX-License-Identifier: Apache-2.0
#include "omni/endpoint.h"

#include <charconv>

#include <fmt/format.h>

namespace omni_proxmox::omni {
namespace {

absl::Status Bad(std::string_view url, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format(
      "omni API endpoint '{}': {}; use https://<host>[:<port>] (TLS) or http://<host>:<port> (plaintext)", url, why));
}

}  // namespace

std::string Endpoint::Target() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

absl::StatusOr<Endpoint> ParseEndpoint(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return Bad(url, "missing scheme");
  std::string scheme(url.substr(0, scheme_end));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  Endpoint endpoint;
  if (scheme == "https") {
    endpoint.tls = true;
    endpoint.port = 443;
  } else if (scheme == "http" || scheme == "grpc") {
    endpoint.port = 80;
  } else {
    return Bad(url, fmt::format("unsupported scheme '{}'", scheme));
  }
  std::string_view rest = url.substr(scheme_end + 3);
  // "https://https://host/" would otherwise parse as host "https" and fail on DNS forever.
  if (rest.find("://") != std::string_view::npos) return Bad(url, "a second scheme follows the first");
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    return Bad(url, "user information is not supported in the URL");
  }
  std::string_view host = rest;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return Bad(url, "unterminated IPv6 address");
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Bad(url, "unexpected text after the IPv6 address");
      port = after.substr(1);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return Bad(url, "missing host");
  if (!rest.empty() && rest.back() == ':') {
    return Bad(url, "empty port after ':'");
  }
  if (!port.empty()) {
    int value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value < 1 || value > 65535) {
      return Bad(url, fmt::format("invalid port '{}'", port));
    }
    endpoint.port = value;
  }
  endpoint.host = std::string(host);
  return endpoint;
}

}  // namespace omni_proxmox::omni
