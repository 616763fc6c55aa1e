// SPDX-License-Identifier: Apache-2.0
#pragma once

// Which certificates the Omni client trusts on a TLS endpoint, in this order: the CA file the
// operator names (--omni-ca-file, or OMNI_CA_FILE), else GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (gRPC's
// own variable), else SSL_CERT_FILE (OpenSSL's, which Go and so the Go provider honour too), else
// the system bundle. The file chosen replaces the system bundle rather than adding to it, as
// SSL_CERT_FILE does for OpenSSL and Go. Pure apart from reading the file.

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace omni_proxmox::omni {

inline constexpr char kSystemRootsFile[] = "/etc/ssl/certs/ca-certificates.crt";

struct RootsFile {
  std::string path;
  // Where the path came from, for messages: "--omni-ca-file", "SSL_CERT_FILE", "the system bundle", ...
  std::string origin;
  bool system = false;  // the system bundle: nothing the operator chose
};

using EnvLookup = std::function<std::optional<std::string>(const char* name)>;

// `ca_file`: what --omni-ca-file (or OMNI_CA_FILE) named, "" when nothing; `ca_file_origin` names
// which of the two it was. `env` reads the environment (std::getenv in production).
RootsFile ResolveRootsFile(const std::string& ca_file, const std::string& ca_file_origin, const EnvLookup& env);
// The environment through std::getenv; unset and empty are the same.
std::optional<std::string> ProcessEnv(const char* name);

// The PEM text of `file` and how many certificates it holds. InvalidArgument naming the file and
// its origin when it cannot be read or holds no PEM certificate (a DER file, a key, a typo).
struct Roots {
  std::string pem;
  int certificates = 0;
};
absl::StatusOr<Roots> LoadRoots(const RootsFile& file);

}  // namespace omni_proxmox::omni
