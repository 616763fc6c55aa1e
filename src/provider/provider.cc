// SPDX-License-Identifier: Apache-2.0
#include "provider/provider.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "provider/fleet/fleet_metrics.h"
#include "provider/steps/steps.h"
#include "util/log.h"

namespace omni_proxmox::provider {

absl::Status ValidateProviderOptions(const ProviderOptions& options) {
  if (options.info.id.empty()) return absl::InvalidArgumentError("the provider ID is empty; set --id");
  if (options.concurrency < 1) {
    return absl::InvalidArgumentError(fmt::format("--concurrency {}: must be at least 1", options.concurrency));
  }
  if (auto s = pve::ValidateLimitOptions(options.limits); !s.ok()) return s;
  if (options.gc_interval <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("--gc-interval must be a positive duration, e.g. 5m");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Provider>> Provider::Assemble(ProviderOptions options, pve::Client& pve,
                                                             omni::StateClient& state,
                                                             omni::ManagementClient& management,
                                                             util::MetricsRegistry& metrics, const util::Clock& clock,
                                                             util::Random& random, LeaderElector* leader) {
  if (auto s = ValidateProviderOptions(options); !s.ok()) return s;
  return std::unique_ptr<Provider>(
      new Provider(std::move(options), pve, state, management, metrics, clock, random, leader));
}

namespace {
FleetOptions WithId(FleetOptions fleet, const std::string& id) {
  fleet.provider_id = id;
  return fleet;
}
StepOptions WithId(StepOptions steps, const std::string& id) {
  steps.provider_id = id;
  return steps;
}
}  // namespace

Provider::Provider(ProviderOptions options, pve::Client& pve, omni::StateClient& state,
                   omni::ManagementClient& management, util::MetricsRegistry& metrics, const util::Clock& clock,
                   util::Random& random, LeaderElector* leader)
    : options_(std::move(options)),
      own_leader_(leader != nullptr ? nullptr
                                    : std::make_unique<LeaderElector>(LeaderOptions{.enabled = false}, options_.info.id,
                                                                      state, clock, random)),
      leader_(leader != nullptr ? leader : own_leader_.get()),
      metrics_(metrics),
      clock_(clock),
      limited_(std::make_unique<pve::LimitedClient>(pve, options_.limits, clock, &metrics)),
      cache_(state),
      fleet_(std::make_unique<FleetView>(WithId(options_.fleet, options_.info.id), *limited_, limited_.get(), clock)),
      assets_(management, options_.image_factory_url),
      join_(state, options_.info.id, options_.join_config_ttl, clock),
      services_{.options = WithId(options_.steps, options_.info.id),
                .pve = *limited_,
                .fleet = *fleet_,
                .assets = assets_,
                .join = join_,
                .clock = clock,
                .random = random,
                .counters = counters_},
      records_(options_.info.id, state, cache_) {
  runner_ = std::make_unique<StepRunner>(RunnerOptions{.provider_id = options_.info.id, .retry = options_.retry},
                                         records_, ProvisionSteps(services_), TeardownSteps(services_), *fleet_,
                                         counters_, clock, random, &metrics, &presence_);
  gc_ = std::make_unique<GarbageCollector>(GarbageCollectorOptions{.provider_id = options_.info.id,
                                                                   .grace_period = options_.gc_grace_period,
                                                                   .shutdown_timeout = options_.steps.shutdown_timeout,
                                                                   .age_by_unused_time = true},
                                           *limited_, state, clock, &metrics);
  gc_->in_flight = [this] {
    std::set<std::string> ids;
    for (const auto& reservation : fleet_->ledger().Reservations()) ids.insert(reservation.request_id);
    return ids;
  };
  ControllerOptions controller{.info = options_.info,
                               .concurrency = options_.concurrency,
                               .heartbeat_interval = options_.heartbeat_interval,
                               .resync_interval = options_.resync_interval,
                               .cache_sync_timeout = options_.cache_sync_timeout,
                               .gc_cycle = nullptr,
                               .gc_interval = options_.gc_interval};
  if (options_.gc_mode != GcMode::kOff) {
    controller.gc_cycle = [this, mode = options_.gc_mode] { gc_->RunCycle(mode); };
  }
  controller_ =
      std::make_unique<ProviderController>(controller, *runner_, state, cache_, *limited_, *leader_, clock, random);
  // A request that found its node's task slots taken comes back when its turn in the queue comes.
  limited_->SetSlotFreedListener([this](const std::string& request_id) { controller_->queue().Add(request_id); });
  // A request waiting on a task comes back when the task should be done (a shared download that
  // ended, or a kind of task whose duration was just learned).
  fleet_->SetTaskWakeListener([this](const std::string& request_id, std::chrono::milliseconds after) {
    controller_->queue().AddAfter(request_id, after);
  });
}

Provider::~Provider() {
  Stop();
  limited_->SetSlotFreedListener(nullptr);
  fleet_->SetTaskWakeListener(nullptr);
}

void Provider::Start() {
  leader_->Start();
  controller_->Start();
  metrics_loop_ = std::jthread([this](std::stop_token stop) { MetricsLoop(stop); });
}

void Provider::Stop() {
  limited_->Close();  // workers waiting for a task slot give up instead of holding up the shutdown
  if (metrics_loop_.joinable()) {
    metrics_loop_.request_stop();
    metrics_loop_.join();
  }
  controller_->Stop();
  if (auto s = leader_->Release(); !s.ok()) {
    util::Logger("leader")->warn("cannot release the leader lease (a standby takes over when it expires): {}",
                                 std::string(s.message()));
  }
}

ControllerHealth Provider::Health() const { return controller_->Health(); }

std::string Provider::ReadyText() const {
  if (!controller_->Health().leading) return "standby";
  // A missing VM is the operator's to act on, but the provider itself is ready: answering 503
  // would have an orchestrator restart or unroute a provider that can do nothing about it. The
  // text names it; omni_proxmox_vms_missing and the request's status carry it too.
  const auto missing = presence_.Missing();
  if (missing.empty()) return "ok";
  std::vector<std::string> names;
  for (const auto& vm : missing) {
    names.push_back(fmt::format("{} (last seen on node {} as VM {})", vm.request_id, vm.node, vm.vmid));
  }
  return fmt::format("ok; {} provisioned VM{} missing, not re-created: {}", missing.size(),
                     missing.size() == 1 ? "" : "s", fmt::join(names, ", "));
}

absl::Status Provider::Readiness() const {
  const auto health = controller_->Health();
  if (!health.leading) {
    // A standby is healthy while it follows Omni; it writes nothing, so Proxmox is the leader's.
    if (!health.watching) return absl::UnavailableError("standby, but not in sync with Omni's resources yet");
    return absl::OkStatus();
  }
  if (!health.registered) return absl::UnavailableError("not registered with Omni yet: " + health.omni_error);
  if (!health.omni_ok) return absl::UnavailableError("Omni: " + health.omni_error);
  if (!health.proxmox_ok) return absl::UnavailableError("Proxmox: " + health.proxmox_error);
  return absl::OkStatus();
}

void Provider::UpdateMetrics(bool with_listings) {
  if (with_listings) {
    auto changed = UpdateFleetMetrics(*limited_, cache_, options_.info.id, join_.OurScope(), metrics_, &presence_);
    if (!changed.ok()) {
      util::Logger("provider")->debug("fleet metrics: {}", std::string(changed.status().message()));
    } else {
      // A VM gone or back: its request's pass writes the status (the runner owns Omni's side).
      for (const auto& id : *changed) controller_->queue().Add(id);
    }
    limited_->PollHeldTasks();
  }
  // The counters are monotonic totals, exported as counters that catch up to them.
  const auto count_up_to = [this](const char* name, const char* help, double total) {
    auto& counter = metrics_.GetCounter(name, help);
    if (total > counter.Value()) counter.Increment(total - counter.Value());
  };
  count_up_to("omni_proxmox_requests_provisioned_total", "MachineRequests provisioned", counters_.provisioned);
  count_up_to("omni_proxmox_requests_deprovisioned_total", "MachineRequests torn down", counters_.deprovisioned);
  count_up_to("omni_proxmox_vms_created_total", "VMs created", counters_.vms_created);
  count_up_to("omni_proxmox_vms_adopted_total", "VMs found by their markers and adopted", counters_.vms_adopted);
  count_up_to("omni_proxmox_vms_deleted_total", "VMs deleted", counters_.vms_deleted);
  count_up_to("omni_proxmox_failures_total", "Requests that reached stage FAILED", counters_.failures);
  metrics_.GetGauge("omni_proxmox_teardowns_retrying", "MachineRequests whose teardown retries a failed step")
      .Set(runner_->TeardownsRetrying());
  if (options_.omni_monitor != nullptr) {
    count_up_to("omni_proxmox_omni_auth_failures_total",
                "Omni calls refused as Unauthenticated (invalid signature: the key was destroyed or is another Omni's)",
                static_cast<double>(options_.omni_monitor->auth_failures()));
  }
  metrics_.GetGauge("omni_proxmox_queue_depth", "MachineRequests queued or in progress")
      .Set(static_cast<double>(controller_->queue().Size()));
  const auto health = controller_->Health();
  metrics_.GetGauge("omni_proxmox_omni_up", "1 when the last Omni heartbeat succeeded").Set(health.omni_ok);
  metrics_.GetGauge("omni_proxmox_proxmox_up", "1 when the last Proxmox check succeeded").Set(health.proxmox_ok);
  const LeaderStatus leader = leader_->Status();
  metrics_.GetGauge("omni_proxmox_leader", "1 on the replica that holds the leader lease, 0 on standbys")
      .Set(leader.leading);
  metrics_.GetGauge("omni_proxmox_leader_transitions", "Times the leader lease changed hands, as the lease records it")
      .Set(static_cast<double>(leader.transitions));
}

void Provider::MetricsLoop(std::stop_token stop) {
  auto next_listing = clock_.Monotonic();
  while (!stop.stop_requested()) {
    const bool listings = clock_.Monotonic() >= next_listing;
    UpdateMetrics(listings);
    if (listings) next_listing = clock_.Monotonic() + options_.fleet_metrics_interval;
    clock_.SleepFor(options_.metrics_interval, stop);
  }
}

}  // namespace omni_proxmox::provider
