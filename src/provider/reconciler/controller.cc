// SPDX-License-Identifier: Apache-2.0
#include "provider/reconciler/controller.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/join_config.h"
#include "omni/specs.h"
#include "util/log.h"

namespace omni_proxmox::provider {
namespace {

bool Released(const omni::Resource& r) { return r.tearing_down() && r.metadata.finalizers.empty(); }

// The request a resource belongs to, by its machine-request label; "" when it has none.
std::string RequestOf(const omni::Resource& r) {
  auto it = r.metadata.labels.find(std::string(omni::kLabelMachineRequest));
  return it == r.metadata.labels.end() ? "" : it->second;
}

}  // namespace

ProviderController::ProviderController(ControllerOptions options, StepRunner& runner, omni::StateClient& state,
                                       omni::ResourceCache& cache, pve::Client& pve, LeaderElector& leader,
                                       const util::Clock& clock, util::Random& random)
    : options_(std::move(options)),
      runner_(runner),
      state_(state),
      cache_(cache),
      pve_(pve),
      leader_(leader),
      clock_(clock),
      queue_(
          {.workers = options_.concurrency},
          [this](const std::string& id) {
            Outcome outcome = runner_.Reconcile(id);
            if (outcome.kind == Outcome::Kind::kError) {
              util::LogContext context({{"request_id", id}});
              // A refused key does not go away by retrying: the operator must act.
              const auto level =
                  outcome.error.code() == absl::StatusCode::kUnauthenticated ? spdlog::level::err : spdlog::level::warn;
              util::Logger("provider")
                  ->log(level, "request {}: {} (will retry)", id, std::string(outcome.error.message()));
            }
            return outcome;
          },
          clock, random) {}

ProviderController::~ProviderController() { Stop(); }

void ProviderController::Start() {
  working_ = false;
  housekeeping_ = std::jthread([this](std::stop_token stop) { HousekeepingLoop(stop); });
  if (options_.gc_cycle) garbage_ = std::jthread([this](std::stop_token stop) { GarbageLoop(stop); });
}

void ProviderController::Stop() {
  if (garbage_.joinable()) {
    garbage_.request_stop();
    garbage_.join();
  }
  if (housekeeping_.joinable()) {
    housekeeping_.request_stop();
    housekeeping_.join();
  }
  cache_.Stop();
  queue_.Stop();
}

ControllerHealth ProviderController::Health() const {
  const LeaderStatus leader = leader_.Status();
  std::lock_guard lock(mutex_);
  ControllerHealth h = health_;
  h.watching = watching_ && cache_.Synced();
  h.leading = leader.leading;
  h.leader = leader.holder;
  return h;
}

absl::Status ProviderController::Register() {
  auto published = omni::PublishProviderStatus(state_, options_.info);
  std::lock_guard lock(mutex_);
  if (!published.ok()) {
    health_.omni_ok = false;
    health_.omni_error = fmt::format("cannot register InfraProviderStatus/{}: {}", options_.info.id,
                                     std::string(published.status().message()));
    return absl::Status(published.status().code(), health_.omni_error);
  }
  health_.registered = true;
  return absl::OkStatus();
}

void ProviderController::Heartbeat() {
  std::string proxmox_error;
  if (auto version = pve_.Version(); !version.ok()) {
    proxmox_error =
        fmt::format("Proxmox unreachable or not authenticated: {}", std::string(version.status().message()));
  }
  auto beat = omni::PublishHeartbeat(state_, options_.info.id, clock_.Now(), proxmox_error);
  if (!beat.ok()) {
    // Every one: Omni shows the provider disconnected ~31 s after the last beat it accepted.
    util::Logger("provider")->error("heartbeat to Omni failed: {}", std::string(beat.status().message()));
  }
  std::lock_guard lock(mutex_);
  health_.proxmox_ok = proxmox_error.empty();
  health_.proxmox_error = proxmox_error;
  health_.omni_ok = beat.ok();
  health_.omni_error = beat.ok() ? "" : std::string(beat.status().message());
}

void ProviderController::StartWatches() {
  auto log = util::Logger("provider");
  const std::string pid = options_.info.id;
  const std::string ns(omni::kNamespaceInfraProvider);
  const omni::LabelQuery ours = {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), pid)};
  // Every change to a request is a reason to reconcile it, except the echo of our own write
  // (adding our finalizer) and a resync replaying what the cache held.
  const auto on_request = [this](const omni::WatchEvent& event, bool echo) {
    if (!echo && !event.resource.metadata.id.empty()) queue_.Add(event.resource.metadata.id);
  };
  // Statuses, our state and config patches matter when Omni lets go of one being torn down, as
  // in Omni's controllers.
  const auto on_released = [this](const omni::WatchEvent& event, bool echo) {
    if (!echo && Released(event.resource)) queue_.Add(event.resource.metadata.id);
  };
  const auto on_patch = [this](const omni::WatchEvent& event, bool echo) {
    if (!echo && Released(event.resource) && !RequestOf(event.resource).empty()) {
      queue_.Add(RequestOf(event.resource));
    }
  };
  const auto on_registration = [this](const omni::WatchEvent& event, bool echo) {
    if (!echo && !RequestOf(event.resource).empty()) queue_.Add(RequestOf(event.resource));
  };
  struct Kind {
    std::string ns, type;
    omni::LabelQuery labels;
    omni::ResourceCache::Handler handler;
  };
  const Kind kinds[] = {
      {ns, std::string(omni::kTypeMachineRequest), ours, on_request},
      {ns, std::string(omni::kTypeMachineRequestStatus), ours, on_released},
      {omni::ProviderNamespace(pid), omni::ProviderMachineType(pid), {}, on_released},
      {ns, std::string(omni::kTypeConfigPatchRequest), ours, on_patch},
      {ns, std::string(omni::kTypeInfraMachineRegistration), ours, on_registration},
  };
  for (const auto& kind : kinds) {
    if (auto s = cache_.Watch(kind.ns, kind.type, kind.labels, kind.handler); !s.ok()) {
      log->warn("cannot watch {}: {}", kind.type, std::string(s.message()));
    }
  }
  std::lock_guard lock(mutex_);
  watching_ = true;
}

