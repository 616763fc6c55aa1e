// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

#include "util/clock.h"
#include "util/secret.h"

// Omni service-account keys: the base64 JSON `{"name": ..., "pgp_key": <armored private key>}` format of
// go-api-signature (docs/omni-client.md), and key generation for tests and the Omni stand-in.
namespace omni_proxmox::omni {

inline constexpr std::string_view kInfraProviderKeyPrefix = "infra-provider:";
inline constexpr std::string_view kInfraProviderEmailDomain = "infra-provider.serviceaccount.omni.sidero.dev";

// A decoded service-account key. `name` is the identity put in the signature header.
struct ServiceAccountKey {
  std::string name;
  util::Secret<std::string> armored_private_key;
};

// Decodes the base64 JSON form. Errors name the problem and the fix (never the key material).
absl::StatusOr<ServiceAccountKey> DecodeServiceAccountKey(std::string_view encoded);
// Encodes into the base64 JSON form (standard base64 with padding).
util::Secret<std::string> EncodeServiceAccountKey(const ServiceAccountKey& key);

// The provider ID of an infra-provider key name ("infra-provider:<id>"), or InvalidArgument explaining
// that a provider needs an infra-provider key.
absl::StatusOr<std::string> ProviderIdFromKeyName(std::string_view name);

struct GeneratedKey {
  ServiceAccountKey key;
  util::Secret<std::string> encoded;  // what `omnictl infraprovider create` prints
  std::string armored_public_key;     // what Omni stores as the PublicKey
  std::string fingerprint;            // lowercase v4 fingerprint
};

// Generates an Omni-style key: v4 EdDSA/Ed25519 primary (sign+certify) with a Curve25519 ECDH subkey,
// SHA-256, unencrypted, user ID "<user_name> <email>", created at clock.Now(), expiring after `lifetime`
// (zero: never, which Omni refuses; useful only to test that refusal).
// `name` is the service-account name, e.g. "infra-provider:proxmox".
absl::StatusOr<GeneratedKey> GenerateServiceAccountKey(std::string name, std::string user_name, std::string email,
                                                       std::chrono::seconds lifetime, const util::Clock& clock);

// Convenience for an infra provider: name "infra-provider:<id>", email "<id>@infra-provider...".
absl::StatusOr<GeneratedKey> GenerateInfraProviderKey(std::string_view provider_id, std::chrono::seconds lifetime,
                                                      const util::Clock& clock);

}  // namespace omni_proxmox::omni
