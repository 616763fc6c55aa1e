// SPDX-License-Identifier: Apache-2.0
#include "provider/placement/placement.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace omni_proxmox::provider {
namespace {

constexpr std::uint64_t kMiB = 1024ull * 1024;
constexpr std::uint64_t kGiB = 1024ull * kMiB;

bool HasContent(const StorageFacts& storage, std::string_view content) {
  return std::find(storage.content.begin(), storage.content.end(), content) != storage.content.end();
}

// Space is keyed by storage name for shared storages (one pool seen from every node) and by
// node/storage for local ones.
std::string SpaceKey(const StorageFacts& storage) {
  return storage.shared ? storage.name : storage.node + "/" + storage.name;
}

struct DiskNeed {
  std::uint64_t bytes;
  const StorageSelector* selector;
  std::string label;         // "boot disk", "additional_disks[0]"
  std::string selector_key;  // "storage_selector", "additional_disks[0].storage_selector"
};

struct NodeEvaluation {
  bool fits = false;
  std::string rejection;  // why not, when !fits
  std::string boot_storage;
  std::vector<std::string> additional_storages;
  std::vector<std::string> reasons;
  bool no_matching_storage = false;  // rejected because a selector matched nothing usable
};

}  // namespace

std::string HumanBytes(std::uint64_t bytes) {
  if (bytes >= kGiB && bytes % kGiB == 0) return fmt::format("{} GiB", bytes / kGiB);
  if (bytes >= kGiB) return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / static_cast<double>(kGiB));
  return fmt::format("{} MiB", bytes / kMiB);
}

absl::StatusOr<CompiledSelectors> CompiledSelectors::Compile(const ProviderData& data) {
  auto boot = StorageSelector::Compile(data.storage_selector);
  if (!boot.ok()) {
    return absl::InvalidArgumentError(fmt::format("storage_selector: {}", std::string(boot.status().message())));
  }
  CompiledSelectors out{*boot, {}, std::nullopt};
  for (std::size_t i = 0; i < data.additional_disks.size(); ++i) {
    const auto& source = data.additional_disks[i].storage_selector;
    if (source.empty()) {
      out.additional.emplace_back(std::nullopt);
      continue;
    }
    auto compiled = StorageSelector::Compile(source);
    if (!compiled.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("additional_disks[{}].storage_selector: {}", i, std::string(compiled.status().message())));
    }
    out.additional.emplace_back(*compiled);
  }
  if (!data.iso_storage_selector.empty()) {
    auto iso = StorageSelector::Compile(data.iso_storage_selector);
    if (!iso.ok()) {
      return absl::InvalidArgumentError(fmt::format("iso_storage_selector: {}", std::string(iso.status().message())));
    }
    out.iso = *iso;
  }
  return out;
}

PlacedVm PlacementDecision::AsReservation(const PlacementInput& input) const {
  PlacedVm vm;
  vm.request_id = input.request_id;
  vm.request_set_id = input.request_set_id;
  vm.node = node;
  vm.reservation = true;
  vm.memory_bytes = input.data->memory_mib * kMiB;
  const auto key_for = [&](const std::string& storage) {
    for (const auto& n : input.nodes) {
      if (n.name != node) continue;
      for (const auto& s : n.storages) {
        if (s.name == storage) return SpaceKey(s);
      }
    }
    return node + "/" + storage;
  };
  vm.pending_disk_bytes.emplace_back(key_for(boot_storage), std::uint64_t{input.data->disk_size_gib} * kGiB);
  for (std::size_t i = 0; i < additional_storages.size(); ++i) {
    vm.pending_disk_bytes.emplace_back(key_for(additional_storages[i]),
                                       std::uint64_t{input.data->additional_disks[i].size_gib} * kGiB);
  }
  return vm;
}