void ProviderController::Resync() {
  auto requests = cache_.List({std::string(omni::kNamespaceInfraProvider),
                               std::string(omni::kTypeMachineRequest),
                               {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), options_.info.id)}});
  if (!requests.ok()) return;
  for (const auto& r : *requests) queue_.Add(r.metadata.id);
}

void ProviderController::FollowLeadership(bool leading) {
  if (leading == working_) return;
  working_ = leading;
  if (leading) {
    // Everything the cache holds, at once: the previous leader may have left work half done.
    Resync();
    queue_.Start();
    return;
  }
  // In-flight passes finish (their mutations are refused by the closed gate); nothing new starts.
  queue_.Stop();
  std::lock_guard lock(mutex_);
  health_.registered = false;
  health_.omni_ok = health_.proxmox_ok = false;
}

void ProviderController::HousekeepingLoop(std::stop_token stop) {
  auto log = util::Logger("provider");
  // The watches run on every replica, so a standby's cache is warm when it takes over.
  StartWatches();
  // Workers start once the cache holds what Omni has (or after the timeout, reading Omni meanwhile),
  // so the first passes do not each make signed reads.
  if (!cache_.WaitForSync(options_.cache_sync_timeout)) {
    log->warn("Omni's resources are not all listed after {} s; starting anyway",
              std::chrono::duration_cast<std::chrono::seconds>(options_.cache_sync_timeout).count());
  }
  std::chrono::milliseconds retry{500};
  auto next_register = clock_.Monotonic();
  auto next_heartbeat = clock_.Monotonic();
  auto next_resync = clock_.Monotonic() + options_.resync_interval;
  while (!stop.stop_requested()) {
    const bool leading = leader_.Leading();
    FollowLeadership(leading);
    const auto now = clock_.Monotonic();
    if (leading && !Health().registered && now >= next_register) {
      // Registration first; retried until Omni answers (never fatal).
      if (const absl::Status registered = Register(); registered.ok()) {
        log->info("registered as infra provider '{}'", options_.info.id);
        retry = std::chrono::milliseconds{500};
        next_heartbeat = now;
      } else {
        // Omni refusing the key is the operator's to fix; unreachable is retried at warning level.
        const bool refused = registered.code() == absl::StatusCode::kUnauthenticated;
        log->log(refused ? spdlog::level::err : spdlog::level::warn, "{}", std::string(registered.message()));
        next_register = now + retry;
        retry = std::min(retry * 2, std::chrono::milliseconds{30'000});
      }
    }
    if (leading && Health().registered && now >= next_heartbeat) {
      Heartbeat();
      next_heartbeat = now + options_.heartbeat_interval;
    }
    if (leading && now >= next_resync) {
      Resync();
      next_resync = now + options_.resync_interval;
    }
    // Leadership is looked at often, so a takeover starts working within a fraction of a second.
    auto wake = std::min(next_resync, now + std::chrono::milliseconds{200});
    if (leading) wake = std::min(wake, Health().registered ? next_heartbeat : next_register);
    clock_.SleepUntil(wake, stop);
  }
}

void ProviderController::GarbageLoop(std::stop_token stop) {
  // The first cycle waits one interval, so the watches have fed the provider what it owns.
  while (!stop.stop_requested()) {
    clock_.SleepFor(options_.gc_interval, stop);
    // Only the leader collects: a standby's view may be right, but it must not delete.
    if (stop.stop_requested() || !leader_.Leading() || !Health().registered) continue;
    options_.gc_cycle();
  }
}

}  // namespace omni_proxmox::provider
