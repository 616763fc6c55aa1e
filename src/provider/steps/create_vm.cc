// SPDX-License-Identifier: Apache-2.0
// Step "createVm": the VM itself, exactly once. The node's task slot is claimed before any of the
// create's work; the VM is looked for by its markers cluster-wide first (adopted, never created
// twice); the intent (VMID, markers) is saved before the create call, so after a crash the next
// pass waits for that VMID's create or finds the VM by its markers.

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "provider/ownership/owned_vm.h"
#include "provider/steps/steps_internal.h"
#include "provider/steps/task_wait.h"
#include "provider/vmspec/vmspec.h"
#include "pve/errors.h"

namespace omni_proxmox::provider::steps {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class CreateVm final : public Step {
 public:
  explicit CreateVm(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "createVm"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    Ledger& ledger = services_.fleet.ledger();
    // Seen by its markers by this process; startVm checks the markers on every pass.
    if (machine.vmid() != 0 && machine.vm_create_task().empty() && ledger.Verified(ctx.request_id, machine.vmid())) {
      return StepResult::Next();
    }
    if (!machine.vm_create_task().empty()) {
      const TaskPoll poll = services_.fleet.PollTask(ctx.request_id, machine.vm_create_task(),
                                                     fmt::format("create of VM {}", machine.vmid()));
      if (auto waiting = WhileUnfinished(poll)) return *waiting;
      machine.clear_vm_create_task();
      // A failed create removed its config, so the same VMID can be tried again.
      if (poll.kind == TaskPoll::Kind::kFailed) {
        ForgetVanishedMedia(machine);
        return StepResult::Retry(poll.error);
      }
      if (poll.kind == TaskPoll::Kind::kSucceeded) {
        // Our create of this VMID, with our markers, finished: the VM is ours without a listing
        // (startVm still checks its markers in the status it reads).
        ledger.HoldVmid(ctx.request_id, machine.vmid());
        ledger.MarkVerified(ctx.request_id, machine.vmid());
        ledger.MarkCreated(ctx.request_id, machine.vmid());
        return StepResult::Next();
      }
    }

    // Nothing of the create (listing, VMID, intent) starts before the node has a task slot for
    // it; the create call below uses the claim, any other way out of this step returns it.
    std::optional<pve::SlotClaim> slot = services_.fleet.ClaimSlot(machine.node(), ctx.request_id);
    if (!slot) return StepResult::Wait(services_.options.slot_recheck);

    auto scope = services_.join.OurScope();
    if (!scope.ok())
      return StepResult::Retry(fmt::format("cannot read Omni's join configuration: {}", Msg(scope.status())));
    // Shared with the requests asking at about the same time, and begun after this request's own
    // last create (fleet_view.h): a VM of ours made by an earlier pass or process shows in it.
    auto listing = services_.fleet.ClusterVms(ctx.request_id);
    if (!listing.ok()) return StepResult::Retry(Msg(listing.status()));
    const std::vector<pve::ClusterResource>& vms = (*listing)->vms;
    if (auto settled = Adopt(ctx, vms, *scope)) return *settled;
    if (machine.vmid() == 0) {
      if (auto none = ChooseVmid(ctx, vms)) return *none;
    } else if (!ledger.HoldVmid(ctx.request_id, machine.vmid())) {
      machine.set_vmid(0);  // another request holds it: a fresh one next pass
      return StepResult::Again();
    }
    return Create(ctx, *scope);
  }

 private:
  // Our VM, wherever it is now: adopted rather than created twice. A result when the step ends
  // here; nullopt to go on creating.
  std::optional<StepResult> Adopt(StepContext& ctx, const std::vector<pve::ClusterResource>& vms, const Scope& scope) {
    MachineSpec& machine = *ctx.machine;
    Ledger& ledger = services_.fleet.ledger();
    auto found = LookUpVm(services_.pve, vms, scope, ctx.request_id, machine.vmid(), LegacyIdentityOf(machine));
    if (!found.ok()) {
      // Two VMs with our markers: only the operator can tell which one to keep.
      if (found.status().code() == absl::StatusCode::kFailedPrecondition) {
        return StepResult::Failed(Msg(found.status()));
      }
      return StepResult::Retry(Msg(found.status()));
    }
    switch (found->kind) {
      case VmLookup::Kind::kNone:
        return std::nullopt;
      case VmLookup::Kind::kCreating:
        return StepResult::Wait(services_.options.lock_recheck);
      case VmLookup::Kind::kForeign:
        // Someone else's VM took the VMID: never touch it, pick another.
        ctx.log->warn("request {}: VMID {} is taken by a VM that is not ours ({}); choosing another", ctx.request_id,
                      machine.vmid(), found->vm->name);
        ledger.ReleaseVmid(ctx.request_id);
        machine.set_vmid(0);
        return std::nullopt;
      case VmLookup::Kind::kMarked:
      case VmLookup::Kind::kLegacy:
        break;
    }
    const pve::ClusterResource& vm = *found->vm;
    if (vm.lock == "create") return StepResult::Wait(services_.options.lock_recheck);
    if (machine.vmid() != *vm.vmid || machine.node() != vm.node) {
      if (machine.vmid() != *vm.vmid || found->kind == VmLookup::Kind::kLegacy) ++services_.counters.vms_adopted;
      machine.set_vmid(*vm.vmid);
      machine.set_node(vm.node);
      if (found->kind == VmLookup::Kind::kMarked) machine.set_markers(true);
    } else if (found->kind == VmLookup::Kind::kLegacy) {
      ++services_.counters.vms_adopted;  // the Go provider's VM, where its state says it is
    }
    ledger.HoldVmid(ctx.request_id, *vm.vmid);
    ledger.MarkVerified(ctx.request_id, *vm.vmid);
    return StepResult::Next();
  }

