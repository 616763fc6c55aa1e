// SPDX-License-Identifier: Apache-2.0
#pragma once

// In-memory COSI state with the semantics of cosi-project/runtime's inmem state
// (pkg/state/impl/inmem/collection.go): versions, owners, phases, finalizers, label and ID
// queries, Teardown, and Watch with bootstrap, aggregation, tombstone events and bookmarks.
// It knows nothing about gRPC or protobuf, so its rules can be tested with plain values;
// the gRPC layer (state_service) maps Resource to and from cosi.resource.Resource.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "util/clock.h"

namespace omni_proxmox::sim::omni {

enum class Phase { kRunning, kTearingDown };

// "running" / "tearingDown", the wire spelling.
const char* PhaseName(Phase phase);
// Parses the wire spelling; anything else (including "") is InvalidArgument, as in RT.
absl::StatusOr<Phase> ParsePhase(const std::string& text);

using Labels = std::map<std::string, std::string>;

// One stored resource. `version` 0 means "undefined" (never stored).
struct Resource {
  std::string ns;
  std::string type;
  std::string id;
  std::uint64_t version = 0;
  std::string owner;
  Phase phase = Phase::kRunning;
  util::Clock::SystemTime created{};
  util::Clock::SystemTime updated{};
  std::vector<std::string> finalizers;
  Labels labels;
  Labels annotations;
  std::string proto_spec;  // opaque bytes: the typed spec
  std::string yaml_spec;   // opaque text: a rendering for humans

  bool HasFinalizer(const std::string& finalizer) const;
  // A metadata-only resource with an empty ID, carried by BOOTSTRAPPED/NOOP events.
  static Resource Tombstone(std::string ns, std::string type);
};

// The ops of cosi.resource.LabelTerm.Operation (same numbering as the wire enum).
enum class LabelOp {
  kExists = 0,
  kEqual = 1,
  kNotExists = 2,  // deprecated on the wire: means EXISTS inverted
  kIn = 3,
  kLt = 4,
  kLte = 5,
  kLtNumeric = 6,
  kLteNumeric = 7,
};

struct LabelTerm {
  std::string key;
  LabelOp op = LabelOp::kExists;
  std::vector<std::string> values;
  bool invert = false;

  bool Matches(const Labels& labels) const;
};

// Terms are ANDed.
struct LabelQuery {
  std::vector<LabelTerm> terms;

  bool Matches(const Labels& labels) const;
};

// Which resources a List or kind Watch returns: any label query matches (OR, none = all),
// and the ID matches the RE2 regexp when one is given.
struct ResourceFilter {
  std::vector<LabelQuery> label_queries;
  std::string id_regexp;  // empty = any ID

  // InvalidArgument when the regexp does not compile.
  absl::Status Validate() const;
  bool Matches(const Resource& resource) const;
};

enum class EventType { kCreated = 0, kUpdated = 1, kDestroyed = 2, kBootstrapped = 3, kErrored = 4, kNoop = 5 };

struct Event {
  EventType type = EventType::kCreated;
  Resource resource;
  std::optional<Resource> old;  // UPDATED only
  std::string error;            // ERRORED only
  std::string bookmark;         // opaque; empty when the event has none
};

struct WatchOptions {
  // Set: watch one resource (first event is its current state: CREATED or a DESTROYED tombstone).
  // Unset: watch the whole kind.
  std::optional<std::string> id;
  bool bootstrap_contents = false;  // kind only: CREATED for each item, then BOOTSTRAPPED
  int tail_events = 0;
  ResourceFilter filter;  // kind only
  bool aggregated = false;
  std::optional<std::string> start_from_bookmark;
  bool bootstrap_bookmark = false;  // kind only: a NOOP event carrying the current bookmark
};

class StateStore;

// One open watch. Confined to the thread that reads it; the store may be used concurrently.
class Watcher {
 public:
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Waits up to `wait` for events. Returns the next batch: one event, or several when the
  // watch is aggregated. An empty batch means nothing arrived in time, or the watch was
  // cancelled (see cancelled()).
  std::vector<Event> Next(std::chrono::milliseconds wait);
  // Makes a blocked Next() return; thread-safe.
  void Cancel();
  bool cancelled() const;

 private:
  friend class StateStore;
  Watcher(StateStore& store, std::string ns, std::string type, WatchOptions options);

  StateStore& store_;
  std::string ns_;
  std::string type_;
  WatchOptions options_;
  std::int64_t pos_ = 0;                  // next event position to read in the collection log
  std::deque<std::vector<Event>> ready_;  // batches computed at open (bootstrap, initial event)
  bool overrun_ = false;                  // the log moved past pos_: the watch ends with ERRORED
  std::atomic<bool> cancelled_{false};
};

// Thread-safe. Every mutation bumps a change counter and wakes watchers and WaitUntil().
class StateStore {
 public:
  // `cookie` distinguishes bookmarks of different stores (a real restart loses them).
  // `log_capacity` events are kept per collection for watches to resume from.
  StateStore(const util::Clock& clock, std::uint64_t cookie, std::size_t log_capacity = 10000);
  ~StateStore();

