// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox status`: the provider as Omni and Proxmox see it together. Registration
// (InfraProviderStatus) and health (the heartbeat in InfraProviderHealthStatus, which Omni calls
// connected while younger than 31 s), every MachineRequest with its stage, step, error, node, VMID
// and power state, VMs with our markers whose request is gone (orphans, as `gc` finds them), and
// provisioned requests whose VM is missing. Takes the same flags and environment as `run`. With
// --omni-operator-key-file (an omnictl service-account key) it also reads the machines' Links,
// which the provider key may not; --cluster NAME shows a cluster instead (cluster_status.h).
//
// Exit code 0 when all is well, 1 when something needs attention (not registered, stale or failing
// heartbeat, a FAILED request, an orphan, a missing VM, a teardown retrying a failed step, or a side
// that cannot be read), 2 for bad flags.

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cluster_status.h"
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
  std::string cluster;            // --cluster NAME: the cluster view (cluster_status.h)
  std::string operator_key_file;  // --omni-operator-key-file: reads what the provider key may not
};

struct ProviderHealth {
  bool registered = false;  // InfraProviders/<id> exists (omnictl infraprovider create), as doctor checks
  bool reported = false;    // InfraProviderStatuses/<id> exists: the provider has run against this Omni
  std::string name, version;
  std::optional<std::int64_t> heartbeat_age_seconds;
  std::string health_error;  // the error the provider reported with its heartbeat
  bool Fresh() const { return heartbeat_age_seconds && *heartbeat_age_seconds < kHeartbeatWindowSeconds; }
  bool Healthy() const { return registered && reported && Fresh() && health_error.empty(); }
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
  // A teardown retrying a failed step: the error lives in our state, since Omni removed the
  // MachineRequestStatus before the VM's removal began.
  bool teardown_retrying = false;
  // What Omni has seen of the request's machine: its InfraMachineRegistration (created when the
  // machine first connected) and its Machine (spec.connected), both readable with the provider key.
  std::optional<std::int64_t> connected_for_seconds;  // since the registration was created
  bool connected_now = false;
  // With an operator key: whether the machine's SideroLink Link is up (Links need Reader).
  std::optional<bool> link_up;
  std::int64_t waiting_seconds = 0;  // since the request was created, while no machine connected
};

// The machine side of a request as Omni sees it (docs/operator-guide.md, machines not registering).
constexpr std::string_view kTypeMachine = "Machines.omni.sidero.dev";

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

