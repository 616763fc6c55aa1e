// SPDX-License-Identifier: Apache-2.0
#include "omni/signer.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "omni/encoding.h"
#include "omni/signing.h"
#include "util/escape.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni {

std::string BuildSignaturePayload(std::string_view method, const GrpcMetadata& metadata) {
  std::string out = "{\"headers\":{";
  bool first = true;
  for (std::string_view name : kSignedHeaderNames) {
    if (!first) out += ',';
    first = false;
    out += util::GoJsonQuote(name);
    out += ':';
    std::string values;
    for (const auto& [key, value] : metadata) {
      if (key != name) continue;
      values += values.empty() ? "[" : ",";
      values += util::GoJsonQuote(value);
    }
    // Go compares with reflect.DeepEqual: nil (absent) is `null`, and `[]` would not match it.
    out += values.empty() ? "null" : values + "]";
  }
  out += "},\"method\":";
  out += util::GoJsonQuote(method);
  out += '}';
  return out;
}

std::string FormatSignatureHeader(std::string_view identity, std::string_view fingerprint,
                                  std::string_view binary_signature) {
  return fmt::format("{} {} {} {}", kSignatureVersion, identity, fingerprint, Base64Encode(binary_signature));
}

RequestSigner::RequestSigner(std::string identity, std::unique_ptr<PgpSigningKey> key, const util::Clock& clock)
    : identity_(std::move(identity)), key_(std::move(key)), clock_(clock) {
  auto id = ProviderIdFromKeyName(identity_);
  if (id.ok()) provider_id_ = *id;
}

RequestSigner::~RequestSigner() = default;

const std::string& RequestSigner::fingerprint() const { return key_->info().fingerprint; }
const std::string& RequestSigner::user_id() const { return key_->info().primary_uid; }

absl::StatusOr<std::unique_ptr<RequestSigner>> RequestSigner::Create(const ServiceAccountKey& key,
                                                                     const util::Clock& clock,
                                                                     bool require_infra_provider) {
  if (key.name.empty() || key.name.find(' ') != std::string::npos) {
    return absl::InvalidArgumentError(
        fmt::format("service account key: name '{}' must be non-empty and contain no spaces", key.name));
  }
  if (require_infra_provider) OP_RETURN_IF_ERROR(ProviderIdFromKeyName(key.name).status());
  auto loaded = PgpSigningKey::Load(key.armored_private_key, clock.Now());
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        fmt::format("service account key '{}': {}", key.name, std::string(loaded.status().message())));
  }
  return std::unique_ptr<RequestSigner>(new RequestSigner(key.name, *std::move(loaded), clock));
}

absl::StatusOr<GrpcMetadata> RequestSigner::Sign(std::string_view method, GrpcMetadata metadata) const {
  std::erase_if(metadata, [](const auto& entry) {
    return entry.first == kTimestampHeader || entry.first == kPayloadHeader || entry.first == kSignatureHeader;
  });
  auto now = clock_.Now();
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  metadata.emplace_back(std::string(kTimestampHeader), std::to_string(seconds));
  std::string payload = BuildSignaturePayload(method, metadata);
  OP_ASSIGN_OR_RETURN(std::string signature, key_->SignDetached(payload, now));
  metadata.emplace_back(std::string(kPayloadHeader), payload);
  metadata.emplace_back(std::string(kSignatureHeader), FormatSignatureHeader(identity_, fingerprint(), signature));
  return metadata;
}

}  // namespace omni_proxmox::omni
