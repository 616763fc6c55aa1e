// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/access.h"

#include <set>

#include <fmt/format.h>

namespace omni_proxmox::sim::omni {
namespace {

bool In(const std::string& value, const std::set<std::string>& set) { return set.count(value) != 0; }

const std::set<std::string>& ReadOnlyInfraTypes() {
  static const std::set<std::string> types = {kMachineRequestType, kInfraMachineRegistrationType,
                                              kProviderJoinConfigType, kInfraMachineType};
  return types;
}

const std::set<std::string>& CrudInfraTypes() {
  static const std::set<std::string> types = {kMachineRequestStatusType, kConfigPatchRequestType,
                                              kInfraMachineStatusType};
  return types;
}

const std::set<std::string>& IdBoundInfraTypes() {
  static const std::set<std::string> types = {kInfraProviderStatusType, kInfraProviderHealthStatusType,
                                              kInfraProviderType};
  return types;
}

// Readable by an infra provider outside the infra namespaces.
const std::set<std::string>& ReadableTypes() {
  static const std::set<std::string> types = {kMachineType,        kSiderolinkApiConfigType, kConnectionParamsType,
                                              kFeaturesConfigType, kTalosVersionType,        kResourceDefinitionType,
                                              kNamespaceType};
  return types;
}

absl::Status Denied(const Caller& caller, Verb verb, const std::string& ns, const std::string& type) {
  static const char* kVerbs[] = {"get", "list", "watch", "create", "update", "destroy", "teardown"};
  return absl::PermissionDeniedError(fmt::format("{} {} in namespace \"{}\" is not allowed for role {} ({})",
                                                 kVerbs[static_cast<int>(verb)], type, ns, RoleName(caller.role),
                                                 caller.email));
}

}  // namespace

bool IsRead(Verb verb) { return verb == Verb::kGet || verb == Verb::kList || verb == Verb::kWatch; }

absl::StatusOr<AccessScope> Authorize(const Caller& caller, Verb verb, const std::string& ns, const std::string& type,
                                      const std::string& id) {
  AccessScope scope;
  if (caller.role == Role::kAdmin || caller.role == Role::kOperator) return scope;
  if (caller.role == Role::kReader) {
    if (IsRead(verb)) return scope;
    return Denied(caller, verb, ns, type);
  }
  if (caller.role != Role::kInfraProvider || caller.provider_id.empty()) return Denied(caller, verb, ns, type);

  const std::string& pid = caller.provider_id;
  if (ns == kInfraProviderNs || ns == kInfraProviderEphemeralNs) {
    scope.requires_registered_provider = true;
    scope.label_provider_id = pid;
    if (type == kBmcConfigType) {
      if (!IsRead(verb)) return Denied(caller, verb, ns, type);
      return scope;
    }
    if (In(type, ReadOnlyInfraTypes())) {
      if (verb == Verb::kCreate || verb == Verb::kDestroy || verb == Verb::kTeardown) {
        return Denied(caller, verb, ns, type);
      }
      scope.finalizer_only_update = verb == Verb::kUpdate;
      return scope;
    }
    if (In(type, CrudInfraTypes())) return scope;
    if (In(type, IdBoundInfraTypes())) {
      if (verb != Verb::kList && verb != Verb::kWatch && id != pid) {
        return absl::InvalidArgumentError(
            fmt::format("{} ID \"{}\": an infra provider may only use its own ID \"{}\"", type, id, pid));
      }
      return scope;
    }
    return Denied(caller, verb, ns, type);
  }
  if (ns.rfind(kInfraProviderPrivateNsPrefix, 0) == 0) {
    if (ns != kInfraProviderPrivateNsPrefix + pid) return Denied(caller, verb, ns, type);
    const std::string suffix = "." + pid + ".infraprovider.sidero.dev";
    if (type.size() <= suffix.size() || !type.ends_with(suffix)) {
      return absl::InvalidArgumentError(
          fmt::format("resource type \"{}\" in namespace \"{}\": types in a provider's namespace must end with \"{}\"",
                      type, ns, suffix));
    }
    scope.requires_registered_provider = true;
    return scope;
  }
  if (IsRead(verb) && In(type, ReadableTypes())) return scope;
  return Denied(caller, verb, ns, type);
}

absl::Status CheckFinalizerOnlyUpdate(const Resource& current, const Resource& proposed, bool specs_equal) {
  std::string what;
  if (current.owner != proposed.owner) what = "owner";
  if (current.phase != proposed.phase) what = "phase";
  if (current.labels != proposed.labels) what = "labels";
  if (current.annotations != proposed.annotations) what = "annotations";
  if (!specs_equal) what = "spec";
  if (what.empty()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      fmt::format("{} {}: an infra provider may only change finalizers of this resource, not its {}", proposed.type,
                  proposed.id, what));
}

}  // namespace omni_proxmox::sim::omni
