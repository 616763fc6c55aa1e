// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>

// RAII wrappers and error mapping for librnp, private to src/omni.
namespace omni_proxmox::omni::internal {

struct FfiDeleter {
  void operator()(rnp_ffi_st* ffi) const { rnp_ffi_destroy(ffi); }
};
struct InputDeleter {
  void operator()(rnp_input_st* input) const { rnp_input_destroy(input); }
};
struct OutputDeleter {
  void operator()(rnp_output_st* output) const { rnp_output_destroy(output); }
};
struct KeyDeleter {
  void operator()(rnp_key_handle_st* key) const { rnp_key_handle_destroy(key); }
};
using Ffi = std::unique_ptr<rnp_ffi_st, FfiDeleter>;
using Input = std::unique_ptr<rnp_input_st, InputDeleter>;
using Output = std::unique_ptr<rnp_output_st, OutputDeleter>;
using Key = std::unique_ptr<rnp_key_handle_st, KeyDeleter>;

// "<what>: <librnp message> (0x<code>)".
absl::Status RnpError(std::string_view what, rnp_result_t code,
                      absl::StatusCode status_code = absl::StatusCode::kInternal);

absl::StatusOr<Ffi> MakeFfi();
// Input over `data`; librnp copies nothing, so `data` must outlive the input.
absl::StatusOr<Input> InputFromMemory(std::string_view data);
absl::StatusOr<Output> OutputToMemory();
// Copies the bytes written to a memory output.
absl::StatusOr<std::string> OutputBytes(rnp_output_t output);
// Takes ownership of a librnp-allocated C string.
std::string TakeString(char* value);

// Imports keys (public and secret) into `ffi`; InvalidArgument on malformed input.
absl::Status ImportKeys(rnp_ffi_t ffi, std::string_view armored);
// The first primary key in the keyring, or InvalidArgument if there is none.
absl::StatusOr<Key> FindPrimaryKey(rnp_ffi_t ffi);

}  // namespace omni_proxmox::omni::internal