absl::StatusOr<ProviderHealth> ReadProviderHealth(omni::StateClient& state, const std::string& provider_id,
                                                  std::int64_t now_unix) {
  ProviderHealth health;
  auto registration =
      state.Get({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeInfraProviderStatus), provider_id});
  // Omni refuses every call into the provider namespaces with "... is not registered" until
  // InfraProviders/<id> exists (the provider key cannot read that resource itself).
  const bool unregistered = !registration.ok() && registration.status().code() == absl::StatusCode::kPermissionDenied &&
                            Msg(registration.status()).find("not registered") != std::string::npos;
  if (unregistered) return health;
  health.registered = true;
  if (registration.ok()) {
    health.reported = true;
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
  // Which Omni this is decides which VMs are ours (markers.h Scope): the same rule teardown uses.
  auto params = omni::FetchConnectionParams(state, provider_id);
  if (!params.ok()) return params.status();
  const provider::Scope scope{.provider_id = provider_id, .instance = omni::InstanceIdOf(*params)};
  auto vms = pve.ClusterResources(pve::ResourceType::kVm);
  if (!vms.ok()) return vms.status();
  auto registrations =
      state.List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeInfraMachineRegistration), ours});
  if (!registrations.ok()) return registrations.status();
  auto omni_machines = state.List({std::string(omni::kNamespaceDefault), std::string(kTypeMachine), {}});
  if (!omni_machines.ok()) return omni_machines.status();
  std::map<std::string, const omni::Resource*> registration_by_request;
  for (const auto& r : *registrations) {
    if (auto it = r.metadata.labels.find(std::string(omni::kLabelMachineRequest)); it != r.metadata.labels.end()) {
      registration_by_request[it->second] = &r;
    }
  }
  std::map<std::string, bool> connected_by_uuid;
  for (const auto& m : *omni_machines) {
    specs::MachineSpec spec;
    if (omni::DecodeSpec(m, spec).ok()) connected_by_uuid[m.metadata.id] = spec.connected();
  }
  const auto now = util::RealClock().Now();
  const auto seconds_since = [&](util::Clock::SystemTime t) {
    return std::chrono::duration_cast<std::chrono::seconds>(now - t).count();
  };

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
    if (auto it = registration_by_request.find(row.id); it != registration_by_request.end()) {
      row.connected_for_seconds = seconds_since(it->second->metadata.created);
      auto machine = connected_by_uuid.find(it->second->metadata.id);
      row.connected_now = machine != connected_by_uuid.end() && machine->second;
    } else {
      row.waiting_seconds = seconds_since(request.metadata.created);
    }
    if (auto it = status_by_id.find(row.id); it != status_by_id.end()) {
      row.stage = Stage::Stage_Name(it->second.stage());
      if (row.step.empty()) row.step = it->second.status();
      row.error = it->second.error();
    }
    const provider::MachineSpec* machine = nullptr;
    if (auto it = machine_by_id.find(row.id); it != machine_by_id.end()) machine = &it->second;
    if (request.tearing_down() && machine != nullptr && !machine->teardown_error().empty()) {
      row.teardown_retrying = true;
      const std::int64_t again = machine->teardown_retry_unix() -
                                 std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
      row.error = fmt::format("{} (failed {} times; {})", machine->teardown_error(), machine->teardown_attempts(),
                              again > 0 ? fmt::format("next try in {}", HumanSeconds(again)) : "trying again now");
    }
    // The VM by its markers wherever it is now; state from the Go provider by VMID and SMBIOS uuid
    // (the ownership rules teardown and GC follow).
    std::optional<pve::ClusterResource> vm;
    auto lookup = provider::LookUpVm(pve, *vms, scope, row.id, machine != nullptr ? machine->vmid() : 0,
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

// Everything one `status` run found, for the JSON or the table.
struct StatusView {
  std::string provider_id;
  std::string provider_key;                 // the name of the key that read the provider's resources
  std::optional<std::string> operator_key;  // the name of --omni-operator-key-file's key
  std::string operator_note;                // which key read what, when an operator key was given
  ProviderHealth health;
  std::vector<RequestRow> requests;
  std::vector<provider::Garbage> orphans;
  int failed = 0;
  int missing = 0;
  int retrying = 0;
  bool ok() const { return health.Healthy() && failed == 0 && missing == 0 && retrying == 0 && orphans.empty(); }
};

// With an operator key: whether each request's machine has its SideroLink Link up (Links need
// Reader). Returns the note on which key read what.
std::string ReadLinks(omni::StateClient& operator_state, const std::string& operator_name,
                      const std::string& provider_name, std::vector<RequestRow>& requests) {
  auto links = operator_state.List({std::string(omni::kNamespaceDefault), "Links.omni.sidero.dev", {}});
  if (!links.ok()) {
    return fmt::format("provider key {}; the operator key '{}' could not read Links: {}", provider_name, operator_name,
                       Msg(links.status()));
  }
  std::map<std::string, bool> up_by_request;
  for (const auto& link : *links) {
    specs::SiderolinkSpec spec;
    auto request = link.metadata.labels.find(std::string(omni::kLabelMachineRequest));
    if (request != link.metadata.labels.end() && omni::DecodeSpec(link, spec).ok()) {
      up_by_request[request->second] = spec.connected();
    }
  }
  for (auto& r : requests) {
    auto it = up_by_request.find(r.id);
    r.link_up = it != up_by_request.end() && it->second;
  }
  return fmt::format("provider key {} (requests, heartbeat); operator key '{}' (machine links)", provider_name,
                     operator_name);
}

void PrintJson(const StatusView& view) {
  const ProviderHealth& health = view.health;
  json request_items = json::array();
  for (const auto& r : view.requests) {
    request_items.push_back(
        {{"id", r.id},
         {"request_set", r.request_set},
         {"stage", r.stage},
         {"step", r.step},
         {"error", r.error},
         {"node", r.node},
         {"vmid", r.vmid},
         {"power", r.power},
         {"vm_missing", r.vm_missing},
         {"teardown_retrying", r.teardown_retrying},
         {"machine_connected", r.connected_now},
         {"machine_link_up", r.link_up ? json(*r.link_up) : json(nullptr)},
         {"machine_seen_seconds_ago", r.connected_for_seconds ? json(*r.connected_for_seconds) : json(nullptr)},
         {"waiting_for_machine_seconds", r.connected_for_seconds ? json(nullptr) : json(r.waiting_seconds)}});
  }
  json orphan_items = json::array();
  for (const auto& g : view.orphans) orphan_items.push_back(GarbageJson(g));
  json provider = {
      {"id", view.provider_id},
      {"registered", health.registered},
      {"reported", health.reported},
      {"name", health.name},
      {"version", health.version},
      {"heartbeat_age_seconds", health.heartbeat_age_seconds ? json(*health.heartbeat_age_seconds) : json(nullptr)},
      {"connected", health.Fresh()},
      {"health_error", health.health_error},
      {"healthy", health.Healthy()}};
  std::cout << json{{"ok", view.ok()},
                    {"keys",
                     {{"provider", view.provider_key},
                      {"operator", view.operator_key ? json(*view.operator_key) : json(nullptr)}}},
                    {"provider", std::move(provider)},
                    {"requests", std::move(request_items)},
                    {"orphans", std::move(orphan_items)},
                    {"failed", view.failed},
                    {"missing_vms", view.missing},
                    {"teardowns_retrying", view.retrying}}
                   .dump(2)
            << "\n";
}

void PrintRequestTable(const std::vector<RequestRow>& requests) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : requests) {
    std::string machine;
    if (r.connected_for_seconds) {
      machine = fmt::format("{} (first {} ago{})", r.connected_now ? "connected" : "disconnected",
                            HumanSeconds(*r.connected_for_seconds),
                            !r.link_up   ? ""
                            : *r.link_up ? ", link up"
                                         : ", link down");
    } else {
      machine = fmt::format("not yet ({} waiting)", HumanSeconds(r.waiting_seconds));
    }
    rows.push_back({r.id, r.stage, r.step.empty() ? "-" : FoldCell(r.step), r.node.empty() ? "-" : r.node,
                    r.vmid == 0 ? "-" : std::to_string(r.vmid), r.power, machine,
                    r.error.empty() ? "-" : FoldCell(r.error)});
  }
  std::cout << RenderTable({"REQUEST", "STAGE", "STEP", "NODE", "VMID", "POWER", "MACHINE IN OMNI", "ERROR"}, rows);
  const bool waiting = std::any_of(requests.begin(), requests.end(), [](const RequestRow& r) {
    return r.stage == "PROVISIONED" && !r.connected_for_seconds;
  });
  if (waiting) {
    std::cout << "\nA provisioned VM whose machine Omni has not seen: the VM cannot reach Omni's SideroLink URL, "
                 "or it booted\nwithout the join config. 'omni-proxmox doctor' checks the usual causes.\n";
  }
}

