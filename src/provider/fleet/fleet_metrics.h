// SPDX-License-Identifier: Apache-2.0
#pragma once

// Gauges about the whole fleet, computed from listings rather than from events, so they stay
// right across provider restarts and out-of-band changes:
//   omni_proxmox_vms_managed{node}   VMs carrying this provider's and this Omni's markers, per node
//                                    (every online or listed node, 0 when it has none)
//   omni_proxmox_requests{stage}     this provider's MachineRequests by stage: pending (no status
//                                    yet), provisioning, provisioned, failed, deprovisioning
//   omni_proxmox_vms_missing         PROVISIONED requests whose VM the cluster no longer lists
//                                    (vm_presence.h), with a VmPresence
// Costs one GET /cluster/resources per call (the Omni side is read from the watch-fed cache); the
// provider calls it every 15 s.

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "omni/resource_cache.h"
#include "provider/fleet/vm_presence.h"
#include "provider/ownership/markers.h"
#include "pve/client.h"
#include "util/metrics.h"

namespace omni_proxmox::provider {

// Updates the gauges; a side that cannot be read keeps its previous values and its error is
// returned (the other side is still updated). `scope` is whose VMs count; when it could not be
// read, only the requests are counted. With `presence`, the listing also judges whether each
// PROVISIONED request's VM is still there: returns the requests whose verdict changed.
absl::StatusOr<std::vector<std::string>> UpdateFleetMetrics(pve::Client& pve, omni::ResourceCache& state,
                                                            std::string_view provider_id,
                                                            const absl::StatusOr<Scope>& scope,
                                                            util::MetricsRegistry& metrics,
                                                            VmPresence* presence = nullptr);

}  // namespace omni_proxmox::provider