  absl::StatusOr<Resource> Get(const std::string& ns, const std::string& type, const std::string& id) const;
  // Sorted by ID.
  absl::StatusOr<std::vector<Resource>> List(const std::string& ns, const std::string& type,
                                             const ResourceFilter& filter = {}) const;
  // Stores version 1 with `owner`. `resource.owner` must be empty or equal `owner`. The store
  // stamps `created` and `updated` with its clock unless `keep_timestamps`: a COSI Create keeps
  // the ones the client sent (Omni keeps a client's `updated: 1970-01-01`, section 8).
  absl::StatusOr<Resource> Create(Resource resource, const std::string& owner, bool keep_timestamps = false);
  // `resource.version` must equal the stored version (FailedPrecondition otherwise); `owner` must
  // equal the stored owner (PermissionDenied); a set `expected_phase` must equal the stored phase
  // (InvalidArgument). Stores version+1 and returns the stored copy.
  absl::StatusOr<Resource> Update(Resource resource, const std::string& owner,
                                  std::optional<Phase> expected_phase = Phase::kRunning);
  // Owner must match; refused with FailedPrecondition while any finalizer remains.
  absl::Status Destroy(const std::string& ns, const std::string& type, const std::string& id, const std::string& owner);
  // Moves the resource to tearingDown (an UPDATED event if it was running) and answers whether
  // it has no finalizers left (destroy-ready).
  absl::StatusOr<bool> Teardown(const std::string& ns, const std::string& type, const std::string& id,
                                const std::string& owner);

  // FailedPrecondition for an unknown or too old bookmark, InvalidArgument for contradictory options.
  absl::StatusOr<std::unique_ptr<Watcher>> Watch(const std::string& ns, const std::string& type, WatchOptions options);

  // Read-modify-write helpers for the stand-in's own controllers (they bypass owner checks the
  // way Omni's controllers write their own outputs). `mutate` returns false to skip the write.
  absl::StatusOr<Resource> Modify(const std::string& ns, const std::string& type, const std::string& id,
                                  const std::function<bool(Resource&)>& mutate);

  // Blocks until `predicate` holds (re-checked after each mutation) or `timeout` passes.
  bool WaitUntil(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) const;
  // What a real Omni restart does to in-memory state: bookmarks issued so far become invalid
  // (FailedPrecondition on resume) and every resource in `ephemeral_ns` is gone, without events.
  void ForgetAsIfRestarted(std::uint64_t new_cookie, const std::string& ephemeral_ns);
  // Every stored resource outside `skip_ns`, for a snapshot (the stand-in's --state-dir).
  std::vector<Resource> Export(const std::string& skip_ns) const;
  // Puts a resource back as it was exported (version, owner, times kept), without an event.
  // Meant for loading a snapshot into a store that has not served yet.
  void Import(Resource resource);
  // Wakes every watcher so it can notice cancellation (used at server shutdown).
  void WakeAll();
  std::uint64_t change_count() const;
  // Called with every event the store publishes (Create, Update, Teardown, Destroy, Modify), under
  // the store's lock at the moment the change is applied; it must not call back into the store.
  // Set before the store is shared between threads.
  void SetPublishHook(std::function<void(const Event&)> hook) { publish_hook_ = std::move(hook); }

 private:
  friend class Watcher;
  struct Collection {
    std::map<std::string, Resource> items;
    std::deque<Event> log;   // the last log_capacity events
    std::int64_t first = 0;  // position of log.front()
    std::int64_t write_pos = 0;
  };
  using Key = std::pair<std::string, std::string>;

  Collection& CollectionFor(const std::string& ns, const std::string& type);  // REQUIRES: mutex_ held
  const Collection* FindCollection(const std::string& ns, const std::string& type) const;
  void Publish(Collection& collection, Event event);  // REQUIRES: mutex_ held
  std::string EncodeBookmark(std::int64_t pos) const;
  std::optional<std::int64_t> DecodeBookmark(const std::string& bookmark) const;

  const util::Clock& clock_;
  std::uint64_t cookie_;  // guarded by mutex_ after construction
  const std::size_t log_capacity_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<Key, Collection> collections_;
  std::uint64_t change_count_ = 0;
  std::uint64_t wake_epoch_ = 0;
  std::function<void(const Event&)> publish_hook_;
};

}  // namespace omni_proxmox::sim::omni
