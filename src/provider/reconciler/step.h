// SPDX-License-Identifier: Apache-2.0
#pragma once

// The contract between the step runner (step_runner.h), which owns a request's finalizer, its
// state resource and its status, and the steps (src/provider/steps/), which each move one part of
// the VM toward what the request asks for. A step reads the request and its part of our state,
// calls Proxmox at most a few times, records what it learned in `machine`, and says what should
// happen next; it never writes to Omni and never sleeps.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include <spdlog/logger.h>

#include "omni/specs/omni.pb.h"
#include "provider/machine.pb.h"
#include "provider/model/providerdata.h"
#include "provider/placement/placement.h"

namespace omni_proxmox::provider {

// What a step asks for next.
struct StepResult {
  enum class Kind {
    kNext,      // this step is done: the next one runs in the same pass
    kWait,      // waiting for Proxmox (a task, a lock, a slot): look again after `after`; not an error
    kRetry,     // a transient error (shown in the status): tried again with the retry backoff
    kFailed,    // stage FAILED (e.g. no room): tried again with the slower failure backoff,
                // since the cluster may change
    kTerminal,  // stage FAILED until the request changes: retrying cannot help (invalid input)
  };
  Kind kind = Kind::kNext;
  std::chrono::milliseconds after{0};  // kWait
  std::string error;                   // kRetry, kFailed, kTerminal

  static StepResult Next() { return {}; }
  static StepResult Wait(std::chrono::milliseconds after) { return {Kind::kWait, after, ""}; }
  // Look again at once (something changed that the next look must see).
  static StepResult Again() { return Wait(std::chrono::milliseconds{0}); }
  static StepResult Retry(std::string error) { return {Kind::kRetry, {}, std::move(error)}; }
  static StepResult Failed(std::string error) { return {Kind::kFailed, {}, std::move(error)}; }
  static StepResult Terminal(std::string error) { return {Kind::kTerminal, {}, std::move(error)}; }
};

// What a step sees of its request, and the state it may change. The runner saves `machine` before
// the pass reports its status whenever what changed must survive a crash (task IDs alone wait for
// the next such write: after a crash the steps find that work by looking at Proxmox); SaveNow() is
// for the one write that must land before a Proxmox call (the create intent).
struct StepContext {
  std::string request_id;
  std::string request_set;  // the MachineRequestSet, from the request's labels
  const specs::MachineRequestSpec* request = nullptr;
  // Provisioning only (teardown does not parse the providerdata).
  const ProviderData* data = nullptr;
  const CompiledSelectors* selectors = nullptr;
  MachineSpec* machine = nullptr;
  spdlog::logger* log = nullptr;

  absl::Status SaveNow() { return save_now(); }

  std::function<absl::Status()> save_now;
};

// One named step. Steps must be idempotent: after a crash, or when an earlier pass ended waiting,
// the runner runs them again from the first, and each returns kNext at once when its part is done.
class Step {
 public:
  virtual ~Step() = default;
  // The name shown in the status ("Running Step: \"place\" (1/6)") and logs, and stored as the
  // state resource's step annotation.
  virtual std::string_view name() const = 0;
  virtual StepResult Run(StepContext& ctx) = 0;
};

using StepList = std::vector<std::unique_ptr<Step>>;

}  // namespace omni_proxmox::provider
