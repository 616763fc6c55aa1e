// SPDX-License-Identifier: Apache-2.0
#include <iostream>

#include "cli/command.h"
#include "util/version.h"

namespace omni_proxmox::cli {

void RegisterVersionCommand(CLI::App& root, CommandContext& ctx) {
  auto* cmd = root.add_subcommand("version", "Print the version of omni-proxmox");
  cmd->footer(
      "Examples:\n"
      "  omni-proxmox version\n"
      "  omni-proxmox version --format json      # {\"version\":\"...\"}");
  cmd->callback([&ctx] {
    if (ctx.output == OutputFormat::kJson) {
      std::cout << R"({"version":")" << util::kVersion << "\"}\n";
    } else {
      std::cout << "omni-proxmox " << util::kVersion << "\n";
    }
    ctx.exit_code = kExitOk;
  });
}

}  // namespace omni_proxmox::cli
