// SPDX-License-Identifier: Apache-2.0
// The gRPC side of the stand-in: cosi.resource.State with Omni's admission rules, and the two
// management.ManagementService calls an infra provider makes.

#include <fmt/format.h>

#include "cosi/state.grpc.pb.h"
#include "omni/management/management.grpc.pb.h"
#include "omni/specs/omni.pb.h"
#include "sim/omni/standin_impl.h"

namespace omni_proxmox::sim::omni {
namespace {

class StateServiceImpl final : public pb::State::Service {
 public:
  explicit StateServiceImpl(StandIn::Impl& impl) : impl_(impl) {}

  grpc::Status Get(grpc::ServerContext* ctx, const pb::GetRequest* req, pb::GetResponse* resp) override {
    auto admitted = impl_.Admit(ctx, "/cosi.resource.State/Get", Verb::kGet, req->namespace_(), req->type(), req->id());
    if (!admitted.ok()) return ToGrpc(admitted.status());
    auto r = impl_.store_.Get(req->namespace_(), req->type(), req->id());
    if (!r.ok()) return ToGrpc(r.status());
    const auto& scope = admitted->second;
    if (!scope.label_provider_id.empty() && !LabeledOk(*r, scope)) {
      return ToGrpc(absl::NotFoundError(
          fmt::format("resource {}({}@{}) doesn't exist", req->type(), req->namespace_(), req->id())));
    }
    ToProto(*r, resp->mutable_resource());
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext* ctx, const pb::ListRequest* req,
                    grpc::ServerWriter<pb::ListResponse>* writer) override {
    auto admitted = impl_.Admit(ctx, "/cosi.resource.State/List", Verb::kList, req->namespace_(), req->type(), "");
    if (!admitted.ok()) return ToGrpc(admitted.status());
    ResourceFilter filter = FilterFromProto(req->options().label_query(),
                                            req->options().has_id_query() ? &req->options().id_query() : nullptr);
    if (!admitted->second.label_provider_id.empty()) ConfineToProvider(filter, admitted->second.label_provider_id);
    auto items = impl_.store_.List(req->namespace_(), req->type(), filter);
    if (!items.ok()) return ToGrpc(items.status());
    for (const auto& item : *items) {
      pb::ListResponse resp;
      ToProto(item, resp.mutable_resource());
      if (!writer->Write(resp)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status Create(grpc::ServerContext* ctx, const pb::CreateRequest* req, pb::CreateResponse* resp) override {
    if (!req->has_resource()) return ToGrpc(absl::InvalidArgumentError("resource is missing"));
    auto r = FromProto(req->resource(), "resource");
    if (!r.ok()) return ToGrpc(r.status());
    auto admitted = impl_.Admit(ctx, "/cosi.resource.State/Create", Verb::kCreate, r->ns, r->type, r->id);
    if (!admitted.ok()) return ToGrpc(admitted.status());
    if (auto status = NormalizeSpec(*r); !status.ok()) return ToGrpc(status);
    // Omni labels everything an infra provider creates in the shared namespaces.
    if (!admitted->second.label_provider_id.empty()) r->labels[kProviderIdLabel] = admitted->second.label_provider_id;
    auto created = impl_.store_.Create(*r, req->options().owner(), /*keep_timestamps=*/true);
    if (!created.ok()) return ToGrpc(created.status());
    if (created->type == kMachineRequestStatusType) AddCleanupFinalizer(*created);
    // The answer is the resource as created (version 1); with the cleanup finalizer the stored
    // one is already at version 2, so the provider's first Update conflicts, as with Omni.
    ToProto(*created, resp->mutable_resource());
    return grpc::Status::OK;
  }

  grpc::Status Update(grpc::ServerContext* ctx, const pb::UpdateRequest* req, pb::UpdateResponse* resp) override {
    if (!req->has_new_resource()) return ToGrpc(absl::InvalidArgumentError("new_resource is missing"));
    auto r = FromProto(req->new_resource(), "new_resource");
    if (!r.ok()) return ToGrpc(r.status());
    auto admitted = impl_.Admit(ctx, "/cosi.resource.State/Update", Verb::kUpdate, r->ns, r->type, r->id);
    if (!admitted.ok()) return ToGrpc(admitted.status());
    const auto& scope = admitted->second;
    std::optional<Phase> expected;
    if (req->options().has_expected_phase()) {
      auto phase = ParsePhase(req->options().expected_phase());
      if (!phase.ok())
        return ToGrpc(absl::InvalidArgumentError(
            fmt::format("options.expected_phase: {}", std::string(phase.status().message()))));
      expected = *phase;
    }
    if (auto status = NormalizeSpec(*r); !status.ok()) return ToGrpc(status);
    if (!scope.label_provider_id.empty() || scope.finalizer_only_update) {
      auto current = impl_.store_.Get(r->ns, r->type, r->id);
      if (!current.ok()) return ToGrpc(current.status());
      if (!scope.label_provider_id.empty()) {
        if (!LabeledOk(*current, scope)) {
          return ToGrpc(absl::NotFoundError(fmt::format("resource {}({}@{}) doesn't exist", r->type, r->ns, r->id)));
        }
        if (!scope.finalizer_only_update) r->labels[kProviderIdLabel] = scope.label_provider_id;
      }
      if (scope.finalizer_only_update) {
        auto allowed = CheckFinalizerOnlyUpdate(*current, *r, SpecsEqual(r->type, current->proto_spec, r->proto_spec));
        if (!allowed.ok()) return ToGrpc(allowed);
        r->yaml_spec = current->yaml_spec;
      }
    }
    auto updated = impl_.store_.Update(*r, req->options().owner(), expected);
    if (!updated.ok()) return ToGrpc(updated.status());
    ToProto(*updated, resp->mutable_resource());
    return grpc::Status::OK;
  }

  grpc::Status Destroy(grpc::ServerContext* ctx, const pb::DestroyRequest* req, pb::DestroyResponse*) override {
    auto admitted =
        impl_.Admit(ctx, "/cosi.resource.State/Destroy", Verb::kDestroy, req->namespace_(), req->type(), req->id());
    if (!admitted.ok()) return ToGrpc(admitted.status());
    if (auto status = CheckLabel(*admitted, req->namespace_(), req->type(), req->id()); !status.ok()) {
      return ToGrpc(status);
    }
    return ToGrpc(impl_.store_.Destroy(req->namespace_(), req->type(), req->id(), req->options().owner()));
  }

  grpc::Status Teardown(grpc::ServerContext* ctx, const pb::TeardownRequest* req, pb::TeardownResponse* resp) override {
    auto admitted =
        impl_.Admit(ctx, "/cosi.resource.State/Teardown", Verb::kTeardown, req->namespace_(), req->type(), req->id());
    if (!admitted.ok()) return ToGrpc(admitted.status());
    if (auto status = CheckLabel(*admitted, req->namespace_(), req->type(), req->id()); !status.ok()) {
      return ToGrpc(status);
    }
    auto ready = impl_.store_.Teardown(req->namespace_(), req->type(), req->id(), req->options().owner());
    if (!ready.ok()) return ToGrpc(ready.status());
    resp->set_destroy_ready(*ready);
    return grpc::Status::OK;
  }

  grpc::Status TeardownAndDestroy(grpc::ServerContext* ctx, const pb::TeardownAndDestroyRequest* req,
                                  pb::TeardownAndDestroyResponse*) override {
    auto admitted = impl_.Admit(ctx, "/cosi.resource.State/TeardownAndDestroy", Verb::kDestroy, req->namespace_(),
                                req->type(), req->id());
    if (!admitted.ok()) return ToGrpc(admitted.status());
    if (auto status = CheckLabel(*admitted, req->namespace_(), req->type(), req->id()); !status.ok()) {
      return ToGrpc(status);
    }
    auto ready = impl_.store_.Teardown(req->namespace_(), req->type(), req->id(), req->options().owner());
    if (!ready.ok()) return ToGrpc(ready.status());
    return ToGrpc(impl_.store_.Destroy(req->namespace_(), req->type(), req->id(), req->options().owner()));
  }

  grpc::Status Watch(grpc::ServerContext* ctx, const pb::WatchRequest* req,
                     grpc::ServerWriter<pb::WatchResponse>* writer) override {
    const std::string id = req->has_id() ? req->id() : "";
    auto admitted = impl_.Admit(ctx, "/cosi.resource.State/Watch", Verb::kWatch, req->namespace_(), req->type(), "");
    if (!admitted.ok()) return ToGrpc(admitted.status());
    const auto& scope = admitted->second;
    const auto& o = req->options();
    WatchOptions options;
    if (req->has_id()) options.id = req->id();
    options.bootstrap_contents = o.bootstrap_contents();
    options.tail_events = o.tail_events();
    options.filter = FilterFromProto(o.label_query(), o.has_id_query() ? &o.id_query() : nullptr);
    options.aggregated = o.aggregated();
    if (o.has_start_from_bookmark()) options.start_from_bookmark = o.start_from_bookmark();
    options.bootstrap_bookmark = o.bootstrap_bookmark();
    if (!scope.label_provider_id.empty() && !req->has_id()) ConfineToProvider(options.filter, scope.label_provider_id);
    auto watcher = impl_.store_.Watch(req->namespace_(), req->type(), options);
    if (!watcher.ok()) return ToGrpc(watcher.status());

    // The first response is empty: it tells the client the watch is established.
    if (!writer->Write(pb::WatchResponse())) return grpc::Status::OK;
    while (!ctx->IsCancelled()) {
      if (impl_.stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down");
      auto events = (*watcher)->Next(kWatchPoll);
      if (events.empty()) continue;
      pb::WatchResponse resp;
      bool errored = false;
      for (const auto& event : events) {
        const bool control = event.type == EventType::kBootstrapped || event.type == EventType::kErrored ||
                             event.type == EventType::kNoop;
        if (control && req->api_version() < 1) continue;  // api_version 0 clients do not know them
        if (!control && req->has_id() && !scope.label_provider_id.empty() && !LabeledOk(event.resource, scope)) {
          continue;
        }
        auto* out = resp.add_event();
        ToProto(event.resource, out->mutable_resource());
        out->set_event_type(static_cast<pb::EventType>(event.type));
        if (event.old) ToProto(*event.old, out->mutable_old());
        if (event.type == EventType::kErrored) {
          out->set_error(event.error);
          errored = true;
        }
        if (!event.bookmark.empty()) out->set_bookmark(event.bookmark);
      }
      if (resp.event_size() == 0) continue;
      if (!options.aggregated) {
        for (const auto& event : resp.event()) {
          pb::WatchResponse single;
          *single.add_event() = event;
          if (!writer->Write(single)) return grpc::Status::OK;
        }
      } else if (!writer->Write(resp)) {
        return grpc::Status::OK;
      }
      if (errored) return grpc::Status(grpc::StatusCode::ABORTED, "watch buffer overrun: start a new watch");
    }
    return grpc::Status::OK;
  }

 private:
  static bool LabeledOk(const Resource& r, const AccessScope& scope) { return LabelledFor(r, scope.label_provider_id); }

  // Omni's MachineRequestStatusCleanupController takes its finalizer as soon as it sees a new
  // status, before the provider can write again (section 8); done here, not in the controller
  // loop, so that the provider meets the conflict every time rather than by chance.
  void AddCleanupFinalizer(const Resource& created) {
    (void)impl_.store_.Modify(created.ns, created.type, created.id, [](Resource& r) {
      if (r.phase != Phase::kRunning || r.HasFinalizer(kCleanupFinalizer)) return false;
      r.finalizers.push_back(kCleanupFinalizer);
      return true;
    });
  }

  absl::Status CheckLabel(const std::pair<Caller, AccessScope>& admitted, const std::string& ns,
                          const std::string& type, const std::string& id) {
    if (admitted.second.label_provider_id.empty()) return absl::OkStatus();
    auto current = impl_.store_.Get(ns, type, id);
    if (!current.ok()) return current.status();
    if (!LabeledOk(*current, admitted.second)) {
      return absl::NotFoundError(fmt::format("resource {}({}@{}) doesn't exist", type, ns, id));
    }
    return absl::OkStatus();
  }

  StandIn::Impl& impl_;
};

// management.ManagementService: the two calls an infra provider makes.
class ManagementServiceImpl final : public ::management::ManagementService::Service {
 public:
  explicit ManagementServiceImpl(StandIn::Impl& impl) : impl_(impl) {}

  grpc::Status CreateSchematicFromRaw(grpc::ServerContext* ctx, const ::management::CreateSchematicFromRawRequest* req,
                                      ::management::CreateSchematicResponse* resp) override {
    auto caller = Check(ctx, "/management.ManagementService/CreateSchematicFromRaw", /*mutating=*/true);
    if (!caller.ok()) return ToGrpc(caller.status());
    auto id = impl_.factory_->PutSchematic(req->raw_schematic());
    if (!id.ok()) return ToGrpc(id.status());
    resp->set_schematic_id(*id);
    return grpc::Status::OK;
  }

  grpc::Status GetBootAssetURL(grpc::ServerContext* ctx, const ::management::GetBootAssetURLRequest* req,
                               ::management::GetBootAssetURLResponse* resp) override {
    auto caller = Check(ctx, "/management.ManagementService/GetBootAssetURL", /*mutating=*/false);
    if (!caller.ok()) return ToGrpc(caller.status());
    if (req->talos_version().empty() || req->schematic_id().empty() || req->platform().empty() ||
        req->architecture().empty()) {
      return ToGrpc(absl::InvalidArgumentError(
          "talos_version, schematic_id, platform and architecture are required (e.g. 1.10.4, <id>, nocloud, amd64)"));
    }
    std::string version = req->talos_version();
    if (version.front() != 'v') version = "v" + version;
    const std::string stem =
        fmt::format("{}-{}{}", req->platform(), req->architecture(), req->secure_boot() ? "-secureboot" : "");
    std::string path;
    switch (req->boot_asset_kind()) {
      case ::management::GetBootAssetURLRequest::ISO:
        path = fmt::format("/image/{}/{}/{}.iso", req->schematic_id(), version, stem);
        break;
      case ::management::GetBootAssetURLRequest::DISK:
        if (req->format().empty())
          return ToGrpc(absl::InvalidArgumentError("format is required for DISK (e.g. raw.xz)"));
        path = fmt::format("/image/{}/{}/{}.{}", req->schematic_id(), version, stem, req->format());
        break;
      case ::management::GetBootAssetURLRequest::PXE:
        path = fmt::format("/pxe/{}/{}/{}", req->schematic_id(), version, stem);
        break;
      default:
        return ToGrpc(absl::InvalidArgumentError("boot_asset_kind: use PXE, ISO or DISK"));
    }
    resp->set_url(impl_.factory_->url() + path);
    resp->set_image_factory_host(fmt::format("{}:{}", impl_.options_.bind_address, impl_.factory_->port()));
    resp->set_storage_key(Sha256Hex(path));
    return grpc::Status::OK;
  }

 private:
  // `mutating`: the call makes something (a schematic) and goes into the journal.
  absl::StatusOr<Caller> Check(grpc::ServerContext* ctx, const char* method, bool mutating) {
    std::string reason;
    const Metadata metadata = ClientMetadata(*ctx);
    auto caller = impl_.keys_.Verify(method, metadata, &reason);
    if (!caller.ok()) {
      impl_.LogRefusedSignature(method, reason);
      return caller.status();
    }
    impl_.CountSignedCall(method);
    if (mutating) impl_.journal_.RecordMutation(ReplicaOf(metadata), caller->email, method, "", "", "");
    // Exact roles, as Omni's schematics.go checks them.
    if (caller->role != Role::kInfraProvider && caller->role != Role::kOperator && caller->role != Role::kAdmin) {
      return absl::PermissionDeniedError(fmt::format("{} needs role InfraProvider, Operator or Admin", method));
    }
    return caller;
  }

  StandIn::Impl& impl_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeStateService(StandIn::Impl& impl) {
  return std::make_unique<StateServiceImpl>(impl);
}

std::unique_ptr<grpc::Service> MakeManagementService(StandIn::Impl& impl) {
  return std::make_unique<ManagementServiceImpl>(impl);
}

}  // namespace omni_proxmox::sim::omni
