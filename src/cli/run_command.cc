// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox run`: the provider itself. Flags and environment variables are the Go
// provider's (so its compose files work unchanged) plus ours.

#include <malloc.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/command.h"
#include "cli/connection.h"
#include "cli/status_server.h"
#include "omni/schematic.h"
#include "provider/leader/leader_elector.h"
#include "provider/model/providerdata.h"
#include "provider/provider.h"
#include "util/duration.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/mutation_gate.h"
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
  ConnectionFlags connection;
  std::string name = "Proxmox";
  std::string description = "Proxmox VE infrastructure provider (omni-proxmox)";
  int concurrency = 8;
  // Toward Proxmox (docs/operator-guide.md, "Limits").
  int max_tasks_per_node = 4;
  double pve_requests_per_second = 200;
  std::string listen = std::string(kDefaultListen);
  std::string heartbeat_interval = "15s";
  std::string gc_mode = "report";
  std::string gc_grace_period = "10m";
  std::string gc_interval = "5m";
  // Leader election between replicas (docs/operator-guide.md, "Two replicas").
  bool leader_elect = true;
  std::string leader_lease_duration = "15s";
  std::string leader_renew_deadline = "10s";
  std::string leader_retry_period = "2s";
  bool leader_local_takeover = true;
};

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

// glibc gives each thread that allocates under contention its own malloc arena (up to 8 per core),
// and freed memory stays in them: with dozens of reconcile and gRPC threads that was most of the
// provider's RSS growth (53 MiB for 100 VMs, 45.6 MiB with two arenas; docs/benchmarks.md).
// Two arenas are plenty for a process that mostly waits on sockets. An operator's
// MALLOC_ARENA_MAX wins (glibc has already applied it, so we leave it alone).
void CapMallocArenas() {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return;
  mallopt(M_ARENA_MAX, 2);
}

