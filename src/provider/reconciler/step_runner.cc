// SPDX-License-Identifier: Apache-2.0
#include "provider/reconciler/step_runner.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "util/log.h"

namespace omni_proxmox::provider {
namespace {

using Stage = specs::MachineRequestStatusSpec;
using std::chrono::milliseconds;

std::string Seconds(milliseconds d) { return fmt::format("{:.1f}s", std::chrono::duration<double>(d).count()); }

// The part of the state that must survive a crash: everything but the IDs of tasks in flight,
// which the steps recover by looking at Proxmox (a create by its lock or markers, a start by the
// VM's power state, an upload or delete by the storage's content). The Talos ISO download stays:
// its task is shared with every request on the storage and rare.
MachineSpec Durable(MachineSpec machine) {
  machine.clear_vm_create_task();
  machine.clear_vm_start_task();
  machine.clear_cidata_upload_task();
  machine.clear_vm_stop_task();
  machine.clear_vm_delete_task();
  machine.clear_cidata_delete_task();
  return machine;
}

bool SameMachine(const MachineSpec& a, const MachineSpec& b) { return a.SerializeAsString() == b.SerializeAsString(); }

}  // namespace

std::string NewUuid(util::Random& random) {
  std::uint64_t hi = random.Uniform(UINT64_MAX);
  std::uint64_t lo = random.Uniform(UINT64_MAX);
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48,
                     lo & 0xffffffffffffULL);
}

// One pass over one request: what it read, and what its steps changed.
struct StepRunner::Pass {
  std::string id;
  omni::Resource request;
  specs::MachineRequestSpec spec;
  std::optional<omni::Resource> status;
  std::optional<omni::Resource> state;  // nullopt until first saved
  MachineSpec saved;                    // what the state resource holds (empty without one)
  MachineSpec machine;
  StepContext ctx;
  std::string last_error;  // the status's error, kept while a step waits until one succeeds
  std::string step;        // the step running, for the state's step annotation
  std::shared_ptr<spdlog::logger> log;
};

StepRunner::StepRunner(RunnerOptions options, RequestRecords& records, StepList provision, StepList teardown,
                       FleetView& fleet, ProviderCounters& counters, const util::Clock& clock, util::Random& random,
                       util::MetricsRegistry* metrics, const VmPresence* presence)
    : options_(std::move(options)),
      records_(records),
      provision_(std::move(provision)),
      teardown_(std::move(teardown)),
      fleet_(fleet),
      counters_(counters),
      clock_(clock),
      random_(random),
      metrics_(metrics),
      presence_(presence) {}

void StepRunner::Forget(const std::string& request_id) {
  fleet_.ledger().Release(request_id);
  absl::MutexLock lock(&mutex_);
  memory_.erase(request_id);
}

void StepRunner::ObserveStep(const Step& step, util::Clock::MonotonicTime started) {
  if (metrics_ == nullptr) return;
  metrics_
      ->GetHistogram("omni_proxmox_step_duration_seconds", "Time one pass spent in a provisioning step",
                     {{"step", std::string(step.name())}})
      .Observe(std::chrono::duration<double>(clock_.Monotonic() - started).count());
}

Outcome StepRunner::Reconcile(const std::string& request_id) {
  util::LogContext context({{"request_id", request_id}, {"step", "reconcile"}});
  auto request = records_.Request(request_id);
  if (!request.ok()) return Outcome::Error(request.status());
  if (!*request) {
    Forget(request_id);
    fleet_.ForgetRequest(request_id);
    return Outcome::Done();
  }
  const auto& labels = (*request)->metadata.labels;
  if (auto it = labels.find(std::string(omni::kLabelInfraProviderId));
      it != labels.end() && it->second != options_.provider_id) {
    return Outcome::Done();
  }
  if ((*request)->tearing_down()) return Teardown(**request);
  return Provision(**request);
}

