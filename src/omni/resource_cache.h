// SPDX-License-Identifier: Apache-2.0
#pragma once

// A watch-fed cache of COSI resources, as controller-runtime's informer-backed reader: each
// watched kind is bootstrapped once and then kept current by its watch, so a reconcile pass reads
// Omni's state from memory instead of making signed Gets. Our own writes update it from the
// write's reply, so the next pass starts from the version we wrote, and the watch's echo of that
// write is recognised as one. A write that conflicts is followed by a fresh read (the caller's
// read-modify-write), which the cache takes as the truth.
//
// While a kind's watch is down or still bootstrapping, reads of that kind go to Omni (and are
// remembered): the cache never answers from a copy it cannot vouch for.
//
// Thread-safe. Handlers run on the watch's thread, after the cache applied the event.

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "omni/state_client.h"
#include "util/clock.h"

namespace omni_proxmox::omni {

class ResourceCache {
 public:
  // `echo`: the event told the cache nothing new (the watch echoing our own write, or a resync
  // replaying what it held), so it is no reason to reconcile.
  using Handler = std::function<void(const WatchEvent& event, bool echo)>;

  // `state` must outlive the cache.
  explicit ResourceCache(StateClient& state);
  ~ResourceCache();  // stops the watches
  ResourceCache(const ResourceCache&) = delete;
  ResourceCache& operator=(const ResourceCache&) = delete;

  // Starts watching `ns`/`type` (resources matching `labels`), bootstrapping its contents.
  // `handler` (optional) sees every event.
  absl::Status Watch(const std::string& ns, const std::string& type, LabelQuery labels, Handler handler = nullptr);
  // Stops every watch; reads then go to Omni.
  void Stop();

  // The resource, nullopt when it does not exist.
  absl::StatusOr<std::optional<Resource>> Get(const ResourcePointer& pointer);
  // The resources of request.ns/request.type matching request.labels (Exists and Equal terms are
  // answered from the cache; other queries, or a kind out of sync, go to Omni).
  absl::StatusOr<std::vector<Resource>> List(const ListRequest& request);

  // Our own write's reply. `created`: a Create, which may start a new incarnation at version 1.
  void Stored(const Resource& written, bool created = false);
  // Our own destroy.
  void Removed(const ResourcePointer& pointer);

  // Whether every watched kind is connected and bootstrapped.
  bool Synced() const;
  // Waits until Synced() or `timeout` passes; returns Synced(). Real time: it waits for the network.
  bool WaitForSync(std::chrono::milliseconds timeout) const;
  // Resources held, for tests and metrics.
  std::size_t Size() const;

 private:
  struct KindKey {
    std::string ns, type;
    friend auto operator<=>(const KindKey&, const KindKey&) = default;
  };
  struct KindCache {
    LabelQuery labels;
    std::map<std::string, Resource> by_id;
    // Resources the watch reported destroyed, with their last version: a write's reply that
    // arrives after the Destroyed event (Omni destroying a request as soon as our finalizer is
    // gone) must not bring the resource back. Bounded: the oldest are dropped first.
    std::map<std::string, std::uint64_t> destroyed;
    std::deque<std::string> destroyed_order;
    std::unique_ptr<Watcher> watcher;
  };
  static void Bury(KindCache& kind, const Resource& resource);

  // Applies a watch event; true when it changed what the cache holds.
  bool Apply(const KindKey& key, const WatchEvent& event);
  bool SyncedLocked(const KindCache& kind) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);

  StateClient& state_;
  mutable absl::Mutex mutex_;
  std::map<KindKey, KindCache> kinds_ ABSL_GUARDED_BY(mutex_);
};

// A COSI version as a number ("undefined", or anything unparsable: 0).
std::uint64_t VersionNumber(const std::string& version);

}  // namespace omni_proxmox::omni
