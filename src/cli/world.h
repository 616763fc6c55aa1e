// SPDX-License-Identifier: Apache-2.0
#pragma once

// A simulated world, built one way for the demo, the tests, the torture rig and the scale
// benchmark: a Proxmox simulator running a scenario (sim/pve/scenario_builder.h), an Omni
// stand-in, every VM boot reported to the stand-in as the machine joining (and recorded here),
// clients for both, and either the provider assembled in process as `run` assembles it
// (provider::Provider) or the files `omni-proxmox <command>` reads to run it as a child process.
//
// Thread-safe where the simulators call in (boots and joins); everything else is for the thread
// that owns the world.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "omni/client_options.h"
#include "omni/management_client.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/provider.h"
#include "pve/client.h"
#include "sim/omni/standin.h"
#include "sim/pve/scenario_builder.h"
#include "sim/pve/simulator.h"
#include "util/clock.h"
#include "util/metrics.h"
#include "util/random.h"

namespace omni_proxmox::cli {

struct WorldOptions {
  sim::pve::Scenario scenario = sim::pve::DefaultScenario();
  bool tls = false;  // the simulator over https; the command files then pin its CA (caFile)
  // How much faster than real time the simulator's tasks run; ignored when `clock` is set.
  double time_scale = 1;
  // The clock of Proxmox's tasks and of the provider the world assembles, e.g. a util::ScaledClock
  // so the garbage collector's ages pass as fast as the tasks, or a util::ManualClock. Unset: the
  // simulator runs at `time_scale` and the provider on the real clock.
  const util::Clock* clock = nullptr;
  // The stand-in's and the Omni clients' clock (signatures carry its time, so both sides need the
  // same one): set it with a ManualClock that drives the whole world. Unset: the real clock.
  const util::Clock* omni_clock = nullptr;
  std::string provider_id = "proxmox";
  // What the stand-in advertises to machines (SiderolinkAPIConfig); empty: its own default.
  std::string siderolink_api_url;
  std::uint64_t seed = 1;          // the simulator's and the stand-in's randomness
  std::uint64_t client_seed = 42;  // the Omni clients' and the provider's randomness
  // false: the stand-in starts only at StartOmni (a test of Proxmox alone).
  bool start_omni = true;
  // The stand-in serves its gRPC API over TLS with a self-signed certificate, as every real Omni
  // serves TLS; the world's Omni clients trust it.
  bool omni_tls = false;
};

// What `omni-proxmox <command>` reads, as World::WriteCommandFiles wrote it into one directory.
struct CommandFiles {
  std::filesystem::path dir;
  std::filesystem::path config;  // config.yaml: the simulator's URL, root's token, secret and CA beside it
  std::filesystem::path secret;  // the token secret
  std::filesystem::path key;     // the provider's infra-provider key; empty without the stand-in
  std::filesystem::path ca;      // the simulator's certificate; empty without TLS
  std::string omni_endpoint;

  // --config-file, --omni-api-endpoint and --omni-service-account-key-file for these files.
  std::vector<std::string> ConnectionFlags() const;
};

// An HTTP client for `sim` with its default (root@pam) API token, trusting its certificate when it
// serves TLS. On the real clock: its waits and timeouts are the network's.
absl::StatusOr<std::unique_ptr<pve::Client>> MakeSimulatorClient(const sim::pve::Simulator& sim);

// Omni client options for `standin`: its endpoint, the infra-provider key it issued and its
// provider ID, as `run` is configured against a real Omni. `random` and `clock` must outlive the
// clients.
absl::StatusOr<omni::ClientOptions> StandInClientOptions(const sim::omni::StandIn& standin, util::Random* random,
                                                         const util::Clock& clock = util::RealClock());

class World {
 public:
  // Starts the stand-in (unless start_omni is false), then the simulator, then the clients.
  // Errors name the part that failed.
  static absl::StatusOr<std::unique_ptr<World>> Start(WorldOptions options);
  // Stops the provider, then the simulator (whose boot hook calls the stand-in), then the stand-in.
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  // Starts the stand-in and its clients when start_omni was false; a no-op when it runs.
  absl::Status StartOmni();

  const WorldOptions& options() const { return options_; }
  sim::pve::Simulator& sim() { return *sim_; }
  sim::omni::StandIn& standin() { return *standin_; }  // REQUIRES: the stand-in runs
  bool omni_started() const { return standin_ != nullptr; }

  // What every VM booted with, in start order; the SMBIOS UUIDs of the machines whose join the
  // stand-in accepted; why it refused the others.
  std::vector<sim::pve::VmBootInfo> Boots() const;
  std::set<std::string> Joined() const;
  std::vector<std::string> JoinErrors() const;

  // The stand-in's MachineRequests and their statuses (by request ID), read from its store.
  int MachineRequestCount() const;
  std::map<std::string, specs::MachineRequestStatusSpec> RequestStatuses() const;
  // One line per status ("<id>: stage=<n> status=<text> error=<text>") and per refused join.
  std::string Describe() const;

  // Clients of the simulator (see MakeSimulatorClient) and of the stand-in (signed with the
  // provider's key, on omni_clock); the Omni ones REQUIRE the stand-in.
  pve::Client& pve() { return *pve_; }
  omni::StateClient& state() { return *state_; }
  omni::ManagementClient& management() { return *management_; }
  util::Random& random() { return random_; }

  // The provider of this world as `run` configures it by default: its ID, the providerdata schema,
  // this build's version, the stand-in's Image Factory.
  provider::ProviderOptions ProviderDefaults() const;
  // Assembles the provider over this world's clients, on `clock` (the real one when unset), with a
  // fresh metrics registry; a provider assembled before is stopped and replaced. Not started.
  absl::StatusOr<provider::Provider*> AssembleProvider(provider::ProviderOptions options);
  provider::Provider* provider() { return provider_.get(); }
  util::MetricsRegistry& metrics() { return *metrics_; }  // the last assembled provider's
  void StopProvider();                                    // stops and drops the provider; a no-op without one

  // Writes config.yaml (naming its secret and CA relative to `dir`), the token secret, the
  // provider key (when the stand-in runs) and the CA (with TLS) into `dir`, which it creates.
  absl::StatusOr<CommandFiles> WriteCommandFiles(const std::filesystem::path& dir) const;
  // A config.yaml for the simulator with `token_id`, whose secret is in `secret_file` (relative
  // paths resolve against the config's directory).
  std::string ProxmoxConfig(const std::string& token_id, const std::string& secret_file) const;

 private:
  explicit World(WorldOptions options);
  void OnVmStarted(const sim::pve::VmBootInfo& boot);

  const WorldOptions options_;
  util::Random random_;
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::unique_ptr<pve::Client> pve_;
  std::unique_ptr<omni::StateClient> state_;
  std::unique_ptr<omni::ManagementClient> management_;
  std::unique_ptr<util::MetricsRegistry> metrics_;
  std::unique_ptr<provider::Provider> provider_;

  mutable absl::Mutex mutex_;
  sim::omni::StandIn* joins_to_ ABSL_GUARDED_BY(mutex_) = nullptr;  // the stand-in, once it runs
  std::vector<sim::pve::VmBootInfo> boots_ ABSL_GUARDED_BY(mutex_);
  std::set<std::string> joined_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::string> join_errors_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace omni_proxmox::cli
