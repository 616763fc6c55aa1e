// SPDX-License-Identifier: Apache-2.0
#include "omni/internal/rnp_util.h"

#include <fmt/format.h>

namespace omni_proxmox::omni::internal {

absl::Status RnpError(std::string_view what, rnp_result_t code, absl::StatusCode status_code) {
  return absl::Status(status_code, fmt::format("{}: {} (0x{:08x})", what, rnp_result_to_string(code), code));
}

absl::StatusOr<Ffi> MakeFfi() {
  rnp_ffi_t ffi = nullptr;
  if (rnp_result_t rc = rnp_ffi_create(&ffi, "GPG", "GPG"); rc != RNP_SUCCESS) {
    return RnpError("librnp: create context", rc);
  }
  return Ffi(ffi);
}

absl::StatusOr<Input> InputFromMemory(std::string_view data) {
  rnp_input_t input = nullptr;
  if (rnp_result_t rc =
          rnp_input_from_memory(&input, reinterpret_cast<const uint8_t*>(data.data()), data.size(), false);
      rc != RNP_SUCCESS) {
    return RnpError("librnp: input", rc);
  }
  return Input(input);
}

absl::StatusOr<Output> OutputToMemory() {
  rnp_output_t output = nullptr;
  if (rnp_result_t rc = rnp_output_to_memory(&output, 0); rc != RNP_SUCCESS) {
    return RnpError("librnp: output", rc);
  }
  return Output(output);
}

absl::StatusOr<std::string> OutputBytes(rnp_output_t output) {
  uint8_t* buf = nullptr;
  size_t len = 0;
  if (rnp_result_t rc = rnp_output_memory_get_buf(output, &buf, &len, false); rc != RNP_SUCCESS) {
    return RnpError("librnp: read output", rc);
  }
  return std::string(reinterpret_cast<const char*>(buf), len);
}

std::string TakeString(char* value) {
  if (value == nullptr) return "";
  std::string out(value);
  rnp_buffer_destroy(value);
  return out;
}

absl::Status ImportKeys(rnp_ffi_t ffi, std::string_view armored) {
  auto input = InputFromMemory(armored);
  if (!input.ok()) return input.status();
  char* results = nullptr;
  rnp_result_t rc = rnp_import_keys(ffi, input->get(), RNP_LOAD_SAVE_PUBLIC_KEYS | RNP_LOAD_SAVE_SECRET_KEYS, &results);
  rnp_buffer_destroy(results);
  if (rc != RNP_SUCCESS) {
    return RnpError("not a readable OpenPGP key (expected an ASCII-armored v4 key block)", rc,
                    absl::StatusCode::kInvalidArgument);
  }
  return absl::OkStatus();
}

absl::StatusOr<Key> FindPrimaryKey(rnp_ffi_t ffi) {
  rnp_identifier_iterator_t it = nullptr;
  if (rnp_result_t rc = rnp_identifier_iterator_create(ffi, &it, "fingerprint"); rc != RNP_SUCCESS) {
    return RnpError("librnp: iterate keys", rc);
  }
  Key found;
  const char* fingerprint = nullptr;
  while (rnp_identifier_iterator_next(it, &fingerprint) == RNP_SUCCESS && fingerprint != nullptr) {
    rnp_key_handle_t key = nullptr;
    if (rnp_locate_key(ffi, "fingerprint", fingerprint, &key) != RNP_SUCCESS || key == nullptr) continue;
    Key handle(key);
    bool primary = false;
    if (rnp_key_is_primary(key, &primary) == RNP_SUCCESS && primary) {
      found = std::move(handle);
      break;
    }
  }
  rnp_identifier_iterator_destroy(it);
  if (!found) return absl::InvalidArgumentError("the OpenPGP key block holds no primary key");
  return found;
}

}  // namespace omni_proxmox::omni::internal
