// SPDX-License-Identifier: Apache-2.0
// The controls tests, the demo and `omni-sim` use to play Omni's users and machines: machine
// classes and request sets (with Omni's providerdata admission), machines joining, service
// accounts and infra providers created and deleted.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "omni/specs/omni.pb.h"
#include "sim/omni/join_token.h"
#include "sim/omni/providerdata_schema.h"
#include "sim/omni/standin_impl.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::omni {

absl::Status StandIn::Impl::AdmitProviderData(const std::string& provider_id, const std::string& providerdata,
                                              bool require_status) const {
  if (!options_.omni_admission) return absl::OkStatus();
  auto status = store_.Get(kInfraProviderNs, kInfraProviderStatusType, provider_id);
  if (!status.ok()) {
    if (!require_status) return absl::OkStatus();  // no schema published yet: nothing to check against
    return absl::FailedPreconditionError(fmt::format(
        "failed to get provider \"{}\": resource {}({}/{}) doesn't exist: the provider publishes its status when it "
        "starts; run it first",
        provider_id, kInfraProviderStatusType, kInfraProviderNs, provider_id));
  }
  specs::InfraProviderStatusSpec spec;
  if (!spec.ParseFromString(status->proto_spec)) return absl::OkStatus();
  return ValidateProviderData(spec.schema(), providerdata);
}

absl::Status StandIn::ApplyMachineClass(std::string id, std::string providerdata_yaml, MachineClassOptions extra) {
  if (id.empty()) return absl::InvalidArgumentError("machine class id: must not be empty");
  specs::MachineClassSpec spec;
  auto* provision = spec.mutable_auto_provision();
  provision->set_provider_id(extra.provider_id.empty() ? impl_->options_.provider_id : extra.provider_id);
  provision->set_provider_data(providerdata_yaml);
  for (const auto& arg : extra.kernel_args) provision->add_kernel_args(arg);
  for (const auto& [key, value] : extra.meta_values) {
    auto* meta = provision->add_meta_values();
    meta->set_key(key);
    meta->set_value(value);
  }
  provision->set_grpc_tunnel(static_cast<specs::GrpcTunnelMode>(extra.grpc_tunnel));
  OP_RETURN_IF_ERROR(impl_->AdmitProviderData(provision->provider_id(), providerdata_yaml, /*require_status=*/false));
  Resource r = MakeResource(kDefaultNs, kMachineClassType, id, spec);
  auto current = impl_->store_.Get(kDefaultNs, kMachineClassType, id);
  if (!current.ok()) return impl_->store_.Create(r, "").status();
  r.version = current->version;
  return impl_->store_.Update(r, current->owner, std::nullopt).status();
}

absl::Status StandIn::ScaleMachineRequestSet(std::string set_id, std::string machine_class, int count) {
  if (set_id.empty()) return absl::InvalidArgumentError("machine request set id: must not be empty");
  if (count < 0) return absl::InvalidArgumentError(fmt::format("machine request set {}: count {} < 0", set_id, count));
  auto klass = impl_->store_.Get(kDefaultNs, kMachineClassType, machine_class);
  if (!klass.ok()) {
    return absl::NotFoundError(
        fmt::format("machine class '{}' does not exist: create it first (PUT /machine-classes/<id>, the class control "
                    "line or ApplyMachineClass)",
                    machine_class));
  }
  specs::MachineClassSpec class_spec;
  (void)class_spec.ParseFromString(klass->proto_spec);
  const auto& provision = class_spec.auto_provision();
  const std::string provider_id =
      provision.provider_id().empty() ? impl_->options_.provider_id : provision.provider_id();
  if (count > 0) {
    OP_RETURN_IF_ERROR(impl_->AdmitProviderData(provider_id, provision.provider_data(), /*require_status=*/true));
  }
  auto current = impl_->store_.Get(kDefaultNs, kMachineRequestSetType, set_id);
  if (current.ok() && current->owner != "") {
    return absl::PermissionDeniedError(
        fmt::format("machine request set {} is managed by {} (a cluster's machine set): scale the machine set in "
                    "its cluster template instead",
                    set_id, current->owner));
  }
  specs::MachineRequestSetSpec spec;
  spec.set_provider_id(provider_id);
  spec.set_machine_count(count);
  spec.set_talos_version(impl_->options_.talos_version);
  spec.set_provider_data(provision.provider_data());
  *spec.mutable_kernel_args() = provision.kernel_args();
  *spec.mutable_meta_values() = provision.meta_values();
  spec.set_grpc_tunnel(provision.grpc_tunnel());
  Resource r = MakeResource(kDefaultNs, kMachineRequestSetType, set_id, spec);
  if (!current.ok()) return impl_->store_.Create(r, "").status();
  r.version = current->version;
  return impl_->store_.Update(r, current->owner, std::nullopt).status();
}

