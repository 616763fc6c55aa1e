// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

#include "omni/keys.h"
#include "util/clock.h"

// go-api-signature "siderov1" request signing (docs/omni-client.md, protocol notes §2.3): every unary call
// and every stream open carries x-sidero-timestamp, x-sidero-payload and x-sidero-signature.
namespace omni_proxmox::omni {

class PgpSigningKey;

// gRPC metadata to send, in order. Keys are lowercase wire names.
using GrpcMetadata = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view kTimestampHeader = "x-sidero-timestamp";
inline constexpr std::string_view kPayloadHeader = "x-sidero-payload";
inline constexpr std::string_view kSignatureHeader = "x-sidero-signature";
inline constexpr std::string_view kSignatureVersion = "siderov1";

// The header names covered by the signed payload, in Go's sorted map-key order.
inline constexpr std::array<std::string_view, 10> kSignedHeaderNames = {
    "authorization", "cluster",   "context", "fieldSelectors",    "namespace", "nodes",
    "runtime",       "selectors", "uid",     "x-sidero-timestamp"};

// The signed payload: compact JSON {"headers":{<10 names>: [values...] | null},"method":"<method>"}, with
// `null` (never `[]`) for a header absent from `metadata`. Pure.
std::string BuildSignaturePayload(std::string_view method, const GrpcMetadata& metadata);

// "siderov1 <identity> <fingerprint> <base64(signature)>".
std::string FormatSignatureHeader(std::string_view identity, std::string_view fingerprint,
                                  std::string_view binary_signature);

// Signs outgoing calls with one service-account key. Thread-safe.
class RequestSigner {
 public:
  // Loads and validates `key` at clock.Now(). With `require_infra_provider`, the key name must be
  // "infra-provider:<id>". `clock` must outlive the signer.
  static absl::StatusOr<std::unique_ptr<RequestSigner>> Create(const ServiceAccountKey& key, const util::Clock& clock,
                                                               bool require_infra_provider);
  ~RequestSigner();

  // Returns `metadata` with any previous x-sidero-* entries replaced by a fresh timestamp, payload and
  // signature for `method` (full name with leading slash, e.g. "/cosi.resource.State/Get").
  absl::StatusOr<GrpcMetadata> Sign(std::string_view method, GrpcMetadata metadata) const;

  const std::string& identity() const { return identity_; }
  const std::string& fingerprint() const;
  // The key's primary user ID, "<name> <email>": the email is the identity Omni trusts.
  const std::string& user_id() const;
  // The provider ID for an infra-provider key, else nullopt.
  const std::optional<std::string>& provider_id() const { return provider_id_; }

 private:
  RequestSigner(std::string identity, std::unique_ptr<PgpSigningKey> key, const util::Clock& clock);
  std::string identity_;
  std::optional<std::string> provider_id_;
  std::unique_ptr<PgpSigningKey> key_;
  const util::Clock& clock_;
};

}  // namespace omni_proxmox::omni
