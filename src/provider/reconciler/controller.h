#pragma once

// The provider's outer loop: registers with Omni, keeps the heartbeat fresh, watches the
// resources that matter and feeds MachineRequest IDs to the work queue, whose workers run
// MachineReconciler. Omni being unreachable is reported in health and retried forever; it
// never stops the process. Start()/Stop() from one thread; Health() is thread-safe.

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "omni/provider_status.h"
#include "omni/state_client.h"
#include "provider/reconciler/machine_reconciler.h"
#include "provider/reconciler/work_queue.h"
#include "pve/client.h"
#include "util/clock.h"
#include "util/random.h"

namespace omni_proxmox::provider {

struct ControllerOptions {
  omni::ProviderInfo info;  // id, name, description, icon, schema, version
  int concurrency = 8;
  std::chrono::milliseconds heartbeat_interval{15'000};
  std::chrono::milliseconds resync_interval{60'000};
  // Garbage collection (provider/gc), run on its own thread every gc_interval once registered, so
  // a slow delete never delays the heartbeat. Empty: no garbage collection.
  std::function<void()> gc_cycle;
  std::chrono::milliseconds gc_interval{300'000};
};

struct ControllerHealth {
  bool registered = false;  // InfraProviderStatus written
  bool omni_ok = false;     // last Omni call (heartbeat) succeeded
  bool proxmox_ok = false;  // last Proxmox health check succeeded
  std::string omni_error;
  std::string proxmox_error;
  bool watching = false;  // the MachineRequest watch is connected
};

class ProviderController {
 public:
  ProviderController(ControllerOptions options, MachineReconciler& reconciler, omni::StateClient& state,
                     pve::Client& pve, const util::Clock& clock, util::Random& random);
  ~ProviderController();

  void Start();
  void Stop();

  ControllerHealth Health() const;
  WorkQueue& queue() { return queue_; }

 private:
  void HousekeepingLoop(std::stop_token stop);
  void StartWatches();
  bool Register();
  void Heartbeat();
  void Resync();
  void GarbageLoop(std::stop_token stop);

  const ControllerOptions options_;
  MachineReconciler& reconciler_;
  omni::StateClient& state_;
  pve::Client& pve_;
  const util::Clock& clock_;
  WorkQueue queue_;

  mutable std::mutex mutex_;
  ControllerHealth health_;
  std::unique_ptr<omni::Watcher> request_watch_;
  std::unique_ptr<omni::Watcher> status_watch_;
  std::unique_ptr<omni::Watcher> registration_watch_;
  std::jthread housekeeping_;
  std::jthread garbage_;
};

}  // namespace omni_proxmox::provider
