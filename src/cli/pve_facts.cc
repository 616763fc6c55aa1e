// SPDX-License-Identifier: Apache-2.0
#include "cli/pve_facts.h"

#include <algorithm>

#include "pve/errors.h"
#include "util/clock.h"
#include "util/status_macros.h"

namespace omni_proxmox::cli {

absl::StatusOr<std::unique_ptr<pve::Client>> MakeOperatorPveClient(const ConnectionFlags& flags,
                                                                   pve::ClientOptions* resolved) {
  OP_ASSIGN_OR_RETURN(pve::ClientOptions options, ResolvePveOptions(flags));
  options.retry.max_attempts = 2;
  options.connect_timeout = std::min(options.connect_timeout, std::chrono::milliseconds{10'000});
  options.request_timeout = std::min(options.request_timeout, std::chrono::milliseconds{30'000});
  if (resolved != nullptr) *resolved = options;
  return pve::MakeHttpClient(options, util::RealClock());
}

absl::StatusOr<std::vector<NodeFacts>> ReadClusterFacts(pve::Client& client, bool bridges) {
  OP_ASSIGN_OR_RETURN(const std::vector<pve::Node> nodes, client.ListNodes());
  std::vector<NodeFacts> out;
  for (const auto& node : nodes) {
    NodeFacts facts;
    facts.snapshot.name = node.name;
    facts.snapshot.online = node.status == pve::NodeStatus::kOnline;
    facts.snapshot.max_memory_bytes =
        static_cast<std::uint64_t>(std::max<std::int64_t>(node.max_mem_bytes.value_or(0), 0));
    facts.snapshot.used_memory_bytes =
        static_cast<std::uint64_t>(std::max<std::int64_t>(node.mem_bytes.value_or(0), 0));
    if (facts.snapshot.online) {
      auto storages = client.NodeStorages(node.name);
      if (!storages.ok()) {
        // As in the provider: a node that cannot answer is treated like an offline one.
        facts.snapshot.online = false;
        facts.storage_error = std::string(storages.status().message());
      } else {
        for (const auto& s : *storages) facts.snapshot.storages.push_back(ToStorageFacts(node.name, s));
        std::sort(facts.snapshot.storages.begin(), facts.snapshot.storages.end(),
                  [](const auto& a, const auto& b) { return a.name < b.name; });
      }
    }
    if (bridges && facts.snapshot.online) {
      auto networks = client.NodeNetworks(node.name, "any_bridge");
      if (!networks.ok()) {
        facts.network_error = std::string(networks.status().message());
      } else {
        for (const auto& n : *networks) {
          facts.snapshot.bridges.push_back(n.iface);
          if (n.vlan_aware) facts.vlan_aware_bridges.push_back(n.iface);
        }
        std::sort(facts.snapshot.bridges.begin(), facts.snapshot.bridges.end());
      }
    }
    out.push_back(std::move(facts));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.snapshot.name < b.snapshot.name; });
  return out;
}

bool UsableForDisks(const provider::StorageFacts& storage) {
  return storage.enabled && storage.active &&
         std::find(storage.content.begin(), storage.content.end(), "images") != storage.content.end();
}

}  // namespace omni_proxmox::cli
