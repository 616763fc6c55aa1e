// SPDX-License-Identifier: Apache-2.0
#include "cli/world.h"

#include <fstream>

#include <fmt/format.h>

#include "omni/keys.h"
#include "omni/specs.h"
#include "provider/model/providerdata.h"
#include "util/secret.h"
#include "util/version.h"

namespace omni_proxmox::cli {
namespace {

absl::Status WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) return absl::InternalError(fmt::format("cannot write '{}'", path.string()));
  return absl::OkStatus();
}

absl::Status Failed(std::string_view what, const absl::Status& status) {
  return absl::Status(status.code(), fmt::format("{}: {}", what, std::string(status.message())));
}

}  // namespace

std::vector<std::string> CommandFiles::ConnectionFlags() const {
  return {"--config-file", config.string(), "--omni-api-endpoint", omni_endpoint, "--omni-service-account-key-file",
          key.string()};
}

absl::StatusOr<std::unique_ptr<pve::Client>> MakeSimulatorClient(const sim::pve::Simulator& sim) {
  pve::ClientOptions options;
  options.base_url = sim.base_url() + "/api2/json";
  options.token_id = sim.default_token_id();
  options.token_secret = util::Secret<std::string>(sim.default_token_secret());
  options.ca_pem = sim.ca_certificate_pem();
  return pve::MakeHttpClient(options, util::RealClock());
}

absl::StatusOr<omni::ClientOptions> StandInClientOptions(const sim::omni::StandIn& standin, util::Random* random,
                                                         const util::Clock& clock) {
  auto key = omni::DecodeServiceAccountKey(standin.provider_key());
  if (!key.ok()) return key.status();
  omni::ClientOptions options;
  options.endpoint = standin.grpc_endpoint();
  options.key = *key;
  options.provider_id = standin.provider_id();
  options.random = random;
  options.clock = &clock;
  return options;
}

World::World(WorldOptions options)
    : options_(std::move(options)),
      random_(options_.client_seed),
      metrics_(std::make_unique<util::MetricsRegistry>()) {}

World::~World() {
  StopProvider();
  sim_.reset();  // its boot hook calls the stand-in and this world's records
  state_.reset();
  management_.reset();
  standin_.reset();
}

absl::StatusOr<std::unique_ptr<World>> World::Start(WorldOptions options) {
  auto world = std::unique_ptr<World>(new World(std::move(options)));
  const WorldOptions& o = world->options_;
  if (o.start_omni) {
    if (auto started = world->StartOmni(); !started.ok()) return started;
  }
  sim::pve::SimulatorOptions sim_options;
  sim_options.scenario_yaml = o.scenario.Yaml();
  sim_options.tls = o.tls;
  sim_options.time_scale = o.time_scale;
  sim_options.clock = o.clock;
  sim_options.seed = o.seed;
  sim_options.on_vm_started = [raw = world.get()](const sim::pve::VmBootInfo& boot) { raw->OnVmStarted(boot); };
  auto sim = sim::pve::Simulator::Start(std::move(sim_options));
  if (!sim.ok()) return Failed("Proxmox simulator", sim.status());
  world->sim_ = std::move(*sim);
  auto pve = MakeSimulatorClient(*world->sim_);
  if (!pve.ok()) return Failed("Proxmox client", pve.status());
  world->pve_ = std::move(*pve);
  return world;
}

absl::Status World::StartOmni() {
  if (standin_ != nullptr) return absl::OkStatus();
  sim::omni::StandInOptions standin_options;
  standin_options.provider_id = options_.provider_id;
  standin_options.clock = options_.omni_clock;
  standin_options.seed = options_.seed;
  standin_options.tls = options_.omni_tls;
  if (!options_.siderolink_api_url.empty()) standin_options.siderolink_api_url = options_.siderolink_api_url;
  auto standin = sim::omni::StandIn::Start(standin_options);
  if (!standin.ok()) return Failed("Omni stand-in", standin.status());
  const util::Clock& omni_clock = options_.omni_clock != nullptr ? *options_.omni_clock : util::RealClock();
  auto client_options = StandInClientOptions(**standin, &random_, omni_clock);
  if (!client_options.ok()) return Failed("Omni client", client_options.status());
  if (options_.omni_tls) client_options->tls_root_certs_pem = (*standin)->tls_ca_pem();
  auto state = omni::MakeGrpcStateClient(*client_options);
  if (!state.ok()) return Failed("Omni state client", state.status());
  auto management = omni::MakeGrpcManagementClient(*client_options);
  if (!management.ok()) return Failed("Omni management client", management.status());
  standin_ = std::move(*standin);
  state_ = std::move(*state);
  management_ = std::move(*management);
  absl::MutexLock lock(&mutex_);
  joins_to_ = standin_.get();
  return absl::OkStatus();
}

