// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

#include "omni/resource.h"

namespace google::protobuf {
class Message;
}

// Resource types, namespaces and owners of the Omni resources a provider touches, plus typed spec
// (de)serialisation. The typed specs are the generated messages of proto/omni/specs/omni.proto
// ("omni/specs/omni.pb.h") and proto/provider/machine.proto ("provider/machine.pb.h").
namespace omni_proxmox::omni {

inline constexpr std::string_view kNamespaceDefault = "default";
inline constexpr std::string_view kNamespaceMeta = "meta";
inline constexpr std::string_view kNamespaceInfraProvider = "infra-provider";
inline constexpr std::string_view kNamespaceInfraProviderEphemeral = "infra-provider-ephemeral";

inline constexpr std::string_view kTypeResourceDefinition = "ResourceDefinitions.meta.cosi.dev";
inline constexpr std::string_view kTypeInfraProvider = "InfraProviders.omni.sidero.dev";
inline constexpr std::string_view kTypeInfraProviderStatus = "InfraProviderStatuses.omni.sidero.dev";
inline constexpr std::string_view kTypeInfraProviderHealthStatus = "InfraProviderHealthStatuses.omni.sidero.dev";
inline constexpr std::string_view kTypeMachineRequest = "MachineRequests.omni.sidero.dev";
inline constexpr std::string_view kTypeMachineRequestStatus = "MachineRequestStatuses.omni.sidero.dev";
inline constexpr std::string_view kTypeInfraMachineRegistration = "InfraMachineRegistrations.omni.sidero.dev";
inline constexpr std::string_view kTypeConfigPatchRequest = "ConfigPatchRequests.omni.sidero.dev";
inline constexpr std::string_view kTypeProviderJoinConfig = "ProviderJoinConfigs.omni.sidero.dev";
inline constexpr std::string_view kTypeSiderolinkAPIConfig = "SiderolinkAPIConfigs.omni.sidero.dev";
inline constexpr std::string_view kTypeConnectionParams = "ConnectionParams.omni.sidero.dev";
inline constexpr std::string_view kTypeFeaturesConfig = "FeaturesConfigs.omni.sidero.dev";

inline constexpr std::string_view kAnnotationStep = "infra.omni.sidero.dev/step";
inline constexpr std::string_view kLabelMachineRequestSet = "omni.sidero.dev/machine-request-set";
inline constexpr std::string_view kLabelInfraId = "omni.sidero.dev/infra-id";

// "infra-provider:<pid>", the provider's private namespace.
std::string ProviderNamespace(std::string_view provider_id);
// "Machine.<pid>.infraprovider.sidero.dev", the provider state type (same as the Go provider).
std::string ProviderMachineType(std::string_view provider_id);
// "<pid>.ProvisionController": owner of statuses/state and the MachineRequest finalizer.
std::string ProvisionControllerName(std::string_view provider_id);
// "<pid>.ProviderHealthStatusController": owner of the health status.
std::string HealthControllerName(std::string_view provider_id);

// Parses resource.proto_spec into `out`; DataLoss naming the resource if it does not parse.
absl::Status DecodeSpec(const Resource& resource, google::protobuf::Message& out);
// Sets resource.proto_spec from `spec` and resource.yaml_spec to a readable YAML rendering.
void EncodeSpec(const google::protobuf::Message& spec, Resource& resource);

}  // namespace omni_proxmox::omni
