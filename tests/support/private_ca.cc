// SPDX-License-Identifier: Apache-2.0
#include "support/private_ca.h"

#include <memory>
#include <utility>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace omni_proxmox::testing {
namespace {

struct Deleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter>;

std::string Pem(X509* cert, EVP_PKEY* key) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (cert != nullptr) PEM_write_bio_X509(bio.get(), cert);
  if (key != nullptr) PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// A certificate for `key` named `cn`, issued by `issuer` (null: itself) and signed with `signer`.
Owned<X509> Certificate(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* signer, long serial,
                        const std::vector<std::pair<int, std::string>>& extensions) {
  Owned<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -24 * 3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  for (const auto& [nid, value] : extensions) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
    Owned<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) return nullptr;
  }
  if (X509_sign(cert.get(), signer, EVP_sha256()) == 0) return nullptr;
  return cert;
}

}  // namespace

absl::StatusOr<PrivateCa> MakePrivateCa(const std::string& name) {
  Owned<EVP_PKEY> ca_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  Owned<EVP_PKEY> server_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!ca_key || !server_key) return absl::InternalError("private CA: cannot generate P-256 keys");
  auto ca = Certificate(ca_key.get(), name, nullptr, ca_key.get(), 1,
                        {{NID_basic_constraints, "critical,CA:TRUE"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                         {NID_subject_key_identifier, "hash"}});
  if (!ca) return absl::InternalError("private CA: cannot make the CA certificate");
  auto server = Certificate(server_key.get(), name + " server", ca.get(), ca_key.get(), 2,
                            {{NID_basic_constraints, "critical,CA:FALSE"},
                             {NID_key_usage, "critical,digitalSignature"},
                             {NID_ext_key_usage, "serverAuth"},
                             {NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"},
                             {NID_authority_key_identifier, "keyid"}});
  if (!server) return absl::InternalError("private CA: cannot make the server certificate");
  return PrivateCa{.ca_pem = Pem(ca.get(), nullptr),
                   .server_cert_pem = Pem(server.get(), nullptr),
                   .server_key_pem = Pem(nullptr, server_key.get())};
}

}  // namespace omni_proxmox::testing
