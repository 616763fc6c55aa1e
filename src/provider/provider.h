// SPDX-License-Identifier: Apache-2.0
#pragma once

// One provider, assembled one way for `omni-proxmox run`, the demo, the scale benchmark and the
// tests, so what the demo shows is what production runs. The data path it wires, in order:
//   Omni watch events -> resource cache (omni/resource_cache.h)
//     -> controller: event to request ID (reconciler/controller.h) -> work queue (reconciler/work_queue.h)
//     -> step runner: finalizer, state, status (reconciler/step_runner.h, reconciler/request_records.h)
//     -> steps (steps/*.cc) over the fleet's shared views (fleet/fleet_view.h)
//     -> Proxmox, through the limits (pve/limited_client.h)
//     -> status back to Omni (request_records.h), through the cache
// plus garbage collection (gc/collector.h) and the metrics loop.

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

#include "omni/management_client.h"
#include "omni/provider_status.h"
#include "omni/resource_cache.h"
#include "omni/state_client.h"
#include "provider/fleet/fleet_view.h"
#include "provider/fleet/vm_presence.h"
#include "provider/gc/collector.h"
#include "provider/leader/leader_elector.h"
#include "provider/reconciler/controller.h"
#include "provider/reconciler/request_records.h"
#include "provider/reconciler/step_runner.h"
#include "provider/steps/services.h"
#include "pve/client.h"
#include "pve/limited_client.h"
#include "util/clock.h"
#include "util/metrics.h"
#include "util/random.h"

namespace omni_proxmox::provider {

struct ProviderOptions {
  omni::ProviderInfo info;  // info.id is the provider ID everywhere
  int concurrency = 8;
  pve::LimitOptions limits;
  std::string image_factory_url;
  std::chrono::milliseconds heartbeat_interval{15'000};
  std::chrono::milliseconds resync_interval{60'000};
  std::chrono::milliseconds cache_sync_timeout{30'000};
  // How long Omni's join configuration (join token, API URL) is used before it is read again.
  std::chrono::milliseconds join_config_ttl{60'000};
  // Shared views of Proxmox; the provider ID is set from info.id.
  FleetOptions fleet;
  // What steps do; the provider ID is set from info.id.
  StepOptions steps;
  RetryPolicy retry;
  GcMode gc_mode = GcMode::kReport;
  std::chrono::seconds gc_grace_period{600};
  std::chrono::milliseconds gc_interval{300'000};
  // How often the counters and gauges are brought up to date; listings (managed VMs per node,
  // held task slots) every fleet_metrics_interval.
  std::chrono::milliseconds metrics_interval{2000};
  std::chrono::milliseconds fleet_metrics_interval{15'000};
  // The Omni clients' monitor, for omni_proxmox_omni_auth_failures_total; may be null.
  const omni::CallMonitor* omni_monitor = nullptr;
};

// Checks what a caller may get wrong: InvalidArgument naming the option and the fix.
absl::Status ValidateProviderOptions(const ProviderOptions& options);

class Provider {
 public:
  // `pve` is wrapped in the limits (pve::LimitedClient); every reference must outlive the provider.
  // `leader` (optional) decides whether this replica may work; its gate should guard `pve`, `state`
  // and `management` (ClientOptions::mutation_gate), so a replica that lost its lease sends
  // nothing. Without one the provider is the only replica and always works.
  static absl::StatusOr<std::unique_ptr<Provider>> Assemble(ProviderOptions options, pve::Client& pve,
                                                            omni::StateClient& state,
                                                            omni::ManagementClient& management,
                                                            util::MetricsRegistry& metrics, const util::Clock& clock,
                                                            util::Random& random, LeaderElector* leader = nullptr);
  ~Provider();

  void Start();
  // Stops taking work: callers waiting for a task slot give up, in-flight passes finish; then a
  // leader gives its lease up, so a standby takes over at once.
  void Stop();

  ControllerHealth Health() const;
  // OK when registered and both Omni and Proxmox answered the last heartbeat, or when a healthy
  // standby (its cache in sync); else why not.
  absl::Status Readiness() const;
  // "ok" for the leader, "standby" for a replica waiting to take over.
  std::string ReadyText() const;
  LeaderElector& leader() { return *leader_; }
  const ProviderCounters& counters() const { return counters_; }
  WorkQueue& queue() { return controller_->queue(); }
  FleetView& fleet() { return *fleet_; }
  const VmPresence& presence() const { return presence_; }
  omni::ResourceCache& cache() { return cache_; }
  pve::LimitedClient& pve() { return *limited_; }
  GarbageCollector& garbage_collector() { return *gc_; }
  // Exports the counters and gauges now (the metrics loop does so every metrics_interval).
  void UpdateMetrics(bool with_listings);

 private:
  Provider(ProviderOptions options, pve::Client& pve, omni::StateClient& state, omni::ManagementClient& management,
           util::MetricsRegistry& metrics, const util::Clock& clock, util::Random& random, LeaderElector* leader);
  void MetricsLoop(std::stop_token stop);

  const ProviderOptions options_;
  std::unique_ptr<LeaderElector> own_leader_;  // without leader election: always leading
  LeaderElector* leader_;
  util::MetricsRegistry& metrics_;
  const util::Clock& clock_;
  std::unique_ptr<pve::LimitedClient> limited_;
  omni::ResourceCache cache_;
  ProviderCounters counters_;
  std::unique_ptr<FleetView> fleet_;
  VmPresence presence_;
  BootAssets assets_;
  JoinConfigCache join_;
  StepServices services_;
  RequestRecords records_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<GarbageCollector> gc_;
  std::unique_ptr<ProviderController> controller_;
  std::jthread metrics_loop_;
};

}  // namespace omni_proxmox::provider
