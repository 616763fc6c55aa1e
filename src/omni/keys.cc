// SPDX-License-Identifier: Apache-2.0
#include "omni/keys.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "omni/encoding.h"
#include "omni/internal/rnp_util.h"
#include "omni/signing.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni {
namespace {

using internal::RnpError;

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

}  // namespace

absl::StatusOr<ServiceAccountKey> DecodeServiceAccountKey(std::string_view encoded) {
  constexpr std::string_view kFix =
      "pass the value printed by 'omnictl infraprovider create <id>' (OMNI_SERVICE_ACCOUNT_KEY=...)";
  encoded = Trim(encoded);
  if (encoded.empty()) {
    return absl::InvalidArgumentError(fmt::format("service account key: empty; {}", kFix));
  }
  auto json_text = Base64Decode(encoded);
  if (!json_text.ok()) {
    return absl::InvalidArgumentError(fmt::format("service account key: not standard base64 ({}); {}",
                                                  std::string(json_text.status().message()), kFix));
  }
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(*json_text);
  } catch (const nlohmann::json::exception&) {
    // The parser's message may quote key material: keep it out.
    return absl::InvalidArgumentError(fmt::format("service account key: the base64 does not decode to JSON; {}", kFix));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(fmt::format("service account key: JSON is not an object; {}", kFix));
  }
  auto name = json.find("name");
  if (name == json.end() || !name->is_string() || name->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        fmt::format("service account key: field 'name' missing or not a string; {}", kFix));
  }
  auto pgp_key = json.find("pgp_key");
  if (pgp_key == json.end() || !pgp_key->is_string() || pgp_key->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        fmt::format("service account key: field 'pgp_key' missing or not a string; {}", kFix));
  }
  ServiceAccountKey key;
  key.name = name->get<std::string>();
  if (key.name.find(' ') != std::string::npos) {
    return absl::InvalidArgumentError(fmt::format(
        "service account key: name '{}' contains a space, which the signature header cannot carry", key.name));
  }
  key.armored_private_key = util::Secret<std::string>(pgp_key->get<std::string>());
  return key;
}

util::Secret<std::string> EncodeServiceAccountKey(const ServiceAccountKey& key) {
  // Field order of go-api-signature's struct: name, pgp_key.
  nlohmann::ordered_json json;
  json["name"] = key.name;
  json["pgp_key"] = key.armored_private_key.Reveal();
  return util::Secret<std::string>(Base64Encode(json.dump()));
}

absl::StatusOr<std::string> ProviderIdFromKeyName(std::string_view name) {
  if (name.substr(0, kInfraProviderKeyPrefix.size()) != kInfraProviderKeyPrefix ||
      name.size() == kInfraProviderKeyPrefix.size()) {
    return absl::InvalidArgumentError(
        fmt::format("service account key: name '{}' does not start with '{}'; an infrastructure provider needs "
                    "an infra-provider key, create one with 'omnictl infraprovider create <provider-id>'",
                    name, kInfraProviderKeyPrefix));
  }
  return std::string(name.substr(kInfraProviderKeyPrefix.size()));
}

