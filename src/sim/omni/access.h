// SPDX-License-Identifier: Apache-2.0
#pragma once

// Omni's authorization rules for COSI calls (omni-protocol.md section 2.5; Omni's
// internal/backend/runtime/omni/infraprovider/state.go and state_access.go), as pure functions
// over the caller, the verb and the resources involved.

#include <string>

#include "absl/status/status.h"

#include "sim/omni/accounts.h"
#include "sim/omni/state_store.h"

namespace omni_proxmox::sim::omni {

inline constexpr char kDefaultNs[] = "default";
inline constexpr char kMetaNs[] = "meta";
inline constexpr char kInfraProviderNs[] = "infra-provider";
inline constexpr char kInfraProviderEphemeralNs[] = "infra-provider-ephemeral";
inline constexpr char kInfraProviderPrivateNsPrefix[] = "infra-provider:";

inline constexpr char kProviderIdLabel[] = "omni.sidero.dev/infra-provider-id";
inline constexpr char kMachineRequestLabel[] = "omni.sidero.dev/machine-request";
inline constexpr char kMachineRequestSetLabel[] = "omni.sidero.dev/machine-request-set";
inline constexpr char kClusterLabel[] = "omni.sidero.dev/cluster";
inline constexpr char kMachineSetLabel[] = "omni.sidero.dev/machine-set";
inline constexpr char kRoleControlPlaneLabel[] = "omni.sidero.dev/role-controlplane";
inline constexpr char kRoleWorkerLabel[] = "omni.sidero.dev/role-worker";
inline constexpr char kMachineRequestInUseLabel[] = "omni.sidero.dev/machine-request-in-use";

inline constexpr char kMachineRequestType[] = "MachineRequests.omni.sidero.dev";
inline constexpr char kMachineRequestStatusType[] = "MachineRequestStatuses.omni.sidero.dev";
inline constexpr char kMachineRequestSetType[] = "MachineRequestSets.omni.sidero.dev";
inline constexpr char kMachineClassType[] = "MachineClasses.omni.sidero.dev";
inline constexpr char kInfraMachineRegistrationType[] = "InfraMachineRegistrations.omni.sidero.dev";
inline constexpr char kInfraMachineType[] = "InfraMachines.omni.sidero.dev";
inline constexpr char kInfraMachineStatusType[] = "InfraMachineStatuses.omni.sidero.dev";
inline constexpr char kProviderJoinConfigType[] = "ProviderJoinConfigs.omni.sidero.dev";
inline constexpr char kConfigPatchRequestType[] = "ConfigPatchRequests.omni.sidero.dev";
inline constexpr char kInfraProviderType[] = "InfraProviders.omni.sidero.dev";
inline constexpr char kInfraProviderStatusType[] = "InfraProviderStatuses.omni.sidero.dev";
inline constexpr char kInfraProviderHealthStatusType[] = "InfraProviderHealthStatuses.omni.sidero.dev";
inline constexpr char kBmcConfigType[] = "BMCConfigs.omni.sidero.dev";
inline constexpr char kSiderolinkApiConfigType[] = "SiderolinkAPIConfigs.omni.sidero.dev";
inline constexpr char kConnectionParamsType[] = "ConnectionParams.omni.sidero.dev";
inline constexpr char kFeaturesConfigType[] = "FeaturesConfigs.omni.sidero.dev";
inline constexpr char kMachineType[] = "Machines.omni.sidero.dev";
inline constexpr char kTalosVersionType[] = "TalosVersions.omni.sidero.dev";
// What operators read about clusters; the InfraProvider role may not (section 8.1).
inline constexpr char kClusterType[] = "Clusters.omni.sidero.dev";
inline constexpr char kMachineSetType[] = "MachineSets.omni.sidero.dev";
inline constexpr char kMachineSetStatusType[] = "MachineSetStatuses.omni.sidero.dev";
inline constexpr char kMachineSetNodeType[] = "MachineSetNodes.omni.sidero.dev";
inline constexpr char kClusterMachineRequestStatusType[] = "ClusterMachineRequestStatuses.omni.sidero.dev";
inline constexpr char kLinkType[] = "Links.omni.sidero.dev";
inline constexpr char kResourceDefinitionType[] = "ResourceDefinitions.meta.cosi.dev";
inline constexpr char kNamespaceType[] = "Namespaces.meta.cosi.dev";

enum class Verb { kGet, kList, kWatch, kCreate, kUpdate, kDestroy, kTeardown };
bool IsRead(Verb verb);

// What the caller may see once a call is allowed.
struct AccessScope {
  // Reads and writes are confined to resources labelled with this provider ID (shared infra
  // namespaces, InfraProvider role). Empty: no label confinement.
  std::string label_provider_id;
  // Updates of this type may change nothing but finalizers (MachineRequests and other
  // Omni-owned inputs).
  bool finalizer_only_update = false;
  // The caller is an infra provider working in an infra namespace: InfraProviders/<id> must exist.
  bool requires_registered_provider = false;
};

// The static rules: namespace, type and ID for the caller's role. `id` is empty for List/Watch
// of a whole kind. PermissionDenied / InvalidArgument with Omni's wording on refusal.
absl::StatusOr<AccessScope> Authorize(const Caller& caller, Verb verb, const std::string& ns, const std::string& type,
                                      const std::string& id);

// Omni's finalizer-only update check: metadata equal ignoring version and finalizers, spec equal.
// `specs_equal` is decided by the caller (typed comparison for known types).
absl::Status CheckFinalizerOnlyUpdate(const Resource& current, const Resource& proposed, bool specs_equal);

}  // namespace omni_proxmox::sim::omni