absl::Status StandIn::MachineJoined(const std::string& user_data, const std::string& machine_uuid) {
  if (machine_uuid.empty()) return absl::InvalidArgumentError("machine uuid: must not be empty (SMBIOS UUID)");
  OP_ASSIGN_OR_RETURN(const std::string token, ExtractJoinToken(user_data));
  // The token names its provider; v2 tokens are checked against that provider's join token,
  // v1 and plain tokens against Omni's default one.
  std::string provider_id;
  std::string base_token;
  if (token.rfind("v2:", 0) == 0) {
    auto payload = Base64Decode(token.substr(3));
    auto json = payload.ok() ? nlohmann::json::parse(*payload, nullptr, false) : nlohmann::json();
    if (!json.is_object() || !json.contains("extra_data") || !json["extra_data"].is_object()) {
      return absl::InvalidArgumentError("join token: malformed: expected 'v2:' + base64 JSON with extra_data");
    }
    if (json["extra_data"].contains(kProviderIdTokenKey) && json["extra_data"][kProviderIdTokenKey].is_string()) {
      provider_id = json["extra_data"][kProviderIdTokenKey].get<std::string>();
    }
    auto join = impl_->store_.Get(kInfraProviderNs, kProviderJoinConfigType, provider_id);
    if (!join.ok()) {
      return absl::PermissionDeniedError(
          fmt::format("join token: provider '{}' has no ProviderJoinConfig on this Omni", provider_id));
    }
    specs::ProviderJoinConfigSpec spec;
    spec.ParseFromString(join->proto_spec);
    base_token = spec.join_token();
  } else {
    auto legacy = impl_->store_.Get(kDefaultNs, kConnectionParamsType, kSiderolinkConfigId);
    if (!legacy.ok()) return legacy.status();
    specs::ConnectionParamsSpec spec;
    spec.ParseFromString(legacy->proto_spec);
    base_token = spec.join_token();
  }
  OP_ASSIGN_OR_RETURN(const JoinTokenClaims claims, VerifyJoinToken(token, base_token));
  auto claimed = claims.extra_data.find(kProviderIdTokenKey);
  if (claimed == claims.extra_data.end() || claimed->second.empty()) {
    return absl::PermissionDeniedError("join token: carries no infra provider ID: the provider must encode its ID");
  }
  provider_id = claimed->second;
  if (!impl_->store_.Get(kInfraProviderNs, kInfraProviderType, provider_id).ok()) {
    return absl::PermissionDeniedError(fmt::format("join token: infra provider '{}' is not registered", provider_id));
  }
  Labels labels = {{kProviderIdLabel, provider_id}};
  std::string request_id;
  if (auto it = claims.extra_data.find(kMachineRequestTokenKey); it != claims.extra_data.end()) {
    request_id = it->second;
    auto request = impl_->store_.Get(kInfraProviderNs, kMachineRequestType, request_id);
    if (!request.ok() || !LabelledFor(*request, provider_id)) {
      return absl::FailedPreconditionError(
          fmt::format("join token: machine request '{}' of provider '{}' does not exist", request_id, provider_id));
    }
    labels[kMachineRequestLabel] = request_id;
  }
  auto existing = impl_->store_.Get(kInfraProviderNs, kInfraMachineRegistrationType, machine_uuid);
  if (existing.ok()) {
    auto it = existing->labels.find(kMachineRequestLabel);
    const std::string previous = it == existing->labels.end() ? "" : it->second;
    if (previous != request_id) {
      return absl::AlreadyExistsError(
          fmt::format("machine {} already joined for machine request '{}'", machine_uuid, previous));
    }
  } else {
    OP_RETURN_IF_ERROR(impl_->store_
                           .Create(MakeResource(kInfraProviderNs, kInfraMachineRegistrationType, machine_uuid,
                                                specs::MachineRegistrationSpec(), labels),
                                   "InfraMachineRegistrationController")
                           .status());
  }
  // The machine's SideroLink connection (Links, ns default; Reader or more may read it), and
  // Omni's Machines resource with the Link's labels, which an infra provider may read.
  specs::SiderolinkSpec link;
  link.set_connected(true);  // the stand-in has no WireGuard: no addresses or endpoints
  Labels link_labels = labels;
  (void)impl_->store_.Destroy(kDefaultNs, kLinkType, machine_uuid, "SiderolinkManager");
  OP_RETURN_IF_ERROR(
      impl_->store_.Create(MakeResource(kDefaultNs, kLinkType, machine_uuid, link, link_labels), "SiderolinkManager")
          .status());
  Labels machine_labels = labels;
  if (!request_id.empty()) {
    auto request = impl_->store_.Get(kInfraProviderNs, kMachineRequestType, request_id);
    if (request.ok()) {
      if (auto it = request->labels.find(kMachineRequestSetLabel); it != request->labels.end()) {
        machine_labels[kMachineRequestSetLabel] = it->second;
      }
    }
  }
  specs::MachineSpec machine;
  machine.set_connected(true);
  machine.set_management_address(kSiderolinkHost);
  auto stored_machine = impl_->store_.Get(kDefaultNs, kMachineType, machine_uuid);
  if (!stored_machine.ok()) {
    OP_RETURN_IF_ERROR(
        impl_->store_
            .Create(MakeResource(kDefaultNs, kMachineType, machine_uuid, machine, machine_labels), "MachineController")
            .status());
  } else {
    OP_RETURN_IF_ERROR(impl_->store_
                           .Modify(kDefaultNs, kMachineType, machine_uuid,
                                   [&](Resource& r) {
                                     r.proto_spec = machine.SerializeAsString();
                                     r.yaml_spec = RenderYaml(machine);
                                     r.labels = machine_labels;
                                     return true;
                                   })
                           .status());
  }
  std::lock_guard lock(impl_->joined_mutex_);
  impl_->joined_.push_back({machine_uuid, request_id, provider_id});
  impl_->log_->info("machine {} joined (provider {}, machine request {})", machine_uuid, provider_id, request_id);
  return absl::OkStatus();
}

