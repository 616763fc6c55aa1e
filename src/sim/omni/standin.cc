// SPDX-License-Identifier: Apache-2.0
// Start-up and shutdown of the stand-in (keys, seeded resources, servers, controllers, the
// optional --state-dir snapshot) and StandIn's accessors. The controls tests and shells use are
// in controls.cc.

#include "sim/omni/standin.h"

#include <httplib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "cosi/meta.pb.h"
#include "omni/specs/omni.pb.h"
#include "sim/omni/standin_impl.h"
#include "sim/omni/tls.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::omni {

StandIn::Impl::Impl(StandInOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : util::RealClock()),
      random_(options_.state_dir.empty() ? options_.seed : util::Random::SeedFromDevice()),
      store_(clock_, options_.seed * 0x9e3779b97f4a7c15ULL + 0x5eed),
      keys_(clock_),
      log_(util::Logger("sim.omni")),
      journal_(options_.journal_clock != nullptr ? *options_.journal_clock : util::RealClock()) {
  store_.SetPublishHook([this](const Event& event) { journal_.ObserveEvent(event); });
}

StandIn::Impl::~Impl() {
  if (control_) control_->stop();
  if (control_thread_.joinable()) control_thread_.join();
  StopServing();
  controller_.request_stop();
  persister_.request_stop();
  store_.WakeAll();
  if (controller_.joinable()) controller_.join();
  if (persister_.joinable()) {
    persister_.join();
    if (auto status = SaveState(); !status.ok()) log_->error("state dir: {}", std::string(status.message()));
  }
}

void StandIn::Impl::LogRefusedSignature(const char* method, const std::string& reason) {
  constexpr auto kInterval = std::chrono::seconds{10};
  const auto now = clock_.Monotonic();
  std::uint64_t suppressed = 0;
  {
    std::lock_guard lock(refusals_mutex_);
    auto [it, fresh] = refusals_.try_emplace(reason);
    if (!fresh && now - it->second.last < kInterval) {
      ++it->second.suppressed;
      return;
    }
    suppressed = std::exchange(it->second.suppressed, 0);
    it->second.last = now;
  }
  log_->warn("{} refused as 'invalid signature': {}{}", method, reason,
             suppressed == 0 ? "" : fmt::format(" (and {} more like it in the last 10 s or so)", suppressed));
}

absl::StatusOr<std::pair<Caller, AccessScope>> StandIn::Impl::Admit(grpc::ServerContext* ctx, const char* method,
                                                                    Verb verb, const std::string& ns,
                                                                    const std::string& type, const std::string& id) {
  std::string reason;
  const Metadata metadata = ClientMetadata(*ctx);
  auto caller = keys_.Verify(method, metadata, &reason);
  if (!caller.ok()) {
    LogRefusedSignature(method, reason);
    return caller.status();
  }
  CountSignedCall(method);
  if (!IsRead(verb)) journal_.RecordMutation(ReplicaOf(metadata), caller->email, method, ns, type, id);
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
  {
    std::lock_guard lock(keys_mutex_);
    issued_[key->name] = IssuedKey{*key, Role::kInfraProvider};
  }
  ++keys_epoch_;
  auto created = store_.Create(MakeResource(kInfraProviderNs, kInfraProviderType, id, specs::InfraProviderSpec()), "");
  if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists) return created.status();
  specs::ProviderJoinConfigSpec join;
  const std::string token = RandomString(random_, 32, kAlphanumeric);
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

absl::Status StandIn::Impl::SeedFresh() {
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
      {kClusterType, kDefaultNs},
      {kMachineSetType, kDefaultNs},
      {kMachineSetStatusType, kDefaultNs},
      {kMachineSetNodeType, kDefaultNs},
      {kClusterMachineRequestStatusType, kDefaultNs},
      {kLinkType, kDefaultNs},
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
  {
    std::lock_guard lock(keys_mutex_);
    issued_[admin_key_.name] = IssuedKey{admin_key_, Role::kAdmin};
  }
  auto provider = NewProvider(options_.provider_id);
  if (!provider.ok()) return provider.status();
  provider_key_ = *provider;

  specs::SiderolinkAPIConfigSpec siderolink;
  siderolink.set_machine_api_advertised_url(options_.siderolink_api_url);
  siderolink.set_wireguard_advertised_endpoint(options_.bind_address + ":50180");
  siderolink.set_events_port(options_.events_port);
  siderolink.set_logs_port(options_.logs_port);
  OP_RETURN_IF_ERROR(
      store_.Create(MakeResource(kDefaultNs, kSiderolinkApiConfigType, kSiderolinkConfigId, siderolink), "").status());
  // The legacy connection parameters (pre-1.0 providers) carry Omni's default join token.
  specs::ConnectionParamsSpec legacy;
  const std::string default_token = RandomString(random_, 32, kAlphanumeric);
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
  return absl::OkStatus();
}

