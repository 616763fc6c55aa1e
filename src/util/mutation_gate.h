// SPDX-License-Identifier: Apache-2.0
#pragma once

// Whether this process may change the world (Proxmox VMs and storage, Omni resources) right now.
// With two replicas, only the one holding the leader lease may, and only while that lease cannot
// have expired for the others. The Proxmox and Omni clients ask it as late as they can, right
// before a mutating request goes out, so a replica that was paused (SIGSTOP, a VM freeze) and lost
// its lease meanwhile sends nothing after it wakes.
//
// Thread-safe: Check() is called from every worker.

#include <atomic>

#include "absl/status/status.h"

namespace omni_proxmox::util {

class MutationGate {
 public:
  virtual ~MutationGate() = default;
  // OK to send a mutation now; otherwise why not (Aborted, naming the lease and its holder).
  virtual absl::Status Check() const = 0;
};

// A gate that asks another one, bound after the clients it guards were made (the leader elector
// needs a client of its own before it exists). Closed until bound.
class ForwardingGate final : public MutationGate {
 public:
  void Bind(const MutationGate* target) { target_.store(target); }
  absl::Status Check() const override {
    const MutationGate* target = target_.load();
    return target != nullptr ? target->Check() : absl::AbortedError("no leader election has run yet");
  }

 private:
  std::atomic<const MutationGate*> target_{nullptr};
};

}  // namespace omni_proxmox::util
