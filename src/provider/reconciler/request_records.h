// SPDX-License-Identifier: Apache-2.0
#pragma once

// A MachineRequest's records in Omni, as the step runner keeps them: our finalizer on the
// request, its MachineRequestStatus (what Omni and the operator see) and our private state
// resource (what a crash resumes from). Reads come from the watch-fed cache; each write is one
// Update from the version the cache holds, and the reply goes back into the cache. Only when
// Omni says the version is stale (it changed the resource meanwhile, e.g. its cleanup controller
// adding a finalizer to a new status) is the resource read again and the write repeated.
// Thread-safe (for different requests at once).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "omni/resource.h"
#include "omni/resource_cache.h"
#include "omni/state_client.h"
#include "provider/machine.pb.h"

namespace omni_proxmox::provider {

// What a MachineRequestStatus says.
struct StatusReport {
  int stage = 0;  // specs::MachineRequestStatusSpec::Stage
  std::string text;
  std::string error;
  std::string machine_uuid;  // empty: keep what the status holds
};

class RequestRecords {
 public:
  // `state` and `cache` must outlive the records.
  RequestRecords(std::string provider_id, omni::StateClient& state, omni::ResourceCache& cache);

  const std::string& provider_id() const { return provider_id_; }
  // "<pid>.ProvisionController": our finalizer, and the owner of the status and state resources.
  const std::string& owner() const { return owner_; }

  omni::ResourcePointer RequestPointer(const std::string& id) const;
  omni::ResourcePointer StatusPointer(const std::string& id) const;
  omni::ResourcePointer StatePointer(const std::string& id) const;

  absl::StatusOr<std::optional<omni::Resource>> Request(const std::string& id);
  absl::StatusOr<std::optional<omni::Resource>> Status(const std::string& id);
  absl::StatusOr<std::optional<omni::Resource>> State(const std::string& id);

  // Our finalizer on `request` (a finalizer-only update, as Omni allows a provider).
  absl::StatusOr<omni::Resource> AddFinalizer(const omni::Resource& request);
  absl::Status RemoveFinalizer(const omni::Resource& request);

  // Creates the status (when `status` is nullopt) or updates it, unless it already says `report`
  // with the request's labels (which Omni's controllers read from it).
  absl::StatusOr<omni::Resource> WriteStatus(const omni::Resource& request, const std::optional<omni::Resource>& status,
                                             const StatusReport& report);
  // Creates the state resource (when `state` is nullopt) or updates it with `machine` and the step
  // annotation. `expected_phase`: nullopt writes whatever the phase (teardown).
  absl::StatusOr<omni::Resource> SaveState(const std::string& id, const std::optional<omni::Resource>& state,
                                           const MachineSpec& machine, const std::string& step,
                                           std::optional<std::string_view> expected_phase = omni::kPhaseRunning);

  // Tears `pointer` down and destroys it once nothing holds it (no finalizers). True when it no
  // longer exists; false while a finalizer (Omni's) still holds it.
  absl::StatusOr<bool> Retire(const omni::ResourcePointer& pointer);
  // The ConfigPatchRequests made for `request_id` (the Go provider made them; we make none).
  absl::StatusOr<std::vector<omni::Resource>> ConfigPatches(const std::string& request_id);

 private:
  absl::StatusOr<omni::Resource> EditFinalizer(const omni::Resource& request, bool add);
  // One Update of `desired` (from the version it carries); on a stale version, `mutate` applied to
  // a fresh read, retried as StateClient::Modify does.
  absl::StatusOr<omni::Resource> Write(const omni::Resource& desired,
                                       const std::function<absl::Status(omni::Resource&)>& mutate,
                                       std::optional<std::string_view> expected_phase);

  const std::string provider_id_;
  const std::string owner_;
  omni::StateClient& state_;
  omni::ResourceCache& cache_;
};

}  // namespace omni_proxmox::provider
