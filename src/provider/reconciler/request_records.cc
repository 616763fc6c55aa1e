// SPDX-License-Identifier: Apache-2.0
#include "provider/reconciler/request_records.h"

#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "util/status_macros.h"

namespace omni_proxmox::provider {
namespace {

using Stage = specs::MachineRequestStatusSpec;

bool NotFound(const absl::Status& s) { return s.code() == absl::StatusCode::kNotFound; }

}  // namespace

RequestRecords::RequestRecords(std::string provider_id, omni::StateClient& state, omni::ResourceCache& cache)
    : provider_id_(std::move(provider_id)),
      owner_(omni::ProvisionControllerName(provider_id_)),
      state_(state),
      cache_(cache) {}

omni::ResourcePointer RequestRecords::RequestPointer(const std::string& id) const {
  return {std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), id};
}
omni::ResourcePointer RequestRecords::StatusPointer(const std::string& id) const {
  return {std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), id};
}
omni::ResourcePointer RequestRecords::StatePointer(const std::string& id) const {
  return {omni::ProviderNamespace(provider_id_), omni::ProviderMachineType(provider_id_), id};
}

absl::StatusOr<std::optional<omni::Resource>> RequestRecords::Request(const std::string& id) {
  return cache_.Get(RequestPointer(id));
}
absl::StatusOr<std::optional<omni::Resource>> RequestRecords::Status(const std::string& id) {
  return cache_.Get(StatusPointer(id));
}
absl::StatusOr<std::optional<omni::Resource>> RequestRecords::State(const std::string& id) {
  return cache_.Get(StatePointer(id));
}

absl::StatusOr<omni::Resource> RequestRecords::EditFinalizer(const omni::Resource& request, bool add) {
  omni::Resource desired = request;
  auto& finalizers = desired.metadata.finalizers;
  if (add) {
    finalizers.push_back(owner_);
  } else {
    std::erase(finalizers, owner_);
  }
  // A finalizer-only update from the cached copy: the owner and phase as they are.
  auto updated = state_.Update(desired, request.metadata.owner, std::nullopt);
  // A stale copy, or one Omni does not see as a finalizer-only change: the byte-exact path from a
  // fresh read.
  if (!updated.ok() &&
      (omni::IsRetryableWrite(updated.status()) || updated.status().code() == absl::StatusCode::kPermissionDenied)) {
    updated = add ? state_.AddFinalizer(request.pointer(), owner_) : state_.RemoveFinalizer(request.pointer(), owner_);
  }
  if (updated.ok()) cache_.Stored(*updated);
  return updated;
}

absl::StatusOr<omni::Resource> RequestRecords::AddFinalizer(const omni::Resource& request) {
  if (request.HasFinalizer(owner_)) return request;
  return EditFinalizer(request, /*add=*/true);
}

absl::Status RequestRecords::RemoveFinalizer(const omni::Resource& request) {
  if (!request.HasFinalizer(owner_)) return absl::OkStatus();
  auto removed = EditFinalizer(request, /*add=*/false);
  return removed.ok() || NotFound(removed.status()) ? absl::OkStatus() : removed.status();
}

absl::StatusOr<omni::Resource> RequestRecords::Write(const omni::Resource& desired,
                                                     const std::function<absl::Status(omni::Resource&)>& mutate,
                                                     std::optional<std::string_view> expected_phase) {
  auto written = state_.Update(desired, owner_, expected_phase);
  if (!written.ok() && omni::IsRetryableWrite(written.status())) {
    written = state_.Modify(desired.pointer(), owner_, mutate, expected_phase);
  }
  if (written.ok()) cache_.Stored(*written);
  return written;
}

