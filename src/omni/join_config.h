// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "util/secret.h"

// SideroLink join parameters: where they come from in Omni (v2 ProviderJoinConfig + SiderolinkAPIConfig,
// or legacy ConnectionParams), join-token encoding, kernel arguments and the join config document.
namespace omni_proxmox::omni {

class StateClient;

inline constexpr std::string_view kLabelInfraProviderId = "omni.sidero.dev/infra-provider-id";
inline constexpr std::string_view kLabelMachineRequest = "omni.sidero.dev/machine-request";
// Omni's fixed SideroLink address (siderolink NetworkPrefix + 1).
inline constexpr std::string_view kSideroLinkHost = "fdae:41e4:649b:9303::1";

enum class JoinMode { kV2, kLegacy };

// What a machine needs to join Omni. Holds the provider's join token: never log it.
struct ConnectionParams {
  JoinMode mode = JoinMode::kV2;
  std::string api_url;  // machine API URL, e.g. https://omni.example:8090
  util::Secret<std::string> join_token;
  int events_port = 8091;
  int logs_port = 8092;
  bool enforce_grpc_tunnel = false;
};

// Reads the join parameters from Omni. v2 when ResourceDefinitions (ns meta) list
// providerjoinconfigs.omni.sidero.dev, else legacy. NotFound naming the missing resource if Omni has
// not created it yet.
absl::StatusOr<ConnectionParams> FetchConnectionParams(StateClient& state, std::string_view provider_id);

// A stable, non-secret identity of the Omni instance (for this provider): the first 12 hex digits
// of SHA-256 over the join token Omni hands this provider, which is random per Omni and provider,
// survives restarts and upgrades, and changes only when the provider is deleted and created again.
// Two Omni instances never share it, even when both are left on Omni's default account ID.
std::string InstanceIdOf(const ConnectionParams& params);
// The same from the plain join token.
std::string InstanceIdOfJoinToken(std::string_view join_token);

// Join token: `base` unchanged if it already starts with "v1:"/"v2:" or `extra` is empty; else
// "v<version>:" + base64(JSON {"extra_data":{...},"signature":base64(HMAC-SHA256(base, GoJSON(extra)))}).
// version is 1 (legacy) or 2 (v2).
absl::StatusOr<std::string> EncodeJoinToken(std::string_view base, const std::map<std::string, std::string>& extra,
                                            int version);

// Per-machine join arguments.
struct JoinArgs {
  std::string api_url;                   // machine API URL with grpc_tunnel/jointoken query
  std::vector<std::string> kernel_args;  // siderolink.api, talos.events.sink, talos.logging.kernel
  std::string config;                    // multi-document machine config (SideroLink, EventSink, KmsgLog)
};

// Builds the join arguments. The token carries the provider ID, and the request ID when given
// (WithEncodeRequestIDsIntoTokens); the gRPC tunnel is on when `grpc_tunnel` or Omni enforces it.
absl::StatusOr<JoinArgs> BuildJoinArgs(const ConnectionParams& params, std::string_view provider_id,
                                       std::optional<std::string> request_id, bool grpc_tunnel);

// Adds query parameters to `url` as Go's url.Values.Encode does (keys sorted, values QueryEscape'd),
// keeping any existing parameters.
absl::StatusOr<std::string> AddQuery(std::string_view url, const std::map<std::string, std::string>& params);

}  // namespace omni_proxmox::omni
