// SPDX-License-Identifier: Apache-2.0
#pragma once

// The step runner: what Omni's infra library calls the provision controller. Handed a
// MachineRequest ID by the work queue (never an event: reconcile.Request carries only the key),
// it reads the request and its records from the cache and drives them toward the request:
//   - provisioning: our finalizer first, then the steps in order (each returns at once when its
//     part is done), the state resource saved whenever a step changed it and before the status
//     reports it, the status text `Running Step: "<name>" (i/n)`, and stage PROVISIONED at the end;
//   - teardown (the request is tearingDown): ConfigPatchRequests, the status (once Omni's cleanup
//     finalizer is gone), the teardown steps (the VM, the cloud-init ISO), our state, and last our
//     finalizer, after which Omni destroys the request.
// A step's result becomes the queue's next move: the next step, a wait, a retry with the retry
// policy's backoff, a FAILED stage retried slowly, or a terminal FAILED stage that waits for the
// request to change. Steps never write to Omni; the runner never calls Proxmox.
//
// Thread-safe: workers run Reconcile for different IDs at once (the queue never hands one ID to
// two workers).

#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "provider/fleet/fleet_view.h"
#include "provider/fleet/vm_presence.h"
#include "provider/reconciler/request_records.h"
#include "provider/reconciler/retry_policy.h"
#include "provider/reconciler/step.h"
#include "provider/reconciler/work_queue.h"
#include "provider/steps/services.h"
#include "util/clock.h"
#include "util/metrics.h"
#include "util/random.h"

namespace omni_proxmox::provider {

struct RunnerOptions {
  std::string provider_id = "proxmox";
  RetryPolicy retry;
  // How soon a request waiting for Omni's cleanup finalizer on its status or a ConfigPatchRequest
  // looks again if no watch event came first.
  std::chrono::milliseconds teardown_recheck{1000};
};

class StepRunner {
 public:
  // Every reference must outlive the runner. `metrics` may be null; otherwise
  // omni_proxmox_step_duration_seconds{step} is kept there. `presence` (may be null) says whether
  // a PROVISIONED request's VM is still in the cluster; its verdict goes into the status error.
  StepRunner(RunnerOptions options, RequestRecords& records, StepList provision, StepList teardown, FleetView& fleet,
             ProviderCounters& counters, const util::Clock& clock, util::Random& random,
             util::MetricsRegistry* metrics = nullptr, const VmPresence* presence = nullptr);

  Outcome Reconcile(const std::string& request_id);
  // Requests whose teardown is retrying a failed step (omni_proxmox_teardowns_retrying).
  int TeardownsRetrying() const;

 private:
  struct Pass;
  // What the runner remembers of a request between passes: how often its current step failed in a
  // row, the providerdata parsed once, and what the steps changed that is not yet worth a write of
  // its own (task IDs: a crash loses nothing the steps cannot find again in Proxmox).
  struct Memory {
    int retries = 0;
    int failures = 0;
    std::string terminal_version;  // the request's version when a step failed terminally
    std::string parsed_version;
    std::optional<ProviderData> data;
    std::optional<CompiledSelectors> selectors;
    std::optional<MachineSpec> unsaved;  // newer than the state resource at version unsaved_base
    std::string unsaved_base;            // "" while there is no state resource
    // Teardown: the step failing and retried ("" while none is), its failures in a row, and when
    // the last warning about it was logged (at most one a minute).
    std::string retry_step;
    int teardown_failures = 0;
    util::Clock::MonotonicTime warned_at{};
  };

  Outcome Provision(const omni::Resource& request);
  // A PROVISIONED request: its status error says whether its VM is gone (never re-created).
  Outcome ReportPresence(const omni::Resource& request, const omni::Resource& status,
                         const specs::MachineRequestStatusSpec& spec);
  // Parses the providerdata (once per request version); an Outcome when the pass ends there.
  std::optional<Outcome> Prepare(Pass& pass);
  Outcome RunProvisionSteps(Pass& pass);
  Outcome EndStep(Pass& pass, const Step& step, int index, const StepResult& result);
  Outcome Teardown(const omni::Resource& request);
  Outcome RunTeardownSteps(Pass& pass);
  // A teardown step failed: records the error in the state (for `status`), logs it (rate-limited)
  // and says when to try again.
  Outcome RetryTeardown(Pass& pass, const Step& step, const StepResult& result);
  // Starts pass.machine from the state resource, or from what the last pass kept unsaved.
  void LoadMachine(Pass& pass);
  // Saves pass.machine when it differs from the state resource in anything but task IDs (or
  // always, with `force`); otherwise keeps it in memory for the next pass.
  absl::Status Flush(Pass& pass, const std::string& step, std::optional<std::string_view> expected_phase,
                     bool force = false);
  void Forget(const std::string& request_id);
  void ObserveStep(const Step& step, util::Clock::MonotonicTime started);

  const RunnerOptions options_;
  RequestRecords& records_;
  const StepList provision_;
  const StepList teardown_;
  FleetView& fleet_;
  ProviderCounters& counters_;
  const util::Clock& clock_;
  util::Random& random_;
  util::MetricsRegistry* const metrics_;
  const VmPresence* const presence_;

  mutable absl::Mutex mutex_;
  std::map<std::string, Memory> memory_ ABSL_GUARDED_BY(mutex_);
};

// A random (version 4) UUID, lowercase: a VM's SMBIOS identity.
std::string NewUuid(util::Random& random);

}  // namespace omni_proxmox::provider