absl::StatusOr<omni::Resource> RequestRecords::WriteStatus(const omni::Resource& request,
                                                           const std::optional<omni::Resource>& status,
                                                           const StatusReport& report) {
  const auto fill = [&](omni::Resource& r) -> absl::Status {
    Stage spec;
    OP_RETURN_IF_ERROR(omni::DecodeSpec(r, spec));
    spec.set_stage(static_cast<Stage::Stage>(report.stage));
    spec.set_status(report.text);
    spec.set_error(report.error);
    if (!report.machine_uuid.empty()) spec.set_id(report.machine_uuid);
    omni::EncodeSpec(spec, r);
    r.metadata.labels = request.metadata.labels;
    return absl::OkStatus();
  };
  if (!status) {
    omni::Resource fresh;
    fresh.metadata.ns = std::string(omni::kNamespaceInfraProvider);
    fresh.metadata.type = std::string(omni::kTypeMachineRequestStatus);
    fresh.metadata.id = request.metadata.id;
    OP_RETURN_IF_ERROR(fill(fresh));
    auto created = state_.Create(fresh, owner_);
    if (created.ok()) {
      cache_.Stored(*created, /*created=*/true);
      return created;
    }
    if (created.status().code() != absl::StatusCode::kAlreadyExists) return created.status();
    // Made by an earlier pass whose reply we lost: update what is there.
    return state_.Modify(StatusPointer(request.metadata.id), owner_, fill);
  }
  if (status->tearing_down()) return *status;
  Stage existing;
  OP_RETURN_IF_ERROR(omni::DecodeSpec(*status, existing));
  const std::string id = report.machine_uuid.empty() ? existing.id() : report.machine_uuid;
  if (existing.stage() == report.stage && existing.status() == report.text && existing.error() == report.error &&
      existing.id() == id && status->metadata.labels == request.metadata.labels) {
    return *status;
  }
  omni::Resource desired = *status;
  OP_RETURN_IF_ERROR(fill(desired));
  return Write(desired, fill, omni::kPhaseRunning);
}

absl::StatusOr<omni::Resource> RequestRecords::SaveState(const std::string& id,
                                                         const std::optional<omni::Resource>& state,
                                                         const MachineSpec& machine, const std::string& step,
                                                         std::optional<std::string_view> expected_phase) {
  const auto fill = [&](omni::Resource& r) {
    omni::EncodeSpec(machine, r);
    r.metadata.annotations[std::string(omni::kAnnotationStep)] = step;
    return absl::OkStatus();
  };
  if (!state) {
    const omni::ResourcePointer pointer = StatePointer(id);
    omni::Resource fresh;
    fresh.metadata.ns = pointer.ns;
    fresh.metadata.type = pointer.type;
    fresh.metadata.id = id;
    (void)fill(fresh);
    auto created = state_.Create(fresh, owner_);
    if (created.ok()) {
      cache_.Stored(*created, /*created=*/true);
      return created;
    }
    if (created.status().code() != absl::StatusCode::kAlreadyExists) return created.status();
    return state_.Modify(pointer, owner_, fill, expected_phase);
  }
  omni::Resource desired = *state;
  (void)fill(desired);
  return Write(desired, fill, expected_phase);
}

absl::StatusOr<bool> RequestRecords::Retire(const omni::ResourcePointer& pointer) {
  auto cached = cache_.Get(pointer);
  if (!cached.ok()) return cached.status();
  if (!*cached) return true;
  // Already torn down and still held by someone's finalizer: the watch reports when it is let go.
  if ((*cached)->tearing_down() && !(*cached)->metadata.finalizers.empty()) return false;
  if (!(*cached)->tearing_down()) {
    auto ready = state_.Teardown(pointer, owner_);
    if (NotFound(ready.status())) {
      cache_.Removed(pointer);
      return true;
    }
    if (!ready.ok()) return ready.status();
    if (!*ready) return false;
  }
  if (auto s = state_.Destroy(pointer, owner_); !s.ok() && !NotFound(s)) {
    // Our copy was behind: a finalizer still holds it.
    if (s.code() == absl::StatusCode::kFailedPrecondition) return false;
    return s;
  }
  cache_.Removed(pointer);
  return true;
}

absl::StatusOr<std::vector<omni::Resource>> RequestRecords::ConfigPatches(const std::string& request_id) {
  return cache_.List({std::string(omni::kNamespaceInfraProvider),
                      std::string(omni::kTypeConfigPatchRequest),
                      {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), provider_id_),
                       omni::LabelTerm::Equal(std::string(omni::kLabelMachineRequest), request_id)}});
}

}  // namespace omni_proxmox::provider
