// SPDX-License-Identifier: Apache-2.0
#include "omni/state_client.h"

#include <fmt/format.h>

#include "util/status_macros.h"

namespace omni_proxmox::omni {

absl::StatusOr<Resource> StateClient::Modify(const ResourcePointer& pointer, std::string_view owner,
                                             const std::function<absl::Status(Resource&)>& mutate,
                                             std::optional<std::string_view> expected_phase) {
  absl::Status last;
  for (int attempt = 0; attempt < std::max(1, conflict_attempts_); ++attempt) {
    OP_ASSIGN_OR_RETURN(Resource current, Get(pointer));
    OP_RETURN_IF_ERROR(mutate(current));
    auto updated = Update(current, owner, expected_phase);
    if (updated.ok() || !IsRetryableWrite(updated.status())) return updated;
    last = updated.status();
  }
  return absl::AbortedError(fmt::format("{} '{}': still conflicting after {} attempts: {}", pointer.type, pointer.id,
                                        conflict_attempts_, std::string(last.message())));
}

absl::StatusOr<Resource> StateClient::CreateOrUpdate(const Resource& desired, std::string_view owner) {
  for (int attempt = 0; attempt < std::max(1, conflict_attempts_); ++attempt) {
    auto current = Get(desired.pointer());
    if (current.status().code() == absl::StatusCode::kNotFound) {
      auto created = Create(desired, owner);
      // Lost a race, or a throttled Create that may have landed: read again.
      if (created.status().code() == absl::StatusCode::kAlreadyExists ||
          created.status().code() == absl::StatusCode::kDeadlineExceeded) {
        continue;
      }
      return created;
    }
    if (!current.ok()) return current.status();
    Resource next = *current;
    next.proto_spec = desired.proto_spec;
    next.yaml_spec = desired.yaml_spec;
    next.metadata.labels = desired.metadata.labels;
    // Omni stamps the owning provider's label on Create; dropping it would hide the resource from us.
    if (auto it = current->metadata.labels.find("omni.sidero.dev/infra-provider-id");
        it != current->metadata.labels.end()) {
      next.metadata.labels.insert(*it);
    }
    next.metadata.annotations = desired.metadata.annotations;
    if (next == *current) return next;
    auto updated = Update(next, owner);
    if (IsRetryableWrite(updated.status())) continue;
    return updated;
  }
  return absl::AbortedError(fmt::format("{} '{}': still conflicting after {} attempts", desired.metadata.type,
                                        desired.metadata.id, conflict_attempts_));
}

}  // namespace omni_proxmox::omni
