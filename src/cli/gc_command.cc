// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox gc [--delete]`: lists what garbage collection would collect (orphan VMs carrying
// this provider's markers whose MachineRequest is gone, and unused Talos and cloud-init ISOs of
// our naming, all older than the grace period) and, with --delete, removes it with the same
// ownership checks as teardown. Takes the same flags and environment as `run` (cli/connection.h).
//
// Exit code 0 when there is no garbage (or --delete removed all of it), 1 when garbage remains or
// Omni/Proxmox cannot be read, 2 for bad flags.

#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/connection.h"
#include "cli/gc_view.h"
#include "cli/text_table.h"
#include "provider/gc/collector.h"
#include "util/clock.h"

namespace omni_proxmox::cli {
namespace {

using nlohmann::json;

struct GcFlags {
  ConnectionFlags connection;
  bool remove = false;
  bool include_unscoped = false;
  std::string grace_period = "10m";
};

int RunGc(const GcFlags& flags, OutputFormat output) {
  const auto fail = [](int code, const std::string& message) {
    std::cerr << "omni-proxmox gc: " << message << "\n";
    return code;
  };
  auto grace = provider::ParseGcDuration(flags.grace_period, "--grace-period");
  if (!grace.ok()) return fail(kExitUsage, std::string(grace.status().message()));
  auto connections = Connect(flags.connection);
  if (!connections.ok()) return fail(kExitUsage, std::string(connections.status().message()));

  provider::GarbageCollector collector({.provider_id = connections->provider_id,
                                        .grace_period = *grace,
                                        .shutdown_timeout = std::chrono::seconds{60},
                                        .task_timeout = std::chrono::seconds{300},
                                        .include_unscoped = flags.include_unscoped},
                                       *connections->pve, *connections->state, util::RealClock());
  provider::GarbageCycle cycle;
  if (flags.remove) {
    cycle = collector.RunCycle(provider::GcMode::kDelete);
  } else {
    // Report only: no log lines, the table is the report.
    cycle.report = provider::FindGarbage(collector.Observe());
    for (const auto& g : cycle.report.found) cycle.outcomes.push_back({.item = g, .deleted = false, .error = ""});
  }
  if (cycle.report.skipped) {
    if (output == OutputFormat::kJson) {
      std::cout << json{{"provider_id", connections->provider_id},
                        {"skipped", true},
                        {"reason", cycle.report.skip_reason}}
                       .dump(2)
                << "\n";
    }
    return fail(kExitFindings, cycle.report.skip_reason);
  }

  if (output == OutputFormat::kJson) {
    json findings = json::array();
    for (const auto& o : cycle.outcomes) {
      json item = GarbageJson(o.item);
      item["deleted"] = o.deleted;
      item["error"] = o.error;
      findings.push_back(std::move(item));
    }
    std::cout << json{{"provider_id", connections->provider_id},
                      {"mode", flags.remove ? "delete" : "report"},
                      {"grace_period_seconds", grace->count()},
                      {"skipped", false},
                      {"findings", std::move(findings)},
                      {"kept", cycle.report.kept},
                      {"deleted", cycle.Deleted()},
                      {"remaining", cycle.Remaining()}}
                     .dump(2)
              << "\n";
  } else if (cycle.outcomes.empty()) {
    std::cout << fmt::format("No garbage for provider '{}' (grace period {}).\n", connections->provider_id,
                             FormatAge(grace->count()));
  } else {
    auto headers = GarbageHeaders();
    headers.push_back("RESULT");
    std::vector<std::vector<std::string>> rows;
    for (const auto& o : cycle.outcomes) {
      auto row = GarbageRow(o.item);
      row.push_back(o.deleted ? "deleted" : !o.error.empty() ? "not deleted: " + o.error : "found");
      rows.push_back(std::move(row));
    }
    std::cout << RenderTable(headers, rows);
    if (flags.remove) {
      std::cout << fmt::format("\n{} deleted, {} remaining.\n", cycle.Deleted(), cycle.Remaining());
    } else {
      std::cout << fmt::format("\n{} found; run 'omni-proxmox gc --delete' to remove them.\n", rows.size());
    }
  }
  if (output != OutputFormat::kJson && !cycle.report.kept.empty()) {
    // What looked like garbage but is kept, and why: an operator deciding about --include-unscoped
    // or a locked VM needs to see it.
    std::cout << fmt::format("\nKept ({}):\n", cycle.report.kept.size());
    for (const auto& reason : cycle.report.kept) std::cout << "  " << reason << "\n";
  }
  return cycle.Remaining() == 0 ? kExitOk : kExitFindings;
}

}  // namespace

void RegisterGcCommand(CLI::App& root, CommandContext& ctx) {
  auto flags = std::make_shared<GcFlags>();
  auto* cmd =
      root.add_subcommand("gc", "List orphan VMs and unused ISOs of this provider (and remove them with --delete)");
  cmd->footer(
      "Only VMs carrying this provider's and this Omni's markers (tags omni-proxmox, omni-provider.<id>,\n"
      "omni-instance.<omni>, omni-request.<id>) whose MachineRequest no longer exists, and ISOs named as\n"
      "omni-proxmox names them for this provider and this Omni that no VM uses, are candidates; foreign VMs,\n"
      "other providers' and other Omni instances' VMs never are. Nothing younger than the grace period is.\n"
      "VMs and ISOs made by an omni-proxmox without the Omni marker name no Omni: they are\n"
      "listed as kept, and collected only with --include-unscoped, once you know no other Omni uses this\n"
      "provider ID on this Proxmox cluster.\n"
      "Examples:\n"
      "  omni-proxmox gc --config-file config.yaml --omni-service-account-key-file key\n"
      "  omni-proxmox gc --delete --grace-period 30m --config-file config.yaml\n"
      "  omni-proxmox --format json gc --config-file config.yaml | jq '.findings[].vmid'\n"
      "Exit code: 0 no garbage (or all of it deleted), 1 garbage remains or a side cannot be read, 2 bad flags.");
  AddConnectionFlags(*cmd, flags->connection);
  cmd->add_flag("--delete", flags->remove,
                "Remove what is found: orphan VMs are shut down and deleted with their disks, ISOs deleted");
  cmd->add_flag("--include-unscoped", flags->include_unscoped,
                "Also collect VMs and ISOs of this provider ID that name no Omni instance (made before the marker "
                "existed, or the Go provider's cloud-init ISOs): only when no other Omni uses this provider ID here");
  cmd->add_option("--grace-period", flags->grace_period, "Only collect what is older than this (e.g. 90s, 10m, 1h)")
      ->capture_default_str();
  cmd->callback([flags, &ctx] { ctx.exit_code = RunGc(*flags, ctx.output); });
}

std::string FormatAge(std::int64_t seconds) {
  if (seconds < 60) return fmt::format("{}s", seconds);
  if (seconds < 3600) return fmt::format("{}m", seconds / 60);
  if (seconds < 86400) {
    const auto minutes = (seconds % 3600) / 60;
    return minutes == 0 ? fmt::format("{}h", seconds / 3600) : fmt::format("{}h{}m", seconds / 3600, minutes);
  }
  const auto hours = (seconds % 86400) / 3600;
  return hours == 0 ? fmt::format("{}d", seconds / 86400) : fmt::format("{}d{}h", seconds / 86400, hours);
}

std::vector<std::string> GarbageHeaders() { return {"KIND", "NODE", "WHAT", "REQUEST", "AGE"}; }

std::vector<std::string> GarbageRow(const provider::Garbage& g) {
  const std::string what =
      g.kind == provider::GarbageKind::kOrphanVm ? fmt::format("VM {} ({})", g.vmid, g.name) : g.volid;
  return {std::string(provider::GarbageKindName(g.kind)), g.node, what, g.request_id.empty() ? "-" : g.request_id,
          FormatAge(g.age_seconds)};
}

json GarbageJson(const provider::Garbage& g) {
  return {{"kind", provider::GarbageKindName(g.kind)},
          {"node", g.node},
          {"vmid", g.vmid},
          {"name", g.name},
          {"request_id", g.request_id},
          {"storage", g.storage},
          {"volid", g.volid},
          {"age_seconds", g.age_seconds}};
}

}  // namespace omni_proxmox::cli
