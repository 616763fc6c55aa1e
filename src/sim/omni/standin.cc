#include "sim/omni/standin.h"

#include <httplib.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cosi/meta.pb.h"
#include "cosi/resource.pb.h"
#include "cosi/state.grpc.pb.h"
#include "omni/management/management.grpc.pb.h"
#include "omni/specs/omni.pb.h"
#include "sim/omni/access.h"
#include "sim/omni/factory.h"
#include "sim/omni/join_token.h"
#include "sim/omni/tls.h"
#include "util/log.h"
#include "util/random.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::omni {
namespace {

namespace pb = ::cosi::resource;
using google::protobuf::Message;

constexpr char kCleanupFinalizer[] = "MachineRequestStatusCleanupController";
constexpr char kSiderolinkConfigId[] = "siderolink-config";
constexpr char kFeaturesConfigId[] = "features-config";
constexpr char kSiderolinkHost[] = "fdae:41e4:649b:9303::1";  // Omni's fixed SideroLink address
constexpr auto kWatchPoll = std::chrono::milliseconds(100);

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// Typed specs for the types Omni registers: Omni decodes proto_spec for these (refusing garbage)
// and regenerates yaml_spec; other types are stored verbatim.
std::unique_ptr<Message> NewSpec(const std::string& type) {
  if (type == kMachineRequestType) return std::make_unique<specs::MachineRequestSpec>();
  if (type == kMachineRequestStatusType) return std::make_unique<specs::MachineRequestStatusSpec>();
  if (type == kInfraProviderType) return std::make_unique<specs::InfraProviderSpec>();
  if (type == kInfraProviderStatusType) return std::make_unique<specs::InfraProviderStatusSpec>();
  if (type == kInfraProviderHealthStatusType) return std::make_unique<specs::InfraProviderHealthStatusSpec>();
  if (type == kProviderJoinConfigType) return std::make_unique<specs::ProviderJoinConfigSpec>();
  if (type == kSiderolinkApiConfigType) return std::make_unique<specs::SiderolinkAPIConfigSpec>();
  if (type == kConnectionParamsType) return std::make_unique<specs::ConnectionParamsSpec>();
  if (type == kConfigPatchRequestType) return std::make_unique<specs::ConfigPatchSpec>();
  if (type == kInfraMachineRegistrationType) return std::make_unique<specs::MachineRegistrationSpec>();
  if (type == kFeaturesConfigType) return std::make_unique<specs::FeaturesConfigSpec>();
  if (type == kResourceDefinitionType) return std::make_unique<pb::meta::ResourceDefinitionSpec>();
  if (type == kNamespaceType) return std::make_unique<pb::meta::NamespaceSpec>();
  return nullptr;
}

std::string RenderYaml(const Message& message) {
  // JSON is YAML; Omni renders YAML for humans only, so the exact style does not matter.
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

// Decodes and re-renders a known type's spec. InvalidArgument names the field on bad bytes.
absl::Status NormalizeSpec(Resource& resource) {
  auto spec = NewSpec(resource.type);
  if (!spec) return absl::OkStatus();
  if (!spec->ParseFromString(resource.proto_spec)) {
    return absl::InvalidArgumentError(fmt::format("spec.proto_spec of {} is not a valid {}: encode the typed spec",
                                                  resource.type, spec->GetTypeName()));
  }
  if (resource.type == kConfigPatchRequestType) {
    const auto& patch = static_cast<const specs::ConfigPatchSpec&>(*spec);
    if (!patch.data().empty() && !patch.compressed_data().empty()) {
      return absl::InvalidArgumentError("ConfigPatchSpec: set either data or compressed_data, never both");
    }
  }
  resource.yaml_spec = RenderYaml(*spec);
  return absl::OkStatus();
}

bool SpecsEqual(const std::string& type, const std::string& a, const std::string& b) {
  auto left = NewSpec(type);
  auto right = NewSpec(type);
  if (!left || !left->ParseFromString(a) || !right->ParseFromString(b)) return a == b;
  return google::protobuf::util::MessageDifferencer::Equals(*left, *right);
}

template <typename Spec>
Resource MakeResource(const std::string& ns, const std::string& type, const std::string& id, const Spec& spec,
                      Labels labels = {}) {
  Resource r;
  r.ns = ns;
  r.type = type;
  r.id = id;
  r.labels = std::move(labels);
  r.proto_spec = spec.SerializeAsString();
  r.yaml_spec = RenderYaml(spec);
  return r;
}

google::protobuf::Timestamp ToTimestamp(util::Clock::SystemTime t) {
  google::protobuf::Timestamp ts;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  ts.set_seconds(ns / 1'000'000'000);
  ts.set_nanos(static_cast<int>(ns % 1'000'000'000));
  return ts;
}

util::Clock::SystemTime FromTimestamp(const google::protobuf::Timestamp& ts) {
  return util::Clock::SystemTime{std::chrono::duration_cast<util::Clock::SystemTime::duration>(
      std::chrono::seconds(ts.seconds()) + std::chrono::nanoseconds(ts.nanos()))};
}

void ToProto(const Resource& r, pb::Resource* out) {
  auto* md = out->mutable_metadata();
  md->set_namespace_(r.ns);
  md->set_type(r.type);
  md->set_id(r.id);
  md->set_version(r.version == 0 ? "undefined" : std::to_string(r.version));
  md->set_owner(r.owner);
  md->set_phase(PhaseName(r.phase));
  if (r.version != 0) {
    *md->mutable_created() = ToTimestamp(r.created);
    *md->mutable_updated() = ToTimestamp(r.updated);
  }
  for (const auto& f : r.finalizers) md->add_finalizers(f);
  for (const auto& [k, v] : r.labels) (*md->mutable_labels())[k] = v;
  for (const auto& [k, v] : r.annotations) (*md->mutable_annotations())[k] = v;
  out->mutable_spec()->set_proto_spec(r.proto_spec);
  out->mutable_spec()->set_yaml_spec(r.yaml_spec);
}

absl::StatusOr<Resource> FromProto(const pb::Resource& in, const char* field) {
  if (!in.has_metadata()) return absl::InvalidArgumentError(fmt::format("{}.metadata is missing", field));
  if (!in.has_spec()) return absl::InvalidArgumentError(fmt::format("{}.spec is missing: always send a spec", field));
  const auto& md = in.metadata();
  Resource r;
  r.ns = md.namespace_();
  r.type = md.type();
  r.id = md.id();
  if (r.ns.empty() || r.type.empty() || r.id.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}.metadata: namespace, type and id are required", field));
  }
  if (md.version() == "undefined") {
    r.version = 0;
  } else {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(md.version().data(), md.version().data() + md.version().size(), v);
    if (md.version().empty() || ec != std::errc() || ptr != md.version().data() + md.version().size()) {
      return absl::InvalidArgumentError(fmt::format(
          "{}.metadata.version '{}': send \"undefined\" on create or the version you read", field, md.version()));
    }
    r.version = v;
  }
  r.owner = md.owner();
  auto phase = ParsePhase(md.phase());
  if (!phase.ok())
    return absl::InvalidArgumentError(fmt::format("{}.{}", field, std::string(phase.status().message())));
  r.phase = *phase;
  r.finalizers.assign(md.finalizers().begin(), md.finalizers().end());
  for (const auto& [k, v] : md.labels()) r.labels[k] = v;
  for (const auto& [k, v] : md.annotations()) r.annotations[k] = v;
  r.proto_spec = in.spec().proto_spec();
  r.yaml_spec = in.spec().yaml_spec();
  return r;
}

ResourceFilter FilterFromProto(const google::protobuf::RepeatedPtrField<pb::LabelQuery>& queries,
                               const pb::IDQuery* id_query) {
  ResourceFilter filter;
  for (const auto& q : queries) {
    LabelQuery query;
    for (const auto& t : q.terms()) {
      LabelTerm term;
      term.key = t.key();
      term.op = static_cast<LabelOp>(t.op());
      term.values.assign(t.value().begin(), t.value().end());
      term.invert = t.invert();
      query.terms.push_back(std::move(term));
    }
    filter.label_queries.push_back(std::move(query));
  }
  if (id_query != nullptr) filter.id_regexp = id_query->regexp();
  return filter;
}

// Confines a filter to resources labelled for `provider_id` (Omni's shared-namespace rule).
void ConfineToProvider(ResourceFilter& filter, const std::string& provider_id) {
  LabelTerm term{kProviderIdLabel, LabelOp::kEqual, {provider_id}, false};
  if (filter.label_queries.empty()) filter.label_queries.push_back({});
  for (auto& query : filter.label_queries) query.terms.push_back(term);
}

bool LabelledFor(const Resource& r, const std::string& provider_id) {
  auto it = r.labels.find(kProviderIdLabel);
  return it != r.labels.end() && it->second == provider_id;
}

std::string RandomString(util::Random& random, int n, const char* alphabet) {
  const std::string chars = alphabet;
  std::string out;
  for (int i = 0; i < n; ++i) out += chars[random.Uniform(chars.size())];
  return out;
}

Metadata ClientMetadata(const grpc::ServerContext& ctx) {
  Metadata md;
  for (const auto& [k, v] : ctx.client_metadata()) {
    md.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  }
  return md;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class StandIn::Impl {
 public:
  explicit Impl(StandInOptions options)
      : options_(std::move(options)),
        clock_(options_.clock != nullptr ? *options_.clock : util::RealClock()),
        random_(options_.seed),
        store_(clock_, options_.seed * 0x9e3779b97f4a7c15ULL + 0x5eed),
        keys_(clock_),
        log_(util::Logger("sim.omni")) {}

  ~Impl() {
    if (control_) control_->stop();
    if (control_thread_.joinable()) control_thread_.join();
    StopServing();
    controller_.request_stop();
    store_.WakeAll();
    if (controller_.joinable()) controller_.join();
  }

  absl::Status Init();
  absl::Status StartControl(StandIn& standin);
  absl::Status Serve();
  void StopServing();

  // Auth + static rules + the "provider must be registered" rule, in Omni's order.
  absl::StatusOr<std::pair<Caller, AccessScope>> Admit(grpc::ServerContext* ctx, const char* method, Verb verb,
                                                       const std::string& ns, const std::string& type,
                                                       const std::string& id) {
    std::string reason;
    auto caller = keys_.Verify(method, ClientMetadata(*ctx), &reason);
    if (!caller.ok()) {
      log_->debug("{} refused: {}", method, reason);
      return caller.status();
    }
    CountSignedCall(method);
    auto scope = Authorize(*caller, verb, ns, type, id);
    if (!scope.ok()) {
      log_->debug("{} {}/{} by {} refused: {}", method, ns, type, caller->email, std::string(scope.status().message()));
      return scope.status();
    }
    if (scope->requires_registered_provider &&
        !store_.Get(kInfraProviderNs, kInfraProviderType, caller->provider_id).ok()) {
      return absl::PermissionDeniedError(
          fmt::format("infra provider with name \"{}\" is not registered", caller->provider_id));
    }
    return std::make_pair(*caller, *scope);
  }

  void ControllerLoop(std::stop_token stop);
  void ReconcileOnce();
  void ReconcileRequestSets();
  void ReconcileStatuses();

  absl::StatusOr<GeneratedKey> NewProvider(const std::string& id);
  std::string RenderJoinConfig(const std::string& token) const;

  StandInOptions options_;
  const util::Clock& clock_;
  util::Random random_;
  StateStore store_;
  KeyRegistry keys_;
  std::shared_ptr<spdlog::logger> log_;
  // Calls whose signature was accepted, by full method name (what a provider costs Omni).
  void CountSignedCall(const char* method) {
    std::lock_guard lock(signed_calls_mutex_);
    ++signed_calls_[method];
  }
  mutable std::mutex signed_calls_mutex_;
  std::map<std::string, std::uint64_t> signed_calls_;
  GeneratedKey admin_key_;
  GeneratedKey provider_key_;
  std::unique_ptr<FakeImageFactory> factory_;
  std::unique_ptr<httplib::Server> control_;
  std::thread control_thread_;
  int control_port_ = -1;
  std::unique_ptr<grpc::Service> state_service_;
  std::unique_ptr<grpc::Service> management_service_;
  std::mutex server_mutex_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  std::atomic<bool> stopping_{false};
  std::jthread controller_;
  mutable std::mutex joined_mutex_;
  std::vector<JoinedMachine> joined_;
  std::map<std::string, GeneratedKey> extra_keys_;
};

// ---------------------------------------------------------------------------------------------
// cosi.resource.State

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
    auto created = impl_.store_.Create(*r, req->options().owner());
    if (!created.ok()) return ToGrpc(created.status());
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
    auto caller = Check(ctx, "/management.ManagementService/CreateSchematicFromRaw");
    if (!caller.ok()) return ToGrpc(caller.status());
    auto id = impl_.factory_->PutSchematic(req->raw_schematic());
    if (!id.ok()) return ToGrpc(id.status());
    resp->set_schematic_id(*id);
    return grpc::Status::OK;
  }

  grpc::Status GetBootAssetURL(grpc::ServerContext* ctx, const ::management::GetBootAssetURLRequest* req,
                               ::management::GetBootAssetURLResponse* resp) override {
    auto caller = Check(ctx, "/management.ManagementService/GetBootAssetURL");
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
  absl::StatusOr<Caller> Check(grpc::ServerContext* ctx, const char* method) {
    std::string reason;
    auto caller = impl_.keys_.Verify(method, ClientMetadata(*ctx), &reason);
    if (!caller.ok()) {
      impl_.log_->debug("{} refused: {}", method, reason);
      return caller.status();
    }
    impl_.CountSignedCall(method);
    // Exact roles, as Omni's schematics.go checks them.
    if (caller->role != Role::kInfraProvider && caller->role != Role::kOperator && caller->role != Role::kAdmin) {
      return absl::PermissionDeniedError(fmt::format("{} needs role InfraProvider, Operator or Admin", method));
    }
    return caller;
  }

  StandIn::Impl& impl_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Start-up: keys, seeded resources, servers, controllers.

std::string StandIn::Impl::RenderJoinConfig(const std::string& token) const {
  return fmt::format(
      "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: {}?jointoken={}\n---\n"
      "apiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[{}]:{}'\n---\n"
      "apiVersion: v1alpha1\nkind: KmsgLogConfig\nname: omni-kmsg\nurl: tcp://[{}]:{}\n",
      options_.siderolink_api_url, token, kSiderolinkHost, options_.events_port, kSiderolinkHost, options_.logs_port);
}

absl::StatusOr<GeneratedKey> StandIn::Impl::NewProvider(const std::string& id) {
  auto key = GenerateInfraProviderKey(id, clock_.Now());
  if (!key.ok()) return key.status();
  OP_RETURN_IF_ERROR(keys_.Register(*key, Role::kInfraProvider));
  auto created = store_.Create(MakeResource(kInfraProviderNs, kInfraProviderType, id, specs::InfraProviderSpec()), "");
  if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists) return created.status();
  specs::ProviderJoinConfigSpec join;
  const std::string token = RandomString(random_, 32, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
  join.set_join_token(token);
  join.mutable_config()->add_kernel_args(
      fmt::format("siderolink.api={}?jointoken={}", options_.siderolink_api_url, token));
  join.mutable_config()->add_kernel_args(
      fmt::format("talos.events.sink=[{}]:{}", kSiderolinkHost, options_.events_port));
  join.mutable_config()->add_kernel_args(
      fmt::format("talos.logging.kernel=tcp://[{}]:{}", kSiderolinkHost, options_.logs_port));
  join.mutable_config()->set_config(RenderJoinConfig(token));
  auto join_created =
      store_.Create(MakeResource(kInfraProviderNs, kProviderJoinConfigType, id, join, {{kProviderIdLabel, id}}), "");
  if (!join_created.ok()) return join_created.status();
  return key;
}

absl::Status StandIn::Impl::Init() {
  if (options_.provider_id.empty() || options_.provider_id.find_first_of(" :/") != std::string::npos) {
    return absl::InvalidArgumentError(fmt::format(
        "provider_id '{}': use a non-empty ID without spaces, ':' or '/' (e.g. proxmox)", options_.provider_id));
  }
  // Namespaces and resource definitions, as a provider lists them at start-up.
  for (const char* ns : {kDefaultNs, kMetaNs, kInfraProviderNs, kInfraProviderEphemeralNs}) {
    pb::meta::NamespaceSpec spec;
    OP_RETURN_IF_ERROR(store_.Create(MakeResource(kMetaNs, kNamespaceType, ns, spec), "").status());
  }
  const std::vector<std::pair<std::string, std::string>> definitions = {
      {kMachineRequestType, kInfraProviderNs},
      {kMachineRequestStatusType, kInfraProviderNs},
      {kMachineRequestSetType, kDefaultNs},
      {kMachineClassType, kDefaultNs},
      {kInfraMachineRegistrationType, kInfraProviderNs},
      {kProviderJoinConfigType, kInfraProviderNs},
      {kConfigPatchRequestType, kInfraProviderNs},
      {kInfraProviderType, kInfraProviderNs},
      {kInfraProviderStatusType, kInfraProviderNs},
      {kInfraProviderHealthStatusType, kInfraProviderEphemeralNs},
      {kSiderolinkApiConfigType, kDefaultNs},
      {kConnectionParamsType, kDefaultNs},
      {kFeaturesConfigType, kDefaultNs},
      {kMachineType, kDefaultNs},
  };
  for (const auto& [type, ns] : definitions) {
    pb::meta::ResourceDefinitionSpec spec;
    spec.set_resource_type(type);
    spec.set_display_type(type.substr(0, type.find('.')));
    spec.set_default_namespace(ns);
    std::string id = type;
    std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return std::tolower(c); });
    OP_RETURN_IF_ERROR(store_.Create(MakeResource(kMetaNs, kResourceDefinitionType, id, spec), "").status());
  }

  auto admin = GenerateServiceAccountKey("admin", "admin", std::string("admin") + kServiceAccountEmailSuffix,
                                         std::chrono::hours(24 * 365), clock_.Now());
  if (!admin.ok()) return admin.status();
  admin_key_ = *admin;
  OP_RETURN_IF_ERROR(keys_.Register(admin_key_, Role::kAdmin));
  auto provider = NewProvider(options_.provider_id);
  if (!provider.ok()) return provider.status();
  provider_key_ = *provider;

  OP_ASSIGN_OR_RETURN(factory_, FakeImageFactory::Start(options_.bind_address, options_.factory_port));

  specs::SiderolinkAPIConfigSpec siderolink;
  siderolink.set_machine_api_advertised_url(options_.siderolink_api_url);
  siderolink.set_wireguard_advertised_endpoint(options_.bind_address + ":50180");
  siderolink.set_events_port(options_.events_port);
  siderolink.set_logs_port(options_.logs_port);
  OP_RETURN_IF_ERROR(
      store_.Create(MakeResource(kDefaultNs, kSiderolinkApiConfigType, kSiderolinkConfigId, siderolink), "").status());
  // The legacy connection parameters (pre-1.0 providers) carry Omni's default join token.
  specs::ConnectionParamsSpec legacy;
  const std::string default_token =
      RandomString(random_, 32, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
  legacy.set_join_token(default_token);
  legacy.set_api_endpoint(options_.siderolink_api_url);
  legacy.set_wireguard_endpoint(options_.bind_address + ":50180");
  legacy.set_events_port(options_.events_port);
  legacy.set_logs_port(options_.logs_port);
  legacy.set_args(
      fmt::format("siderolink.api={}?jointoken={} talos.events.sink=[{}]:{} talos.logging.kernel=tcp://[{}]:{}",
                  options_.siderolink_api_url, default_token, kSiderolinkHost, options_.events_port, kSiderolinkHost,
                  options_.logs_port));
  OP_RETURN_IF_ERROR(
      store_.Create(MakeResource(kDefaultNs, kConnectionParamsType, kSiderolinkConfigId, legacy), "").status());
  specs::FeaturesConfigSpec features;
  features.set_image_factory_base_url(factory_->url());
  OP_RETURN_IF_ERROR(
      store_.Create(MakeResource(kDefaultNs, kFeaturesConfigType, kFeaturesConfigId, features), "").status());

  if (!options_.keys_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.keys_dir, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          fmt::format("keys_dir '{}': cannot create it: {}", options_.keys_dir, ec.message()));
    }
    for (const auto& [file, key] : std::vector<std::pair<std::string, const GeneratedKey*>>{
             {"admin.key", &admin_key_}, {options_.provider_id + ".key", &provider_key_}}) {
      const auto path = std::filesystem::path(options_.keys_dir) / file;
      std::ofstream out(path, std::ios::trunc);
      out << key->encoded.Reveal();
      out.close();
      if (!out) return absl::InternalError(fmt::format("keys_dir: cannot write {}", path.string()));
      ::chmod(path.c_str(), 0600);
    }
  }

  if (options_.tls) {
    if (options_.tls_cert_pem.empty() != options_.tls_key_pem.empty()) {
      return absl::InvalidArgumentError("tls: give both tls_cert_pem and tls_key_pem, or neither to self-sign");
    }
    if (options_.tls_cert_pem.empty()) {
      OP_ASSIGN_OR_RETURN(auto pair, SelfSignedCertificate(options_.bind_address));
      options_.tls_cert_pem = pair.first;
      options_.tls_key_pem = pair.second;
    }
    if (!options_.keys_dir.empty()) {
      const auto path = std::filesystem::path(options_.keys_dir) / "ca.pem";
      std::ofstream out(path, std::ios::trunc);
      out << options_.tls_cert_pem;
      if (!out) return absl::InternalError(fmt::format("keys_dir: cannot write {}", path.string()));
    }
  }
  state_service_ = std::make_unique<StateServiceImpl>(*this);
  management_service_ = std::make_unique<ManagementServiceImpl>(*this);
  OP_RETURN_IF_ERROR(Serve());
  controller_ = std::jthread([this](std::stop_token stop) { ControllerLoop(stop); });
  return absl::OkStatus();
}

absl::Status StandIn::Impl::Serve() {
  std::lock_guard lock(server_mutex_);
  if (server_) return absl::OkStatus();
  grpc::ServerBuilder builder;
  int selected = 0;
  const int port = grpc_port_ != 0 ? grpc_port_ : options_.grpc_port;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options_.tls) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({options_.tls_key_pem, options_.tls_cert_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(fmt::format("{}:{}", options_.bind_address, port), credentials, &selected);
  builder.SetMaxReceiveMessageSize(32 * 1024 * 1024);
  builder.RegisterService(state_service_.get());
  builder.RegisterService(management_service_.get());
  stopping_ = false;
  server_ = builder.BuildAndStart();
  if (!server_ || selected == 0) {
    server_.reset();
    return absl::UnavailableError(
        fmt::format("omni stand-in: cannot listen on {}:{}: is the port in use?", options_.bind_address, port));
  }
  grpc_port_ = selected;
  log_->info("omni stand-in serving on {}:{}", options_.bind_address, grpc_port_);
  return absl::OkStatus();
}

void StandIn::Impl::StopServing() {
  std::lock_guard lock(server_mutex_);
  if (!server_) return;
  stopping_ = true;
  store_.WakeAll();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  server_.reset();
}

// ---------------------------------------------------------------------------------------------
// Controllers: what Omni does that a provider observes.

void StandIn::Impl::ControllerLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    const auto before = store_.change_count();
    ReconcileOnce();
    store_.WaitUntil([&] { return stop.stop_requested() || store_.change_count() != before; }, std::chrono::seconds(1));
  }
}

void StandIn::Impl::ReconcileOnce() {
  ReconcileRequestSets();
  ReconcileStatuses();
}

void StandIn::Impl::ReconcileRequestSets() {
  auto sets = store_.List(kDefaultNs, kMachineRequestSetType);
  if (!sets.ok()) return;
  std::set<std::string> live_sets;
  for (const auto& set : *sets) {
    live_sets.insert(set.id);
    auto spec = nlohmann::json::parse(set.yaml_spec, nullptr, false);
    if (spec.is_discarded()) continue;
    const int count = spec.value("machine_count", 0);
    const std::string class_id = spec.value("machine_class", "");
    auto klass = store_.Get(kDefaultNs, kMachineClassType, class_id);
    if (!klass.ok()) {
      log_->warn("machine request set {}: machine class '{}' does not exist", set.id, class_id);
      continue;
    }
    auto auto_provision = nlohmann::json::parse(klass->yaml_spec, nullptr, false);
    if (auto_provision.is_discarded()) continue;
    auto_provision = auto_provision["auto_provision"];
    const std::string provider = auto_provision.value("provider_id", options_.provider_id);

    ResourceFilter filter;
    filter.label_queries = {{{{kMachineRequestSetLabel, LabelOp::kEqual, {set.id}, false}}}};
    auto requests = store_.List(kInfraProviderNs, kMachineRequestType, filter);
    if (!requests.ok()) continue;
    std::vector<std::string> running;
    for (const auto& r : *requests) {
      if (r.phase == Phase::kRunning) running.push_back(r.id);
    }
    for (int i = static_cast<int>(running.size()); i < count; ++i) {
      specs::MachineRequestSpec request;
      request.set_talos_version(spec.value("talos_version", options_.talos_version));
      request.set_provider_data(auto_provision.value("provider_data", ""));
      for (const auto& arg : auto_provision.value("kernel_args", std::vector<std::string>{}))
        request.add_kernel_args(arg);
      for (const auto& ext : auto_provision.value("extensions", std::vector<std::string>{}))
        request.add_extensions(ext);
      for (const auto& meta : auto_provision.value("meta_values", nlohmann::json::array())) {
        auto* mv = request.add_meta_values();
        mv->set_key(meta.value("key", 0u));
        mv->set_value(meta.value("value", ""));
      }
      request.set_grpc_tunnel(static_cast<specs::GrpcTunnelMode>(auto_provision.value("grpc_tunnel", 0)));
      for (int attempt = 0; attempt < 10; ++attempt) {
        const std::string id = set.id + "-" + RandomString(random_, 6, "abcdefghijklmnopqrstuvwxyz0123456789");
        auto created = store_.Create(MakeResource(kInfraProviderNs, kMachineRequestType, id, request,
                                                  {{kProviderIdLabel, provider}, {kMachineRequestSetLabel, set.id}}),
                                     "");
        if (created.ok()) {
          log_->info("machine request set {}: created machine request {}", set.id, id);
          break;
        }
      }
    }
    if (static_cast<int>(running.size()) > count) {
      std::sort(running.begin(), running.end());
      for (std::size_t i = static_cast<std::size_t>(count); i < running.size(); ++i) {
        (void)store_.Teardown(kInfraProviderNs, kMachineRequestType, running[i], "");
        log_->info("machine request set {}: tearing down machine request {}", set.id, running[i]);
      }
    }
  }
  auto requests = store_.List(kInfraProviderNs, kMachineRequestType);
  if (!requests.ok()) return;
  for (const auto& r : *requests) {
    auto set = r.labels.find(kMachineRequestSetLabel);
    if (r.phase == Phase::kRunning && set != r.labels.end() && live_sets.count(set->second) == 0) {
      (void)store_.Teardown(kInfraProviderNs, kMachineRequestType, r.id, r.owner);
    }
    // Omni destroys a torn-down request once the provider has removed its finalizer.
    if (r.phase == Phase::kTearingDown && r.finalizers.empty()) {
      if (store_.Destroy(kInfraProviderNs, kMachineRequestType, r.id, r.owner).ok()) {
        log_->info("machine request {} destroyed", r.id);
      }
    }
  }
}

void StandIn::Impl::ReconcileStatuses() {
  auto statuses = store_.List(kInfraProviderNs, kMachineRequestStatusType);
  if (!statuses.ok()) return;
  for (const auto& s : *statuses) {
    if (s.phase == Phase::kRunning && !s.HasFinalizer(kCleanupFinalizer)) {
      (void)store_.Modify(s.ns, s.type, s.id, [](Resource& r) {
        if (r.phase != Phase::kRunning || r.HasFinalizer(kCleanupFinalizer)) return false;
        r.finalizers.push_back(kCleanupFinalizer);
        return true;
      });
    } else if (s.phase == Phase::kTearingDown && s.HasFinalizer(kCleanupFinalizer)) {
      // Omni removes the machine's links (and so its registration) before letting go.
      specs::MachineRequestStatusSpec spec;
      if (spec.ParseFromString(s.proto_spec) && !spec.id().empty()) {
        auto registration = store_.Get(kInfraProviderNs, kInfraMachineRegistrationType, spec.id());
        if (registration.ok()) {
          (void)store_.Destroy(kInfraProviderNs, kInfraMachineRegistrationType, spec.id(), registration->owner);
        }
      }
      (void)store_.Modify(s.ns, s.type, s.id, [](Resource& r) {
        auto it = std::find(r.finalizers.begin(), r.finalizers.end(), kCleanupFinalizer);
        if (it == r.finalizers.end()) return false;
        r.finalizers.erase(it);
        return true;
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The HTTP control endpoint: the controls of StandIn for shells (curl) and demos.

namespace {

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    default:
      return 500;
  }
}

void Reply(httplib::Response& res, const absl::Status& status) {
  res.status = HttpStatusFor(status);
  res.set_content(status.ok() ? std::string("ok\n") : std::string(status.message()) + "\n", "text/plain");
}

}  // namespace

absl::Status StandIn::Impl::StartControl(StandIn& standin) {
  if (options_.control_port < 0) return absl::OkStatus();
  control_ = std::make_unique<httplib::Server>();
  auto* self = &standin;
  control_->Put(R"(/machine-classes/([^/]+))", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->ApplyMachineClass(req.matches[1], req.body));
  });
  auto scale = [self](const httplib::Request& req, httplib::Response& res) {
    const std::string klass = req.get_param_value("machine_class");
    const std::string count_text = req.get_param_value("count");
    int count = -1;
    auto [ptr, ec] = std::from_chars(count_text.data(), count_text.data() + count_text.size(), count);
    if (klass.empty() || ec != std::errc() || ptr != count_text.data() + count_text.size()) {
      Reply(res, absl::InvalidArgumentError("query: need ?machine_class=<class>&count=<n>"));
      return;
    }
    Reply(res, self->ScaleMachineRequestSet(req.matches[1], klass, count));
  };
  control_->Put(R"(/machine-request-sets/([^/]+))", scale);
  control_->Post(R"(/machine-request-sets/([^/]+))", scale);
  control_->Post(R"(/machines/([^/]+)/join)", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->MachineJoined(req.body, req.matches[1]));
  });
  control_->Get("/status", [self](const httplib::Request&, httplib::Response& res) {
    nlohmann::json requests = nlohmann::json::array();
    const auto listed = self->state().List(kInfraProviderNs, kMachineRequestType);
    for (const auto& r : listed.value_or(std::vector<Resource>{})) {
      nlohmann::json item = {{"id", r.id}, {"phase", PhaseName(r.phase)}, {"finalizers", r.finalizers}};
      auto status = self->state().Get(kInfraProviderNs, kMachineRequestStatusType, r.id);
      specs::MachineRequestStatusSpec spec;
      if (status.ok() && spec.ParseFromString(status->proto_spec)) {
        item["stage"] = specs::MachineRequestStatusSpec::Stage_Name(spec.stage());
        item["status"] = spec.status();
        item["error"] = spec.error();
        item["uuid"] = spec.id();
      }
      requests.push_back(item);
    }
    nlohmann::json joined = nlohmann::json::array();
    for (const auto& m : self->JoinedMachines()) {
      joined.push_back({{"uuid", m.uuid}, {"machine_request", m.machine_request}, {"provider_id", m.provider_id}});
    }
    nlohmann::json body = {
        {"grpc_endpoint", self->grpc_endpoint()}, {"factory_url", self->factory_url()},
        {"provider_id", self->provider_id()},     {"provider_connected", self->ProviderConnected(self->provider_id())},
        {"machine_requests", requests},           {"joined_machines", joined}};
    res.set_content(body.dump(2) + "\n", "application/json");
  });
  int port = options_.control_port;
  if (port == 0) {
    port = control_->bind_to_any_port(options_.bind_address);
    if (port < 0) return absl::UnavailableError(fmt::format("control endpoint: cannot bind {}", options_.bind_address));
  } else if (!control_->bind_to_port(options_.bind_address, port)) {
    return absl::UnavailableError(
        fmt::format("control endpoint: cannot bind {}:{}: is the port in use?", options_.bind_address, port));
  }
  control_port_ = port;
  control_thread_ = std::thread([this] { control_->listen_after_bind(); });
  // httplib's stop() is a no-op until the listen loop runs; wait for it so an early shutdown cannot hang.
  return WaitUntilListening(*control_, "control endpoint");
}

