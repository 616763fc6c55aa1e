// SPDX-License-Identifier: Apache-2.0
#include "omni/provider_status.h"

#include <chrono>

#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"

namespace omni_proxmox::omni {

absl::StatusOr<Resource> PublishProviderStatus(StateClient& state, const ProviderInfo& info) {
  specs::InfraProviderStatusSpec spec;
  spec.set_schema(info.schema);
  spec.set_name(info.name);
  spec.set_description(info.description);
  spec.set_icon(info.icon);
  spec.set_version(info.version);
  Resource resource;
  resource.metadata.ns = std::string(kNamespaceInfraProvider);
  resource.metadata.type = std::string(kTypeInfraProviderStatus);
  resource.metadata.id = info.id;
  EncodeSpec(spec, resource);
  // The Go library writes it with a plain Create: no owner.
  return state.CreateOrUpdate(resource, "");
}

absl::StatusOr<Resource> PublishHeartbeat(StateClient& state, std::string_view provider_id, util::Clock::SystemTime now,
                                          std::string_view error) {
  specs::InfraProviderHealthStatusSpec spec;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  spec.mutable_last_heartbeat_timestamp()->set_seconds(ns / 1'000'000'000);
  spec.mutable_last_heartbeat_timestamp()->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  spec.set_error(std::string(error));
  Resource resource;
  resource.metadata.ns = std::string(kNamespaceInfraProviderEphemeral);
  resource.metadata.type = std::string(kTypeInfraProviderHealthStatus);
  resource.metadata.id = std::string(provider_id);
  EncodeSpec(spec, resource);
  return state.CreateOrUpdate(resource, HealthControllerName(provider_id));
}

}  // namespace omni_proxmox::omni