void PrintTable(const StatusView& view) {
  const ProviderHealth& health = view.health;
  std::string heartbeat = "never";
  if (health.heartbeat_age_seconds) {
    heartbeat = fmt::format("{}s ago ({})", *health.heartbeat_age_seconds,
                            health.Fresh() ? "connected" : "stale: Omni shows the provider as disconnected");
  }
  std::string registration;
  if (!health.registered) {
    registration = fmt::format(
        "not registered: InfraProviders/{} does not exist; create it with omnictl "
        "infraprovider create {}",
        view.provider_id, view.provider_id);
  } else if (!health.reported) {
    registration = "registered in Omni, but it has not run yet: start 'omni-proxmox run' with this key";
  } else {
    registration = fmt::format("registered, running as '{}', version {}", health.name,
                               health.version.empty() ? "?" : health.version);
  }
  std::cout << fmt::format("Provider   {} ({})\n", view.provider_id, registration);
  std::cout << fmt::format("Heartbeat  {}\n", heartbeat);
  if (!view.operator_note.empty()) std::cout << fmt::format("Read with  {}\n", view.operator_note);
  if (!health.health_error.empty()) std::cout << fmt::format("Error      {}\n", health.health_error);
  std::cout << "\n";
  if (view.requests.empty()) {
    std::cout << "No MachineRequests for this provider.\n";
  } else {
    PrintRequestTable(view.requests);
  }
  if (!view.orphans.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& g : view.orphans) rows.push_back(GarbageRow(g));
    std::cout << "\nOrphan VMs (our markers, no MachineRequest; 'omni-proxmox gc --delete' removes them):\n"
              << RenderTable(GarbageHeaders(), rows);
  }
  std::cout << "\n"
            << (view.ok()
                    ? "All is well."
                    : fmt::format("Needs attention: {}{} failed, {} missing VMs, {} teardowns retrying, {} orphans.",
                                  health.Healthy() ? "" : "provider unhealthy, ", view.failed, view.missing,
                                  view.retrying, view.orphans.size()))
            << "\n";
}

