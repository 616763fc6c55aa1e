// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox pve-check`: preflight of the Proxmox connection the provider will use.
//
//   pve-check [--config-file config.yaml]   (without it: the PROXMOX_* environment, like the Go provider)
//
// Loads the configuration, connects (TLS as configured), and checks authentication, the
// privileges the provider needs, node status, and an ISO and a disk storage on every online node.
// Exit code 0 when every check passed (warnings allowed), 1 when any failed, 2 for a bad config.

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "pve/client.h"
#include "pve/config.h"
#include "pve/errors.h"
#include "pve/privileges.h"
#include "util/clock.h"

namespace omni_proxmox::cli {
namespace {

struct CheckRow {
  std::string check;
  std::string status;  // ok | warn | fail
  std::string detail;
};

std::string Describe(const absl::Status& status) {
  return fmt::format("{}: {}", pve::ErrorKindName(pve::ClassifyError(status)), std::string(status.message()));
}

std::vector<CheckRow> RunChecks(pve::Client& client, const std::string& auth_id) {
  std::vector<CheckRow> rows;
  auto version = client.Version();
  if (!version.ok()) {
    rows.push_back({"connect", "fail", Describe(version.status())});
    return rows;
  }
  rows.push_back({"connect", "ok", fmt::format("Proxmox VE {} as {}", version->version, auth_id)});

  auto permissions = client.GetPermissions();
  if (!permissions.ok()) {
    rows.push_back({"privileges", "fail", Describe(permissions.status())});
  } else {
    absl::Status check = pve::CheckPrivileges(*permissions, pve::ProvisioningPrivileges(), auth_id);
    rows.push_back(check.ok() ? CheckRow{"privileges", "ok", "all privileges the provider needs are granted"}
                              : CheckRow{"privileges", "fail", std::string(check.message())});
  }

  auto nodes = client.ListNodes();
  if (!nodes.ok()) {
    rows.push_back({"nodes", "fail", Describe(nodes.status())});
    return rows;
  }
  std::vector<std::string> online, offline;
  for (const auto& node : *nodes) {
    (node.status == pve::NodeStatus::kOnline ? online : offline).push_back(node.name);
  }
  std::sort(online.begin(), online.end());
  std::sort(offline.begin(), offline.end());
  if (online.empty()) {
    rows.push_back({"nodes", "fail", "no node is online"});
  } else if (!offline.empty()) {
    rows.push_back({"nodes", "warn",
                    fmt::format("online: {}; not online: {} (VMs are not placed there)", fmt::join(online, ", "),
                                fmt::join(offline, ", "))});
  } else {
    rows.push_back({"nodes", "ok", fmt::format("online: {}", fmt::join(online, ", "))});
  }

  for (const auto& node : online) {
    auto storages = client.NodeStorages(node);
    if (!storages.ok()) {
      rows.push_back({fmt::format("storage {}", node), "fail", Describe(storages.status())});
      continue;
    }
    std::vector<std::string> iso, images;
    for (const auto& s : *storages) {
      if (!s.enabled || !s.active) continue;
      if (s.HasContent("iso")) iso.push_back(s.storage);
      if (s.HasContent("images")) images.push_back(s.storage);
    }
    std::sort(iso.begin(), iso.end());
    std::sort(images.begin(), images.end());
    if (iso.empty() || images.empty()) {
      rows.push_back(
          {fmt::format("storage {}", node), "fail",
           fmt::format("{}{}", iso.empty() ? "no active storage with content 'iso' (for the Talos ISO); " : "",
                       images.empty() ? "no active storage with content 'images' (for VM disks)" : "")});
    } else {
      rows.push_back({fmt::format("storage {}", node), "ok",
                      fmt::format("iso: {}; images: {}", fmt::join(iso, ", "), fmt::join(images, ", "))});
    }
  }
  return rows;
}

int RunPveCheck(const std::string& config_path, const CommandContext& ctx) {
  absl::StatusOr<pve::ClientOptions> options =
      config_path.empty() ? pve::ConfigFromEnv([](const char* name) -> std::optional<std::string> {
        const char* value = std::getenv(name);
        if (value == nullptr) return std::nullopt;
        return std::string(value);
      })
                          : pve::LoadConfigFile(config_path);
  if (!options.ok()) {
    std::cerr << "pve-check: " << options.status().message() << "\n";
    return kExitUsage;
  }
  std::string auth_id = options->token_id.empty() ? options->username : options->token_id;
  auto client = pve::MakeHttpClient(*options, util::RealClock());
  if (!client.ok()) {
    std::cerr << "pve-check: " << client.status().message() << "\n";
    return kExitUsage;
  }
  std::vector<CheckRow> rows = RunChecks(**client, auth_id);
  bool failed = false;
  for (const auto& row : rows) failed = failed || row.status == "fail";

  if (ctx.output == OutputFormat::kJson) {
    nlohmann::json out = {{"ok", !failed}, {"url", options->base_url}, {"checks", nlohmann::json::array()}};
    for (const auto& row : rows) {
      out["checks"].push_back({{"check", row.check}, {"status", row.status}, {"detail", row.detail}});
    }
    std::cout << out.dump() << "\n";
  } else {
    std::size_t width = 5;
    for (const auto& row : rows) width = std::max(width, row.check.size());
    std::cout << fmt::format("{:<{}}  {:<6}  {}\n", "CHECK", width, "STATUS", "DETAIL");
    for (const auto& row : rows)
      std::cout << fmt::format("{:<{}}  {:<6}  {}\n", row.check, width, row.status, row.detail);
  }
  return failed ? kExitFindings : kExitOk;
}

}  // namespace

void RegisterPveCheckCommand(CLI::App& root, CommandContext& ctx) {
  auto* cmd = root.add_subcommand("pve-check", "Check the Proxmox VE connection, credentials, privileges and storages");
  auto config = std::make_shared<std::string>();
  cmd->add_option("--config-file", *config,
                  "The provider's config.yaml (proxmox.url, tokenID/tokenSecret, ...); default: PROXMOX_* environment");
  cmd->add_option("--config", *config, "")->group("");  // the spelling before --config-file, kept for scripts
  cmd->footer(
      "Examples:\n"
      "  omni-proxmox pve-check --config-file config.yaml\n"
      "  PROXMOX_URL=https://pve1:8006/api2/json PROXMOX_TOKEN_ID='omni@pve!provider' \\\n"
      "      PROXMOX_TOKEN_SECRET=... omni-proxmox pve-check\n"
      "  omni-proxmox pve-check --config-file config.yaml --format json | jq '.checks[] | select(.status != \"ok\")'\n"
      "Exit code: 0 when every check passed (warnings allowed), 1 when any failed, 2 for a config that cannot be\n"
      "read or parsed. For every check with a fix, see 'omni-proxmox doctor'.");
  cmd->callback([config, &ctx] { ctx.exit_code = RunPveCheck(*config, ctx); });
}

}  // namespace omni_proxmox::cli
