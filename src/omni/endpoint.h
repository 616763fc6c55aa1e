// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

// Omni API endpoint parsing, as the Go client does it: scheme and host:port only, any path ignored.
namespace omni_proxmox::omni {

struct Endpoint {
  std::string host;  // without brackets for IPv6
  int port = 0;
  bool tls = false;  // https: TLS (roots: tls_roots.h), SNI = host; http/grpc: plaintext HTTP/2 (h2c)

  // "host:port" (IPv6 in brackets), the gRPC target.
  std::string Target() const;
};

// "https://h" -> h:443 TLS; "https://h:p" -> TLS; "http://h[:p]" and "grpc://h[:p]" -> plaintext, port 80
// by default. InvalidArgument naming the setting and the accepted forms for anything else.
absl::StatusOr<Endpoint> ParseEndpoint(std::string_view url);

}  // namespace omni_proxmox::omni
