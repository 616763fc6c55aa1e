// SPDX-License-Identifier: Apache-2.0
// Fuzzes the service-account key decoder (omni::DecodeServiceAccountKey): the value an operator
// pastes into OMNI_SERVICE_ACCOUNT_KEY or a key file.
//
// Invariants checked beyond "no crash, no sanitizer report, no hang":
//  - errors are InvalidArgument and never quote the armored key material;
//  - a decoded key encodes and decodes back to the same name and key;
//  - base64-decoded bytes round-trip through encoding.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "omni/encoding.h"
#include "omni/keys.h"

namespace {

namespace omni = omni_proxmox::omni;

void Require(bool condition) {
  if (!condition) std::abort();
}

// The pgp_key string of the decoded JSON, when there is one and it is not also part of the name
// (the name may legitimately be quoted in an error).
std::string ArmoredKeyOf(std::string_view encoded) {
  auto text = omni::Base64Decode(encoded);
  if (!text.ok()) return {};
  const auto json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return {};
  const auto pgp_key = json.find("pgp_key");
  if (pgp_key == json.end() || !pgp_key->is_string()) return {};
  const auto name = json.find("name");
  if (name != json.end() && name->is_string() &&
      name->get<std::string>().find(pgp_key->get<std::string>()) != std::string::npos) {
    return {};
  }
  return pgp_key->get<std::string>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view encoded(reinterpret_cast<const char*>(data), size);

  auto key = omni::DecodeServiceAccountKey(encoded);
  if (!key.ok()) {
    Require(key.status().code() == absl::StatusCode::kInvalidArgument);
    const std::string message(key.status().message());
    Require(message.rfind("service account key: ", 0) == 0);
    const std::string armored = ArmoredKeyOf(encoded);
    if (armored.size() >= 40) Require(message.find(armored) == std::string::npos);
  } else {
    const std::string& armored = key->armored_private_key.Reveal();
    Require(!key->name.empty() && !armored.empty());
    auto again = omni::DecodeServiceAccountKey(omni::EncodeServiceAccountKey(*key).Reveal());
    Require(again.ok());
    Require(again->name == key->name);
    Require(again->armored_private_key.Reveal() == armored);
    (void)omni::ProviderIdFromKeyName(key->name);
  }

  auto decoded = omni::Base64Decode(encoded);
  if (decoded.ok()) {
    // Not Base64Encode(*decoded) == encoded: like Go's StdEncoding, the decoder ignores non-zero bits
    // in the last character ("eyJ=" and "eyI=" are the same bytes), so only the bytes must round-trip.
    auto again = omni::Base64Decode(omni::Base64Encode(*decoded));
    Require(again.ok() && *again == *decoded);
  }
  return 0;
}