// ---------------------------------------------------------------------------------------------
// StandIn

StandIn::StandIn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StandIn::~StandIn() = default;

absl::StatusOr<std::unique_ptr<StandIn>> StandIn::Start(StandInOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  OP_RETURN_IF_ERROR(impl->Init());
  std::unique_ptr<StandIn> standin(new StandIn(std::move(impl)));
  OP_RETURN_IF_ERROR(standin->impl_->StartControl(*standin));
  return standin;
}

std::string StandIn::grpc_endpoint() const {
  return fmt::format("{}://{}:{}", impl_->options_.tls ? "https" : "http", impl_->options_.bind_address,
                     impl_->grpc_port_);
}
std::string StandIn::tls_ca_pem() const { return impl_->options_.tls ? impl_->options_.tls_cert_pem : ""; }
std::string StandIn::factory_url() const { return impl_->factory_->url(); }
std::string StandIn::control_url() const {
  if (impl_->control_port_ < 0) return "";
  return fmt::format("http://{}:{}", impl_->options_.bind_address, impl_->control_port_);
}
std::string StandIn::provider_key() const { return impl_->provider_key_.encoded.Reveal(); }
std::string StandIn::admin_key() const { return impl_->admin_key_.encoded.Reveal(); }
const std::string& StandIn::provider_id() const { return impl_->options_.provider_id; }
int StandIn::grpc_port() const { return impl_->grpc_port_; }
StateStore& StandIn::state() { return impl_->store_; }

