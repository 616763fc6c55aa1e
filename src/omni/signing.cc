// SPDX-License-Identifier: Apache-2.0
#include "omni/signing.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "omni/internal/rnp_util.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni {
namespace {

using internal::Ffi;
using internal::Key;
using internal::RnpError;
using internal::TakeString;
using SystemTime = util::Clock::SystemTime;

uint64_t ToUnix(SystemTime t) {
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  return seconds < 1 ? 1 : static_cast<uint64_t>(seconds);
}

SystemTime FromUnix(uint64_t seconds) { return SystemTime{std::chrono::seconds{seconds}}; }

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string FormatTime(SystemTime t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", std::chrono::time_point_cast<std::chrono::seconds>(t));
}

// Imports `armored` into a context whose notion of "now" is `now`, so validity (expiry) is judged at the
// injected time rather than the host clock.
absl::StatusOr<Ffi> ImportAt(std::string_view armored, uint64_t now) {
  OP_ASSIGN_OR_RETURN(Ffi ffi, internal::MakeFfi());
  rnp_set_timestamp(ffi.get(), now);
  OP_RETURN_IF_ERROR(internal::ImportKeys(ffi.get(), armored));
  return ffi;
}

uint32_t CreationOf(rnp_key_handle_t key) {
  uint32_t created = 0;
  rnp_key_get_creation(key, &created);
  return created;
}

absl::StatusOr<PgpKeyInfo> Describe(rnp_key_handle_t key) {
  PgpKeyInfo info;
  char* value = nullptr;
  if (rnp_result_t rc = rnp_key_get_fprint(key, &value); rc != RNP_SUCCESS) {
    return RnpError("read key fingerprint", rc);
  }
  info.fingerprint = Lower(TakeString(value));
  value = nullptr;
  if (rnp_result_t rc = rnp_key_get_alg(key, &value); rc != RNP_SUCCESS) {
    return RnpError("read key algorithm", rc);
  }
  info.algorithm = TakeString(value);
  value = nullptr;
  if (rnp_key_get_curve(key, &value) == RNP_SUCCESS) info.curve = TakeString(value);
  value = nullptr;
  if (rnp_key_get_primary_uid(key, &value) == RNP_SUCCESS) info.primary_uid = TakeString(value);
  info.created = FromUnix(CreationOf(key));
  uint64_t till = 0;
  if (rnp_key_valid_till64(key, &till) == RNP_SUCCESS && till != 0 && till != std::numeric_limits<uint64_t>::max()) {
    info.expires = FromUnix(till);
  }
  uint32_t expiration = 0;
  if (!info.expires && rnp_key_get_expiration(key, &expiration) == RNP_SUCCESS && expiration != 0) {
    info.expires = info.created + std::chrono::seconds{expiration};
  }
  return info;
}

absl::Status CheckAlgorithm(const PgpKeyInfo& info) {
  if (info.algorithm != "EDDSA" || info.curve != "Ed25519") {
    return absl::InvalidArgumentError(
        fmt::format("key {} is {}{}{}, but Omni service-account keys must be OpenPGP v4 EdDSA keys on Ed25519 "
                    "(algorithm 22); create the key with 'omnictl infraprovider create' or 'omnictl serviceaccount "
                    "create'",
                    info.fingerprint, info.algorithm, info.curve.empty() ? "" : "/", info.curve));
  }
  return absl::OkStatus();
}

// Why a key is not valid at `now`, as an actionable status.
absl::Status ExplainInvalid(rnp_key_handle_t key, const PgpKeyInfo& info, SystemTime now) {
  bool revoked = false;
  rnp_key_is_revoked(key, &revoked);
  if (revoked) {
    return absl::FailedPreconditionError(
        fmt::format("key {} is revoked; create a new key with 'omnictl infraprovider renewkey'", info.fingerprint));
  }
  if (info.expires && *info.expires <= now) {
    return absl::FailedPreconditionError(
        fmt::format("key {} expired at {}; create a new key with 'omnictl infraprovider renewkey <id>' and "
                    "update the service account key setting",
                    info.fingerprint, FormatTime(*info.expires)));
  }
  return absl::FailedPreconditionError(
      fmt::format("key {} has no valid self-signature at {}; export it again from the tool that "
                  "created it",
                  info.fingerprint, FormatTime(now)));
}

}  // namespace

struct PgpSigningKey::Impl {
  Ffi ffi;
  Key primary;
};

