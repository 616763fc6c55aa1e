// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

#include "omni/resource.h"
#include "util/clock.h"

// The two resources through which Omni sees an infrastructure provider: InfraProviderStatus (what it
// is, written at start-up, owner "") and InfraProviderHealthStatus (the heartbeat Omni uses for
// "connected": younger than ~31 s; owner "<pid>.ProviderHealthStatusController").
namespace omni_proxmox::omni {

class StateClient;

struct ProviderInfo {
  std::string id;    // provider ID, e.g. "proxmox"
  std::string name;  // display name
  std::string description;
  std::string icon;    // base64 SVG (the UI renders data:image/svg+xml;base64,<icon>)
  std::string schema;  // JSON Schema of MachineRequest.provider_data
  std::string version;
};

// Creates or updates InfraProviderStatuses/<id> (ns infra-provider).
absl::StatusOr<Resource> PublishProviderStatus(StateClient& state, const ProviderInfo& info);

// Creates or updates InfraProviderHealthStatuses/<id> (ns infra-provider-ephemeral) with
// last_heartbeat_timestamp = now and `error` (empty = healthy).
absl::StatusOr<Resource> PublishHeartbeat(StateClient& state, std::string_view provider_id, util::Clock::SystemTime now,
                                          std::string_view error);

}  // namespace omni_proxmox::omni
