// SPDX-License-Identifier: Apache-2.0
// Step "startVm": the VM running. A VM at our VMID that lacks our markers (ours was deleted and
// the VMID reused) is never started; a VM that moved or vanished is looked for by its markers.

#include <fmt/format.h>

#include "provider/ownership/markers.h"
#include "provider/ownership/owned_vm.h"
#include "provider/steps/steps_internal.h"
#include "provider/steps/task_wait.h"

namespace omni_proxmox::provider::steps {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class StartVm final : public Step {
 public:
  explicit StartVm(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "startVm"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    if (!machine.vm_start_task().empty()) {
      const TaskPoll poll = services_.fleet.PollTask(ctx.request_id, machine.vm_start_task(),
                                                     fmt::format("start of VM {}", machine.vmid()));
      if (auto waiting = WhileUnfinished(poll)) return *waiting;
      machine.clear_vm_start_task();
      if (poll.kind == TaskPoll::Kind::kFailed) return StepResult::Retry(poll.error);
      // Our start of our VM ended OK: it runs (reading its status would only say so).
      if (poll.kind == TaskPoll::Kind::kSucceeded) return StepResult::Next();
    }
    // Our create of this VMID with our markers just ended in this process and nothing started it
    // yet: started without reading its status. If it went away since, the start fails and the
    // next pass reads the status as usual.
    if (services_.fleet.ledger().TakeCreated(ctx.request_id, machine.vmid())) return Start(ctx);
    auto scope = services_.join.OurScope();
    if (!scope.ok())
      return StepResult::Retry(fmt::format("cannot read Omni's join configuration: {}", Msg(scope.status())));
    auto status = services_.pve.GetVmStatus(machine.node(), machine.vmid());
    const bool replaced =
        status.ok() && machine.markers() && !IsOwnedBy(status->tags, status->name, *scope, ctx.request_id);
    if (replaced || status.status().code() == absl::StatusCode::kNotFound) return Relocate(ctx, *scope);
    if (!status.ok()) {
      return StepResult::Retry(
          fmt::format("node {}: cannot read VM {}: {}", machine.node(), machine.vmid(), Msg(status.status())));
    }
    if (status->status == "running") return StepResult::Next();
    return Start(ctx);
  }

 private:
  StepResult Start(StepContext& ctx) {
    MachineSpec& machine = *ctx.machine;
    auto upid = services_.pve.StartVm(machine.node(), machine.vmid());
    if (!upid.ok()) {
      return StepResult::Retry(
          fmt::format("node {}: start of VM {} failed: {}", machine.node(), machine.vmid(), Msg(upid.status())));
    }
    machine.set_vm_start_task(upid->text);
    return StepResult::Wait(services_.fleet.FirstPoll(upid->text, ctx.request_id));
  }

  // Moved or deleted behind our back: found again by its markers, or created again by createVm.
  StepResult Relocate(StepContext& ctx, const Scope& scope) {
    MachineSpec& machine = *ctx.machine;
    services_.fleet.ledger().Unverify(ctx.request_id);
    auto vms = services_.pve.ClusterResources(pve::ResourceType::kVm);
    if (!vms.ok()) return StepResult::Retry(fmt::format("cannot list VMs: {}", Msg(vms.status())));
    auto found = FindMarkedVm(*vms, scope, ctx.request_id);
    if (!found.ok()) return StepResult::Failed(Msg(found.status()));
    if (*found) {
      machine.set_node((*found)->node);
      machine.set_vmid(*(*found)->vmid);
    } else {
      machine.set_vmid(0);
      machine.clear_vm_create_task();
    }
    return StepResult::Again();
  }

  StepServices& services_;
};

}  // namespace

std::unique_ptr<Step> MakeStartVm(StepServices& services) { return std::make_unique<StartVm>(services); }

}  // namespace omni_proxmox::provider::steps
