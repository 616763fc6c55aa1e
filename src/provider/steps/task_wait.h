// SPDX-License-Identifier: Apache-2.0
#pragma once

// How a step turns a look at its Proxmox task into its result while the task has not finished.

#include <optional>

#include "provider/fleet/fleet_view.h"
#include "provider/reconciler/step.h"

namespace omni_proxmox::provider {

// The step's result while `poll` says the task is still running (a wait) or could not be read
// (a retry); nullopt once it finished (succeeded, failed or gone), for the step to handle.
inline std::optional<StepResult> WhileUnfinished(const TaskPoll& poll) {
  if (poll.kind == TaskPoll::Kind::kRunning) return StepResult::Wait(poll.again);
  if (poll.kind == TaskPoll::Kind::kUnreadable) return StepResult::Retry(poll.error);
  return std::nullopt;
}

}  // namespace omni_proxmox::provider
