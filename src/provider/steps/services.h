// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the steps work with: the Proxmox client, the fleet's shared views of Proxmox, Omni's boot
// assets and join configuration, and the provider's counters. One set per provider, shared by
// every worker; every member is thread-safe.

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "omni/join_config.h"
#include "omni/management_client.h"
#include "omni/schematic.h"
#include "omni/state_client.h"
#include "provider/fleet/fleet_view.h"
#include "provider/ownership/markers.h"
#include "pve/client.h"
#include "util/clock.h"
#include "util/random.h"

namespace omni_proxmox::provider {

// Monotonic totals, exported as counters.
struct ProviderCounters {
  std::atomic<long> provisioned{0};
  std::atomic<long> deprovisioned{0};
  std::atomic<long> vms_created{0};
  std::atomic<long> vms_adopted{0};
  std::atomic<long> vms_deleted{0};
  std::atomic<long> failures{0};  // requests that reached stage FAILED
};

// Talos schematics and ISO URLs through Omni (omni::BootAssetResolver), one call at a time. A
// schematic's ID is the hash of its content, so the one Omni returned for a (schematic, Talos
// version) stands for the life of the process: a set of 100 machines makes one call, not 100.
class BootAssets {
 public:
  BootAssets(omni::ManagementClient& management, std::string image_factory_url)
      : resolver_(management, std::move(image_factory_url)) {}
  absl::StatusOr<std::string> EnsureSchematic(std::string_view yaml, std::string_view talos_version);
  absl::StatusOr<omni::BootAsset> Resolve(const omni::BootAssetRequest& request);

 private:
  absl::Mutex mutex_;
  omni::BootAssetResolver resolver_ ABSL_GUARDED_BY(mutex_);
  std::map<std::pair<std::string, std::string>, std::string> schematics_ ABSL_GUARDED_BY(mutex_);
};

// Omni's join configuration (join token, API URL), read at most once per `ttl`.
class JoinConfigCache {
 public:
  JoinConfigCache(omni::StateClient& state, std::string provider_id, std::chrono::milliseconds ttl,
                  const util::Clock& clock)
      : state_(state), provider_id_(std::move(provider_id)), ttl_(ttl), clock_(clock) {}
  absl::StatusOr<omni::ConnectionParams> Get();
  // This provider of this Omni (markers.h): what every VM and ISO we make is marked with.
  absl::StatusOr<Scope> OurScope();

 private:
  omni::StateClient& state_;
  const std::string provider_id_;
  const std::chrono::milliseconds ttl_;
  const util::Clock& clock_;
  absl::Mutex mutex_;
  std::optional<omni::ConnectionParams> params_ ABSL_GUARDED_BY(mutex_);
  util::Clock::MonotonicTime fetched_ ABSL_GUARDED_BY(mutex_){};
};

struct StepOptions {
  std::string provider_id = "proxmox";
  // Put the request ID into join tokens, so a machine registers with its request (Omni's
  // WithEncodeRequestIDsIntoTokens) and a wrong join config is refused.
  bool encode_request_ids = true;
  // Graceful shutdown before delete; Proxmox force-stops after it.
  std::chrono::seconds shutdown_timeout{60};
  // How soon a request that found its node's task slots taken looks again if no freed slot woke
  // it first.
  std::chrono::milliseconds slot_recheck{2000};
  // How soon a step waiting on a lock or an event Proxmox does not announce looks again.
  std::chrono::milliseconds lock_recheck{1000};
};

struct StepServices {
  StepOptions options;
  pve::Client& pve;
  FleetView& fleet;
  BootAssets& assets;
  JoinConfigCache& join;
  const util::Clock& clock;
  util::Random& random;
  ProviderCounters& counters;
};

}  // namespace omni_proxmox::provider
