// SPDX-License-Identifier: Apache-2.0
#pragma once

// `omni-proxmox status --cluster NAME`: a cluster's machine sets, the MachineRequests made for
// them and where each is stuck (stage, step, error, age, whether its machine joined), as an
// operator sees them in Omni. Clusters, MachineSets, MachineSetStatuses, MachineSetNodes,
// MachineRequestSets, ClusterMachineRequestStatuses and Links need the Reader role or more
// (omni-protocol.md section 8.1), so they are read with an omnictl-style service-account key
// (--omni-operator-key-file), never with the infra-provider key. Internal to cli/.

#include <string>

#include "cli/command.h"
#include "omni/state_client.h"
#include "util/clock.h"

namespace omni_proxmox::cli {

// Which key the reads were signed with, as status prints it.
struct KeyInUse {
  std::string name;  // the service account, e.g. "status-reader"
  std::string flag;  // where it came from, e.g. "--omni-operator-key-file status-reader.key"
};

// Reads the cluster with `state` (signed by the operator key) and prints it in `format`. Exit
// code: 0 when nothing needs attention, 1 when a request FAILED, a machine set cannot get
// machines (no request set), a request waits for a provider that is not connected, or Omni cannot
// be read (the message names the missing role when the key may not read a kind).
int RunClusterStatus(omni::StateClient& state, const KeyInUse& key, const std::string& cluster, OutputFormat format,
                     util::Clock::SystemTime now);

}  // namespace omni_proxmox::cli