void StepRunner::LoadMachine(Pass& pass) {
  const std::string base = pass.state ? pass.state->metadata.version : "";
  pass.machine = pass.saved;
  absl::MutexLock lock(&mutex_);
  auto it = memory_.find(pass.id);
  if (it == memory_.end() || !it->second.unsaved) return;
  // Only on top of the version it was derived from: a newer state (another writer, a restart
  // in between) wins.
  if (it->second.unsaved_base == base) pass.machine = *it->second.unsaved;
  it->second.unsaved.reset();
}

absl::Status StepRunner::Flush(Pass& pass, const std::string& step, std::optional<std::string_view> expected_phase,
                               bool force) {
  if (SameMachine(pass.machine, pass.saved)) return absl::OkStatus();
  if (!force && pass.state && SameMachine(Durable(pass.machine), Durable(pass.saved))) {
    absl::MutexLock lock(&mutex_);
    Memory& memory = memory_[pass.id];
    memory.unsaved = pass.machine;
    memory.unsaved_base = pass.state->metadata.version;
    return absl::OkStatus();
  }
  auto saved = records_.SaveState(pass.id, pass.state, pass.machine, step, expected_phase);
  if (!saved.ok()) return saved.status();
  pass.state = *saved;
  pass.saved = pass.machine;
  return absl::OkStatus();
}

Outcome StepRunner::Provision(const omni::Resource& request) {
  Pass pass;
  pass.id = request.metadata.id;
  pass.request = request;
  pass.log = util::Logger("provider");
  // The finalizer comes before any side effect, so Omni cannot forget a request we act on.
  if (!pass.request.HasFinalizer(records_.owner())) {
    auto updated = records_.AddFinalizer(pass.request);
    if (!updated.ok()) return Outcome::Error(updated.status());
    pass.request = *updated;
  }
  auto status = records_.Status(pass.id);
  if (!status.ok()) return Outcome::Error(status.status());
  pass.status = *status;
  if (pass.status) {
    Stage spec;
    if (omni::DecodeSpec(*pass.status, spec).ok()) {
      if (spec.stage() == Stage::PROVISIONED) {
        Forget(pass.id);
        return ReportPresence(pass.request, *pass.status, spec);
      }
      pass.last_error = spec.error();
    }
  }
  {
    absl::MutexLock lock(&mutex_);
    auto it = memory_.find(pass.id);
    if (it != memory_.end() && it->second.terminal_version == pass.request.metadata.version) return Outcome::Done();
  }
  auto state = records_.State(pass.id);
  if (!state.ok()) return Outcome::Error(state.status());
  pass.state = *state;
  if (pass.state) {
    if (auto s = omni::DecodeSpec(*pass.state, pass.saved); !s.ok()) return Outcome::Error(s);
  }
  LoadMachine(pass);
  if (auto s = omni::DecodeSpec(pass.request, pass.spec); !s.ok()) return Outcome::Error(s);
  if (auto ended = Prepare(pass)) return *ended;
  return RunProvisionSteps(pass);
}

Outcome StepRunner::ReportPresence(const omni::Resource& request, const omni::Resource& status, const Stage& spec) {
  if (presence_ == nullptr) return Outcome::Done();
  const std::string& id = request.metadata.id;
  MissingVm missing;
  std::string error;
  switch (presence_->Of(id, &missing)) {
    case VmPresence::Verdict::kUnknown:
      return Outcome::Done();
    case VmPresence::Verdict::kMissing:
      error = VmGoneMessage(missing);
      if (spec.error() == error) return Outcome::Done();
      util::Logger("provider")->warn("request {}: {}", id, error);
      break;
    case VmPresence::Verdict::kPresent:
      // Only our own verdict is cleared; an error someone else wrote stays.
      if (!std::string_view(spec.error()).starts_with(kVmGonePrefix)) return Outcome::Done();
      util::Logger("provider")->info("request {}: its VM is listed again; the missing-VM error is cleared", id);
      break;
  }
  auto written =
      records_.WriteStatus(request, status, {.stage = Stage::PROVISIONED, .text = spec.status(), .error = error});
  if (!written.ok()) return Outcome::Error(written.status());
  return Outcome::Done();
}