absl::StatusOr<StorageFacts> ChooseIsoStorage(const std::string& node, const std::vector<StorageFacts>& storages,
                                              const std::optional<StorageSelector>& iso_selector) {
  std::vector<const StorageFacts*> candidates;
  for (const auto& s : storages) {
    if (s.enabled && s.active && std::binary_search(s.content.begin(), s.content.end(), std::string("iso"))) {
      candidates.push_back(&s);
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  for (const auto* s : candidates) {
    if (iso_selector) {
      auto matches = iso_selector->Matches(*s);
      if (!matches.ok()) {
        return absl::FailedPreconditionError(
            fmt::format("iso_storage_selector: {}", std::string(matches.status().message())));
      }
      if (!*matches) continue;
    }
    return *s;
  }
  return absl::FailedPreconditionError(fmt::format(
      "node {} has no enabled, active storage with 'iso' content{}; enable ISO content on a storage (e.g. local)", node,
      iso_selector ? " matching iso_storage_selector" : ""));
}

namespace {

// What other VMs already hold: reservations' memory per node and pending disk bytes per space key
// (existing VMs are in the node's and storages' figures already), and set members per node.
struct Committed {
  std::map<std::string, std::uint64_t> memory;
  std::map<std::string, std::uint64_t> space;
  std::map<std::string, int> set_members;
};

Committed TallyCommitted(const PlacementInput& input) {
  Committed out;
  for (const auto& vm : input.vms) {
    if (vm.request_id == input.request_id) continue;  // never count ourselves
    if (vm.reservation) {
      out.memory[vm.node] += vm.memory_bytes;
      for (const auto& [key, bytes] : vm.pending_disk_bytes) out.space[key] += bytes;
    }
    if (!input.request_set_id.empty() && vm.request_set_id == input.request_set_id) ++out.set_members[vm.node];
  }
  return out;
}

std::vector<DiskNeed> DisksOf(const ProviderData& data, const CompiledSelectors& selectors) {
  std::vector<DiskNeed> disks;
  disks.push_back({std::uint64_t{data.disk_size_gib} * kGiB, &selectors.boot, "boot disk", "storage_selector"});
  for (std::size_t i = 0; i < data.additional_disks.size(); ++i) {
    const bool own = i < selectors.additional.size() && selectors.additional[i];
    disks.push_back({std::uint64_t{data.additional_disks[i].size_gib} * kGiB,
                     own ? &*selectors.additional[i] : &selectors.boot, fmt::format("additional_disks[{}]", i),
                     own ? fmt::format("additional_disks[{}].storage_selector", i) : "storage_selector"});
  }
  return disks;
}

// "local (dir), local-lvm (lvmthin, inactive)": every storage of the node by name, with why it is
// not usable for disks.
std::string StorageListing(const NodeSnapshot& node) {
  std::vector<const StorageFacts*> by_name;
  for (const auto& s : node.storages) by_name.push_back(&s);
  std::sort(by_name.begin(), by_name.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  std::vector<std::string> seen;
  for (const auto* s : by_name) {
    seen.push_back(fmt::format("{} ({}{})", s->name, s->type,
                               !s->enabled                 ? ", disabled"
                               : !s->active                ? ", inactive"
                               : !HasContent(*s, "images") ? ", no images content"
                                                           : ""));
  }
  return seen.empty() ? "none" : fmt::format("{}", fmt::join(seen, ", "));
}

// The bridges the VM needs that the node lacks (none when the node's bridges are unknown).
std::vector<std::string> MissingBridges(const NodeSnapshot& node, const ProviderData& data) {
  std::vector<std::string> missing;
  if (node.bridges.empty()) return missing;
  const auto lacks = [&](const std::string& bridge) {
    return std::find(node.bridges.begin(), node.bridges.end(), bridge) == node.bridges.end();
  };
  if (lacks(data.network_bridge)) missing.push_back(data.network_bridge);
  for (const auto& nic : data.additional_nics) {
    if (lacks(nic.bridge)) missing.push_back(nic.bridge);
  }
  return missing;
}

// A storage for each disk on `node`: the usable (enabled, active, images) storage its selector
// matches with the most space free, then by name. InvalidArgument when a selector fails to evaluate.
absl::StatusOr<NodeEvaluation> ChooseStorages(const NodeSnapshot& node, const std::vector<DiskNeed>& disks,
                                              std::map<std::string, std::uint64_t>& reserved_space) {
  std::vector<const StorageFacts*> usable;
  for (const auto& s : node.storages) {
    if (s.enabled && s.active && HasContent(s, "images")) usable.push_back(&s);
  }
  std::map<std::string, std::uint64_t> taken;  // space this VM's earlier disks take, by key
  const auto free_of = [&](const StorageFacts* s) {
    const std::uint64_t used = reserved_space[SpaceKey(*s)] + taken[SpaceKey(*s)];
    return s->avail_bytes > used ? s->avail_bytes - used : 0;
  };
  NodeEvaluation eval;
  for (std::size_t d = 0; d < disks.size(); ++d) {
    const DiskNeed& need = disks[d];
    std::vector<const StorageFacts*> matched;
    for (const auto* s : usable) {
      auto m = need.selector->Matches(*s);
      if (!m.ok()) {
        return absl::InvalidArgumentError(fmt::format("{} failed on storage '{}' of node '{}': {}", need.selector_key,
                                                      s->name, node.name, std::string(m.status().message())));
      }
      if (*m) matched.push_back(s);
    }
    if (matched.empty()) {
      eval.no_matching_storage = true;
      eval.rejection = fmt::format("{}: {} `{}` matches no usable storage for the {} (storages: {})", node.name,
                                   need.selector_key, need.selector->source(), need.label, StorageListing(node));
      return eval;
    }
    std::sort(matched.begin(), matched.end(), [&](const auto* a, const auto* b) {
      const auto fa = free_of(a), fb = free_of(b);
      return fa != fb ? fa > fb : a->name < b->name;
    });
    const StorageFacts* chosen = matched.front();
    if (free_of(chosen) < need.bytes) {
      eval.rejection = fmt::format("{}: storage '{}' has {} free, the {} needs {}", node.name, chosen->name,
                                   HumanBytes(free_of(chosen)), need.label, HumanBytes(need.bytes));
      return eval;
    }
    taken[SpaceKey(*chosen)] += need.bytes;
    eval.reasons.push_back(fmt::format("{} on '{}' ({}, {} free; {} `{}` matched {} of {} usable storages)", need.label,
                                       chosen->name, chosen->type, HumanBytes(free_of(chosen) + need.bytes),
                                       need.selector_key, need.selector->source(), matched.size(), usable.size()));
    if (d == 0) {
      eval.boot_storage = chosen->name;
    } else {
      eval.additional_storages.push_back(chosen->name);
    }
  }
  eval.fits = true;
  return eval;
}

struct Candidate {
  const NodeSnapshot* node;
  NodeEvaluation eval;
  std::uint64_t free_memory;
};

// Why no node qualified: no online node in scope, no storage matching anywhere, or no room.
absl::Status NoCandidate(const ProviderData& data, bool any_online, bool all_storage_mismatch,
                         const std::vector<std::string>& rejections) {
  if (!any_online) {
    std::string scope = !data.node.empty()    ? fmt::format("the pinned node '{}'", data.node)
                        : !data.nodes.empty() ? fmt::format("the allowed nodes ({})", fmt::join(data.nodes, ", "))
                                              : std::string("the cluster's nodes");
    return absl::FailedPreconditionError(
        fmt::format("no online node among {}: {}", scope,
                    rejections.empty() ? "none" : fmt::format("{}", fmt::join(rejections, "; "))));
  }
  if (all_storage_mismatch) {
    return absl::FailedPreconditionError(
        fmt::format("no storage matches the selector on any node: {}; check storage_selector (storages need "
                    "enabled, active and 'images' content)",
                    fmt::join(rejections, "; ")));
  }
  return absl::ResourceExhaustedError(
      fmt::format("no node can fit {} of memory and {} of disk: {}", HumanBytes(data.memory_mib * kMiB),
                  HumanBytes(std::uint64_t{data.disk_size_gib} * kGiB), fmt::join(rejections, "; ")));
}

// The best candidate: spread puts the VM where its set has the fewest members, then the most free
// memory; binpack on the fullest node that fits; ties by name.
PlacementDecision Decide(const ProviderData& data, const std::vector<Candidate>& candidates, Committed& committed,
                         const std::vector<std::string>& rejections) {
  const auto better = [&](const Candidate& a, const Candidate& b) {
    if (data.placement == Placement::kSpread) {
      const int sa = committed.set_members[a.node->name], sb = committed.set_members[b.node->name];
      if (sa != sb) return sa < sb;
      if (a.free_memory != b.free_memory) return a.free_memory > b.free_memory;
    } else {
      if (a.free_memory != b.free_memory) return a.free_memory < b.free_memory;
    }
    return a.node->name < b.node->name;
  };
  const Candidate& best = *std::min_element(candidates.begin(), candidates.end(), better);
  PlacementDecision decision;
  decision.node = best.node->name;
  decision.boot_storage = best.eval.boot_storage;
  decision.additional_storages = best.eval.additional_storages;
  if (data.placement == Placement::kSpread) {
    decision.reasons.push_back(
        fmt::format("node '{}': {} of this set's machines there, {} of memory free ({} candidate nodes)", decision.node,
                    committed.set_members[decision.node], HumanBytes(best.free_memory), candidates.size()));
  } else {
    decision.reasons.push_back(fmt::format("node '{}': binpack, the fullest node that fits ({} of memory free)",
                                           decision.node, HumanBytes(best.free_memory)));
  }
  for (const auto& r : best.eval.reasons) decision.reasons.push_back(r);
  for (const auto& r : rejections) decision.reasons.push_back("rejected " + r);
  return decision;
}

}  // namespace

absl::StatusOr<PlacementDecision> Place(const PlacementInput& input) {
  const ProviderData& data = *input.data;
  const std::uint64_t memory_needed = data.memory_mib * kMiB;
  Committed committed = TallyCommitted(input);
  const std::vector<DiskNeed> disks = DisksOf(data, *input.selectors);

  std::vector<const NodeSnapshot*> nodes;
  for (const auto& n : input.nodes) nodes.push_back(&n);
  std::sort(nodes.begin(), nodes.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  if (!data.node.empty() &&
      std::none_of(nodes.begin(), nodes.end(), [&](const auto* n) { return n->name == data.node; })) {
    // A plain list rather than a views::transform, which clang 14 (the fuzz build) cannot use with libstdc++ 12.
    std::vector<std::string> cluster_nodes;
    for (const auto& n : input.nodes) cluster_nodes.push_back(n.name);
    return absl::FailedPreconditionError(
        fmt::format("node '{}' (providerdata node) is not a member of the Proxmox cluster; cluster nodes: {}",
                    data.node, fmt::join(cluster_nodes, ", ")));
  }

  std::vector<std::string> rejections;
  bool any_online = false;
  bool all_storage_mismatch = true;
  std::vector<Candidate> candidates;
  for (const NodeSnapshot* node : nodes) {
    if (!data.node.empty() && node->name != data.node) continue;
    if (!data.nodes.empty() && std::find(data.nodes.begin(), data.nodes.end(), node->name) == data.nodes.end()) {
      continue;
    }
    if (!node->online) {
      rejections.push_back(fmt::format("{}: offline", node->name));
      continue;
    }
    any_online = true;
    if (auto missing = MissingBridges(*node, data); !missing.empty()) {
      all_storage_mismatch = false;
      rejections.push_back(fmt::format("{}: no bridge {}", node->name, fmt::join(missing, ", ")));
      continue;
    }
    const std::uint64_t used = node->used_memory_bytes + committed.memory[node->name];
    const std::uint64_t free_memory = node->max_memory_bytes > used ? node->max_memory_bytes - used : 0;
    if (free_memory < memory_needed) {
      all_storage_mismatch = false;
      rejections.push_back(fmt::format("{}: {} of memory free, needs {}", node->name, HumanBytes(free_memory),
                                       HumanBytes(memory_needed)));
      continue;
    }
    auto eval = ChooseStorages(*node, disks, committed.space);
    if (!eval.ok()) return eval.status();
    if (!eval->no_matching_storage) all_storage_mismatch = false;
    if (!eval->fits) {
      rejections.push_back(eval->rejection);
      continue;
    }
    candidates.push_back({node, std::move(*eval), free_memory});
  }
  if (candidates.empty()) return NoCandidate(data, any_online, all_storage_mismatch, rejections);
  return Decide(data, candidates, committed, rejections);
}

StorageFacts ToStorageFacts(const std::string& node, const pve::NodeStorage& storage) {
  StorageFacts facts;
  facts.name = storage.storage;
  facts.node = node;
  facts.type = storage.type;
  facts.avail_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(storage.avail_bytes, 0));
  facts.total_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(storage.total_bytes, 0));
  facts.used_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(storage.used_bytes, 0));
  facts.enabled = storage.enabled;
  facts.active = storage.active;
  facts.shared = storage.shared;
  facts.content = storage.content;
  std::sort(facts.content.begin(), facts.content.end());
  return facts;
}

}  // namespace omni_proxmox::provider
