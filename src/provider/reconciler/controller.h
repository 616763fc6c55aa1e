// SPDX-License-Identifier: Apache-2.0
#pragma once

// The provider's outer loop, where Omni's events enter the data path: it runs the watches that
// feed the resource cache, maps each event to the MachineRequest it concerns and queues that ID
// (the work queue's workers hand it to the step runner), and re-queues every known request now
// and then, so a missed event costs at most resync_interval. Only the leader (leader_elector.h)
// works the queue, registers with Omni, keeps the heartbeat fresh and collects garbage; a standby
// keeps its cache warm, so a takeover starts without a cold listing. Omni being unreachable is
// reported in health and retried forever; it never stops the process. Start()/Stop() from one
// thread; Health() is thread-safe.

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "omni/provider_status.h"
#include "omni/resource_cache.h"
#include "omni/state_client.h"
#include "provider/leader/leader_elector.h"
#include "provider/reconciler/step_runner.h"
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
  // How long (real time: it waits for the network) the workers wait for the cache's first full
  // listing before they start anyway (reads then go to Omni until it is in).
  std::chrono::milliseconds cache_sync_timeout{30'000};
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
  bool watching = false;  // the cache's watches are connected and bootstrapped
  bool leading = true;    // this replica holds the leader lease (always, without leader election)
  std::string leader;     // who holds it, as last seen
};

class ProviderController {
 public:
  // Every reference must outlive the controller.
  ProviderController(ControllerOptions options, StepRunner& runner, omni::StateClient& state,
                     omni::ResourceCache& cache, pve::Client& pve, LeaderElector& leader, const util::Clock& clock,
                     util::Random& random);
  ~ProviderController();

  void Start();
  void Stop();

  ControllerHealth Health() const;
  WorkQueue& queue() { return queue_; }

 private:
  void HousekeepingLoop(std::stop_token stop);
  // Starts or stops working the queue as leadership comes and goes.
  void FollowLeadership(bool leading);
  void StartWatches();
  absl::Status Register();
  void Heartbeat();
  void Resync();
  void GarbageLoop(std::stop_token stop);

  const ControllerOptions options_;
  StepRunner& runner_;
  omni::StateClient& state_;
  omni::ResourceCache& cache_;
  pve::Client& pve_;
  LeaderElector& leader_;
  const util::Clock& clock_;
  WorkQueue queue_;
  bool working_ = false;  // the queue runs (housekeeping thread only)

  mutable std::mutex mutex_;
  ControllerHealth health_;
  bool watching_ = false;  // StartWatches ran
  std::jthread housekeeping_;
  std::jthread garbage_;
};

}  // namespace omni_proxmox::provider