std::optional<Outcome> StepRunner::Prepare(Pass& pass) {
  pass.ctx.request_id = pass.id;
  if (auto it = pass.request.metadata.labels.find(std::string(omni::kLabelMachineRequestSet));
      it != pass.request.metadata.labels.end()) {
    pass.ctx.request_set = it->second;
  }
  pass.ctx.request = &pass.spec;
  pass.ctx.machine = &pass.machine;
  pass.ctx.log = pass.log.get();
  pass.ctx.save_now = [this, &pass] { return Flush(pass, pass.step, omni::kPhaseRunning, /*force=*/true); };

  absl::MutexLock lock(&mutex_);
  Memory& memory = memory_[pass.id];
  if (memory.parsed_version != pass.request.metadata.version || !memory.data) {
    auto parsed = ParseProviderData(pass.spec.provider_data());
    if (!parsed.ok()) {
      // The request's spec never changes, so this stays so until the MachineClass is fixed and
      // Omni makes new requests: not retried.
      memory.terminal_version = pass.request.metadata.version;
      ++counters_.failures;
      const std::string error = fmt::format("providerdata is invalid, no VM was created:\n{}", parsed.ErrorSummary());
      pass.log->error("request {}: {}", pass.id, error);
      auto s = records_.WriteStatus(pass.request, pass.status,
                                    {.stage = Stage::FAILED, .text = "Invalid providerdata", .error = error});
      return s.ok() ? Outcome::Done() : Outcome::Error(s.status());
    }
    auto selectors = CompiledSelectors::Compile(*parsed.data);
    if (!selectors.ok()) return Outcome::Error(selectors.status());
    memory.data = *parsed.data;
    memory.selectors = *selectors;
    memory.parsed_version = pass.request.metadata.version;
  }
  // Map nodes stay put, and only this pass (the queue runs one per request) touches this entry.
  pass.ctx.data = &*memory.data;
  pass.ctx.selectors = &*memory.selectors;
  if (pass.machine.uuid().empty()) pass.machine.set_uuid(NewUuid(random_));
  return std::nullopt;
}

Outcome StepRunner::RunProvisionSteps(Pass& pass) {
  for (int i = 0; i < static_cast<int>(provision_.size()); ++i) {
    const Step& step = *provision_[i];
    pass.step = std::string(step.name());
    util::LogContext step_context({{"step", pass.step}});
    const auto started = clock_.Monotonic();
    const StepResult result = provision_[i]->Run(pass.ctx);
    ObserveStep(step, started);
    if (result.kind == StepResult::Kind::kNext) {
      pass.last_error.clear();
      continue;
    }
    return EndStep(pass, step, i, result);
  }
  // The state first, exactly: a status never reports what our state does not hold.
  if (auto s = Flush(pass, std::string(provision_.back()->name()), omni::kPhaseRunning, /*force=*/true); !s.ok()) {
    return Outcome::Error(s);
  }
  auto written = records_.WriteStatus(
      pass.request, pass.status,
      {.stage = Stage::PROVISIONED, .text = "Provision Complete", .error = "", .machine_uuid = pass.machine.uuid()});
  if (!written.ok()) return Outcome::Error(written.status());
  Forget(pass.id);
  pass.log->info("request {} provisioned: vm {} on node {}", pass.id, pass.machine.vmid(), pass.machine.node());
  ++counters_.provisioned;
  return Outcome::Done();
}

