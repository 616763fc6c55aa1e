// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/test_signer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>

#include "sim/omni/accounts.h"

namespace omni_proxmox::sim::omni::testing {

absl::StatusOr<SignerKey> DecodeServiceAccountKey(const std::string& encoded) {
  auto json_text = Base64Decode(encoded);
  if (!json_text.ok()) return json_text.status();
  auto json = nlohmann::json::parse(*json_text, nullptr, false);
  if (json.is_discarded() || !json.contains("name") || !json.contains("pgp_key")) {
    return absl::InvalidArgumentError("service account key: not the {name, pgp_key} JSON");
  }
  SignerKey key;
  key.name = json["name"].get<std::string>();
  key.armored = json["pgp_key"].get<std::string>();
  rnp_ffi_t ffi = nullptr;
  rnp_ffi_create(&ffi, "GPG", "GPG");
  rnp_input_t input = nullptr;
  rnp_input_from_memory(&input, reinterpret_cast<const std::uint8_t*>(key.armored.data()), key.armored.size(), false);
  char* results = nullptr;
  auto rc = rnp_import_keys(ffi, input, RNP_LOAD_SAVE_SECRET_KEYS | RNP_LOAD_SAVE_PUBLIC_KEYS, &results);
  rnp_input_destroy(input);
  if (rc != RNP_SUCCESS) {
    rnp_ffi_destroy(ffi);
    return absl::InvalidArgumentError("service account key: pgp_key does not import");
  }
  auto imported = nlohmann::json::parse(results);
  rnp_buffer_destroy(results);
  for (const auto& k : imported["keys"]) {
    rnp_key_handle_t handle = nullptr;
    const std::string fp = k["fingerprint"].get<std::string>();
    rnp_locate_key(ffi, "fingerprint", fp.c_str(), &handle);
    bool primary = false;
    rnp_key_is_primary(handle, &primary);
    rnp_key_handle_destroy(handle);
    if (primary) {
      key.fingerprint = fp;
      for (auto& c : key.fingerprint) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  rnp_ffi_destroy(ffi);
  if (key.fingerprint.empty()) return absl::InvalidArgumentError("service account key: no primary key");
  return key;
}

absl::StatusOr<std::string> SignDetached(const SignerKey& key, const std::string& data, std::int64_t unix_time,
                                         std::int64_t key_time) {
  rnp_ffi_t ffi = nullptr;
  rnp_ffi_create(&ffi, "GPG", "GPG");
  rnp_set_timestamp(ffi, static_cast<std::uint64_t>(key_time >= 0 ? key_time : unix_time));
  rnp_input_t keys = nullptr;
  rnp_input_from_memory(&keys, reinterpret_cast<const std::uint8_t*>(key.armored.data()), key.armored.size(), false);
  rnp_import_keys(ffi, keys, RNP_LOAD_SAVE_SECRET_KEYS | RNP_LOAD_SAVE_PUBLIC_KEYS, nullptr);
  rnp_input_destroy(keys);
  rnp_key_handle_t primary = nullptr;
  rnp_locate_key(ffi, "fingerprint", key.fingerprint.c_str(), &primary);
  rnp_input_t input = nullptr;
  rnp_input_from_memory(&input, reinterpret_cast<const std::uint8_t*>(data.data()), data.size(), false);
  rnp_output_t output = nullptr;
  rnp_output_to_memory(&output, 0);
  rnp_op_sign_t op = nullptr;
  rnp_op_sign_detached_create(&op, ffi, input, output);
  rnp_op_sign_set_armor(op, false);
  rnp_op_sign_set_hash(op, "SHA256");
  rnp_op_sign_set_creation_time(op, static_cast<std::uint32_t>(unix_time));
  rnp_op_sign_add_signature(op, primary, nullptr);
  auto rc = rnp_op_sign_execute(op);
  std::string out;
  if (rc == RNP_SUCCESS) {
    std::uint8_t* buf = nullptr;
    std::size_t len = 0;
    rnp_output_memory_get_buf(output, &buf, &len, false);
    out.assign(reinterpret_cast<const char*>(buf), len);
  }
  rnp_op_sign_destroy(op);
  rnp_output_destroy(output);
  rnp_input_destroy(input);
  rnp_key_handle_destroy(primary);
  rnp_ffi_destroy(ffi);
  if (rc != RNP_SUCCESS) return absl::InternalError(fmt::format("sign: {}", rnp_result_to_string(rc)));
  return out;
}

absl::StatusOr<std::multimap<std::string, std::string>> SignedMetadata(const SignerKey& key, const std::string& method,
                                                                       std::int64_t unix_time,
                                                                       const std::string& payload_override,
                                                                       std::int64_t key_time) {
  const std::string ts = std::to_string(unix_time);
  std::string payload = payload_override;
  if (payload.empty()) {
    payload = fmt::format(
        R"({{"headers":{{"authorization":null,"cluster":null,"context":null,"fieldSelectors":null,"namespace":null,)"
        R"("nodes":null,"runtime":null,"selectors":null,"uid":null,"x-sidero-timestamp":["{}"]}},"method":"{}"}})",
        ts, method);
  }
  auto signature = SignDetached(key, payload, unix_time, key_time);
  if (!signature.ok()) return signature.status();
  std::multimap<std::string, std::string> md;
  md.emplace("x-sidero-timestamp", ts);
  md.emplace("x-sidero-payload", payload);
  md.emplace("x-sidero-signature",
             fmt::format("siderov1 {} {} {}", key.name, key.fingerprint, Base64Encode(*signature)));
  return md;
}

}  // namespace omni_proxmox::sim::omni::testing