PgpSigningKey::PgpSigningKey(std::unique_ptr<Impl> impl, PgpKeyInfo info)
    : impl_(std::move(impl)), info_(std::move(info)) {}

PgpSigningKey::~PgpSigningKey() {
  // The key handle must go before the context that owns it.
  if (impl_) impl_->primary.reset();
}

absl::StatusOr<std::unique_ptr<PgpSigningKey>> PgpSigningKey::Load(const util::Secret<std::string>& armored_private_key,
                                                                   SystemTime now) {
  const std::string& armored = armored_private_key.Reveal();
  if (armored.find("-----BEGIN PGP PRIVATE KEY BLOCK-----") == std::string::npos) {
    return absl::InvalidArgumentError(
        "the pgp_key is not an ASCII-armored OpenPGP private key (no '-----BEGIN PGP PRIVATE KEY "
        "BLOCK-----' line)");
  }
  uint64_t now_unix = ToUnix(now);
  OP_ASSIGN_OR_RETURN(Ffi ffi, ImportAt(armored, now_unix));
  OP_ASSIGN_OR_RETURN(Key primary, internal::FindPrimaryKey(ffi.get()));
  uint32_t created = CreationOf(primary.get());
  if (created > now_unix) {
    // A key made on a host whose clock runs ahead: librnp would call it invalid "now". Judge it at its
    // creation time instead; signatures then carry that time (SignDetached).
    primary.reset();
    OP_ASSIGN_OR_RETURN(ffi, ImportAt(armored, created));
    OP_ASSIGN_OR_RETURN(primary, internal::FindPrimaryKey(ffi.get()));
  }
  OP_ASSIGN_OR_RETURN(PgpKeyInfo info, Describe(primary.get()));
  OP_RETURN_IF_ERROR(CheckAlgorithm(info));
  bool have_secret = false;
  rnp_key_have_secret(primary.get(), &have_secret);
  if (!have_secret) {
    return absl::InvalidArgumentError(
        fmt::format("key {} has no secret part for its primary key; the service account key must contain the "
                    "private key",
                    info.fingerprint));
  }
  bool is_protected = false;
  rnp_key_is_protected(primary.get(), &is_protected);
  if (is_protected) {
    return absl::InvalidArgumentError(
        fmt::format("key {} is protected by a passphrase; Omni service-account keys are unencrypted, export it "
                    "without a passphrase",
                    info.fingerprint));
  }
  bool valid = false;
  rnp_key_is_valid(primary.get(), &valid);
  if (!valid) {
    return ExplainInvalid(primary.get(), info, std::max(now, info.created));
  }
  if (info.expires && *info.expires <= now) {
    return ExplainInvalid(primary.get(), info, now);
  }
  bool can_sign = false;
  rnp_key_allows_usage(primary.get(), "sign", &can_sign);
  if (!can_sign) {
    return absl::InvalidArgumentError(
        fmt::format("key {}: the primary key is not allowed to sign; Omni verifies signatures of the primary key",
                    info.fingerprint));
  }
  auto impl = std::make_unique<Impl>();
  impl->ffi = std::move(ffi);
  impl->primary = std::move(primary);
  return std::unique_ptr<PgpSigningKey>(new PgpSigningKey(std::move(impl), std::move(info)));
}

absl::StatusOr<std::string> PgpSigningKey::SignDetached(std::string_view data, SystemTime now) const {
  if (info_.expires && *info_.expires <= now) {
    return absl::FailedPreconditionError(
        fmt::format("key {} expired at {}; create a new key with 'omnictl infraprovider renewkey <id>'",
                    info_.fingerprint, FormatTime(*info_.expires)));
  }
  std::lock_guard lock(mutex_);
  // Never date a signature before the key: verifiers reject that ("no valid self signature").
  uint64_t when = std::max(ToUnix(now), ToUnix(info_.created));
  rnp_set_timestamp(impl_->ffi.get(), when);
  OP_ASSIGN_OR_RETURN(auto input, internal::InputFromMemory(data));
  OP_ASSIGN_OR_RETURN(auto output, internal::OutputToMemory());
  rnp_op_sign_t op = nullptr;
  if (rnp_result_t rc = rnp_op_sign_detached_create(&op, impl_->ffi.get(), input.get(), output.get());
      rc != RNP_SUCCESS) {
    return RnpError("sign: create operation", rc);
  }
  std::unique_ptr<rnp_op_sign_st, decltype(&rnp_op_sign_destroy)> guard(op, &rnp_op_sign_destroy);
  rnp_op_sign_set_armor(op, false);
  rnp_op_sign_set_hash(op, "SHA256");
  rnp_op_sign_set_creation_time(op, static_cast<uint32_t>(when));
  rnp_op_sign_signature_t sig = nullptr;
  if (rnp_result_t rc = rnp_op_sign_add_signature(op, impl_->primary.get(), &sig); rc != RNP_SUCCESS) {
    return RnpError(fmt::format("sign with key {}", info_.fingerprint), rc, absl::StatusCode::kFailedPrecondition);
  }
  if (rnp_result_t rc = rnp_op_sign_execute(op); rc != RNP_SUCCESS) {
    return RnpError(fmt::format("sign with key {}", info_.fingerprint), rc);
  }
  guard.reset();
  return internal::OutputBytes(output.get());
}