Outcome StepRunner::EndStep(Pass& pass, const Step& step, int index, const StepResult& result) {
  const int count = static_cast<int>(provision_.size());
  const std::string name(step.name());
  StatusReport report{.stage = Stage::PROVISIONING,
                      .text = fmt::format("Running Step: \"{}\" ({}/{})", name, index + 1, count),
                      .error = pass.last_error,
                      .machine_uuid = pass.machine.uuid()};
  milliseconds after{0};
  bool terminal = false;
  {
    absl::MutexLock lock(&mutex_);
    Memory& memory = memory_[pass.id];
    switch (result.kind) {
      case StepResult::Kind::kNext:
      case StepResult::Kind::kWait:
        memory.retries = memory.failures = 0;
        after = result.after;
        break;
      case StepResult::Kind::kRetry:
        after = options_.retry.Transient(memory.retries++, random_);
        report.error = result.error;
        pass.log->warn("request {} step {}: {} (trying again in {})", pass.id, name, result.error, Seconds(after));
        break;
      case StepResult::Kind::kFailed:
        after = options_.retry.Failed(memory.failures++, random_);
        break;
      case StepResult::Kind::kTerminal:
        memory.terminal_version = pass.request.metadata.version;
        terminal = true;
        break;
    }
  }
  if (result.kind == StepResult::Kind::kFailed || terminal) {
    ++counters_.failures;
    report.stage = Stage::FAILED;
    report.text = fmt::format("Failed in step \"{}\" ({}/{})", name, index + 1, count);
    report.error = result.error;
    pass.log->error(
        "request {} step {} failed: {} ({})", pass.id, name, result.error,
        terminal ? "not tried again until the request changes" : fmt::format("trying again in {}", Seconds(after)));
  }
  if (auto s = Flush(pass, name, omni::kPhaseRunning); !s.ok()) return Outcome::Error(s);
  auto written = records_.WriteStatus(pass.request, pass.status, report);
  if (!written.ok()) return Outcome::Error(written.status());
  if (terminal) return Outcome::Done();
  return Outcome::RequeueAfter(after);
}

Outcome StepRunner::Teardown(const omni::Resource& request) {
  util::LogContext step_context({{"step", "teardown"}});
  const std::string& id = request.metadata.id;
  // 1. ConfigPatchRequests made for this machine (the Go provider's; we make none).
  auto patches = records_.ConfigPatches(id);
  if (!patches.ok()) return Outcome::Error(patches.status());
  bool waiting = false;
  for (const auto& patch : *patches) {
    auto gone = records_.Retire(patch.pointer());
    if (!gone.ok()) return Outcome::Error(gone.status());
    waiting = waiting || !*gone;
  }
  if (waiting) return Outcome::RequeueAfter(options_.teardown_recheck);
  // 2. The status, once Omni has dropped its cleanup finalizer.
  auto status_gone = records_.Retire(records_.StatusPointer(id));
  if (!status_gone.ok()) return Outcome::Error(status_gone.status());
  if (!*status_gone) return Outcome::RequeueAfter(options_.teardown_recheck);
  // 3. Our state; without it there is nothing of ours to remove.
  Pass pass;
  pass.id = id;
  pass.request = request;
  pass.log = util::Logger("provider");
  auto state = records_.State(id);
  if (!state.ok()) return Outcome::Error(state.status());
  pass.state = *state;
  if (pass.state) {
    if (auto s = omni::DecodeSpec(*pass.state, pass.saved); !s.ok()) return Outcome::Error(s);
    LoadMachine(pass);
    if (auto s = omni::DecodeSpec(pass.request, pass.spec); !s.ok()) return Outcome::Error(s);
    Outcome removed = RunTeardownSteps(pass);
    if (removed.kind != Outcome::Kind::kDone) return removed;
    // 5. Our state, then the finalizer: Omni then destroys the request.
    auto state_gone = records_.Retire(records_.StatePointer(id));
    if (!state_gone.ok()) return Outcome::Error(state_gone.status());
    if (!*state_gone) return Outcome::RequeueAfter(options_.teardown_recheck);
  }
  if (auto s = records_.RemoveFinalizer(pass.request); !s.ok()) return Outcome::Error(s);
  Forget(id);
  // Kept from the way up until now: the teardown's listings must begin after the request's create.
  fleet_.ForgetRequest(id);
  if (pass.state) {
    ++counters_.deprovisioned;
    pass.log->info("request {}: deprovisioned", id);
  }
  return Outcome::Done();
}