absl::StatusOr<std::string> StandIn::AddInfraProvider(const std::string& id) {
  OP_ASSIGN_OR_RETURN(auto key, impl_->NewProvider(id));
  impl_->store_.WakeAll();  // the snapshot follows the new key
  return key.encoded.Reveal();
}

absl::Status StandIn::RemoveInfraProvider(const std::string& id) {
  return impl_->store_.Destroy(kInfraProviderNs, kInfraProviderType, id, "");
}

absl::Status StandIn::RevokeKey(const std::string& encoded_key) {
  auto json_text = Base64Decode(encoded_key);
  if (!json_text.ok()) return absl::InvalidArgumentError("key: not base64");
  std::lock_guard lock(impl_->keys_mutex_);
  for (const auto& [name, issued] : impl_->issued_) {
    if (issued.key.encoded.Reveal() == encoded_key) return impl_->keys_.Revoke(issued.key.fingerprint);
  }
  return absl::NotFoundError("key: not issued by this stand-in");
}

bool StandIn::ProviderStatusPublished(const std::string& provider_id) const {
  return impl_->store_.Get(kInfraProviderNs, kInfraProviderStatusType, provider_id).ok();
}

bool StandIn::ProviderConnected(const std::string& provider_id) const {
  auto health = impl_->store_.Get(kInfraProviderEphemeralNs, kInfraProviderHealthStatusType, provider_id);
  if (!health.ok()) return false;
  specs::InfraProviderHealthStatusSpec spec;
  if (!spec.ParseFromString(health->proto_spec) || !spec.has_last_heartbeat_timestamp()) return false;
  const auto age = impl_->clock_.Now() - FromTimestamp(spec.last_heartbeat_timestamp());
  return age < impl_->options_.heartbeat_window;
}

std::map<std::string, std::uint64_t> StandIn::SignedCalls() const {
  std::lock_guard lock(impl_->signed_calls_mutex_);
  return impl_->signed_calls_;
}

std::vector<JoinedMachine> StandIn::JoinedMachines() const {
  std::lock_guard lock(impl_->joined_mutex_);
  return impl_->joined_;
}

std::string StandIn::JoinToken(const std::string& provider_id) const {
  auto join = impl_->store_.Get(kInfraProviderNs, kProviderJoinConfigType, provider_id);
  if (!join.ok()) return "";
  specs::ProviderJoinConfigSpec spec;
  spec.ParseFromString(join->proto_spec);
  return spec.join_token();
}

