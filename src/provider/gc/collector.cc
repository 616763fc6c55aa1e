// SPDX-License-Identifier: Apache-2.0
#include "provider/gc/collector.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/join_config.h"
#include "omni/specs.h"
#include "provider/machine.pb.h"
#include "provider/ownership/iso_names.h"
#include "provider/ownership/markers.h"
#include "provider/ownership/owned_vm.h"
#include "util/log.h"

namespace omni_proxmox::provider {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::string Describe(const Garbage& g) {
  switch (g.kind) {
    case GarbageKind::kOrphanVm:
      return fmt::format("orphan VM {} ({}) on {}: request {} no longer exists, {}s old", g.vmid, g.name, g.node,
                         g.request_id, g.age_seconds);
    case GarbageKind::kTalosIso:
      return fmt::format("unused Talos ISO {} on {}, {}s old", g.volid, g.node, g.age_seconds);
    case GarbageKind::kCidataIso:
      return fmt::format("unused cloud-init ISO {} on {}, {}s old", g.volid, g.node, g.age_seconds);
  }
  return "";
}

bool SameIso(const Garbage& a, const Garbage& b) { return a.volid == b.volid && a.node == b.node; }

}  // namespace

int GarbageCycle::Deleted() const {
  return static_cast<int>(std::count_if(outcomes.begin(), outcomes.end(), [](const auto& o) { return o.deleted; }));
}
int GarbageCycle::Remaining() const { return static_cast<int>(outcomes.size()) - Deleted(); }

GarbageCollector::GarbageCollector(GarbageCollectorOptions options, pve::Client& pve, omni::StateClient& state,
                                   const util::Clock& clock, util::MetricsRegistry* metrics)
    : options_(std::move(options)), pve_(pve), state_(state), clock_(clock), metrics_(metrics) {}

