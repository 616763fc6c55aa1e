// SPDX-License-Identifier: Apache-2.0
#pragma once

// Omni's side of SideroLink join tokens (omni-protocol.md section 5.2): the token a machine
// presents is "v1:"/"v2:" + base64(JSON {"extra_data": {...}, "signature": base64(HMAC)}), the
// HMAC-SHA256 keyed with the provider's plain join token over Go's encoding/json rendering of
// extra_data. Written independently of src/omni/join_config.*.

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace omni_proxmox::sim::omni {

inline constexpr char kProviderIdTokenKey[] = "omni.sidero.dev/infra-provider-id";
inline constexpr char kMachineRequestTokenKey[] = "omni.sidero.dev/machine-request";

struct JoinTokenClaims {
  int version = 0;  // 1 or 2; 0 for a plain token without extra data
  std::map<std::string, std::string> extra_data;
};

// Go's encoding/json output for a map[string]string: keys sorted, compact, HTML-safe escapes.
std::string GoJsonStringMap(const std::map<std::string, std::string>& map);

// Checks `token` against the plain `base_token`. PermissionDenied when the HMAC does not match,
// InvalidArgument when the token is malformed.
absl::StatusOr<JoinTokenClaims> VerifyJoinToken(const std::string& token, const std::string& base_token);

// Finds the join token in cloud-init user-data: the Talos join config documents
// (SideroLinkConfig apiUrl "...?jointoken=...") or a "siderolink.api=..." kernel argument.
absl::StatusOr<std::string> ExtractJoinToken(const std::string& user_data);

}  // namespace omni_proxmox::sim::omni