absl::Status StandIn::ApplyMachineClass(std::string id, std::string providerdata_yaml, MachineClassOptions extra) {
  if (id.empty()) return absl::InvalidArgumentError("machine class id: must not be empty");
  nlohmann::json meta = nlohmann::json::array();
  for (const auto& [key, value] : extra.meta_values) meta.push_back({{"key", key}, {"value", value}});
  nlohmann::json spec = {{"auto_provision",
                          {{"provider_id", extra.provider_id.empty() ? impl_->options_.provider_id : extra.provider_id},
                           {"provider_data", providerdata_yaml},
                           {"kernel_args", extra.kernel_args},
                           {"extensions", extra.extensions},
                           {"meta_values", meta},
                           {"grpc_tunnel", extra.grpc_tunnel}}}};
  Resource r;
  r.ns = kDefaultNs;
  r.type = kMachineClassType;
  r.id = id;
  r.yaml_spec = spec.dump();
  auto current = impl_->store_.Get(kDefaultNs, kMachineClassType, id);
  if (!current.ok()) return impl_->store_.Create(r, "").status();
  r.version = current->version;
  return impl_->store_.Update(r, current->owner, std::nullopt).status();
}

absl::Status StandIn::ScaleMachineRequestSet(std::string set_id, std::string machine_class, int count) {
  if (set_id.empty()) return absl::InvalidArgumentError("machine request set id: must not be empty");
  if (count < 0) return absl::InvalidArgumentError(fmt::format("machine request set {}: count {} < 0", set_id, count));
  if (!impl_->store_.Get(kDefaultNs, kMachineClassType, machine_class).ok()) {
    return absl::NotFoundError(
        fmt::format("machine class '{}' does not exist: create it first (PUT /machine-classes/<id>, the class control "
                    "line or ApplyMachineClass)",
                    machine_class));
  }
  Resource r;
  r.ns = kDefaultNs;
  r.type = kMachineRequestSetType;
  r.id = set_id;
  r.yaml_spec = nlohmann::json{{"provider_id", impl_->options_.provider_id},
                               {"machine_class", machine_class},
                               {"machine_count", count},
                               {"talos_version", impl_->options_.talos_version}}
                    .dump();
  auto current = impl_->store_.Get(kDefaultNs, kMachineRequestSetType, set_id);
  if (!current.ok()) return impl_->store_.Create(r, "").status();
  r.version = current->version;
  return impl_->store_.Update(r, current->owner, std::nullopt).status();
}