void World::OnVmStarted(const sim::pve::VmBootInfo& boot) {
  sim::omni::StandIn* standin = nullptr;
  {
    absl::MutexLock lock(&mutex_);
    boots_.push_back(boot);
    standin = joins_to_;
  }
  // Outside the lock: the stand-in outlives the simulator, and it takes its own locks.
  const absl::Status joined = standin != nullptr ? standin->MachineJoined(boot.user_data, boot.smbios_uuid)
                                                 : absl::FailedPreconditionError("no Omni stand-in runs to join");
  absl::MutexLock lock(&mutex_);
  if (joined.ok()) {
    joined_.insert(boot.smbios_uuid);
  } else {
    join_errors_.push_back(std::string(joined.message()));
  }
}

std::vector<sim::pve::VmBootInfo> World::Boots() const {
  absl::MutexLock lock(&mutex_);
  return boots_;
}

std::set<std::string> World::Joined() const {
  absl::MutexLock lock(&mutex_);
  return joined_;
}

std::vector<std::string> World::JoinErrors() const {
  absl::MutexLock lock(&mutex_);
  return join_errors_;
}

int World::MachineRequestCount() const {
  auto listed =
      standin_->state().List(std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest));
  return listed.ok() ? static_cast<int>(listed->size()) : -1;
}

std::map<std::string, specs::MachineRequestStatusSpec> World::RequestStatuses() const {
  std::map<std::string, specs::MachineRequestStatusSpec> out;
  auto listed =
      standin_->state().List(std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus));
  if (!listed.ok()) return out;
  for (const auto& resource : *listed) {
    specs::MachineRequestStatusSpec spec;
    if (spec.ParseFromString(resource.proto_spec)) out[resource.id] = spec;
  }
  return out;
}

std::string World::Describe() const {
  std::string out;
  if (standin_ != nullptr) {
    for (const auto& [id, spec] : RequestStatuses()) {
      out += fmt::format("{}: stage={} status={} error={}\n", id, static_cast<int>(spec.stage()), spec.status(),
                         spec.error());
    }
  }
  for (const auto& error : JoinErrors()) out += "join error: " + error + "\n";
  return out;
}

provider::ProviderOptions World::ProviderDefaults() const {
  provider::ProviderOptions options;
  options.info = {.id = options_.provider_id,
                  .name = "Proxmox",
                  .description = "omni-proxmox",
                  .icon = "",
                  .schema = provider::ProviderDataJsonSchema(),
                  .version = util::kVersion};
  if (standin_ != nullptr) options.image_factory_url = standin_->factory_url();
  return options;
}

absl::StatusOr<provider::Provider*> World::AssembleProvider(provider::ProviderOptions options) {
  StopProvider();
  if (standin_ == nullptr) return absl::FailedPreconditionError("the provider needs the Omni stand-in: StartOmni");
  metrics_ = std::make_unique<util::MetricsRegistry>();
  const util::Clock& clock = options_.clock != nullptr ? *options_.clock : util::RealClock();
  auto provider =
      provider::Provider::Assemble(std::move(options), *pve_, *state_, *management_, *metrics_, clock, random_);
  if (!provider.ok()) return provider.status();
  provider_ = std::move(*provider);
  return provider_.get();
}

void World::StopProvider() {
  if (provider_ != nullptr) provider_->Stop();
  provider_.reset();
}

std::string World::ProxmoxConfig(const std::string& token_id, const std::string& secret_file) const {
  std::string config = fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n",
                                   sim_->base_url(), token_id, secret_file);
  if (options_.tls) config += "  caFile: ca.pem\n";
  return config;
}

absl::StatusOr<CommandFiles> World::WriteCommandFiles(const std::filesystem::path& dir) const {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(fmt::format("cannot create '{}': {}", dir.string(), error.message()));
  CommandFiles files{.dir = dir, .config = dir / "config.yaml", .secret = dir / "secret"};
  if (auto s = WriteFile(files.secret, sim_->default_token_secret()); !s.ok()) return s;
  if (options_.tls) {
    files.ca = dir / "ca.pem";
    if (auto s = WriteFile(files.ca, sim_->ca_certificate_pem()); !s.ok()) return s;
  }
  if (standin_ != nullptr) {
    files.key = dir / "key";
    files.omni_endpoint = standin_->grpc_endpoint();
    if (auto s = WriteFile(files.key, standin_->provider_key()); !s.ok()) return s;
  }
  if (auto s = WriteFile(files.config, ProxmoxConfig(sim_->default_token_id(), "secret")); !s.ok()) return s;
  return files;
}

}  // namespace omni_proxmox::cli
