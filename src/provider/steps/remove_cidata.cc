// SPDX-License-Identifier: Apache-2.0
// Teardown step "removeCidata": the request's cloud-init ISO (the Talos ISO is shared and left to
// garbage collection). An upload still in flight is waited for first, since the volume it creates
// is ours to remove; the delete's task is waited for, so nothing is left once the request is gone.

#include <fmt/format.h>

#include "provider/ownership/iso_names.h"
#include "provider/steps/steps_internal.h"
#include "provider/steps/task_wait.h"
#include "pve/errors.h"

namespace omni_proxmox::provider::steps {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Where the cloud-init ISO lives: the node it was uploaded through (state from before that
// field existed: the VM's node).
IsoLocation CidataLocation(const MachineSpec& machine) {
  const std::string& volid = machine.cidata_volume();
  return IsoLocation{.node = machine.cidata_node().empty() ? machine.node() : machine.cidata_node(),
                     .storage = volid.substr(0, volid.find(':')),
                     .shared = false};
}

class RemoveCidata final : public Step {
 public:
  explicit RemoveCidata(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "removeCidata"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    if (!machine.cidata_upload_task().empty()) {
      const TaskPoll poll =
          services_.fleet.PollTask(ctx.request_id, machine.cidata_upload_task(), "cloud-init ISO upload");
      if (auto waiting = WhileUnfinished(poll)) return *waiting;
      machine.clear_cidata_upload_task();
      if (machine.cidata_volume().empty() && !machine.cidata_upload_volume().empty()) {
        machine.set_cidata_volume(machine.cidata_upload_volume());
      }
      machine.clear_cidata_upload_volume();
    }
    if (!machine.cidata_delete_task().empty()) return AwaitDelete(ctx);
    if (machine.cidata_volume().empty()) HandOverGoCidata(machine);
    if (machine.cidata_volume().empty() || CidataLocation(machine).node.empty()) return StepResult::Next();
    const IsoLocation where = CidataLocation(machine);
    const std::string volid = machine.cidata_volume();
    auto deleted = services_.pve.DeleteVolume(where.node, where.storage, volid);
    if (deleted.ok()) {
      machine.set_cidata_delete_task(deleted->text);
      return StepResult::Wait(services_.fleet.FirstPoll(deleted->text, ctx.request_id));
    }
    if (deleted.status().code() != absl::StatusCode::kNotFound) {
      if (pve::ClassifyError(deleted.status()) != pve::ErrorKind::kNodeUnreachable) {
        return StepResult::Retry(
            fmt::format("node {}: cannot delete the cloud-init ISO {}: {}", where.node, volid, Msg(deleted.status())));
      }
      ctx.log->warn("request {}: node {} unreachable, leaving {} for garbage collection", ctx.request_id, where.node,
                    volid);
    }
    machine.clear_cidata_volume();
    return Finished(machine);
  }

 private:
  // Once ours is gone, the Go provider's cloud-init ISO of Go provider state: the one removeVm saw
  // attached, or, when its VM was already gone, where the Go provider puts it (beside the Talos ISO
  // it stored). Deleting a file that is not there is fine.
  // Ours is gone: next step, or again for the Go provider's.
  static StepResult Finished(MachineSpec& machine) {
    HandOverGoCidata(machine);
    return machine.cidata_volume().empty() ? StepResult::Next() : StepResult::Again();
  }

  static void HandOverGoCidata(MachineSpec& machine) {
    if (machine.go_cidata_handled()) return;
    std::string volid = machine.go_cidata_volume();
    if (volid.empty() && !machine.markers() && machine.vmid() != 0 && !machine.volume_id().empty()) {
      const std::string& talos = machine.volume_id();
      volid = fmt::format("{}:iso/{}", talos.substr(0, talos.find(':')), GoCidataIsoFileName(machine.vmid()));
    }
    if (volid.empty() || machine.node().empty()) return;
    machine.set_go_cidata_handled(true);
    machine.clear_go_cidata_volume();
    machine.set_cidata_volume(volid);
    machine.set_cidata_node(machine.node());
  }

  StepResult AwaitDelete(StepContext& ctx) {
    MachineSpec& machine = *ctx.machine;
    const TaskPoll poll =
        services_.fleet.PollTask(ctx.request_id, machine.cidata_delete_task(), "delete of the cloud-init ISO");
    if (auto waiting = WhileUnfinished(poll)) return *waiting;
    machine.clear_cidata_delete_task();
    const IsoLocation where = CidataLocation(machine);
    if (poll.kind == TaskPoll::Kind::kSucceeded) {
      services_.fleet.MarkIso(where, machine.cidata_volume(), false);
    } else {
      services_.fleet.InvalidateIsos(where);
    }
    if (poll.kind == TaskPoll::Kind::kFailed) {
      // A failed delete of a volume that is gone anyway (deleted by hand, or never there) is done.
      auto present = services_.fleet.IsoPresent(where, machine.cidata_volume());
      if (!present.ok() || *present) return StepResult::Retry(poll.error);
    }
    machine.clear_cidata_volume();
    return Finished(machine);
  }

  StepServices& services_;
};

}  // namespace

std::unique_ptr<Step> MakeRemoveCidata(StepServices& services) { return std::make_unique<RemoveCidata>(services); }

}  // namespace omni_proxmox::provider::steps
