// SPDX-License-Identifier: Apache-2.0
// Step "cloudInit": the request's cloud-init (nocloud) ISO, carrying Omni's join config as
// user-data and the VM's hostname as meta-data, uploaded to the ISO storage of the VM's node.
// Its name is derived from its content, so a changed join config gets a new file.

#include "provider/cloudinit/cidata.h"

#include <fmt/format.h>

#include "omni/join_config.h"
#include "provider/ownership/iso_names.h"
#include "provider/ownership/markers.h"
#include "provider/steps/steps_internal.h"
#include "provider/steps/task_wait.h"

namespace omni_proxmox::provider::steps {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class Cidata final : public Step {
 public:
  explicit Cidata(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "cloudInit"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    if (!machine.cidata_volume().empty()) return StepResult::Next();
    // The ISO is looked up through the node it is uploaded by, whatever the storage's sharing.
    const IsoLocation where{.node = machine.node(), .storage = machine.iso_storage(), .shared = false};

    // After our upload ended OK, the file it wrote (cidata_upload_volume) is there; when the content,
    // hence the name, changed since (a new join config), the new name is looked for in a fresh listing.
    bool uploaded = false;
    if (!machine.cidata_upload_task().empty()) {
      const TaskPoll poll =
          services_.fleet.PollTask(ctx.request_id, machine.cidata_upload_task(), "cloud-init ISO upload");
      if (auto waiting = WhileUnfinished(poll)) return *waiting;
      uploaded = poll.kind == TaskPoll::Kind::kSucceeded;
      if (!uploaded) services_.fleet.InvalidateIsos(where);
      machine.clear_cidata_upload_task();
      if (poll.kind == TaskPoll::Kind::kFailed) return StepResult::Retry(poll.error);
    }

    auto iso = BuildIso(ctx);
    if (!iso.ok()) {
      return iso.status().code() == absl::StatusCode::kInternal ? StepResult::Failed(Msg(iso.status()))
                                                                : StepResult::Retry(Msg(iso.status()));
    }
    auto scope = services_.join.OurScope();
    if (!scope.ok()) return StepResult::Retry(Msg(scope.status()));
    const std::string file = ScopedIsoName(CidataIsoFileName(ctx.request_id, *iso), *scope);
    const std::string volid = fmt::format("{}:iso/{}", where.storage, file);
    if (uploaded && volid == machine.cidata_upload_volume()) services_.fleet.MarkIso(where, volid, true);
    auto present =
        services_.fleet.IsoPresent(where, volid, /*fresh=*/uploaded && volid != machine.cidata_upload_volume());
    if (!present.ok()) return StepResult::Retry(Msg(present.status()));
    if (*present) {
      machine.set_cidata_volume(volid);
      machine.clear_cidata_upload_volume();
      machine.set_cidata_node(where.node);
      return StepResult::Next();
    }
    auto upid = services_.pve.UploadIso(where.node, where.storage, file, *iso);
    if (!upid.ok()) {
      services_.fleet.InvalidateIsos(where);
      return StepResult::Retry(fmt::format("node {}: cannot upload the cloud-init ISO to {}: {}", where.node,
                                           where.storage, Msg(upid.status())));
    }
    machine.set_cidata_upload_task(upid->text);
    machine.set_cidata_upload_volume(volid);
    machine.set_cidata_node(where.node);
    return StepResult::Wait(services_.fleet.FirstPoll(upid->text, ctx.request_id));
  }

 private:
  // The ISO's bytes; Unavailable-like errors for what Omni may answer later, Internal when the ISO
  // itself cannot be built.
  absl::StatusOr<std::string> BuildIso(const StepContext& ctx) {
    auto params = services_.join.Get();
    if (!params.ok()) {
      return absl::UnavailableError(fmt::format("cannot read Omni's join configuration: {}", Msg(params.status())));
    }
    const bool tunnel = ctx.request->grpc_tunnel() == specs::ENABLED || params->enforce_grpc_tunnel;
    auto args = omni::BuildJoinArgs(
        *params, services_.options.provider_id,
        services_.options.encode_request_ids ? std::optional<std::string>(ctx.request_id) : std::nullopt, tunnel);
    if (!args.ok()) return absl::UnavailableError(fmt::format("join config: {}", Msg(args.status())));
    CidataContent content;
    content.user_data = args->config;
    content.instance_id = ctx.request_id;
    // The hostname reaches Talos through meta-data only: a hostname config patch breaks registration.
    content.hostname = VmNameFor(ctx.request_id);
    auto iso = BuildCidataIso(content);
    if (!iso.ok()) {
      return absl::InternalError(fmt::format("cannot build the cloud-init ISO: {}", Msg(iso.status())));
    }
    return *iso;
  }

  StepServices& services_;
};

}  // namespace

std::unique_ptr<Step> MakeCidata(StepServices& services) { return std::make_unique<Cidata>(services); }

}  // namespace omni_proxmox::provider::steps
