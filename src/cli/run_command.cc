// `omni-proxmox run`: the provider itself. Flags and environment variables are the Go
// provider's (so its compose files work unchanged) plus ours.

#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/command.h"
#include "cli/status_server.h"
#include "omni/client_options.h"
#include "omni/keys.h"
#include "omni/management_client.h"
#include "omni/provider_status.h"
#include "omni/schematic.h"
#include "omni/state_client.h"
#include "provider/model/providerdata.h"
#include "provider/reconciler/controller.h"
#include "provider/reconciler/machine_reconciler.h"
#include "pve/config.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/random.h"
#include "util/version.h"

namespace omni_proxmox::cli {
namespace {

// A Proxmox logo-like mark for the Omni UI (base64 SVG, as the UI renders data:image/svg+xml;base64,...).
constexpr const char* kIconSvg =
    R"(<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#e57000"/>)"
    R"(<path d="M14 16l18 16-18 16h10l13-11.6L50 48h0L32 32 50 16H40L32 23.2 24 16z" fill="#fff"/></svg>)";

std::string Base64(std::string_view in) {
  static constexpr char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += i + 1 < in.size() ? kTable[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

struct RunFlags {
  std::string config_file;
  std::string endpoint;
  std::string key;
  std::string key_file;
  std::string id = "proxmox";
  bool id_given = false;
  std::string name = "Proxmox";
  std::string description = "Proxmox VE infrastructure provider (omni-proxmox)";
  bool insecure_skip_verify = false;
  int concurrency = 8;
  std::string listen = "127.0.0.1:9489";
  std::chrono::milliseconds heartbeat{15'000};
};

std::optional<std::string> Env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(fmt::format("{}: cannot read '{}'", flag, path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Waits for SIGINT or SIGTERM (blocked in every thread by RunProvider before any is started).
void WaitForSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int signal_number = 0;
  sigwait(&set, &signal_number);
  util::Logger("provider")->info("received signal {}, shutting down", signal_number);
}

int RunProvider(RunFlags flags) {
  auto log = util::Logger("provider");
  const auto usage_error = [](const std::string& message) {
    std::cerr << "omni-proxmox run: " << message << "\n";
    return kExitUsage;
  };

  // The key: flag, file, or the environment names of the Go provider and of the operator document.
  std::string encoded_key = flags.key;
  if (encoded_key.empty() && !flags.key_file.empty()) {
    auto read = ReadSecretFile(flags.key_file, "--omni-service-account-key-file");
    if (!read.ok()) return usage_error(std::string(read.status().message()));
    encoded_key = *read;
  }
  if (encoded_key.empty())
    encoded_key = Env("OMNI_SERVICE_ACCOUNT_KEY").value_or(Env("OMNI_INFRA_PROVIDER_KEY").value_or(""));
  if (encoded_key.empty()) {
    return usage_error(
        "no infra provider key: pass --omni-service-account-key-file FILE (keeps it out of the process list), "
        "--omni-service-account-key, or set OMNI_SERVICE_ACCOUNT_KEY / OMNI_INFRA_PROVIDER_KEY");
  }
  std::string endpoint = flags.endpoint;
  if (endpoint.empty()) endpoint = Env("OMNI_ENDPOINT").value_or("");
  if (endpoint.empty()) {
    if (auto domain = Env("OMNI_DOMAIN")) endpoint = fmt::format("https://{}/", *domain);
  }
  if (endpoint.empty()) {
    return usage_error(
        "no Omni endpoint: pass --omni-api-endpoint https://<account>.omni.siderolabs.io/ or set "
        "OMNI_ENDPOINT (or OMNI_DOMAIN)");
  }
  auto key = omni::DecodeServiceAccountKey(encoded_key);
  if (!key.ok()) return usage_error(fmt::format("infra provider key: {}", std::string(key.status().message())));
  auto key_id = omni::ProviderIdFromKeyName(key->name);
  if (!key_id.ok()) return usage_error(std::string(key_id.status().message()));
  if (flags.id != *key_id) {
    if (Lower(flags.id) == Lower(*key_id)) {
      return usage_error(
          fmt::format("provider ID '{}' (--id) differs only in case from the key's identity '{}' ({}); Omni IDs are "
                      "case-sensitive, so use --id {}",
                      flags.id, *key_id, key->name, *key_id));
    }
    if (flags.id_given) {
      return usage_error(
          fmt::format("provider ID '{}' (--id) does not match the key's identity '{}' ({}); use --id {} "
                      "or the key of provider '{}'",
                      flags.id, *key_id, key->name, *key_id, flags.id));
    }
    log->info("using provider ID '{}' from the key (no --id given)", *key_id);
    flags.id = *key_id;
  }

  absl::StatusOr<pve::ClientOptions> pve_options = flags.config_file.empty()
                                                       ? pve::ConfigFromEnv([](const char* name) { return Env(name); })
                                                       : pve::LoadConfigFile(flags.config_file);
  if (!pve_options.ok()) {
    return usage_error(flags.config_file.empty()
                           ? fmt::format("no --config-file and no Proxmox settings in the environment: {}",
                                         std::string(pve_options.status().message()))
                           : std::string(pve_options.status().message()));
  }
  auto pve = pve::MakeHttpClient(*pve_options, util::RealClock());
  if (!pve.ok()) return usage_error(std::string(pve.status().message()));

  util::Random random(util::Random::SeedFromDevice());
  omni::ClientOptions omni_options;
  omni_options.endpoint = endpoint;
  omni_options.insecure_skip_verify = flags.insecure_skip_verify;
  omni_options.key = *key;
  omni_options.provider_id = flags.id;
  omni_options.random = &random;
  auto state = omni::MakeGrpcStateClient(omni_options);
  if (!state.ok()) return usage_error(std::string(state.status().message()));
  auto management = omni::MakeGrpcManagementClient(omni_options);
  if (!management.ok()) return usage_error(std::string(management.status().message()));

  std::string factory = std::string(omni::kDefaultImageFactoryUrl);
  if (auto fetched = omni::FetchImageFactoryBaseUrl(**state); fetched.ok()) {
    factory = *fetched;
  } else {
    log->warn("cannot read FeaturesConfig yet ({}); using {}", std::string(fetched.status().message()), factory);
  }

  util::MetricsRegistry metrics;
  provider::ReconcilerOptions reconciler_options;
  reconciler_options.provider_id = flags.id;
  provider::MachineReconciler reconciler(reconciler_options, **pve, **state, **management, factory, util::RealClock(),
                                         random);
  reconciler.on_step_duration = [&metrics](const std::string& step, double seconds) {
    metrics
        .GetHistogram("omni_proxmox_step_duration_seconds", "Time one pass spent in a provisioning step",
                      {{"step", step}})
        .Observe(seconds);
  };
  provider::ControllerOptions controller_options;
  controller_options.info = {.id = flags.id,
                             .name = flags.name,
                             .description = flags.description,
                             .icon = Base64(kIconSvg),
                             .schema = provider::ProviderDataJsonSchema(),
                             .version = util::kVersion};
  controller_options.concurrency = flags.concurrency;
  controller_options.heartbeat_interval = flags.heartbeat;
  provider::ProviderController controller(controller_options, reconciler, **state, **pve, util::RealClock(), random);

  StatusServerOptions status_options;
  status_options.listen = flags.listen;
  status_options.metrics = &metrics;
  status_options.readiness = [&controller]() -> absl::Status {
    const auto health = controller.Health();
    if (!health.registered) return absl::UnavailableError("not registered with Omni yet: " + health.omni_error);
    if (!health.omni_ok) return absl::UnavailableError("Omni: " + health.omni_error);
    if (!health.proxmox_ok) return absl::UnavailableError("Proxmox: " + health.proxmox_error);
    return absl::OkStatus();
  };
  auto status_server = StatusServer::Start(status_options);
  if (!status_server.ok()) return usage_error(std::string(status_server.status().message()));
  log->info("omni-proxmox {} running as provider '{}' against {}; /healthz /readyz /metrics on {}:{}", util::kVersion,
            flags.id, endpoint, (*status_server)->host(), (*status_server)->port());

  controller.Start();
  std::jthread stats([&](std::stop_token stop) {
    std::mutex m;
    std::condition_variable_any cv;
    while (!stop.stop_requested()) {
      const auto s = reconciler.Stats();
      metrics.GetGauge("omni_proxmox_requests_provisioned_total", "MachineRequests provisioned").Set(s.provisioned);
      metrics.GetGauge("omni_proxmox_requests_deprovisioned_total", "MachineRequests torn down").Set(s.deprovisioned);
      metrics.GetGauge("omni_proxmox_vms_created_total", "VMs created").Set(s.vms_created);
      metrics.GetGauge("omni_proxmox_vms_adopted_total", "VMs found by their markers and adopted").Set(s.vms_adopted);
      metrics.GetGauge("omni_proxmox_vms_deleted_total", "VMs deleted").Set(s.vms_deleted);
      metrics.GetGauge("omni_proxmox_failures_total", "Requests that reached stage FAILED").Set(s.failures);
      metrics.GetGauge("omni_proxmox_queue_depth", "MachineRequests queued or in progress")
          .Set(static_cast<double>(controller.queue().Size()));
      const auto health = controller.Health();
      metrics.GetGauge("omni_proxmox_omni_up", "1 when the last Omni heartbeat succeeded").Set(health.omni_ok);
      metrics.GetGauge("omni_proxmox_proxmox_up", "1 when the last Proxmox check succeeded").Set(health.proxmox_ok);
      std::unique_lock lock(m);
      cv.wait_for(lock, stop, std::chrono::seconds{2}, [] { return false; });
    }
  });

  WaitForSignal();
  stats.request_stop();
  controller.Stop();
  (*status_server)->Stop();
  return kExitOk;
}

}  // namespace

bool IsGoProviderFlag(std::string_view arg) {
  for (std::string_view flag : {"--config-file", "--omni-api-endpoint", "--omni-service-account-key", "--id",
                                "--provider-name", "--provider-description", "--insecure-skip-verify"}) {
    if (arg == flag || (arg.starts_with(flag) && arg.size() > flag.size() && arg[flag.size()] == '=')) return true;
  }
  return false;
}

void RegisterRunCommand(CLI::App& root, CommandContext& ctx) {
  auto flags = std::make_shared<RunFlags>();
  auto* cmd = root.add_subcommand("run",
                                  "Run the infrastructure provider (also the default when started with the "
                                  "Go provider's flags)");
  cmd->footer(
      "Examples:\n"
      "  omni-proxmox run --config-file config.yaml --omni-api-endpoint https://acme.omni.siderolabs.io/ \\\n"
      "      --omni-service-account-key-file /run/secrets/omni-key\n"
      "  OMNI_DOMAIN=omni.tailnet.ts.net OMNI_INFRA_PROVIDER_KEY=... omni-proxmox run --config-file config.yaml\n"
      "The key may also come from OMNI_SERVICE_ACCOUNT_KEY; the endpoint from OMNI_ENDPOINT.");
  cmd->add_option("--config-file", flags->config_file, "Proxmox config.yaml (the Go provider's format)");
  cmd->add_option("--omni-api-endpoint", flags->endpoint, "Omni API endpoint (env OMNI_ENDPOINT, or OMNI_DOMAIN)");
  cmd->add_option("--omni-service-account-key", flags->key,
                  "Infra provider key (env OMNI_SERVICE_ACCOUNT_KEY or OMNI_INFRA_PROVIDER_KEY); prefer the -file "
                  "form, which keeps it out of the process list");
  cmd->add_option("--omni-service-account-key-file", flags->key_file, "File holding the infra provider key");
  cmd->add_option("--id", flags->id, "Provider ID; must equal the key's identity (default: the key's, else proxmox)")
      ->capture_default_str();
  cmd->add_option("--provider-name", flags->name, "Name shown in Omni")->capture_default_str();
  cmd->add_option("--provider-description", flags->description, "Description shown in Omni")->capture_default_str();
  cmd->add_flag("--insecure-skip-verify", flags->insecure_skip_verify, "Do not verify Omni's TLS certificate");
  cmd->add_option("--concurrency", flags->concurrency, "MachineRequests reconciled in parallel")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--listen", flags->listen, "Address for /healthz, /readyz and /metrics")->capture_default_str();
  cmd->callback([flags, cmd, &ctx] {
    flags->id_given = cmd->count("--id") > 0;
    // Signals are taken by WaitForSignal(); block them before any thread starts so none inherits them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    ctx.exit_code = RunProvider(*flags);
  });
}

}  // namespace omni_proxmox::cli
