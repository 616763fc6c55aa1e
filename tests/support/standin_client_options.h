// SPDX-License-Identifier: Apache-2.0
#pragma once

// Omni client options for a stand-in under test: its endpoint and the infra-provider key it
// issued, as `run` would be configured against a real Omni.

#include "absl/status/statusor.h"

#include "omni/client_options.h"
#include "omni/keys.h"
#include "sim/omni/standin.h"
#include "util/random.h"

namespace omni_proxmox::testing {

inline absl::StatusOr<omni::ClientOptions> StandInClientOptions(const sim::omni::StandIn& standin,
                                                                util::Random* random) {
  auto key = omni::DecodeServiceAccountKey(standin.provider_key());
  if (!key.ok()) return key.status();
  omni::ClientOptions options;
  options.endpoint = standin.grpc_endpoint();
  options.key = *key;
  options.provider_id = standin.provider_id();
  options.random = random;
  return options;
}

}  // namespace omni_proxmox::testing