absl::Status StandIn::MachineJoined(const std::string& user_data, const std::string& machine_uuid) {
  if (machine_uuid.empty()) return absl::InvalidArgumentError("machine uuid: must not be empty (SMBIOS UUID)");
  OP_ASSIGN_OR_RETURN(const std::string token, ExtractJoinToken(user_data));
  // The token names its provider; v2 tokens are checked against that provider's join token,
  // v1 and plain tokens against Omni's default one.
  std::string provider_id;
  std::string base_token;
  if (token.rfind("v2:", 0) == 0) {
    auto payload = Base64Decode(token.substr(3));
    auto json = payload.ok() ? nlohmann::json::parse(*payload, nullptr, false) : nlohmann::json();
    if (!json.is_object() || !json.contains("extra_data") || !json["extra_data"].is_object()) {
      return absl::InvalidArgumentError("join token: malformed: expected 'v2:' + base64 JSON with extra_data");
    }
    if (json["extra_data"].contains(kProviderIdTokenKey) && json["extra_data"][kProviderIdTokenKey].is_string()) {
      provider_id = json["extra_data"][kProviderIdTokenKey].get<std::string>();
    }
    auto join = impl_->store_.Get(kInfraProviderNs, kProviderJoinConfigType, provider_id);
    if (!join.ok()) {
      return absl::PermissionDeniedError(
          fmt::format("join token: provider '{}' has no ProviderJoinConfig on this Omni", provider_id));
    }
    specs::ProviderJoinConfigSpec spec;
    spec.ParseFromString(join->proto_spec);
    base_token = spec.join_token();
  } else {
    auto legacy = impl_->store_.Get(kDefaultNs, kConnectionParamsType, kSiderolinkConfigId);
    if (!legacy.ok()) return legacy.status();
    specs::ConnectionParamsSpec spec;
    spec.ParseFromString(legacy->proto_spec);
    base_token = spec.join_token();
  }
  OP_ASSIGN_OR_RETURN(const JoinTokenClaims claims, VerifyJoinToken(token, base_token));
  auto claimed = claims.extra_data.find(kProviderIdTokenKey);
  if (claimed == claims.extra_data.end() || claimed->second.empty()) {
    return absl::PermissionDeniedError("join token: carries no infra provider ID: the provider must encode its ID");
  }
  provider_id = claimed->second;
  if (!impl_->store_.Get(kInfraProviderNs, kInfraProviderType, provider_id).ok()) {
    return absl::PermissionDeniedError(fmt::format("join token: infra provider '{}' is not registered", provider_id));
  }
  Labels labels = {{kProviderIdLabel, provider_id}};
  std::string request_id;
  if (auto it = claims.extra_data.find(kMachineRequestTokenKey); it != claims.extra_data.end()) {
    request_id = it->second;
    auto request = impl_->store_.Get(kInfraProviderNs, kMachineRequestType, request_id);
    if (!request.ok() || !LabelledFor(*request, provider_id)) {
      return absl::FailedPreconditionError(
          fmt::format("join token: machine request '{}' of provider '{}' does not exist", request_id, provider_id));
    }
    labels[kMachineRequestLabel] = request_id;
  }
  auto existing = impl_->store_.Get(kInfraProviderNs, kInfraMachineRegistrationType, machine_uuid);
  if (existing.ok()) {
    auto it = existing->labels.find(kMachineRequestLabel);
    const std::string previous = it == existing->labels.end() ? "" : it->second;
    if (previous != request_id) {
      return absl::AlreadyExistsError(
          fmt::format("machine {} already joined for machine request '{}'", machine_uuid, previous));
    }
  } else {
    OP_RETURN_IF_ERROR(impl_->store_
                           .Create(MakeResource(kInfraProviderNs, kInfraMachineRegistrationType, machine_uuid,
                                                specs::MachineRegistrationSpec(), labels),
                                   "InfraMachineRegistrationController")
                           .status());
  }
  std::lock_guard lock(impl_->joined_mutex_);
  impl_->joined_.push_back({machine_uuid, request_id, provider_id});
  impl_->log_->info("machine {} joined (provider {}, machine request {})", machine_uuid, provider_id, request_id);
  return absl::OkStatus();
}

