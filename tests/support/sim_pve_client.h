// SPDX-License-Identifier: Apache-2.0
#pragma once

// A Proxmox API client for a simulator under test, authenticated with the scenario's default
// API token, as the provider would be configured against a real cluster.

#include <memory>

#include "absl/status/statusor.h"

#include "pve/client.h"
#include "sim/pve/simulator.h"
#include "util/clock.h"
#include "util/secret.h"

namespace omni_proxmox::testing {

inline absl::StatusOr<std::unique_ptr<pve::Client>> SimPveClient(const sim::pve::Simulator& sim) {
  pve::ClientOptions options;
  options.base_url = sim.base_url() + "/api2/json";
  options.token_id = sim.default_token_id();
  options.token_secret = util::Secret<std::string>(sim.default_token_secret());
  return pve::MakeHttpClient(options, util::RealClock());
}

}  // namespace omni_proxmox::testing
