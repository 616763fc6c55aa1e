// SPDX-License-Identifier: Apache-2.0
#pragma once

// Leader election among the provider's replicas, with the semantics of client-go's leaderelection
// package, on a lease resource of our own in Omni (Leases.<pid>.infraprovider.sidero.dev/leader in
// the private namespace infra-provider:<pid>; spec LeaseSpec in proto/provider/machine.proto).
//   - Acquire and renew are compare-and-swap on the resource version.
//   - A candidate judges the lease expired by its own monotonic clock: lease_duration after it last
//     saw the record change. Wall clocks of different hosts are never compared.
//   - The leader renews every retry_period; once renew_deadline has passed since it sent its last
//     successful renew it steps down. The mutation gate (util::MutationGate) closes at that moment
//     even if the elector's own thread is stuck or the process was paused, so a leader stops
//     mutating before its lease can have expired for anyone else (renew_deadline < lease_duration;
//     the timing argument is in docs/state-and-ownership.md).
//   - Release() gives the lease up (holder "") so a standby takes over at once.
// With options.enabled false the elector is always the leader and the gate always open (one
// replica, as before leader election existed).
//
// Thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

#include "omni/resource.h"
#include "omni/state_client.h"
#include "util/clock.h"
#include "util/mutation_gate.h"
#include "util/random.h"

namespace omni_proxmox::provider {

struct LeaderOptions {
  bool enabled = true;                               // --leader-elect
  std::chrono::milliseconds lease_duration{15'000};  // --leader-lease-duration
  std::chrono::milliseconds renew_deadline{10'000};  // --leader-renew-deadline
  std::chrono::milliseconds retry_period{2'000};     // --leader-retry-period
  std::string identity;                              // empty: LeaderIdentity()
  // Take over at once from a holder whose process is provably gone (same kernel, same pid
  // namespace, no such pid); off, a candidate always waits for the lease to expire (tests of that
  // path run both replicas on one host).
  bool local_takeover = true;
};

// Usage errors naming the flag: durations must be positive, retry period < renew deadline <
// lease duration (client-go's rules).
absl::Status ValidateLeaderOptions(const LeaderOptions& options);

// "<host name>_<pid>_<8 random hex>": who holds the lease, for people and for the replicas.
std::string LeaderIdentity(util::Random& random);

// This process as a lease holder can be recognised by a candidate on the same host:
// "<boot id>/<pid namespace>/<pid>".
std::string ThisProcess();

struct LeaderStatus {
  bool enabled = true;
  bool leading = false;
  std::string identity;
  std::string holder;  // as last seen; "" when released or unknown
  std::int64_t transitions = 0;
  std::string last_error;  // the last failed acquire or renew
};

inline constexpr char kLeaseType[] = "Leases";
inline constexpr char kLeaseId[] = "leader";
// "Leases.<pid>.infraprovider.sidero.dev"
std::string LeaseType(std::string_view provider_id);

class LeaderElector final : public util::MutationGate {
 public:
  // `state` must not be gated by this elector (it writes the lease itself) and, with `clock` and
  // `random`, must outlive it.
  LeaderElector(LeaderOptions options, std::string provider_id, omni::StateClient& state, const util::Clock& clock,
                util::Random& random);
  ~LeaderElector() override;

  // Called on the elector's thread when this replica starts or stops leading.
  std::function<void(bool leading)> on_leading_changed;
  // Whether a process `pid` on this host and in this pid namespace exists (tests replace it).
  std::function<bool(long pid)> process_alive;

  void Start();
  // Stops campaigning; a leader keeps its lease until it expires (see Release).
  void Stop();
  // Gives the lease up when holding it (holder "", so another replica takes over at once) and
  // stops leading. Call after everything that mutates has stopped.
  absl::Status Release();

  bool Leading() const;
  absl::Status Check() const override;
  LeaderStatus Status() const;
  const std::string& identity() const { return options_.identity; }

  // One acquire-or-renew attempt now (the loop calls it every retry_period); true when this
  // replica holds the lease afterwards.
  bool TryAcquireOrRenew();

 private:
  void Run(std::stop_token stop);
  void SetLeading(bool leading);
  omni::ResourcePointer Pointer() const;
  // True when `holder`'s `holder_process` names a process of this kernel and pid namespace that
  // is gone.
  bool ProvablyGone(const std::string& holder, const std::string& holder_process) const;

  LeaderOptions options_;
  const std::string provider_id_;
  omni::StateClient& state_;
  const util::Clock& clock_;
  util::Random& random_;
  const std::string process_;

  mutable absl::Mutex mutex_;
  bool leading_ ABSL_GUARDED_BY(mutex_) = false;
  // When the last successful acquire or renew was sent: the gate is open until renew_deadline after it.
  util::Clock::MonotonicTime renew_sent_ ABSL_GUARDED_BY(mutex_){};
  std::optional<omni::Resource> observed_ ABSL_GUARDED_BY(mutex_);    // the lease as last read or written
  util::Clock::MonotonicTime observed_at_ ABSL_GUARDED_BY(mutex_){};  // when its version last changed
  std::string holder_ ABSL_GUARDED_BY(mutex_);
  std::int64_t transitions_ ABSL_GUARDED_BY(mutex_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mutex_);
  std::jthread thread_;
};

}  // namespace omni_proxmox::provider