GarbageInputs GarbageCollector::Observe() {
  GarbageInputs in;
  in.scope.provider_id = options_.provider_id;
  in.include_unscoped = options_.include_unscoped;
  in.grace_period = options_.grace_period;
  in.now_unix = std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
  if (in_flight) in.in_flight = in_flight();

  // Omni: our requests, and what their state resources say they use.
  auto requests =
      state_.List({std::string(omni::kNamespaceInfraProvider),
                   std::string(omni::kTypeMachineRequest),
                   {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), options_.provider_id)}});
  auto states =
      state_.List({omni::ProviderNamespace(options_.provider_id), omni::ProviderMachineType(options_.provider_id), {}});
  // Which Omni this is: what our VMs and ISOs are marked with (markers.h Scope).
  auto params = omni::FetchConnectionParams(state_, options_.provider_id);
  if (params.ok()) in.scope.instance = omni::InstanceIdOf(*params);
  if (!requests.ok()) {
    in.omni_error = fmt::format("listing MachineRequests: {}", Msg(requests.status()));
  } else if (!params.ok()) {
    in.omni_error = fmt::format("reading the join configuration (which names this Omni): {}", Msg(params.status()));
  } else if (!states.ok()) {
    in.omni_error = fmt::format("listing the provider state: {}", Msg(states.status()));
  } else {
    std::map<std::string, MachineSpec> machines;
    for (const auto& r : *states) {
      MachineSpec spec;
      if (omni::DecodeSpec(r, spec).ok()) machines[r.metadata.id] = spec;
    }
    for (const auto& r : *requests) {
      ObservedRequest observed{.id = r.metadata.id, .volumes = {}, .iso_files = {}};
      if (auto it = machines.find(r.metadata.id); it != machines.end()) {
        const MachineSpec& m = it->second;
        for (const auto* v : {&m.volume_id(), &m.cidata_volume()}) {
          if (!v->empty()) observed.volumes.push_back(*v);
        }
        if (!m.schematic().empty()) {
          observed.iso_files.push_back(TalosIsoFileName(m.schematic(), m.talos_version(), in.scope));
        }
      }
      in.requests.push_back(std::move(observed));
    }
  }

  // Proxmox: every VM with its media and age, every ISO on every node that answers.
  auto vms = pve_.ClusterResources(pve::ResourceType::kVm);
  if (!vms.ok()) {
    in.proxmox_error = Msg(vms.status());
    return in;
  }
  for (const auto& vm : *vms) {
    if (vm.type != "qemu" || !vm.vmid) continue;
    ObservedVm observed{.node = vm.node,
                        .vmid = *vm.vmid,
                        .name = vm.name,
                        .tags = vm.tags,
                        .lock = vm.lock,
                        .config_read = false,
                        .created_unix = std::nullopt,
                        .media = {}};
    if (auto config = pve_.GetVmConfig(vm.node, *vm.vmid); config.ok()) {
      observed.config_read = true;
      observed.created_unix = CreatedUnixFromMeta(config->Get("meta").value_or(""));
      observed.media = AttachedVolumes(config->values);
    } else {
      in.unreadable_nodes.insert(vm.node);
    }
    in.vms.push_back(std::move(observed));
  }
  auto nodes = pve_.ListNodes();
  if (!nodes.ok()) {
    // Without the node list no ISO can be listed; VMs are still judged.
    return in;
  }
  std::set<std::string> listed_shared;
  for (const auto& node : *nodes) {
    if (node.status != pve::NodeStatus::kOnline) {
      in.unreadable_nodes.insert(node.name);
      continue;
    }
    auto storages = pve_.NodeStorages(node.name, "iso");
    if (!storages.ok()) {
      in.unreadable_nodes.insert(node.name);
      continue;
    }
    for (const auto& storage : *storages) {
      if (!storage.HasContent("iso") || !storage.enabled || !storage.active) continue;
      if (storage.shared && listed_shared.contains(storage.storage)) continue;
      auto content = pve_.StorageContent(node.name, storage.storage, "iso");
      if (!content.ok()) {
        in.unreadable_nodes.insert(node.name);
        continue;
      }
      if (storage.shared) listed_shared.insert(storage.storage);
      for (const auto& volume : *content) {
        in.isos.push_back({.node = node.name,
                           .storage = storage.storage,
                           .shared = storage.shared,
                           .volid = volume.volid,
                           .created_unix = volume.ctime_unix});
      }
    }
  }
  return in;
}

absl::Status GarbageCollector::WaitFor(const pve::Upid& task, const std::string& what) {
  auto done = pve_.WaitTask(task, clock_.Monotonic() + options_.task_timeout);
  if (!done.ok()) return absl::Status(done.status().code(), fmt::format("{}: {}", what, Msg(done.status())));
  return absl::OkStatus();
}

