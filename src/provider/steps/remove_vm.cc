// SPDX-License-Identifier: Apache-2.0
// Teardown step "removeVm": the request's VM, located cluster-wide (a migrated VM is found on its
// new node) and removed only when its markers, or for the Go provider's state its SMBIOS uuid,
// prove it is this request's: a graceful shutdown (force-stopped by Proxmox after the timeout),
// then a delete with its disks.

#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include <fmt/format.h>

#include "provider/ownership/iso_names.h"
#include "provider/ownership/owned_vm.h"
#include "provider/steps/steps_internal.h"
#include "provider/steps/task_wait.h"
#include "pve/parse/upid.h"

namespace omni_proxmox::provider::steps {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class RemoveVm final : public Step {
 public:
  explicit RemoveVm(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "removeVm"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    if (!machine.vm_delete_task().empty()) {
      const TaskPoll poll = services_.fleet.PollTask(ctx.request_id, machine.vm_delete_task(),
                                                     fmt::format("delete of VM {}", machine.vmid()));
      if (auto waiting = WhileUnfinished(poll)) return *waiting;
      const std::string deleted = machine.vm_delete_task();
      machine.clear_vm_delete_task();
      if (poll.kind == TaskPoll::Kind::kFailed) return StepResult::Retry(poll.error);
      // The listing that led to this delete showed no other VM of the request, and nothing makes
      // one during teardown: nothing left to look for.
      if (poll.kind == TaskPoll::Kind::kSucceeded && TakeLast(ctx.request_id, deleted)) return StepResult::Next();
    }
    // The VM our own shutdown just stopped (a guest that ignored it was force-stopped by Proxmox:
    // forceStop), deleted in this pass without reading its status again.
    std::optional<pve::Upid> stopped;
    if (!machine.vm_stop_task().empty()) {
      const TaskPoll poll = services_.fleet.PollTask(ctx.request_id, machine.vm_stop_task(),
                                                     fmt::format("shutdown of VM {}", machine.vmid()));
      if (auto waiting = WhileUnfinished(poll)) return *waiting;
      if (poll.kind == TaskPoll::Kind::kSucceeded) {
        if (auto upid = pve::parse::ParseUpid(machine.vm_stop_task()); upid.ok()) stopped = *upid;
      }
      machine.clear_vm_stop_task();
      // A shutdown that failed (its worker could not take the VM's lock) is an error to show and
      // retry with backoff, not a silent loop.
      if (poll.kind == TaskPoll::Kind::kFailed) return StepResult::Retry(poll.error);
    }
    auto scope = services_.join.OurScope();
    if (!scope.ok())
      return StepResult::Retry(fmt::format("cannot read Omni's join configuration: {}", Msg(scope.status())));
    // One listing serves every request tearing down about now; it began after this request's own
    // last shutdown, delete or task end (fleet_view.h), so it shows what those did.
    auto listing = services_.fleet.ClusterVms(ctx.request_id);
    if (!listing.ok()) return StepResult::Retry(Msg(listing.status()));
    auto target = Target(ctx, (*listing)->vms, *scope);
    if (!target.ok()) return StepResult::Retry(Msg(target.status()));
    if (!*target) return StepResult::Next();
    if (!(*target)->vm) return StepResult::Wait(services_.options.lock_recheck);  // our create still holds it
    const pve::ClusterResource& vm = *(*target)->vm;
    if ((*target)->kind == VmLookup::Kind::kLegacy) {
      if (auto s = RecordGoCidata(ctx, vm); !s.ok()) return StepResult::Retry(Msg(s));
    }
    KnownPower power = vm.status == "running" ? KnownPower::kRunning : KnownPower::kUnknown;
    if (stopped && stopped->node == vm.node && vm.vmid && stopped->id == std::to_string(*vm.vmid)) {
      power = KnownPower::kStopped;
    }
    return Remove(ctx, vm, power);
  }

