// SPDX-License-Identifier: Apache-2.0
// Step "talosIso": the Talos ISO the VM boots from, on the node's ISO storage (placement's
// ChooseIsoStorage). One download per storage serves every request that needs the same file: a
// request finding a download in flight (its own, another request's, or one a previous process
// started) waits for it.

#include <fmt/format.h>

#include "omni/schematic.h"
#include "provider/ownership/iso_names.h"
#include "provider/steps/steps_internal.h"
#include "provider/steps/task_wait.h"
#include "pve/errors.h"

namespace omni_proxmox::provider::steps {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class TalosIso final : public Step {
 public:
  explicit TalosIso(StepServices& services) : services_(services) {}
  std::string_view name() const override { return "talosIso"; }

  StepResult Run(StepContext& ctx) override {
    MachineSpec& machine = *ctx.machine;
    const std::string& node = machine.node();
    auto scope = services_.join.OurScope();
    if (!scope.ok())
      return StepResult::Retry(fmt::format("cannot read Omni's join configuration: {}", Msg(scope.status())));
    const std::string file = TalosIsoFileName(machine.schematic(), machine.talos_version(), *scope);
    if (!machine.volume_id().empty() && machine.volume_id().ends_with("iso/" + file)) return StepResult::Next();

    auto storages = services_.fleet.NodeStorages(node);
    if (!storages.ok()) return StepResult::Retry(Msg(storages.status()));
    auto chosen = ChooseIsoStorage(node, *storages, ctx.selectors->iso);
    if (!chosen.ok()) return StepResult::Failed(Msg(chosen.status()));
    const IsoLocation where{.node = node, .storage = chosen->name, .shared = chosen->shared};
    const std::string volid = fmt::format("{}:iso/{}", where.storage, file);
    // Downloads are shared per storage: cluster-wide for shared storage, per node otherwise.
    const std::string key =
        where.shared ? fmt::format("{}/{}", where.storage, file) : fmt::format("{}/{}/{}", node, where.storage, file);

    auto present = services_.fleet.IsoPresent(where, volid);
    if (!present.ok()) return StepResult::Retry(Msg(present.status()));
    Ledger& ledger = services_.fleet.ledger();
    if (*present) {
      ledger.ClearDownload(key);
      machine.set_iso_storage(where.storage);
      machine.set_volume_id(volid);
      machine.clear_volume_upload_task();
      return StepResult::Next();
    }
    const std::optional<std::string> shared_task = ledger.Download(key);
    const std::string task = shared_task.value_or(machine.volume_upload_task());
    if (!task.empty()) return AwaitDownload(ctx, where, file, key, task, shared_task.has_value());
    return StartDownload(ctx, where, file, key);
  }

 private:
  StepResult AwaitDownload(StepContext& ctx, const IsoLocation& where, const std::string& file, const std::string& key,
                           const std::string& task, bool shared_task) {
    const std::string volid = fmt::format("{}:iso/{}", where.storage, file);
    const TaskPoll poll =
        services_.fleet.PollTask(ctx.request_id, task, fmt::format("download of {} to {}", file, where.storage));
    if (auto waiting = WhileUnfinished(poll)) return *waiting;
    // Before the ledger forgets the download, so a request waiting for it always finds either the
    // download or the file. A task stored by an earlier process may have been for another storage
    // or file (the selector or version changed since): then the file is looked for in a listing.
    if (poll.kind == TaskPoll::Kind::kSucceeded && shared_task) {
      services_.fleet.MarkIso(where, volid, true);
    } else {
      services_.fleet.InvalidateIsos(where);
    }
    services_.fleet.ledger().ClearDownload(key);
    ctx.machine->clear_volume_upload_task();
    if (poll.kind == TaskPoll::Kind::kFailed) return StepResult::Retry(poll.error);
    return StepResult::Again();  // finished: the next look sees the file
  }

  StepResult StartDownload(StepContext& ctx, const IsoLocation& where, const std::string& file,
                           const std::string& key) {
    Ledger& ledger = services_.fleet.ledger();
    auto lock = ledger.LockDownloads();
    if (ledger.Download(key)) return StepResult::Wait(services_.options.lock_recheck);
    MachineSpec& machine = *ctx.machine;
    omni::BootAssetRequest asset_request;
    asset_request.talos_version = machine.talos_version();
    asset_request.schematic_id = machine.schematic();
    asset_request.kind = omni::BootAssetRequest::Kind::kIso;
    asset_request.platform = "nocloud";
    asset_request.architecture = "amd64";
    // Proxmox cannot send request headers, so credentials (if any) must be in the URL.
    asset_request.standalone_url = true;
    auto asset = services_.assets.Resolve(asset_request);
    if (!asset.ok()) {
      return StepResult::Retry(fmt::format("cannot resolve the Talos ISO URL: {}", Msg(asset.status())));
    }
    pve::DownloadUrlRequest download;
    download.node = where.node;
    download.storage = where.storage;
    download.content = "iso";
    download.filename = file;
    download.url = asset->url;
    auto upid = services_.pve.DownloadUrl(download);
    if (!upid.ok()) {
      if (pve::ClassifyError(upid.status()) == pve::ErrorKind::kAlreadyExists) {
        services_.fleet.InvalidateIsos(where);  // our cache said absent: list again
        return StepResult::Again();
      }
      return StepResult::Retry(fmt::format("node {}: cannot start the Talos ISO download to {}: {}", where.node,
                                           where.storage, Msg(upid.status())));
    }
    ledger.SetDownload(key, upid->text);
    machine.set_iso_storage(where.storage);
    machine.set_volume_upload_task(upid->text);
    ctx.log->info("request {}: downloading {} to {} on {}", ctx.request_id, file, where.storage, where.node);
    return StepResult::Wait(services_.fleet.FirstPoll(upid->text, ctx.request_id));
  }

  StepServices& services_;
};

}  // namespace

std::unique_ptr<Step> MakeTalosIso(StepServices& services) { return std::make_unique<TalosIso>(services); }

}  // namespace omni_proxmox::provider::steps
