// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox validate FILE...`: checks MachineClasses, cluster templates, config.yaml and
// .env files before they are applied (the checks live in cli/validate/). Exit code 0 when there
// is no error (warnings allowed), 1 when there is one, 2 when a file cannot be read or the flags
// are wrong. With --fix, a cluster template in the single-document form is printed in the
// multi-document form Omni takes, on stdout; the findings then go to stderr.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/validate/validate.h"

namespace omni_proxmox::cli {
namespace {

constexpr std::size_t kMaxFileBytes = 4 * 1024 * 1024;

// The file's content, or a message saying why it cannot be read.
std::optional<std::string> ReadInput(const std::string& path, std::string& problem) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    problem = "is a directory; pass the files in it, e.g. DIR/*.yaml";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    problem = "cannot open it; check the path and permissions";
    return std::nullopt;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    problem = "cannot read it";
    return std::nullopt;
  }
  std::string content = buffer.str();
  if (content.size() > kMaxFileBytes) {
    problem = fmt::format("it is larger than {} MiB; is it the right file?", kMaxFileBytes / (1024 * 1024));
    return std::nullopt;
  }
  return content;
}

}  // namespace

void RegisterValidateCommand(CLI::App& root, CommandContext& ctx) {
  auto* cmd = root.add_subcommand(
      "validate", "Check MachineClasses, cluster templates, config.yaml and .env files before applying them");
  auto files = std::make_shared<std::vector<std::string>>();
  auto provider_id = std::make_shared<std::string>();
  auto fix = std::make_shared<bool>(false);
  cmd->add_option("files", *files, "Files to check; the kind of each is recognised from its content (and .env names)")
      ->required();
  cmd->add_option("--id", *provider_id,
                  "The provider's ID (as `run --id`); MachineClasses naming another providerid are reported. "
                  "Default: the identity of the key in a given .env");
  cmd->add_option("--provider-id", *provider_id, "")->group("");  // the spelling before --id, kept for scripts
  cmd->add_flag("--fix", *fix,
                "Print a single-document cluster template in the multi-document form Omni takes (stdout); the "
                "findings go to stderr");
  cmd->footer(
      "Prints one line per finding, file:line:column: error|warning: message (hint), then a summary.\n"
      "Exit code 0 when there is no error (warnings allowed), 1 when there is, 2 when a file cannot be read.\n"
      "Machine classes a template names are looked up among all the files given.\n\n"
      "Examples:\n"
      "  omni-proxmox validate machine-classes/*.yaml cluster.yaml\n"
      "  omni-proxmox validate --id proxmox config.yaml .env machine-classes/worker.yaml\n"
      "  omni-proxmox validate --fix cluster.yaml > cluster-multi.yaml\n"
      "  omni-proxmox --format json validate cluster.yaml worker.yaml | jq '.errors'");
  cmd->callback([&ctx, files, provider_id, fix] {
    std::vector<validate::InputFile> inputs;
    bool unreadable = false;
    for (const auto& path : *files) {
      std::string problem;
      auto content = ReadInput(path, problem);
      if (!content) {
        std::cerr << fmt::format("validate: {}: {}\n", path, problem);
        unreadable = true;
        continue;
      }
      inputs.push_back({path, std::move(*content)});
    }
    const validate::Report report = validate::Validate(inputs, validate::Options{*provider_id});
    if (ctx.output == OutputFormat::kJson) {
      std::cout << validate::FormatJson(report);
    } else {
      std::ostream& findings = *fix ? std::cerr : std::cout;
      if (*fix) {
        bool any = false;
        for (const auto& file : report.files) {
          if (file.fixed_template.empty()) continue;
          std::cout << (any ? "---\n" : "") << file.fixed_template;
          any = true;
        }
        if (!any) findings << "validate --fix: no single-document cluster template to rewrite\n";
      }
      findings << validate::FormatText(report);
    }
    if (unreadable) {
      ctx.exit_code = kExitUsage;
    } else {
      ctx.exit_code = report.errors() > 0 ? kExitFindings : kExitOk;
    }
  });
}

}  // namespace omni_proxmox::cli