int RunProvider(RunFlags flags) {
  CapMallocArenas();
  auto log = util::Logger("provider");
  const auto usage_error = [](const std::string& message) {
    std::cerr << "omni-proxmox run: " << message << "\n";
    return kExitUsage;
  };

  auto gc_mode = provider::ParseGcMode(flags.gc_mode);
  if (!gc_mode.ok()) return usage_error(std::string(gc_mode.status().message()));
  auto gc_grace = provider::ParseGcDuration(flags.gc_grace_period, "--gc-grace-period");
  if (!gc_grace.ok()) return usage_error(std::string(gc_grace.status().message()));
  auto gc_interval = provider::ParseGcDuration(flags.gc_interval, "--gc-interval");
  if (!gc_interval.ok() || *gc_interval < std::chrono::seconds{1}) {
    return usage_error(fmt::format("--gc-interval '{}' must be a duration of at least 1s, e.g. 5m", flags.gc_interval));
  }
  const pve::LimitOptions limits{.max_tasks_per_node = flags.max_tasks_per_node,
                                 .requests_per_second = flags.pve_requests_per_second};
  if (auto valid = pve::ValidateLimitOptions(limits); !valid.ok()) return usage_error(std::string(valid.message()));

  provider::LeaderOptions leader_options{.enabled = flags.leader_elect, .local_takeover = flags.leader_local_takeover};
  for (auto [text, flag, out] :
       {std::tuple{&flags.leader_lease_duration, "--leader-lease-duration", &leader_options.lease_duration},
        std::tuple{&flags.leader_renew_deadline, "--leader-renew-deadline", &leader_options.renew_deadline},
        std::tuple{&flags.leader_retry_period, "--leader-retry-period", &leader_options.retry_period}}) {
    auto parsed = util::ParseDuration(*text, flag);
    if (!parsed.ok()) return usage_error(std::string(parsed.status().message()));
    *out = *parsed;
  }
  if (auto valid = provider::ValidateLeaderOptions(leader_options); !valid.ok()) {
    return usage_error(std::string(valid.message()));
  }
  auto heartbeat = util::ParseDuration(flags.heartbeat_interval, "--heartbeat-interval");
  if (!heartbeat.ok()) return usage_error(std::string(heartbeat.status().message()));
  if (*heartbeat < std::chrono::seconds{1} || *heartbeat > std::chrono::seconds{25}) {
    return usage_error(
        fmt::format("--heartbeat-interval '{}' must be between 1s and 25s (Omni shows a provider "
                    "disconnected 31 s after its last heartbeat)",
                    flags.heartbeat_interval));
  }
  util::Random identity_random(util::Random::SeedFromDevice());
  leader_options.identity = provider::LeaderIdentity(identity_random);

  // Every mutation this replica sends, to Proxmox and to Omni, passes the lease's gate.
  util::ForwardingGate gate;
  auto connections = Connect(flags.connection, {.replica = leader_options.identity,
                                                .mutation_gate = flags.leader_elect ? &gate : nullptr,
                                                .ungated_state = flags.leader_elect});
  if (!connections.ok()) return usage_error(std::string(connections.status().message()));
  connections->omni_monitor->OnRejectedFromTheStart([log](const std::string& description) {
    // No call was accepted yet, so no request was read and nothing written anywhere: exiting from
    // the call that learned it leaves nothing half done and keeps this the only error line. A
    // key refused later (its service account destroyed while running) is reported, not fatal.
    log->error("{}; exiting", description);
    log->flush();
    std::_Exit(kExitFailure);
  });
  auto& state = connections->state;
  const std::string& provider_id = connections->provider_id;
  const std::string& endpoint = connections->endpoint;

  std::string factory = std::string(omni::kDefaultImageFactoryUrl);
  if (auto fetched = omni::FetchImageFactoryBaseUrl(*state); fetched.ok()) {
    factory = *fetched;
  } else {
    log->warn("cannot read FeaturesConfig yet ({}); using {}", std::string(fetched.status().message()), factory);
  }

  provider::ProviderOptions options;
  options.info = {.id = provider_id,
                  .name = flags.name,
                  .description = flags.description,
                  .icon = Base64(kIconSvg),
                  .schema = provider::ProviderDataJsonSchema(),
                  .version = util::kVersion};
  options.concurrency = flags.concurrency;
  options.limits = limits;
  options.image_factory_url = factory;
  options.heartbeat_interval = *heartbeat;
  options.omni_monitor = connections->omni_monitor.get();
  options.gc_mode = *gc_mode;
  options.gc_grace_period = *gc_grace;
  options.gc_interval = *gc_interval;
  std::unique_ptr<provider::LeaderElector> leader;
  if (flags.leader_elect) {
    leader = std::make_unique<provider::LeaderElector>(leader_options, provider_id, *connections->ungated_state,
                                                       util::RealClock(), *connections->random);
    gate.Bind(leader.get());
    log->info("leader election on: this replica is {}", leader->identity());
  }
  util::MetricsRegistry metrics;
  auto provider = provider::Provider::Assemble(options, *connections->pve, *state, *connections->management, metrics,
                                               util::RealClock(), *connections->random, leader.get());
  if (!provider.ok()) return usage_error(std::string(provider.status().message()));

  StatusServerOptions status_options;
  status_options.listen = flags.listen;
  status_options.metrics = &metrics;
  status_options.readiness = [&provider]() { return (*provider)->Readiness(); };
  status_options.ready_text = [&provider]() { return (*provider)->ReadyText(); };
  auto status_server = StatusServer::Start(status_options);
  if (!status_server.ok()) return usage_error(std::string(status_server.status().message()));
  log->info("omni-proxmox {} running as provider '{}' against {}; /healthz /readyz /metrics on {}:{}", util::kVersion,
            provider_id, endpoint, (*status_server)->host(), (*status_server)->port());

  (*provider)->Start();
  WaitForSignal();
  (*provider)->Stop();
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
  AddConnectionFlags(*cmd, flags->connection);
  cmd->add_option("--provider-name", flags->name, "Name shown in Omni")->capture_default_str();
  cmd->add_option("--provider-description", flags->description, "Description shown in Omni")->capture_default_str();
  cmd->add_option("--concurrency", flags->concurrency, "MachineRequests reconciled in parallel")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--max-tasks-per-node", flags->max_tasks_per_node,
                  "Heavy Proxmox tasks (VM create/delete, ISO download/upload) in flight per node; 0 = no limit")
      ->capture_default_str();
  cmd->add_option("--pve-requests-per-second", flags->pve_requests_per_second,
                  "Proxmox API calls per second, in bursts of up to twice that; 0 = no limit")
      ->capture_default_str();
  cmd->add_option("--gc-mode", flags->gc_mode,
                  "Garbage collection of orphan VMs and unused ISOs: off, report (log and count) or delete")
      ->capture_default_str();
  cmd->add_option("--gc-grace-period", flags->gc_grace_period,
                  "Collect only what has been seen unused this long (e.g. 10m)")
      ->capture_default_str();
  cmd->add_option("--gc-interval", flags->gc_interval, "Time between garbage collection cycles")->capture_default_str();
  cmd->add_option("--leader-elect", flags->leader_elect,
                  "Elect one leader among replicas with this key through a lease in Omni; only the leader works. "
                  "false: run as the only replica")
      ->capture_default_str();
  cmd->add_option("--leader-lease-duration", flags->leader_lease_duration,
                  "How long a standby waits, after it last saw the lease renewed, before taking over")
      ->capture_default_str();
  cmd->add_option("--leader-renew-deadline", flags->leader_renew_deadline,
                  "How long a leader keeps working without renewing its lease (less than the lease duration)")
      ->capture_default_str();
  cmd->add_option("--leader-retry-period", flags->leader_retry_period,
                  "Time between attempts to acquire or renew the lease")
      ->capture_default_str();
  // For tests of the expiry path with both replicas on one host.
  cmd->add_option("--leader-local-takeover", flags->leader_local_takeover,
                  "Take over at once from a leader whose process is gone on this host")
      ->group("");
  cmd->add_option("--heartbeat-interval", flags->heartbeat_interval,
                  "Time between heartbeats to Omni (InfraProviderHealthStatus), each a check of Proxmox too")
      ->capture_default_str();
  cmd->add_option("--listen", flags->listen, "Address for /healthz, /readyz and /metrics")
      ->envname(std::string(kListenEnv))
      ->capture_default_str();
  cmd->callback([flags, &ctx] {
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
