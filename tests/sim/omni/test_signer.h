// SPDX-License-Identifier: Apache-2.0
#pragma once

// A minimal request signer for the stand-in's tests, written from the protocol notes
// (omni-protocol.md section 2.3) inside the test tree: the product's signer in src/omni/ is
// deliberately not used, so the stand-in's verifier is checked against a second reading.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace omni_proxmox::sim::omni::testing {

struct SignerKey {
  std::string name;         // JSON "name"
  std::string armored;      // the armored secret key
  std::string fingerprint;  // lowercase
};

// Decodes the base64 JSON service-account key format.
absl::StatusOr<SignerKey> DecodeServiceAccountKey(const std::string& encoded);

// Detached binary SHA-256 signature by the primary key, created at `unix_time`. librnp checks
// the key's validity at `key_time` (default: unix_time), so tests can sign with an expired key.
absl::StatusOr<std::string> SignDetached(const SignerKey& key, const std::string& data, std::int64_t unix_time,
                                         std::int64_t key_time = -1);

// The metadata a signed call carries: x-sidero-timestamp / -payload / -signature.
// `payload_override`, when non-empty, replaces the payload text (it is still signed).
absl::StatusOr<std::multimap<std::string, std::string>> SignedMetadata(const SignerKey& key, const std::string& method,
                                                                       std::int64_t unix_time,
                                                                       const std::string& payload_override = "",
                                                                       std::int64_t key_time = -1);

}  // namespace omni_proxmox::sim::omni::testing
