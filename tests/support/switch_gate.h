// SPDX-License-Identifier: Apache-2.0
#pragma once

// A mutation gate a test opens and closes (util/mutation_gate.h), standing in for the leader
// elector where only the gate's effect on a client is under test.

#include <atomic>

#include "absl/status/status.h"

#include "util/mutation_gate.h"

namespace omni_proxmox::testing {

class SwitchGate final : public util::MutationGate {
 public:
  absl::Status Check() const override {
    return open ? absl::OkStatus() : absl::AbortedError("this replica is a standby");
  }
  std::atomic<bool> open{true};
};

}  // namespace omni_proxmox::testing
