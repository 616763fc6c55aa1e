// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "omni/client_options.h"
#include "omni/resource.h"

// The COSI state client (cosi.resource.State) as an infrastructure provider uses it against Omni.
// Errors keep gRPC's codes: NotFound, AlreadyExists, FailedPrecondition (version conflict, pending
// finalizers, invalid bookmark), PermissionDenied (owner mismatch or forbidden by Omni), Unauthenticated
// (signature refused), Unavailable (Omni unreachable).
namespace omni_proxmox::omni {

struct LabelTerm {
  enum class Op { kExists = 0, kEqual = 1, kIn = 3, kLt = 4, kLte = 5, kLtNumeric = 6, kLteNumeric = 7 };
  std::string key;
  Op op = Op::kExists;
  std::vector<std::string> values;
  bool invert = false;

  static LabelTerm Exists(std::string key) { return {std::move(key), Op::kExists, {}, false}; }
  static LabelTerm Equal(std::string key, std::string value) {
    return {std::move(key), Op::kEqual, {std::move(value)}, false};
  }
};
// Terms are ANDed.
using LabelQuery = std::vector<LabelTerm>;

struct ListRequest {
  std::string ns;
  std::string type;
  LabelQuery labels;
};

enum class EventType { kCreated, kUpdated, kDestroyed, kBootstrapped, kErrored };

struct WatchEvent {
  EventType type = EventType::kCreated;
  Resource resource;  // for kBootstrapped/kErrored: empty
  std::optional<Resource> old;
  std::string error;  // kErrored only
};

struct WatchRequest {
  std::string ns;
  std::string type;
  std::optional<std::string> id;  // unset: the whole kind
  LabelQuery labels;
  // Kind watches: replay existing resources as kCreated, then one kBootstrapped.
  bool bootstrap_contents = true;
};

// Observable state of a watch, for the provider's health report.
struct WatchHealth {
  bool connected = false;     // the stream is established
  bool bootstrapped = false;  // the initial (or resync) contents have been delivered
  long reconnects = 0;        // stream re-opens after errors
  long resyncs = 0;           // full re-reads (no usable bookmark)
  std::string last_error;     // empty after a successful (re)connect
};

// Callback for watch events; runs on the watch's own thread, one event at a time.
using WatchCallback = std::function<void(const WatchEvent&)>;

// A running watch. Destroying it cancels the stream and joins its thread. Thread-safe.
class Watcher {
 public:
  virtual ~Watcher() = default;
  virtual WatchHealth Health() const = 0;
};

// Thread-safe.
class StateClient {
 public:
  virtual ~StateClient() = default;

  virtual absl::StatusOr<Resource> Get(const ResourcePointer& pointer) = 0;
  virtual absl::StatusOr<std::vector<Resource>> List(const ListRequest& request) = 0;
  // Sends version "undefined" and metadata.owner = options.owner = `owner`, and `created`/`updated`
  // set to now (ClientOptions::clock) where the resource leaves them unset, as the Go client does:
  // Omni keeps what a Create sends. Returns the stored resource.
  virtual absl::StatusOr<Resource> Create(const Resource& resource, std::string_view owner) = 0;
  // REQUIRES: resource.metadata.version is the current version. Sends owner in options and metadata;
  // expected_phase unset means "any phase". Returns the stored resource (new version).
  virtual absl::StatusOr<Resource> Update(const Resource& resource, std::string_view owner,
                                          std::optional<std::string_view> expected_phase = kPhaseRunning) = 0;
  virtual absl::Status Destroy(const ResourcePointer& pointer, std::string_view owner) = 0;
  // Marks the resource tearingDown; true when it has no finalizers left (ready to destroy). Falls back to
  // Get+Update on servers without the Teardown RPC.
  virtual absl::StatusOr<bool> Teardown(const ResourcePointer& pointer, std::string_view owner) = 0;
  // Finalizer-only updates (e.g. on MachineRequests): everything except finalizers is sent back exactly as
  // read, with the current owner and no expected phase. Retries version conflicts. No-op if already
  // present / absent.
  virtual absl::StatusOr<Resource> AddFinalizer(const ResourcePointer& pointer, std::string_view finalizer) = 0;
  virtual absl::StatusOr<Resource> RemoveFinalizer(const ResourcePointer& pointer, std::string_view finalizer) = 0;
  // Starts a watch that resumes from its last bookmark after stream errors (re-signed, capped backoff) and
  // falls back to a full resync (replay + synthesized kDestroyed for resources that vanished meanwhile) when
  // no bookmark is usable. It never gives up; see Watcher::Health().
  virtual absl::StatusOr<std::unique_ptr<Watcher>> Watch(WatchRequest request, WatchCallback callback) = 0;

  // Read-modify-write with conflict retry: Get, `mutate`, Update; repeats on IsRetryableWrite errors up
  // to ClientOptions::conflict_attempts. An error from `mutate` aborts and is returned.
  absl::StatusOr<Resource> Modify(const ResourcePointer& pointer, std::string_view owner,
                                  const std::function<absl::Status(Resource&)>& mutate,
                                  std::optional<std::string_view> expected_phase = kPhaseRunning);
  // Creates `desired`, or updates the existing resource's spec, labels and annotations to match it.
  absl::StatusOr<Resource> CreateOrUpdate(const Resource& desired, std::string_view owner);

 protected:
  int conflict_attempts_ = 10;
};

// Whether a failed read-modify-write may simply be repeated from a fresh read: a version conflict
// (FailedPrecondition) or a write throttled by Omni's rate limiter (DeadlineExceeded).
inline bool IsRetryableWrite(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition || status.code() == absl::StatusCode::kDeadlineExceeded;
}

// A client over gRPC (signed calls). Validates the endpoint and the key up front: a malformed, expired,
// non-Ed25519 or (with require_infra_provider_key) non-provider key is InvalidArgument/FailedPrecondition.
// Connecting is lazy: an unreachable Omni shows up as Unavailable on calls and in watch health.
absl::StatusOr<std::unique_ptr<StateClient>> MakeGrpcStateClient(const ClientOptions& options);

}  // namespace omni_proxmox::omni
