// SPDX-License-Identifier: Apache-2.0
#include "cli/app.h"

#include <iostream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "util/text.h"
#include "util/version.h"

namespace omni_proxmox::cli {
namespace {

std::vector<std::string> SubcommandNames(CLI::App& app) {
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

bool IsKnownSubcommand(const std::vector<std::string>& names, const std::string& word) {
  for (const auto& name : names) {
    if (name == word) return true;
  }
  return false;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CommandContext ctx;
  CLI::App app{"omni-proxmox: a Sidero Omni infrastructure provider for Proxmox VE, with the tools to run it",
               "omni-proxmox"};
  app.set_version_flag("--version", std::string("omni-proxmox ") + util::kVersion);
  app.option_defaults()->always_capture_default();
  app.add_option("--log-level", ctx.log.level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  app.add_option("--log-format", ctx.log_format, "auto (console on a terminal, else json), console or json")
      ->capture_default_str();
  std::string output = "table";
  app.add_option("--format", output, "Output of operator commands: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.require_subcommand(0, 1);
  // Root flags after the subcommand too (`omni-proxmox demo --fast --format json`), as omnictl,
  // talosctl and kubectl take them; inherited by every subcommand added below.
  app.fallthrough();
  app.footer("Run 'omni-proxmox COMMAND --help' for a command's flags and examples.");

  RegisterVersionCommand(app, ctx);
  RegisterPveCheckCommand(app, ctx);
  RegisterOmniSimCommand(app, ctx);
  RegisterPveSimCommand(app, ctx);
  RegisterGcCommand(app, ctx);
  RegisterStatusCommand(app, ctx);
  RegisterSelectorCommand(app, ctx);
  RegisterValidateCommand(app, ctx);
  RegisterRunCommand(app, ctx);
  RegisterDemoCommand(app, ctx);
  RegisterDoctorCommand(app, ctx);
  RegisterPlanCommand(app, ctx);
  RegisterHealthcheckCommand(app, ctx);

  app.parse_complete_callback([&] {
    ctx.output = output == "json" ? OutputFormat::kJson : OutputFormat::kTable;
    if (auto status = util::ParseLogFormat(ctx.log_format, ctx.log.format); !status.ok()) {
      throw CLI::ValidationError("--log-format", std::string(status.message()));
    }
    if (auto status = util::InitLogging(ctx.log); !status.ok()) {
      throw CLI::ValidationError("--log-level", std::string(status.message()));
    }
  });

  // The Go provider's command line (flags only) runs the provider, so existing compose files work.
  std::vector<char*> args(argv, argv + argc);
  std::string run_word = "run";
  if (argc > 1 && IsGoProviderFlag(argv[1])) {
    args.insert(args.begin() + 1, run_word.data());
    argc = static_cast<int>(args.size());
    argv = args.data();
  }

  // An unknown first word gets a hint instead of CLI11's generic "not expected" text.
  const auto names = SubcommandNames(app);
  if (argc > 1 && argv[1][0] != '-' && !IsKnownSubcommand(names, argv[1])) {
    std::cerr << "omni-proxmox: unknown command '" << argv[1] << "'";
    if (auto hint = util::ClosestMatch(argv[1], names)) std::cerr << "; did you mean '" << *hint << "'?";
    std::cerr << "\nRun 'omni-proxmox --help' to list the commands.\n";
    return kExitUsage;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (app.get_subcommands().empty()) {
    std::cout << app.help();
    return kExitUsage;
  }
  return ctx.exit_code;
}

}  // namespace omni_proxmox::cli
