// SPDX-License-Identifier: Apache-2.0
#pragma once

// The contract between the root command and each subcommand. Internal to cli/.

#include <string>

#include <CLI/CLI.hpp>

#include "util/log.h"

namespace omni_proxmox::cli {

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFindings = 1;  // the command ran and found problems
inline constexpr int kExitFailure = 1;   // run: a failure restarting cannot fix (Omni refuses the key)
inline constexpr int kExitUsage = 2;     // bad flags or arguments

// Output format of operator commands: human tables, or JSON for scripts.
enum class OutputFormat { kTable, kJson };

// State shared by the root command and its subcommands for one invocation.
// Confined to the main thread.
struct CommandContext {
  util::LogOptions log;
  std::string log_format = "auto";
  OutputFormat output = OutputFormat::kTable;
  int exit_code = kExitOk;
};

// Each subcommand adds itself to the root app. Its callback runs after logging is set up
// and stores its result in ctx.exit_code.
void RegisterVersionCommand(CLI::App& root, CommandContext& ctx);
void RegisterPveCheckCommand(CLI::App& root, CommandContext& ctx);
void RegisterOmniSimCommand(CLI::App& root, CommandContext& ctx);
void RegisterPveSimCommand(CLI::App& root, CommandContext& ctx);
void RegisterGcCommand(CLI::App& root, CommandContext& ctx);
void RegisterStatusCommand(CLI::App& root, CommandContext& ctx);
void RegisterSelectorCommand(CLI::App& root, CommandContext& ctx);
void RegisterValidateCommand(CLI::App& root, CommandContext& ctx);
void RegisterRunCommand(CLI::App& root, CommandContext& ctx);
void RegisterDemoCommand(CLI::App& root, CommandContext& ctx);
void RegisterDoctorCommand(CLI::App& root, CommandContext& ctx);
void RegisterPlanCommand(CLI::App& root, CommandContext& ctx);
void RegisterHealthcheckCommand(CLI::App& root, CommandContext& ctx);
// True for a flag of the Go provider: a command line made only of those runs `run`.
bool IsGoProviderFlag(std::string_view arg);

}  // namespace omni_proxmox::cli