absl::StatusOr<std::string> StandIn::AddInfraProvider(const std::string& id) {
  OP_ASSIGN_OR_RETURN(auto key, impl_->NewProvider(id));
  std::string encoded = key.encoded.Reveal();
  impl_->extra_keys_[id] = std::move(key);
  return encoded;
}

absl::Status StandIn::RemoveInfraProvider(const std::string& id) {
  return impl_->store_.Destroy(kInfraProviderNs, kInfraProviderType, id, "");
}

absl::Status StandIn::RevokeKey(const std::string& encoded_key) {
  auto json_text = Base64Decode(encoded_key);
  if (!json_text.ok()) return absl::InvalidArgumentError("key: not base64");
  for (const auto& key : {impl_->admin_key_, impl_->provider_key_}) {
    if (key.encoded.Reveal() == encoded_key) return impl_->keys_.Revoke(key.fingerprint);
  }
  for (const auto& [id, key] : impl_->extra_keys_) {
    if (key.encoded.Reveal() == encoded_key) return impl_->keys_.Revoke(key.fingerprint);
  }
  return absl::NotFoundError("key: not issued by this stand-in");
}

bool StandIn::ProviderConnected(const std::string& provider_id) const {
  auto health = impl_->store_.Get(kInfraProviderEphemeralNs, kInfraProviderHealthStatusType, provider_id);
  if (!health.ok()) return false;
  specs::InfraProviderHealthStatusSpec spec;
  if (!spec.ParseFromString(health->proto_spec) || !spec.has_last_heartbeat_timestamp()) return false;
  const auto age = impl_->clock_.Now() - FromTimestamp(spec.last_heartbeat_timestamp());
  return age < impl_->options_.heartbeat_window;
}

std::map<std::string, std::uint64_t> StandIn::SignedCalls() const {
  std::lock_guard lock(impl_->signed_calls_mutex_);
  return impl_->signed_calls_;
}

std::vector<JoinedMachine> StandIn::JoinedMachines() const {
  std::lock_guard lock(impl_->joined_mutex_);
  return impl_->joined_;
}

std::string StandIn::JoinToken(const std::string& provider_id) const {
  auto join = impl_->store_.Get(kInfraProviderNs, kProviderJoinConfigType, provider_id);
  if (!join.ok()) return "";
  specs::ProviderJoinConfigSpec spec;
  spec.ParseFromString(join->proto_spec);
  return spec.join_token();
}

bool StandIn::WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) const {
  return impl_->store_.WaitUntil(predicate, timeout);
}

void StandIn::StopServing() { impl_->StopServing(); }

absl::Status StandIn::ResumeServing() { return impl_->Serve(); }

absl::Status StandIn::RestartAsNewProcess() {
  impl_->StopServing();
  impl_->store_.ForgetAsIfRestarted(impl_->random_.Uniform(~0ULL) | 1, kInfraProviderEphemeralNs);
  return impl_->Serve();
}

}  // namespace omni_proxmox::sim::omni