absl::Status StandIn::Impl::WriteKeyFiles() const {
  if (options_.keys_dir.empty()) return absl::OkStatus();
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
  if (options_.tls) {
    const auto path = std::filesystem::path(options_.keys_dir) / "ca.pem";
    std::ofstream out(path, std::ios::trunc);
    out << options_.tls_cert_pem;
    if (!out) return absl::InternalError(fmt::format("keys_dir: cannot write {}", path.string()));
  }
  return absl::OkStatus();
}

absl::Status StandIn::Impl::Init() {
  if (options_.provider_id.empty() || options_.provider_id.find_first_of(" :/") != std::string::npos) {
    return absl::InvalidArgumentError(fmt::format(
        "provider_id '{}': use a non-empty ID without spaces, ':' or '/' (e.g. proxmox)", options_.provider_id));
  }
  if (options_.tls && options_.tls_cert_pem.empty() != options_.tls_key_pem.empty()) {
    return absl::InvalidArgumentError("tls: give both tls_cert_pem and tls_key_pem, or neither to self-sign");
  }
  bool loaded = false;
  if (!options_.state_dir.empty()) {
    OP_ASSIGN_OR_RETURN(loaded, LoadState());
  }
  if (loaded) {
    // A new process: bookmarks of the previous one are void (with a state dir, random_ is seeded
    // from the device, so request IDs and join tokens do not repeat those of the last run).
    store_.ForgetAsIfRestarted(util::Random::SeedFromDevice() | 1, kInfraProviderEphemeralNs);
  } else {
    OP_RETURN_IF_ERROR(SeedFresh());
  }

  OP_ASSIGN_OR_RETURN(factory_, FakeImageFactory::Start(options_.bind_address, options_.factory_port));
  for (const auto& schematic : loaded_schematics_) (void)factory_->PutSchematic(schematic);
  // FeaturesConfig names the factory, whose port may differ after a restart.
  specs::FeaturesConfigSpec features;
  features.set_image_factory_base_url(factory_->url());
  auto existing = store_.Get(kDefaultNs, kFeaturesConfigType, kFeaturesConfigId);
  if (existing.ok()) {
    OP_RETURN_IF_ERROR(store_
                           .Modify(kDefaultNs, kFeaturesConfigType, kFeaturesConfigId,
                                   [&](Resource& r) {
                                     const std::string bytes = features.SerializeAsString();
                                     if (r.proto_spec == bytes) return false;
                                     r.proto_spec = bytes;
                                     r.yaml_spec = RenderYaml(features);
                                     return true;
                                   })
                           .status());
  } else {
    OP_RETURN_IF_ERROR(
        store_.Create(MakeResource(kDefaultNs, kFeaturesConfigType, kFeaturesConfigId, features), "").status());
  }

  if (options_.tls && options_.tls_cert_pem.empty()) {
    OP_ASSIGN_OR_RETURN(auto pair, SelfSignedCertificate(options_.bind_address));
    options_.tls_cert_pem = pair.first;
    options_.tls_key_pem = pair.second;
  }
  OP_RETURN_IF_ERROR(WriteKeyFiles());
  state_service_ = MakeStateService(*this);
  management_service_ = MakeManagementService(*this);
  OP_RETURN_IF_ERROR(Serve());
  controller_ = std::jthread([this](std::stop_token stop) { ControllerLoop(stop); });
  if (!options_.state_dir.empty()) {
    OP_RETURN_IF_ERROR(SaveState());
    persister_ = std::jthread([this](std::stop_token stop) { PersistLoop(stop); });
  }
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
  // gRPC sets SO_REUSEPORT by default: a second stand-in on the same port would start and split
  // the connections with the first. Omni (Go's net.Listen) fails with "address already in use".
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(state_service_.get());
  builder.RegisterService(management_service_.get());
  stopping_ = false;
  server_ = builder.BuildAndStart();
  if (!server_ || selected == 0) {
    server_.reset();
    return absl::UnavailableError(
        fmt::format("omni stand-in: cannot listen on {}:{}: address already in use, or not an address of this host",
                    options_.bind_address, port));
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
// StandIn

StandIn::StandIn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StandIn::~StandIn() = default;

absl::StatusOr<std::unique_ptr<StandIn>> StandIn::Start(StandInOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  OP_RETURN_IF_ERROR(impl->Init());
  std::unique_ptr<StandIn> standin(new StandIn(std::move(impl)));
  OP_RETURN_IF_ERROR(standin->impl_->StartControl(*standin));
  if (!standin->impl_->options_.state_dir.empty()) OP_RETURN_IF_ERROR(standin->impl_->SaveState());
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
const Journal& StandIn::journal() const { return impl_->journal_; }
StateStore& StandIn::state() { return impl_->store_; }

void StandIn::StopServing() { impl_->StopServing(); }

absl::Status StandIn::ResumeServing() { return impl_->Serve(); }

absl::Status StandIn::RestartAsNewProcess() {
  impl_->StopServing();
  impl_->store_.ForgetAsIfRestarted(impl_->random_.Uniform(~0ULL) | 1, kInfraProviderEphemeralNs);
  return impl_->Serve();
}

}  // namespace omni_proxmox::sim::omni
