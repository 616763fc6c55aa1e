// SPDX-License-Identifier: Apache-2.0
#pragma once

// Omni's accounts as the stand-in sees them: service-account keys (Ed25519 OpenPGP keys made
// with librnp, handed out in the base64 JSON format of go-api-signature), the registry of
// public keys the server trusts, and the verification of signed gRPC requests
// (docs: /work/shared/docs/omni-protocol.md sections 2.1-2.4). Written independently of
// src/omni/, so a signing bug on the client cannot be mirrored here.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "util/clock.h"
#include "util/secret.h"

namespace omni_proxmox::sim::omni {

// Omni's role order (client/pkg/access/role/role.go): None < InfraProvider < Reader < Operator < Admin.
enum class Role { kNone = 0, kInfraProvider = 1, kReader = 2, kOperator = 3, kAdmin = 4 };
const char* RoleName(Role role);
// The inverse of RoleName; InvalidArgument naming the roles for anything else.
absl::StatusOr<Role> ParseRole(const std::string& name);

inline constexpr char kInfraProviderEmailSuffix[] = "@infra-provider.serviceaccount.omni.sidero.dev";
inline constexpr char kServiceAccountEmailSuffix[] = "@serviceaccount.omni.sidero.dev";

// A freshly generated service-account key.
struct GeneratedKey {
  util::Secret<std::string> encoded;  // base64(JSON {"name", "pgp_key"}): what an operator is given
  std::string name;                   // JSON "name", e.g. "infra-provider:proxmox"
  std::string email;                  // the key's user ID email: the identity Omni trusts
  std::string fingerprint;            // lowercase hex v4 fingerprint
  std::string public_key_armored;
  util::Clock::SystemTime expires{};
};

// Generates an Ed25519 (legacy EdDSA, algorithm 22) v4 primary key that signs and certifies,
// plus a Curve25519 encryption subkey, as omnictl does. `user_name` and `email` form the user
// ID "user_name (sim) <email>". Created at `now` so an injected clock is honoured.
absl::StatusOr<GeneratedKey> GenerateServiceAccountKey(const std::string& account_name, const std::string& user_name,
                                                       const std::string& email, std::chrono::seconds lifetime,
                                                       util::Clock::SystemTime now);

// The infra-provider key for `provider_id`: name "infra-provider:<id>", email "<id>@infra-provider...".
absl::StatusOr<GeneratedKey> GenerateInfraProviderKey(const std::string& provider_id, util::Clock::SystemTime now,
                                                      std::chrono::seconds lifetime = std::chrono::hours(24 * 365));

// Who made a verified request.
struct Caller {
  std::string email;  // the key's identity
  Role role = Role::kNone;
  std::string provider_id;  // set iff the identity is "<id>@infra-provider.serviceaccount.omni.sidero.dev"
};

// One registered public key (Omni's PublicKeys resource).
struct RegisteredKey {
  std::string fingerprint;
  std::string email;
  Role role = Role::kNone;
  util::Clock::SystemTime expires{};
  bool confirmed = true;
  bool revoked = false;
};

// The gRPC metadata of one call: lowercase keys, every value.
using Metadata = std::multimap<std::string, std::string>;

// The ten metadata keys covered by the signed payload (go-api-signature pkg/message/grpc.go).
const std::vector<std::string>& SignedHeaderNames();

// Trusted public keys plus request verification with librnp. Thread-safe.
class KeyRegistry {
 public:
  explicit KeyRegistry(const util::Clock& clock);
  ~KeyRegistry();
  KeyRegistry(const KeyRegistry&) = delete;
  KeyRegistry& operator=(const KeyRegistry&) = delete;

  // Registers the public half of `key` with `role` (Omni's CreateServiceAccount). The key must
  // expire, within 365 days (+1 min) of now, and its email must match the role's account kind.
  absl::Status Register(const GeneratedKey& key, Role role);
  // Marks a key as revoked: its signatures are refused from now on.
  absl::Status Revoke(const std::string& fingerprint);
  // Forgets every key of the account with this identity email (Omni's service account destroy):
  // later calls signed with them are refused. Returns how many keys went.
  int RemoveAccount(const std::string& email);
  std::vector<RegisteredKey> Keys() const;

  // Verifies a call to `method` (full name with the leading slash). Every refusal is
  // Unauthenticated "invalid signature", like Omni; `reason`, when given, receives the precise
  // cause for logs and tests.
  absl::StatusOr<Caller> Verify(const std::string& method, const Metadata& metadata,
                                std::string* reason = nullptr) const;

 private:
  absl::StatusOr<Caller> VerifyDetailed(const std::string& method, const Metadata& metadata) const;
  absl::Status VerifyDetachedSignature(const std::string& fingerprint, const std::string& payload,
                                       const std::string& signature, std::chrono::seconds verify_at_offset) const;

  const util::Clock& clock_;
  mutable std::mutex mutex_;  // guards keys_ and the librnp FFI (not thread-safe itself)
  std::map<std::string, RegisteredKey> keys_;
  struct Ffi;
  std::unique_ptr<Ffi> ffi_;
};

// Base64 (standard alphabet, padded). Decode refuses anything malformed.
std::string Base64Encode(const std::string& bytes);
absl::StatusOr<std::string> Base64Decode(const std::string& text);

}  // namespace omni_proxmox::sim::omni