 private:
  // The VM to remove: nullopt when there is none of ours; a lookup without a VM while our own
  // create of it is still running.
  absl::StatusOr<std::optional<VmLookup>> Target(StepContext& ctx, const std::vector<pve::ClusterResource>& vms,
                                                 const Scope& scope) {
    MachineSpec& machine = *ctx.machine;
    // Every VM with the request's markers is ours to remove, one per pass.
    auto marked = MarkedVms(vms, scope, ctx.request_id);
    if (!marked.empty()) {
      NoteLast(ctx.request_id, marked.size() == 1 ? std::to_string(*marked.front().vmid) : "");
      return VmLookup{.kind = VmLookup::Kind::kMarked, .vm = marked.front()};
    }
    NoteLast(ctx.request_id, "");
    auto found = LookUpVm(services_.pve, vms, scope, ctx.request_id, machine.vmid(), LegacyIdentityOf(machine));
    if (!found.ok()) return found.status();
    switch (found->kind) {
      case VmLookup::Kind::kNone:
        return std::nullopt;
      case VmLookup::Kind::kCreating:
        return VmLookup{.kind = VmLookup::Kind::kCreating, .vm = std::nullopt};
      case VmLookup::Kind::kForeign:
        ctx.log->warn("request {}: VM {} on {} does not carry this request's markers; leaving it alone", ctx.request_id,
                      *found->vm->vmid, found->vm->node);
        return std::nullopt;
      case VmLookup::Kind::kMarked:
      case VmLookup::Kind::kLegacy:
        break;
    }
    return *found;
  }

  // The Go provider's VM boots with its own cloud-init ISO ("user-data-<vmid>.iso"): recorded as
  // this request's, so removeCidata deletes it with the VM, as the Go provider itself would. Ours
  // (cidata_volume) may be there too when we finished what the Go provider had started.
  absl::Status RecordGoCidata(StepContext& ctx, const pve::ClusterResource& vm) {
    MachineSpec& machine = *ctx.machine;
    if (!machine.go_cidata_volume().empty() || machine.go_cidata_handled()) return absl::OkStatus();
    auto config = services_.pve.GetVmConfig(vm.node, *vm.vmid);
    if (!config.ok()) return config.status();
    const std::string file = GoCidataIsoFileName(*vm.vmid);
    for (const auto& [key, value] : config->values) {
      const std::string volume = value.substr(0, value.find(','));
      if (volume.ends_with(":iso/" + file)) {
        machine.set_go_cidata_volume(volume);
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  StepResult Remove(StepContext& ctx, const pve::ClusterResource& vm, KnownPower power) {
    MachineSpec& machine = *ctx.machine;
    auto step = AdvanceVmRemoval(services_.pve, vm, services_.options.shutdown_timeout, power);
    services_.fleet.SawChange(ctx.request_id);  // a shutdown or delete may have been sent
    if (!step.ok()) return StepResult::Retry(Msg(step.status()));
    switch (step->kind) {
      case VmRemovalStep::Kind::kGone:
        return StepResult::Next();
      case VmRemovalStep::Kind::kBusy:
        // Refused for a lock someone else holds: shown and retried with backoff until it goes.
        if (!step->refused.empty()) return StepResult::Retry(step->refused);
        return StepResult::Wait(vm.lock == "create" ? services_.options.lock_recheck
                                                    : 2 * services_.options.lock_recheck);
      case VmRemovalStep::Kind::kShuttingDown:
        machine.set_vm_stop_task(step->task->text);
        return StepResult::Wait(services_.fleet.FirstPoll(step->task->text, ctx.request_id));
      case VmRemovalStep::Kind::kDeleting:
        machine.set_vm_delete_task(step->task->text);
        machine.set_node(vm.node);
        machine.set_vmid(*vm.vmid);
        ctx.log->info("request {}: deleting VM {} on {}", ctx.request_id, *vm.vmid, vm.node);
        ++services_.counters.vms_deleted;
        return StepResult::Wait(services_.fleet.FirstPoll(step->task->text, ctx.request_id));
    }
    return StepResult::Next();
  }

  // Which VM (VMID text) a request's last listing showed as its only one; "" forgets.
  void NoteLast(const std::string& request_id, const std::string& vmid) {
    absl::MutexLock lock(&last_mutex_);
    if (vmid.empty()) {
      last_.erase(request_id);
    } else {
      last_[request_id] = vmid;
    }
  }
  // True when the delete task `upid` removed the VM the request's last listing showed as its only one.
  bool TakeLast(const std::string& request_id, const std::string& upid) {
    auto parsed = pve::parse::ParseUpid(upid);
    absl::MutexLock lock(&last_mutex_);
    auto it = last_.find(request_id);
    if (it == last_.end()) return false;
    const bool same = parsed.ok() && parsed->type == "qmdestroy" && parsed->id == it->second;
    last_.erase(it);
    return same;
  }

  StepServices& services_;
  absl::Mutex last_mutex_;
  std::map<std::string, std::string> last_ ABSL_GUARDED_BY(last_mutex_);
};

}  // namespace

std::unique_ptr<Step> MakeRemoveVm(StepServices& services) { return std::make_unique<RemoveVm>(services); }

}  // namespace omni_proxmox::provider::steps
