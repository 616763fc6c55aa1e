#include "provider/reconciler/controller.h"

#include <condition_variable>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/join_config.h"
#include "omni/specs.h"
#include "util/log.h"

namespace omni_proxmox::provider {

ProviderController::ProviderController(ControllerOptions options, MachineReconciler& reconciler,
                                       omni::StateClient& state, pve::Client& pve, const util::Clock& clock,
                                       util::Random& random)
    : options_(std::move(options)),
      reconciler_(reconciler),
      state_(state),
      pve_(pve),
      clock_(clock),
      queue_(
          {.workers = options_.concurrency},
          [this](const std::string& id) {
            // Every line logged while this request is reconciled carries its ID; steps refine "step".
            util::LogContext context({{"request_id", id}, {"step", "reconcile"}});
            Outcome outcome = reconciler_.Reconcile(id);
            if (outcome.kind == Outcome::Kind::kError) {
              util::Logger("provider")->warn("request {}: {} (will retry)", id, std::string(outcome.error.message()));
            }
            return outcome;
          },
          clock, random) {
  reconciler_.wake_request = [this](const std::string& id) { queue_.Add(id); };
}

ProviderController::~ProviderController() {
  Stop();
  reconciler_.wake_request = nullptr;  // the reconciler may outlive this controller and its queue
}

void ProviderController::Start() {
  queue_.Start();
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
  {
    std::lock_guard lock(mutex_);
    request_watch_.reset();
    status_watch_.reset();
    registration_watch_.reset();
  }
  queue_.Stop();
}

ControllerHealth ProviderController::Health() const {
  std::lock_guard lock(mutex_);
  ControllerHealth h = health_;
  h.watching = request_watch_ && request_watch_->Health().connected;
  return h;
}

bool ProviderController::Register() {
  auto published = omni::PublishProviderStatus(state_, options_.info);
  std::lock_guard lock(mutex_);
  if (!published.ok()) {
    health_.omni_ok = false;
    health_.omni_error = fmt::format("cannot register InfraProviderStatus/{}: {}", options_.info.id,
                                     std::string(published.status().message()));
    return false;
  }
  health_.registered = true;
  return true;
}

void ProviderController::Heartbeat() {
  std::string proxmox_error;
  if (auto version = pve_.Version(); !version.ok()) {
    proxmox_error =
        fmt::format("Proxmox unreachable or not authenticated: {}", std::string(version.status().message()));
  }
  auto beat = omni::PublishHeartbeat(state_, options_.info.id, clock_.Now(), proxmox_error);
  std::lock_guard lock(mutex_);
  health_.proxmox_ok = proxmox_error.empty();
  health_.proxmox_error = proxmox_error;
  health_.omni_ok = beat.ok();
  health_.omni_error = beat.ok() ? "" : std::string(beat.status().message());
}

void ProviderController::StartWatches() {
  auto log = util::Logger("provider");
  const std::string pid = options_.info.id;
  omni::WatchRequest requests{std::string(omni::kNamespaceInfraProvider),
                              std::string(omni::kTypeMachineRequest),
                              std::nullopt,
                              {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), pid)},
                              true};
  // Every change to a request drops the reconciler's memo of it before the request is queued; a
  // broken stream drops them all, since events may be missed until it resumes.
  auto request_watch = state_.Watch(requests, [this](const omni::WatchEvent& event) {
    if (event.type == omni::EventType::kCreated || event.type == omni::EventType::kUpdated ||
        event.type == omni::EventType::kDestroyed) {
      reconciler_.Forget(event.resource.metadata.id, event.resource.metadata.version);
      queue_.Add(event.resource.metadata.id);
    } else if (event.type == omni::EventType::kErrored) {
      reconciler_.ForgetAll();
    }
  });
  // A status or registration that changes is mapped to its request, as Omni's controllers do.
  omni::WatchRequest statuses{std::string(omni::kNamespaceInfraProvider),
                              std::string(omni::kTypeMachineRequestStatus),
                              std::nullopt,
                              {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), pid)},
                              false};
  auto status_watch = state_.Watch(statuses, [this](const omni::WatchEvent& event) {
    if (event.resource.tearing_down()) reconciler_.Forget(event.resource.metadata.id);
    if (event.resource.tearing_down() && event.resource.metadata.finalizers.empty()) {
      queue_.Add(event.resource.metadata.id);
    }
  });
  omni::WatchRequest registrations{std::string(omni::kNamespaceInfraProvider),
                                   std::string(omni::kTypeInfraMachineRegistration),
                                   std::nullopt,
                                   {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), pid)},
                                   false};
  auto registration_watch = state_.Watch(registrations, [this](const omni::WatchEvent& event) {
    auto it = event.resource.metadata.labels.find(std::string(omni::kLabelMachineRequest));
    if (it != event.resource.metadata.labels.end()) queue_.Add(it->second);
  });
  std::lock_guard lock(mutex_);
  if (request_watch.ok()) {
    request_watch_ = std::move(*request_watch);
  } else {
    log->warn("cannot watch MachineRequests yet: {}", std::string(request_watch.status().message()));
  }
  if (status_watch.ok()) status_watch_ = std::move(*status_watch);
  if (registration_watch.ok()) registration_watch_ = std::move(*registration_watch);
}