absl::StatusOr<std::string> PgpSigningKey::ArmoredPublicKey() const {
  std::lock_guard lock(mutex_);
  OP_ASSIGN_OR_RETURN(auto output, internal::OutputToMemory());
  if (rnp_result_t rc = rnp_key_export(impl_->primary.get(), output.get(),
                                       RNP_KEY_EXPORT_ARMORED | RNP_KEY_EXPORT_PUBLIC | RNP_KEY_EXPORT_SUBKEYS);
      rc != RNP_SUCCESS) {
    return RnpError("export public key", rc);
  }
  return internal::OutputBytes(output.get());
}

absl::StatusOr<PgpKeyInfo> InspectPgpKey(std::string_view armored_key, SystemTime now) {
  OP_ASSIGN_OR_RETURN(Ffi ffi, ImportAt(armored_key, ToUnix(now)));
  OP_ASSIGN_OR_RETURN(Key primary, internal::FindPrimaryKey(ffi.get()));
  return Describe(primary.get());
}

absl::Status VerifyDetachedSignature(std::string_view armored_public_key, std::string_view data,
                                     std::string_view signature, SystemTime now) {
  OP_ASSIGN_OR_RETURN(Ffi ffi, ImportAt(armored_public_key, ToUnix(now)));
  std::string expected_fingerprint;
  {
    OP_ASSIGN_OR_RETURN(Key primary, internal::FindPrimaryKey(ffi.get()));
    OP_ASSIGN_OR_RETURN(PgpKeyInfo info, Describe(primary.get()));
    expected_fingerprint = info.fingerprint;
  }
  OP_ASSIGN_OR_RETURN(auto data_input, internal::InputFromMemory(data));
  OP_ASSIGN_OR_RETURN(auto signature_input, internal::InputFromMemory(signature));
  rnp_op_verify_t op = nullptr;
  if (rnp_result_t rc = rnp_op_verify_detached_create(&op, ffi.get(), data_input.get(), signature_input.get());
      rc != RNP_SUCCESS) {
    return RnpError("verify: create operation", rc);
  }
  std::unique_ptr<rnp_op_verify_st, decltype(&rnp_op_verify_destroy)> guard(op, &rnp_op_verify_destroy);
  rnp_result_t rc = rnp_op_verify_execute(op);
  size_t count = 0;
  rnp_op_verify_get_signature_count(op, &count);
  for (size_t i = 0; i < count; ++i) {
    rnp_op_verify_signature_t sig = nullptr;
    if (rnp_op_verify_get_signature_at(op, i, &sig) != RNP_SUCCESS) continue;
    if (rnp_op_verify_signature_get_status(sig) != RNP_SUCCESS) continue;
    rnp_key_handle_t key = nullptr;
    if (rnp_op_verify_signature_get_key(sig, &key) != RNP_SUCCESS || key == nullptr) continue;
    Key handle(key);
    char* fingerprint = nullptr;
    if (rnp_key_get_fprint(key, &fingerprint) != RNP_SUCCESS) continue;
    if (Lower(TakeString(fingerprint)) == expected_fingerprint) return absl::OkStatus();
  }
  if (rc != RNP_SUCCESS) {
    return RnpError("signature verification failed", rc, absl::StatusCode::kUnauthenticated);
  }
  return absl::UnauthenticatedError(
      fmt::format("no valid signature by the primary key {} over the data", expected_fingerprint));
}

}  // namespace omni_proxmox::omni
