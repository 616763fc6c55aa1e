// SPDX-License-Identifier: Apache-2.0
#pragma once

// Live Proxmox facts for the operator commands (plan, selector test, doctor), read with the same
// client `run` uses and shaped the way placement and storage selectors see them. Internal to cli/.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "cli/connection.h"
#include "provider/placement/placement.h"
#include "provider/placement/storage_selector.h"
#include "pve/client.h"

namespace omni_proxmox::cli {

// The Proxmox client of `flags` (--config-file, else PROXMOX_* env). Operator commands retry
// less than the provider: a person is waiting, and an unreachable node is a finding, not a blip.
absl::StatusOr<std::unique_ptr<pve::Client>> MakeOperatorPveClient(const ConnectionFlags& flags,
                                                                   pve::ClientOptions* resolved = nullptr);

// One storage entry as selectors see it: the provider's own mapping, so tools and provider agree.
using provider::ToStorageFacts;

// One node: what placement needs, plus why its storages are unknown when they are.
struct NodeFacts {
  provider::NodeSnapshot snapshot;  // bridges filled only when asked for
  std::string storage_error;        // non-empty when the node is online but could not list its storages
  std::vector<std::string> vlan_aware_bridges;
  std::string network_error;  // non-empty when bridges were asked for but could not be listed
};

// GET /nodes, then GET /nodes/{node}/storage (and with `bridges`, GET /nodes/{node}/network) for
// every online node, sorted by node name. A node that cannot answer is reported offline with the
// reason, never fatal; unlisted bridges stay unknown (placement then does not check them).
absl::StatusOr<std::vector<NodeFacts>> ReadClusterFacts(pve::Client& client, bool bridges = false);

// Placement's storage rule: a disk may go to an enabled, active storage with 'images' content.
bool UsableForDisks(const provider::StorageFacts& storage);

}  // namespace omni_proxmox::cli
