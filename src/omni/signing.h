// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

#include "util/clock.h"
#include "util/secret.h"

// OpenPGP primitives over librnp: load an Ed25519 signing key, make binary detached signatures, verify them.
// This is the layer the Omni stand-in may share with the client (key handling only; request payload
// construction lives in signer.h and is not shared).
namespace omni_proxmox::omni {

// What a key is, as far as Omni cares.
struct PgpKeyInfo {
  std::string fingerprint;  // v4 fingerprint, lowercase hex (40 chars), as Omni's PublicKey IDs
  std::string algorithm;    // librnp name, "EDDSA" for Omni keys
  std::string curve;        // "Ed25519" for Omni keys
  std::string primary_uid;  // e.g. "id (linux/amd64) <id@infra-provider.serviceaccount.omni.sidero.dev>"
  util::Clock::SystemTime created;
  std::optional<util::Clock::SystemTime> expires;  // nullopt: never expires
};

// An unencrypted OpenPGP v4 EdDSA/Ed25519 primary key able to sign. Thread-safe: librnp's ffi is not, so
// every operation holds mutex_.
class PgpSigningKey {
 public:
  // Imports an ASCII-armored private key. Fails with InvalidArgument (malformed, not Ed25519, passphrase
  // protected, primary cannot sign) or FailedPrecondition (expired at `now`, revoked) with a message that
  // says what to do. A key created after `now` (clock skew) is accepted; signatures then carry the key's
  // creation time.
  static absl::StatusOr<std::unique_ptr<PgpSigningKey>> Load(const util::Secret<std::string>& armored_private_key,
                                                             util::Clock::SystemTime now);
  ~PgpSigningKey();
  PgpSigningKey(const PgpSigningKey&) = delete;
  PgpSigningKey& operator=(const PgpSigningKey&) = delete;

  const PgpKeyInfo& info() const { return info_; }

  // Binary (not armored) detached SHA-256 signature over `data` by the primary key, created at `now`
  // (or at the key's creation time if that is later).
  absl::StatusOr<std::string> SignDetached(std::string_view data, util::Clock::SystemTime now) const;

  // The public part (primary + subkeys), ASCII-armored, as registered with Omni.
  absl::StatusOr<std::string> ArmoredPublicKey() const;

 private:
  struct Impl;
  explicit PgpSigningKey(std::unique_ptr<Impl> impl, PgpKeyInfo info);
  std::unique_ptr<Impl> impl_;
  PgpKeyInfo info_;
  mutable std::mutex mutex_;
};

// Reads an armored public (or private) key and describes its primary key. Validity is judged at `now`.
absl::StatusOr<PgpKeyInfo> InspectPgpKey(std::string_view armored_key, util::Clock::SystemTime now);

// Verifies a binary or armored detached signature over `data` against `armored_public_key`, as of `now`.
// OK only if at least one signature is valid and made by that key; Unauthenticated otherwise.
absl::Status VerifyDetachedSignature(std::string_view armored_public_key, std::string_view data,
                                     std::string_view signature, util::Clock::SystemTime now);

}  // namespace omni_proxmox::omni