void ProviderController::Resync() {
  omni::ListRequest list{std::string(omni::kNamespaceInfraProvider),
                         std::string(omni::kTypeMachineRequest),
                         {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), options_.info.id)}};
  auto requests = state_.List(list);
  if (!requests.ok()) return;
  for (const auto& r : *requests) queue_.Add(r.metadata.id);
}

void ProviderController::HousekeepingLoop(std::stop_token stop) {
  auto log = util::Logger("provider");
  std::mutex wait_mutex;
  std::condition_variable_any wait;
  const auto sleep_for = [&](std::chrono::milliseconds d) {
    std::unique_lock lock(wait_mutex);
    wait.wait_for(lock, stop, d, [] { return false; });
  };
  // Registration first; retried until Omni answers (never fatal).
  std::chrono::milliseconds retry{500};
  while (!stop.stop_requested() && !Register()) {
    log->warn("{}", Health().omni_error);
    sleep_for(retry);
    retry = std::min(retry * 2, std::chrono::milliseconds{30'000});
  }
  if (stop.stop_requested()) return;
  log->info("registered as infra provider '{}'", options_.info.id);
  StartWatches();
  auto next_heartbeat = clock_.Monotonic();
  auto next_resync = clock_.Monotonic() + options_.resync_interval;
  while (!stop.stop_requested()) {
    const auto now = clock_.Monotonic();
    if (now >= next_heartbeat) {
      Heartbeat();
      next_heartbeat = now + options_.heartbeat_interval;
    }
    if (now >= next_resync) {
      bool need_watch = false;
      {
        std::lock_guard lock(mutex_);
        need_watch = request_watch_ == nullptr;
      }
      if (need_watch) StartWatches();
      Resync();
      next_resync = now + options_.resync_interval;
    }
    sleep_for(std::chrono::milliseconds{200});
  }
}

void ProviderController::GarbageLoop(std::stop_token stop) {
  std::mutex wait_mutex;
  std::condition_variable_any wait;
  const auto sleep_for = [&](std::chrono::milliseconds d) {
    std::unique_lock lock(wait_mutex);
    wait.wait_for(lock, stop, d, [] { return false; });
  };
  // The first cycle waits one interval, so the watches have fed the reconciler what it owns.
  while (!stop.stop_requested()) {
    sleep_for(options_.gc_interval);
    if (stop.stop_requested() || !Health().registered) continue;
    options_.gc_cycle();
  }
}

}  // namespace omni_proxmox::provider
