// SPDX-License-Identifier: Apache-2.0
#include "omni/tls_roots.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace omni_proxmox::omni {

std::optional<std::string> ProcessEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

RootsFile ResolveRootsFile(const std::string& ca_file, const std::string& ca_file_origin, const EnvLookup& env) {
  if (!ca_file.empty()) return {.path = ca_file, .origin = ca_file_origin, .system = false};
  for (const char* name : {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "SSL_CERT_FILE"}) {
    if (auto path = env(name)) return {.path = *path, .origin = name, .system = false};
  }
  return {.path = kSystemRootsFile, .origin = "the system bundle", .system = true};
}

absl::StatusOr<Roots> LoadRoots(const RootsFile& file) {
  std::ifstream in(file.path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        fmt::format("{} '{}': cannot read it; name a readable PEM file with the CA that signed Omni's certificate",
                    file.origin, file.path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  Roots roots{.pem = text.str(), .certificates = 0};
  // Count what OpenSSL (gRPC's TLS) will take from it: every PEM certificate block.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(roots.pem.data(), static_cast<int>(roots.pem.size())),
                                                &BIO_free);
  while (bio) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    ++roots.certificates;
    X509_free(cert);
  }
  ERR_clear_error();  // the read that ends the loop leaves "no start line" behind
  if (roots.certificates == 0) {
    return absl::InvalidArgumentError(
        fmt::format("{} '{}': holds no PEM certificate (-----BEGIN CERTIFICATE-----); convert a DER file with "
                    "openssl x509 -inform der -in FILE -out ca.pem",
                    file.origin, file.path));
  }
  return roots;
}

}  // namespace omni_proxmox::omni
