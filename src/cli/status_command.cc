// `omni-proxmox status`: the provider as Omni and Proxmox see it together. Registration
// (InfraProviderStatus) and health (the heartbeat in InfraProviderHealthStatus, which Omni calls
// connected while younger than 31 s), every MachineRequest with its stage, step, error, node, VMID
// and power state, VMs with our markers whose request is gone (orphans, as `gc` finds them), and
// provisioned requests whose VM is missing. Takes the same flags and environment as `run`.
//
// Exit code 0 when all is well, 1 when something needs attention (not registered, stale or failing
// heartbeat, a FAILED request, an orphan, a missing VM, or a side that cannot be read), 2 for bad flags.

#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/connection.h"
#include "cli/gc_view.h"
#include "cli/text_table.h"
#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "provider/gc/collector.h"
#include "provider/machine.pb.h"
#include "provider/ownership/owned_vm.h"
#include "util/clock.h"

namespace omni_proxmox::cli {
namespace {

using nlohmann::json;
using Stage = specs::MachineRequestStatusSpec;

// Omni shows a provider as connected while its heartbeat is younger than this.
constexpr std::int64_t kHeartbeatWindowSeconds = 31;

struct StatusFlags {
  ConnectionFlags connection;
  std::string grace_period = "10m";
};

struct ProviderHealth {
  bool registered = false;
  std::string name, version;
  std::optional<std::int64_t> heartbeat_age_seconds;
  std::string health_error;  // the error the provider reported with its heartbeat
  bool Fresh() const { return heartbeat_age_seconds && *heartbeat_age_seconds < kHeartbeatWindowSeconds; }
  bool Healthy() const { return registered && Fresh() && health_error.empty(); }
};

struct RequestRow {
  std::string id;
  std::string request_set;
  std::string stage = "UNKNOWN";
  std::string step;
  std::string error;
  std::string node;
  pve::Vmid vmid = 0;
  std::string power = "-";  // running, stopped, or "missing"
  bool vm_missing = false;
};

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

absl::StatusOr<ProviderHealth> ReadProviderHealth(omni::StateClient& state, const std::string& provider_id,
                                                  std::int64_t now_unix) {
  ProviderHealth health;
  auto registration =
      state.Get({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeInfraProviderStatus), provider_id});
  if (registration.ok()) {
    health.registered = true;
    specs::InfraProviderStatusSpec spec;
    if (omni::DecodeSpec(*registration, spec).ok()) {
      health.name = spec.name();
      health.version = spec.version();
    }
  } else if (registration.status().code() != absl::StatusCode::kNotFound) {
    return registration.status();
  }
  auto heartbeat = state.Get({std::string(omni::kNamespaceInfraProviderEphemeral),
                              std::string(omni::kTypeInfraProviderHealthStatus), provider_id});
  if (heartbeat.ok()) {
    specs::InfraProviderHealthStatusSpec spec;
    if (omni::DecodeSpec(*heartbeat, spec).ok() && spec.has_last_heartbeat_timestamp()) {
      health.heartbeat_age_seconds = now_unix - spec.last_heartbeat_timestamp().seconds();
      health.health_error = spec.error();
    }
  } else if (heartbeat.status().code() != absl::StatusCode::kNotFound) {
    return heartbeat.status();
  }
  return health;
}

// Every request of the provider with what its status, its state and Proxmox say about it.
absl::StatusOr<std::vector<RequestRow>> ReadRequests(omni::StateClient& state, pve::Client& pve,
                                                     const std::string& provider_id) {
  const omni::LabelQuery ours = {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), provider_id)};
  auto requests =
      state.List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), ours});
  if (!requests.ok()) return requests.status();
  auto statuses =
      state.List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), ours});
  if (!statuses.ok()) return statuses.status();
  auto machines = state.List({omni::ProviderNamespace(provider_id), omni::ProviderMachineType(provider_id), {}});
  if (!machines.ok()) return machines.status();
  auto vms = pve.ClusterResources(pve::ResourceType::kVm);
  if (!vms.ok()) return vms.status();

  std::map<std::string, Stage> status_by_id;
  for (const auto& r : *statuses) {
    Stage spec;
    if (omni::DecodeSpec(r, spec).ok()) status_by_id[r.metadata.id] = spec;
  }
  std::map<std::string, provider::MachineSpec> machine_by_id;
  for (const auto& r : *machines) {
    provider::MachineSpec spec;
    if (omni::DecodeSpec(r, spec).ok()) machine_by_id[r.metadata.id] = spec;
  }
  std::vector<RequestRow> rows;
  for (const auto& request : *requests) {
    RequestRow row;
    row.id = request.metadata.id;
    if (auto it = request.metadata.labels.find(std::string(omni::kLabelMachineRequestSet));
        it != request.metadata.labels.end()) {
      row.request_set = it->second;
    }
    if (request.tearing_down()) row.step = "tearing down";
    if (auto it = status_by_id.find(row.id); it != status_by_id.end()) {
      row.stage = Stage::Stage_Name(it->second.stage());
      if (row.step.empty()) row.step = it->second.status();
      row.error = it->second.error();
    }
    const provider::MachineSpec* machine = nullptr;
    if (auto it = machine_by_id.find(row.id); it != machine_by_id.end()) machine = &it->second;
    // The VM by its markers wherever it is now; state from the Go provider by VMID and SMBIOS uuid
    // (the ownership rules teardown and GC follow).
    std::optional<pve::ClusterResource> vm;
    auto lookup = provider::LookUpVm(pve, *vms, provider_id, row.id, machine != nullptr ? machine->vmid() : 0,
                                     machine != nullptr ? provider::LegacyIdentityOf(*machine) : std::nullopt);
    if (!lookup.ok()) {
      row.error = Msg(lookup.status());
    } else if (lookup->kind == provider::VmLookup::Kind::kMarked || lookup->kind == provider::VmLookup::Kind::kLegacy ||
               lookup->kind == provider::VmLookup::Kind::kCreating) {
      vm = lookup->vm;
    }
    if (vm) {
      row.node = vm->node;
      row.vmid = *vm->vmid;
      row.power = vm->status.empty() ? "unknown" : vm->status;
    } else {
      if (machine != nullptr) {
        row.node = machine->node();
        row.vmid = machine->vmid();
      }
      // A provisioned request must have a VM; one still provisioning may not have one yet.
      row.vm_missing = row.stage == "PROVISIONED" && !request.tearing_down();
      if (row.vm_missing) row.power = "missing";
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

int RunStatus(const StatusFlags& flags, OutputFormat output) {
  const auto fail = [](int code, const std::string& message) {
    std::cerr << "omni-proxmox status: " << message << "\n";
    return code;
  };
  auto grace = provider::ParseGcDuration(flags.grace_period, "--grace-period");
  if (!grace.ok()) return fail(kExitUsage, Msg(grace.status()));
  auto connections = Connect(flags.connection);
  if (!connections.ok()) return fail(kExitUsage, Msg(connections.status()));
  const std::string& provider_id = connections->provider_id;
  const auto now_unix =
      std::chrono::duration_cast<std::chrono::seconds>(util::RealClock().Now().time_since_epoch()).count();

  auto health = ReadProviderHealth(*connections->state, provider_id, now_unix);
  if (!health.ok()) return fail(kExitFindings, fmt::format("cannot read Omni: {}", Msg(health.status())));
  auto requests = ReadRequests(*connections->state, *connections->pve, provider_id);
  if (!requests.ok()) {
    return fail(kExitFindings,
                fmt::format("cannot read the MachineRequests or Proxmox VMs: {}", Msg(requests.status())));
  }
  provider::GarbageCollector collector({.provider_id = provider_id, .grace_period = *grace}, *connections->pve,
                                       *connections->state, util::RealClock());
  const provider::GarbageReport garbage = provider::FindGarbage(collector.Observe());
  if (garbage.skipped) return fail(kExitFindings, garbage.skip_reason);
  std::vector<provider::Garbage> orphans;
  for (const auto& g : garbage.found) {
    if (g.kind == provider::GarbageKind::kOrphanVm) orphans.push_back(g);
  }

  int failed = 0, missing = 0;
  for (const auto& r : *requests) {
    failed += r.stage == "FAILED";
    missing += r.vm_missing;
  }
  const bool ok = health->Healthy() && failed == 0 && missing == 0 && orphans.empty();

  if (output == OutputFormat::kJson) {
    json request_items = json::array();
    for (const auto& r : *requests) {
      request_items.push_back({{"id", r.id},
                               {"request_set", r.request_set},
                               {"stage", r.stage},
                               {"step", r.step},
                               {"error", r.error},
                               {"node", r.node},
                               {"vmid", r.vmid},
                               {"power", r.power},
                               {"vm_missing", r.vm_missing}});
    }
    json orphan_items = json::array();
    for (const auto& g : orphans) orphan_items.push_back(GarbageJson(g));
    json provider = {
        {"id", provider_id},
        {"registered", health->registered},
        {"name", health->name},
        {"version", health->version},
        {"heartbeat_age_seconds", health->heartbeat_age_seconds ? json(*health->heartbeat_age_seconds) : json(nullptr)},
        {"connected", health->Fresh()},
        {"health_error", health->health_error},
        {"healthy", health->Healthy()}};
    std::cout << json{{"ok", ok},
                      {"provider", std::move(provider)},
                      {"requests", std::move(request_items)},
                      {"orphans", std::move(orphan_items)},
                      {"failed", failed},
                      {"missing_vms", missing}}
                     .dump(2)
              << "\n";
    return ok ? kExitOk : kExitFindings;
  }

  std::string heartbeat = "never";
  if (health->heartbeat_age_seconds) {
    heartbeat = fmt::format("{}s ago ({})", *health->heartbeat_age_seconds,
                            health->Fresh() ? "connected" : "stale: Omni shows the provider as disconnected");
  }
  std::cout << fmt::format("Provider   {} ({})\n", provider_id,
                           health->registered ? fmt::format("registered as '{}', version {}", health->name,
                                                            health->version.empty() ? "?" : health->version)
                                              : "not registered: start 'omni-proxmox run' with this key");
  std::cout << fmt::format("Heartbeat  {}\n", heartbeat);
  if (!health->health_error.empty()) std::cout << fmt::format("Error      {}\n", health->health_error);
  std::cout << "\n";
  if (requests->empty()) {
    std::cout << "No MachineRequests for this provider.\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : *requests) {
      rows.push_back({r.id, r.stage, r.step.empty() ? "-" : r.step, r.node.empty() ? "-" : r.node,
                      r.vmid == 0 ? "-" : std::to_string(r.vmid), r.power, r.error.empty() ? "-" : r.error});
    }
    std::cout << RenderTable({"REQUEST", "STAGE", "STEP", "NODE", "VMID", "POWER", "ERROR"}, rows);
  }
  if (!orphans.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& g : orphans) rows.push_back(GarbageRow(g));
    std::cout << "\nOrphan VMs (our markers, no MachineRequest; 'omni-proxmox gc --delete' removes them):\n"
              << RenderTable(GarbageHeaders(), rows);
  }
  std::cout << "\n"
            << (ok ? "All is well."
                   : fmt::format("Needs attention: {}{} failed, {} missing VMs, {} orphans.",
                                 health->Healthy() ? "" : "provider unhealthy, ", failed, missing, orphans.size()))
            << "\n";
  return ok ? kExitOk : kExitFindings;
}

}  // namespace

void RegisterStatusCommand(CLI::App& root, CommandContext& ctx) {
  auto flags = std::make_shared<StatusFlags>();
  auto* cmd = root.add_subcommand(
      "status", "Show the provider's registration and health, its MachineRequests and VMs, orphans and missing VMs");
  cmd->footer(
      "Examples:\n"
      "  omni-proxmox status --config-file config.yaml --omni-service-account-key-file key\n"
      "  omni-proxmox --format json status --config-file config.yaml | jq '.requests[] | select(.stage != "
      "\"PROVISIONED\")'\n"
      "Exit code: 0 all is well, 1 something needs attention (unhealthy, FAILED request, orphan, missing VM, or a\n"
      "side cannot be read), 2 bad flags.");
  AddConnectionFlags(*cmd, flags->connection);
  cmd->add_option("--grace-period", flags->grace_period,
                  "VMs without a request younger than this are not yet called orphans (as in gc)")
      ->capture_default_str();
  cmd->callback([flags, &ctx] { ctx.exit_code = RunStatus(*flags, ctx.output); });
}

}  // namespace omni_proxmox::cli