bool StandIn::WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) const {
  return impl_->store_.WaitUntil(predicate, timeout);
}

absl::Status StandIn::PlantMachineRequest(const std::string& id, const std::string& providerdata_yaml,
                                          const std::string& request_set) {
  if (id.empty()) return absl::InvalidArgumentError("machine request id: must not be empty");
  specs::MachineRequestSpec request;
  request.set_talos_version(impl_->options_.talos_version);
  request.set_provider_data(providerdata_yaml);
  Labels labels = {{kProviderIdLabel, impl_->options_.provider_id}};
  if (!request_set.empty()) labels[kMachineRequestSetLabel] = request_set;
  return impl_->store_.Create(MakeResource(kInfraProviderNs, kMachineRequestType, id, request, labels), "").status();
}

absl::StatusOr<std::string> StandIn::CreateServiceAccount(const std::string& name, Role role) {
  if (name.empty() || name.find_first_of(" :/@") != std::string::npos) {
    return absl::InvalidArgumentError(
        fmt::format("service account name '{}': use letters, digits and '-' (e.g. status-reader)", name));
  }
  if (role == Role::kInfraProvider || role == Role::kNone) {
    return absl::InvalidArgumentError("service account role: use Reader, Operator or Admin");
  }
  {
    std::lock_guard lock(impl_->keys_mutex_);
    if (impl_->issued_.count(name) != 0) {
      return absl::AlreadyExistsError(fmt::format("service account '{}' already exists", name));
    }
  }
  OP_ASSIGN_OR_RETURN(auto key, GenerateServiceAccountKey(name, name, name + kServiceAccountEmailSuffix,
                                                          std::chrono::hours(24 * 365), impl_->clock_.Now()));
  OP_RETURN_IF_ERROR(impl_->keys_.Register(key, role));
  {
    std::lock_guard lock(impl_->keys_mutex_);
    impl_->issued_[name] = IssuedKey{key, role};
  }
  ++impl_->keys_epoch_;
  impl_->store_.WakeAll();
  return key.encoded.Reveal();
}

absl::Status StandIn::DestroyServiceAccount(const std::string& name) {
  std::string email;
  {
    std::lock_guard lock(impl_->keys_mutex_);
    auto it = impl_->issued_.find(name);
    if (it == impl_->issued_.end()) {
      return absl::NotFoundError(fmt::format("service account '{}' does not exist", name));
    }
    email = it->second.key.email;
    impl_->issued_.erase(it);
  }
  impl_->keys_.RemoveAccount(email);
  ++impl_->keys_epoch_;
  impl_->store_.WakeAll();
  impl_->log_->info("service account {} destroyed", name);
  return absl::OkStatus();
}

absl::Status StandIn::DeleteInfraProvider(const std::string& id) {
  OP_RETURN_IF_ERROR(impl_->store_.Destroy(kInfraProviderNs, kInfraProviderType, id, ""));
  if (auto status = impl_->store_.Get(kInfraProviderNs, kInfraProviderStatusType, id); status.ok()) {
    (void)impl_->store_.Modify(kInfraProviderNs, kInfraProviderStatusType, id, [](Resource& r) {
      r.finalizers.clear();
      return true;
    });
    (void)impl_->store_.Destroy(kInfraProviderNs, kInfraProviderStatusType, id, status->owner);
  }
  (void)impl_->store_.Destroy(kInfraProviderNs, kProviderJoinConfigType, id, "");
  // The ephemeral InfraProviderHealthStatus lingers, as in Omni (section 8).
  const std::string account = std::string("infra-provider:") + id;
  if (auto status = DestroyServiceAccount(account); !status.ok() && status.code() != absl::StatusCode::kNotFound) {
    return status;
  }
  return absl::OkStatus();
}

absl::Status StandIn::PublishProviderStatusForTest(const std::string& provider_id, const std::string& schema_json) {
  specs::InfraProviderStatusSpec spec;
  spec.set_name(provider_id);
  spec.set_schema(schema_json);
  auto resource =
      MakeResource(kInfraProviderNs, kInfraProviderStatusType, provider_id, spec, {{kProviderIdLabel, provider_id}});
  auto current = impl_->store_.Get(kInfraProviderNs, kInfraProviderStatusType, provider_id);
  if (!current.ok()) return impl_->store_.Create(resource, "").status();
  resource.version = current->version;
  return impl_->store_.Update(resource, current->owner, std::nullopt).status();
}

}  // namespace omni_proxmox::sim::omni