absl::Status GarbageCollector::RemoveOrphanVm(const Garbage& orphan) {
  const auto refuse = [&](const std::string& why) {
    return absl::FailedPreconditionError(fmt::format("VM {} {}; leaving it alone", orphan.vmid, why));
  };
  // Shutdown, then delete, then gone: a few rounds, each starting from a fresh read.
  for (int round = 0; round < 6; ++round) {
    auto vms = pve_.ClusterResources(pve::ResourceType::kVm);
    if (!vms.ok()) return vms.status();
    auto vm = std::find_if(vms->begin(), vms->end(),
                           [&](const pve::ClusterResource& r) { return r.type == "qemu" && r.vmid == orphan.vmid; });
    if (vm == vms->end()) return absl::OkStatus();
    // The markers from the config itself, right before the destructive call.
    auto config = pve_.GetVmConfig(vm->node, orphan.vmid);
    if (!config.ok()) return config.status();
    Ownership ownership;
    if (!ParseOwnership(config->Get("tags").value_or(""), ownership) ||
        ownership.provider_id != SanitizeTag(options_.provider_id) || ownership.request_id != orphan.request_id ||
        ownership.instance != orphan.instance || config->Get("name").value_or("") != orphan.name) {
      return refuse("no longer carries the markers it had when it was found");
    }
    // The request may have come back (same ID) since the cycle looked.
    auto requests =
        state_.List({std::string(omni::kNamespaceInfraProvider),
                     std::string(omni::kTypeMachineRequest),
                     {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), options_.provider_id)}});
    if (!requests.ok()) return requests.status();
    for (const auto& r : *requests) {
      if (SanitizeTag(r.metadata.id) == orphan.request_id) return refuse("has a MachineRequest again");
    }
    auto step = AdvanceVmRemoval(pve_, *vm, options_.shutdown_timeout);
    if (!step.ok()) return step.status();
    switch (step->kind) {
      case VmRemovalStep::Kind::kGone:
        return absl::OkStatus();
      case VmRemovalStep::Kind::kBusy:
        return absl::UnavailableError(fmt::format("VM {} is locked ({}); tried again next cycle", orphan.vmid,
                                                  !step->refused.empty() ? step->refused
                                                  : vm->lock.empty()     ? "busy"
                                                                         : vm->lock));
      case VmRemovalStep::Kind::kShuttingDown:
        if (auto s = WaitFor(*step->task, fmt::format("shutdown of VM {}", orphan.vmid)); !s.ok()) return s;
        break;
      case VmRemovalStep::Kind::kDeleting:
        util::Logger("gc")->info("deleting orphan VM {} on {}", orphan.vmid, vm->node);
        if (auto s = WaitFor(*step->task, fmt::format("delete of VM {}", orphan.vmid)); !s.ok()) return s;
        break;
    }
  }
  return absl::DeadlineExceededError(fmt::format("VM {} is still there after shutdown and delete", orphan.vmid));
}