int StepRunner::TeardownsRetrying() const {
  absl::MutexLock lock(&mutex_);
  int retrying = 0;
  for (const auto& [id, memory] : memory_) retrying += !memory.retry_step.empty();
  return retrying;
}

Outcome StepRunner::RunTeardownSteps(Pass& pass) {
  // 4. The provider's part: the VM, located cluster-wide and removed only when it is provably
  // this request's, then the cloud-init ISO.
  pass.ctx.request_id = pass.id;
  pass.ctx.request = &pass.spec;
  pass.ctx.machine = &pass.machine;
  pass.ctx.log = pass.log.get();
  pass.ctx.save_now = [this, &pass] { return Flush(pass, "deprovision", std::nullopt, /*force=*/true); };
  for (const auto& step : teardown_) {
    util::LogContext step_context({{"step", std::string(step->name())}});
    const StepResult result = step->Run(pass.ctx);
    if (result.kind == StepResult::Kind::kNext) {
      absl::MutexLock lock(&mutex_);
      Memory& memory = memory_[pass.id];
      if (memory.retry_step == step->name()) {
        pass.log->info("request {}: teardown step {} got through after {} failed attempts", pass.id, step->name(),
                       memory.teardown_failures);
        memory.retry_step.clear();
        memory.teardown_failures = 0;
      }
      if (memory.retry_step.empty()) {
        pass.machine.clear_teardown_error();
        pass.machine.clear_teardown_attempts();
        pass.machine.clear_teardown_retry_unix();
      }
      continue;
    }
    if (result.kind != StepResult::Kind::kWait) return RetryTeardown(pass, *step, result);
    // Waiting (for a task, a lock shown in the listing) keeps a failure's error on show: the
    // attempt it waits for may fail the same way.
    if (auto s = Flush(pass, "deprovision", std::nullopt); !s.ok()) return Outcome::Error(s);
    return Outcome::RequeueAfter(result.after);
  }
  if (auto s = Flush(pass, "deprovision", std::nullopt); !s.ok()) return Outcome::Error(s);
  return Outcome::Done();
}

Outcome StepRunner::RetryTeardown(Pass& pass, const Step& step, const StepResult& result) {
  // A warning at the step's first failure, then at most once a minute (debug in between): a
  // teardown stuck for an hour on a lock logs 60 warnings, not one per attempt.
  constexpr auto kWarnEvery = std::chrono::minutes{1};
  const std::string name(step.name());
  milliseconds after{0};
  int attempts = 0;
  bool warn = false;
  {
    absl::MutexLock lock(&mutex_);
    Memory& memory = memory_[pass.id];
    if (memory.retry_step != name) {
      memory.retry_step = name;
      memory.teardown_failures = 0;
    }
    after = options_.retry.Transient(memory.teardown_failures++, random_);
    attempts = memory.teardown_failures;
    const auto now = clock_.Monotonic();
    warn = memory.teardown_failures == 1 || now - memory.warned_at >= kWarnEvery;
    if (warn) memory.warned_at = now;
  }
  const auto retry_at = clock_.Now() + after;
  pass.machine.set_teardown_error(fmt::format("{}: {}", name, result.error));
  pass.machine.set_teardown_attempts(attempts);
  pass.machine.set_teardown_retry_unix(
      std::chrono::duration_cast<std::chrono::seconds>(retry_at.time_since_epoch()).count());
  if (auto s = Flush(pass, "deprovision", std::nullopt); !s.ok()) return Outcome::Error(s);
  const std::string line =
      fmt::format("request {}: teardown step {} failed ({} attempts so far): {} (trying again in {})", pass.id, name,
                  attempts, result.error, Seconds(after));
  if (warn) {
    pass.log->warn("{}", line);
  } else {
    pass.log->debug("{}", line);
  }
  return Outcome::RequeueAfter(after);
}

}  // namespace omni_proxmox::provider