int RunStatus(const StatusFlags& flags, OutputFormat output) {
  const auto fail = [](int code, const std::string& message) {
    std::cerr << "omni-proxmox status: " << message << "\n";
    return code;
  };
  auto grace = provider::ParseGcDuration(flags.grace_period, "--grace-period");
  if (!grace.ok()) return fail(kExitUsage, Msg(grace.status()));
  std::optional<OperatorConnection> operator_key;
  if (!flags.operator_key_file.empty()) {
    auto connected = ConnectOperator(flags.connection, flags.operator_key_file);
    if (!connected.ok()) return fail(kExitUsage, Msg(connected.status()));
    operator_key = *std::move(connected);
  }
  if (!flags.cluster.empty()) {
    if (!operator_key) {
      return fail(kExitUsage,
                  "--cluster needs --omni-operator-key-file: clusters and machine sets need the Reader role, which an "
                  "infra-provider key does not have; create a key with omnictl serviceaccount create status-reader "
                  "--role Reader");
    }
    return RunClusterStatus(*operator_key->state,
                            {operator_key->key.name, "--omni-operator-key-file " + flags.operator_key_file},
                            flags.cluster, output, util::RealClock().Now());
  }
  auto connections = Connect(flags.connection);
  if (!connections.ok()) return fail(kExitUsage, Msg(connections.status()));
  StatusView view;
  view.provider_id = connections->provider_id;
  view.provider_key = connections->key.name;
  const auto now_unix =
      std::chrono::duration_cast<std::chrono::seconds>(util::RealClock().Now().time_since_epoch()).count();

  auto health = ReadProviderHealth(*connections->state, view.provider_id, now_unix);
  if (!health.ok()) return fail(kExitFindings, fmt::format("cannot read Omni: {}", Msg(health.status())));
  view.health = *health;
  // An unregistered provider may read nothing in the provider namespaces: there is nothing to list.
  auto requests = health->registered ? ReadRequests(*connections->state, *connections->pve, view.provider_id)
                                     : absl::StatusOr<std::vector<RequestRow>>(std::vector<RequestRow>{});
  if (!requests.ok()) {
    return fail(kExitFindings,
                fmt::format("cannot read the MachineRequests or Proxmox VMs: {}", Msg(requests.status())));
  }
  view.requests = *std::move(requests);
  if (operator_key) {
    view.operator_key = operator_key->key.name;
    view.operator_note = ReadLinks(*operator_key->state, operator_key->key.name, view.provider_key, view.requests);
  }
  provider::GarbageCollector collector({.provider_id = view.provider_id, .grace_period = *grace}, *connections->pve,
                                       *connections->state, util::RealClock());
  if (health->registered) {  // orphans are judged against requests, which only a registered provider reads
    const provider::GarbageReport garbage = provider::FindGarbage(collector.Observe());
    if (garbage.skipped) return fail(kExitFindings, garbage.skip_reason);
    for (const auto& g : garbage.found) {
      if (g.kind == provider::GarbageKind::kOrphanVm) view.orphans.push_back(g);
    }
  }
  for (const auto& r : view.requests) {
    view.failed += r.stage == "FAILED";
    view.missing += r.vm_missing;
    view.retrying += r.teardown_retrying;
  }
  if (output == OutputFormat::kJson) {
    PrintJson(view);
  } else {
    PrintTable(view);
  }
  return view.ok() ? kExitOk : kExitFindings;
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
      "  omni-proxmox status --cluster talos-default --omni-operator-key-file status-reader.key\n"
      "Exit code: 0 all is well, 1 something needs attention (unhealthy, FAILED request, orphan, missing VM, or a\n"
      "side cannot be read), 2 bad flags.");
  AddConnectionFlags(*cmd, flags->connection);
  cmd->add_option("--grace-period", flags->grace_period,
                  "VMs without a request younger than this are not yet called orphans (as in gc)")
      ->capture_default_str();
  cmd->add_option("--cluster", flags->cluster,
                  "Show this cluster's machine sets, their requests and where each is stuck (needs "
                  "--omni-operator-key-file)");
  cmd->add_option("--omni-operator-key-file", flags->operator_key_file,
                  "An omnictl service-account key (Reader or more) for what the infra-provider key may not read: "
                  "clusters, machine sets, links");
  cmd->callback([flags, &ctx] { ctx.exit_code = RunStatus(*flags, ctx.output); });
}

}  // namespace omni_proxmox::cli