absl::Status GarbageCollector::RemoveIso(const Garbage& iso) {
  auto upid = pve_.DeleteVolume(iso.node, iso.storage, iso.volid);
  if (!upid.ok()) {
    if (upid.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return upid.status();
  }
  util::Logger("gc")->info("deleting {} on {}", iso.volid, iso.node);
  return WaitFor(*upid, fmt::format("delete of {}", iso.volid));
}

GarbageCycle GarbageCollector::RunCycle(GcMode mode) {
  GarbageCycle cycle;
  if (mode == GcMode::kOff) return cycle;
  auto log = util::Logger("gc");
  GarbageInputs inputs = Observe();
  std::map<std::string, std::int64_t> unused_for;
  inputs.unused_for = UnusedFor(unused_for);
  cycle.report = FindGarbage(inputs);
  if (cycle.report.skipped) {
    log->warn("garbage collection skipped: {}", cycle.report.skip_reason);
    return cycle;
  }
  TrackCandidates(cycle.report.candidates);
  for (const auto& g : cycle.report.found) {
    log->warn("{}{}", Describe(g), mode == GcMode::kDelete ? "" : " (report mode: not deleted)");
  }
  for (const auto& kept : cycle.report.kept) log->debug("garbage collection keeps {}", kept);
  if (mode == GcMode::kReport) {
    for (const auto& g : cycle.report.found) cycle.outcomes.push_back({.item = g, .deleted = false, .error = ""});
    Record(cycle);
    return cycle;
  }

  bool any_iso = false;
  for (const auto& g : cycle.report.found) {
    if (g.kind != GarbageKind::kOrphanVm) {
      any_iso = true;
      continue;
    }
    GarbageOutcome outcome{.item = g, .deleted = false, .error = ""};
    if (auto s = RemoveOrphanVm(g); s.ok()) {
      outcome.deleted = true;
    } else {
      outcome.error = Msg(s);
      log->warn("cannot delete orphan VM {}: {}", g.vmid, outcome.error);
    }
    any_iso = any_iso || outcome.deleted;  // its cloud-init ISO is now unused
    cycle.outcomes.push_back(std::move(outcome));
  }
  if (any_iso) {
    // A fresh look right before deleting ISOs: one taken into use meanwhile is not garbage any more,
    // and the ISOs of the VMs just deleted are.
    GarbageInputs again_inputs = Observe();
    std::map<std::string, std::int64_t> again_unused_for;
    again_inputs.unused_for = UnusedFor(again_unused_for);
    if (again_inputs.unused_for != nullptr) {
      // What a VM deleted just now had attached is proven unused: it need not wait a grace period.
      for (const auto& o : cycle.outcomes) {
        if (!o.deleted || o.item.kind != GarbageKind::kOrphanVm) continue;
        for (const auto& iso : again_inputs.isos) {
          const bool attached = std::find(o.item.media.begin(), o.item.media.end(), iso.volid) != o.item.media.end();
          if (attached && (iso.shared || iso.node == o.item.node)) {
            again_unused_for[IsoGarbageKey(iso)] = options_.grace_period.count();
          }
        }
      }
    }
    const GarbageReport again = FindGarbage(again_inputs);
    for (const auto& g : cycle.report.found) {
      if (g.kind == GarbageKind::kOrphanVm) continue;
      const bool still =
          std::any_of(again.found.begin(), again.found.end(), [&](const auto& a) { return SameIso(a, g); });
      if (again.skipped) {
        cycle.outcomes.push_back({.item = g, .deleted = false, .error = again.skip_reason});
      } else if (!still) {
        log->info("{} is in use again; kept", g.volid);
      }
    }
    for (const auto& g : again.found) {
      if (g.kind == GarbageKind::kOrphanVm) continue;  // a new orphan waits for the next cycle
      const bool first = std::any_of(cycle.report.found.begin(), cycle.report.found.end(),
                                     [&](const auto& a) { return SameIso(a, g); });
      if (!first) log->warn("{}", Describe(g));
      GarbageOutcome outcome{.item = g, .deleted = false, .error = ""};
      if (auto s = RemoveIso(g); s.ok()) {
        outcome.deleted = true;
      } else {
        outcome.error = Msg(s);
        log->warn("cannot delete {} on {}: {}", g.volid, g.node, outcome.error);
      }
      cycle.outcomes.push_back(std::move(outcome));
    }
  }
  Record(cycle);
  return cycle;
}

const std::map<std::string, std::int64_t>* GarbageCollector::UnusedFor(
    std::map<std::string, std::int64_t>& storage) const {
  if (!options_.age_by_unused_time) return nullptr;
  const auto now = clock_.Monotonic();
  for (const auto& [key, since] : first_seen_unused_) {
    storage[key] = std::chrono::duration_cast<std::chrono::seconds>(now - since).count();
  }
  return &storage;
}

void GarbageCollector::TrackCandidates(const std::set<std::string>& candidates) {
  const auto now = clock_.Monotonic();
  std::erase_if(first_seen_unused_, [&](const auto& entry) { return !candidates.contains(entry.first); });
  for (const auto& key : candidates) first_seen_unused_.try_emplace(key, now);
}

void GarbageCollector::Record(const GarbageCycle& cycle) {
  if (metrics_ == nullptr) return;
  for (const auto kind : kAllGarbageKinds) {
    const std::string label(GarbageKindName(kind));
    util::Counter& deleted = metrics_->GetCounter("omni_proxmox_gc_deleted_total",
                                                  "Garbage deleted by garbage collection", {{"kind", label}});
    int remaining = 0;
    for (const auto& o : cycle.outcomes) {
      if (o.item.kind != kind) continue;
      if (o.deleted) {
        deleted.Increment();
      } else {
        ++remaining;
      }
    }
    metrics_
        ->GetGauge("omni_proxmox_gc_findings", "Garbage found by the last garbage collection and not deleted",
                   {{"kind", label}})
        .Set(remaining);
  }
}

}  // namespace omni_proxmox::provider