absl::StatusOr<GeneratedKey> GenerateServiceAccountKey(std::string name, std::string user_name, std::string email,
                                                       std::chrono::seconds lifetime, const util::Clock& clock) {
  if (lifetime.count() < 0 || lifetime.count() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(fmt::format("key lifetime {}s is out of range", lifetime.count()));
  }
  OP_ASSIGN_OR_RETURN(internal::Ffi ffi, internal::MakeFfi());
  auto now = std::chrono::duration_cast<std::chrono::seconds>(clock.Now().time_since_epoch()).count();
  rnp_set_timestamp(ffi.get(), static_cast<uint64_t>(now));
  std::string user_id = fmt::format("{} <{}>", user_name, email);

  rnp_op_generate_t op = nullptr;
  if (rnp_result_t rc = rnp_op_generate_create(&op, ffi.get(), "EDDSA"); rc != RNP_SUCCESS) {
    return RnpError("generate key", rc);
  }
  std::unique_ptr<rnp_op_generate_st, decltype(&rnp_op_generate_destroy)> guard(op, &rnp_op_generate_destroy);
  rnp_op_generate_set_userid(op, user_id.c_str());
  rnp_op_generate_clear_usage(op);
  rnp_op_generate_add_usage(op, "sign");
  rnp_op_generate_add_usage(op, "certify");
  rnp_op_generate_set_hash(op, "SHA256");
  rnp_op_generate_set_expiration(op, static_cast<uint32_t>(lifetime.count()));
  if (rnp_result_t rc = rnp_op_generate_execute(op); rc != RNP_SUCCESS) return RnpError("generate key", rc);
  rnp_key_handle_t primary_raw = nullptr;
  if (rnp_result_t rc = rnp_op_generate_get_key(op, &primary_raw); rc != RNP_SUCCESS) {
    return RnpError("generate key", rc);
  }
  internal::Key primary(primary_raw);
  guard.reset();

  rnp_op_generate_t sub = nullptr;
  if (rnp_result_t rc = rnp_op_generate_subkey_create(&sub, ffi.get(), primary.get(), "ECDH"); rc != RNP_SUCCESS) {
    return RnpError("generate subkey", rc);
  }
  std::unique_ptr<rnp_op_generate_st, decltype(&rnp_op_generate_destroy)> sub_guard(sub, &rnp_op_generate_destroy);
  rnp_op_generate_set_curve(sub, "Curve25519");
  rnp_op_generate_clear_usage(sub);
  rnp_op_generate_add_usage(sub, "encrypt");
  rnp_op_generate_set_expiration(sub, static_cast<uint32_t>(lifetime.count()));
  if (rnp_result_t rc = rnp_op_generate_execute(sub); rc != RNP_SUCCESS) return RnpError("generate subkey", rc);
  sub_guard.reset();

  auto export_key = [&](uint32_t flags) -> absl::StatusOr<std::string> {
    OP_ASSIGN_OR_RETURN(auto output, internal::OutputToMemory());
    if (rnp_result_t rc =
            rnp_key_export(primary.get(), output.get(), flags | RNP_KEY_EXPORT_ARMORED | RNP_KEY_EXPORT_SUBKEYS);
        rc != RNP_SUCCESS) {
      return RnpError("export key", rc);
    }
    return internal::OutputBytes(output.get());
  };
  OP_ASSIGN_OR_RETURN(std::string secret, export_key(RNP_KEY_EXPORT_SECRET));
  OP_ASSIGN_OR_RETURN(std::string pub, export_key(RNP_KEY_EXPORT_PUBLIC));
  char* fingerprint = nullptr;
  if (rnp_result_t rc = rnp_key_get_fprint(primary.get(), &fingerprint); rc != RNP_SUCCESS) {
    return RnpError("read fingerprint", rc);
  }
  std::string fpr = internal::TakeString(fingerprint);
  for (char& c : fpr) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  primary.reset();

  GeneratedKey out;
  out.key.name = std::move(name);
  out.key.armored_private_key = util::Secret<std::string>(std::move(secret));
  out.encoded = EncodeServiceAccountKey(out.key);
  out.armored_public_key = std::move(pub);
  out.fingerprint = std::move(fpr);
  return out;
}

absl::StatusOr<GeneratedKey> GenerateInfraProviderKey(std::string_view provider_id, std::chrono::seconds lifetime,
                                                      const util::Clock& clock) {
  return GenerateServiceAccountKey(fmt::format("{}{}", kInfraProviderKeyPrefix, provider_id), std::string(provider_id),
                                   fmt::format("{}@{}", provider_id, kInfraProviderEmailDomain), lifetime, clock);
}

}  // namespace omni_proxmox::omni