  // A free VMID for the request (in its vmid_range, else from Proxmox's next free one), or the
  // failure when there is none.
  std::optional<StepResult> ChooseVmid(StepContext& ctx, const std::vector<pve::ClusterResource>& vms) {
    std::set<pve::Vmid> taken;
    for (const auto& vm : vms) {
      if (vm.vmid) taken.insert(*vm.vmid);
    }
    pve::Vmid first = pve::kMinVmid, last = pve::kMaxVmid;
    if (ctx.data->vmid_range) {
      first = ctx.data->vmid_range->first;
      last = ctx.data->vmid_range->last;
    } else if (auto next = services_.fleet.VmidFloor(); next.ok()) {
      first = *next;
    }
    auto claimed = services_.fleet.ledger().ClaimVmid(ctx.request_id, taken, first, last);
    if (!claimed) {
      return StepResult::Failed(fmt::format("no free VMID in {}-{}; widen vmid_range or free VMIDs", first, last));
    }
    ctx.machine->set_vmid(*claimed);
    return std::nullopt;
  }

  StepResult Create(StepContext& ctx, const Scope& scope) {
    MachineSpec& machine = *ctx.machine;
    // The intent, before the call: after a crash the next pass waits for this VMID's lock or finds
    // the VM by its markers.
    machine.set_markers(true);
    machine.set_create_intent_unix(
        std::chrono::duration_cast<std::chrono::seconds>(services_.clock.Now().time_since_epoch()).count());
    if (auto s = ctx.SaveNow(); !s.ok()) return StepResult::Retry(Msg(s));

    const VmIdentity identity{.request_id = ctx.request_id,
                              .provider_id = services_.options.provider_id,
                              .request_set_id = ctx.request_set,
                              .omni_instance = scope.instance,
                              .vmid = machine.vmid(),
                              .smbios_uuid = machine.uuid()};
    const DiskPlacement placement{
        .boot_storage = machine.boot_storage(),
        .additional_storages = {machine.additional_storages().begin(), machine.additional_storages().end()}};
    const VmMedia media{.talos_iso_volume = machine.volume_id(), .cidata_iso_volume = machine.cidata_volume()};
    const FormParams params = RenderCreateParams(*ctx.data, identity, placement, media);
    pve::FormFields fields(params.begin(), params.end());
    std::erase_if(fields, [](const auto& f) { return f.first == "vmid"; });
    auto upid = services_.pve.CreateVm(machine.node(), machine.vmid(), fields);
    services_.fleet.SawChange(ctx.request_id);  // the next listing for this request must show the create
    if (!upid.ok()) return CreateFailed(ctx, upid.status());
    machine.set_vm_create_task(upid->text);
    ++services_.counters.vms_created;
    ctx.log->info("request {}: creating VM {} on {}", ctx.request_id, machine.vmid(), machine.node());
    return StepResult::Wait(services_.fleet.FirstPoll(upid->text, ctx.request_id));
  }

  StepResult CreateFailed(StepContext& ctx, const absl::Status& error) {
    MachineSpec& machine = *ctx.machine;
    switch (pve::ClassifyError(error)) {
      case pve::ErrorKind::kAlreadyExists:
        // Lost a race for the VMID (nextid reserves nothing): a fresh one next pass.
        services_.fleet.InvalidatePlacement();
        services_.fleet.ledger().ReleaseVmid(ctx.request_id);
        machine.set_vmid(0);
        return StepResult::Again();
      case pve::ErrorKind::kLocked:
        return StepResult::Retry(fmt::format("VMID {} is locked: {}", machine.vmid(), Msg(error)));
      case pve::ErrorKind::kBadParameter:
        return StepResult::Failed(fmt::format("Proxmox rejected the VM configuration: {}", Msg(error)));
      default:
        services_.fleet.InvalidatePlacement();  // e.g. out of space: the listing placement used may be stale
        services_.fleet.InvalidateAllIsos();    // or an ISO it attaches is gone
        ForgetVanishedMedia(machine);
        return StepResult::Retry(
            fmt::format("node {}: create VM {} failed: {}", machine.node(), machine.vmid(), Msg(error)));
    }
  }

  // A create fails for good while an ISO it attaches is gone: removed by garbage collection while
  // it looked unused (between a request's ISO step and its create), or by a person. The step
  // that made the ISO runs again on the next pass (every pass runs the steps from the first)
  // instead of this create being retried against a volume that does not exist.
  void ForgetVanishedMedia(MachineSpec& machine) {
    const auto vanished = [this](const std::string& volid, const std::string& node) {
      if (volid.empty() || node.empty()) return false;
      const IsoLocation where{.node = node, .storage = volid.substr(0, volid.find(':')), .shared = false};
      auto present = services_.fleet.IsoPresent(where, volid, /*fresh=*/true);
      return present.ok() && !*present;
    };
    if (vanished(machine.volume_id(), machine.node())) machine.clear_volume_id();
    if (vanished(machine.cidata_volume(), machine.cidata_node().empty() ? machine.node() : machine.cidata_node())) {
      machine.clear_cidata_volume();
    }
  }

  StepServices& services_;
};

}  // namespace

std::unique_ptr<Step> MakeCreateVm(StepServices& services) { return std::make_unique<CreateVm>(services); }

}  // namespace omni_proxmox::provider::steps
