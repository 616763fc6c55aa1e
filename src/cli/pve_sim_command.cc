// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox pve-sim`: runs the strict Proxmox VE simulator until interrupted.

#include <signal.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "fmt/format.h"
#include "nlohmann/json.hpp"

#include "cli/command.h"
#include "sim/pve/simulator.h"

namespace omni_proxmox::cli {
namespace {

struct PveSimFlags {
  std::string scenario;
  std::string listen = "127.0.0.1:8006";
  bool tls = false;
  double time_scale = 1.0;
  std::uint64_t seed = 1;
};

// Splits "host:port" (or "[v6]:port"); the error names the flag and the expected form.
bool ParseListen(const std::string& listen, std::string& host, int& port, std::string& error) {
  std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    error = fmt::format("--listen '{}' must be HOST:PORT, e.g. 127.0.0.1:8006 (port 0 picks a free one)", listen);
    return false;
  }
  host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    std::size_t used = 0;
    port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1 || port < 0 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    error = fmt::format("--listen '{}': the port must be a number from 0 to 65535", listen);
    return false;
  }
  return true;
}

bool IsLoopback(const std::string& host) { return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0; }

int RunPveSim(const PveSimFlags& flags, const CommandContext& ctx) {
  sim::pve::SimulatorOptions options;
  if (!flags.scenario.empty()) {
    std::ifstream file(flags.scenario);
    if (!file) {
      std::cerr << fmt::format("pve-sim: --scenario '{}' cannot be read (see docs/examples/pve-scenario.yaml)\n",
                               flags.scenario);
      return kExitUsage;
    }
    std::stringstream text;
    text << file.rdbuf();
    options.scenario_yaml = text.str();
  }
  std::string error;
  if (!ParseListen(flags.listen, options.bind_address, options.port, error)) {
    std::cerr << "pve-sim: " << error << "\n";
    return kExitUsage;
  }
  options.tls = flags.tls;
  options.time_scale = flags.time_scale;
  options.seed = flags.seed;

  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string options_bind = options.bind_address;
  if (!IsLoopback(options_bind)) {
    std::cerr << fmt::format(
        "pve-sim: warning: listening on {} beyond loopback; the simulator's authentication is not real (its "
        "tokens come from the scenario and are printed at start), so anyone who reaches it can create and delete "
        "VMs\n",
        options_bind);
  }
  auto sim = sim::pve::Simulator::Start(std::move(options));
  if (!sim.ok()) {
    std::cerr << "pve-sim: " << sim.status().message() << "\n";
    return sim.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFindings;
  }
  const auto& simulator = **sim;
  std::string url = simulator.base_url() + "/api2/json";
  std::string token = fmt::format("PVEAPIToken={}={}", simulator.default_token_id(), simulator.default_token_secret());
  if (ctx.output == OutputFormat::kJson) {
    nlohmann::json out = {{"url", url},
                          {"port", simulator.port()},
                          {"token_id", simulator.default_token_id()},
                          {"token_secret", simulator.default_token_secret()},
                          {"authorization", token}};
    if (flags.tls) out["ca_certificate"] = simulator.ca_certificate_pem();
    std::cout << out.dump() << std::endl;
  } else {
    // base_url() is what local clients dial (0.0.0.0 becomes 127.0.0.1); say where it really listens.
    const std::string host = options_bind.find(':') != std::string::npos ? "[" + options_bind + "]" : options_bind;
    const std::string listening =
        fmt::format("{}://{}:{}/api2/json", flags.tls ? "https" : "http", host, simulator.port());
    std::cout << "pve-sim listening on " << listening << (listening == url ? "" : " (local clients: " + url + ")")
              << "\n"
              << "token:   " << simulator.default_token_id() << "\n"
              << "try:     curl " << (flags.tls ? "-k " : "") << "-H 'Authorization: " << token << "' " << url
              << "/nodes\n"
              << "state:   curl " << (flags.tls ? "-k " : "") << simulator.base_url() << "/_sim/state\n"
              << "Press Ctrl-C to stop." << std::endl;
  }
  int received = 0;
  sigwait(&signals, &received);
  return kExitOk;
}

}  // namespace

void RegisterPveSimCommand(CLI::App& root, CommandContext& ctx) {
  auto flags = std::make_shared<PveSimFlags>();
  auto* cmd = root.add_subcommand("pve-sim", "Run a simulated Proxmox VE cluster (API server) for tests and demos");
  cmd->add_option("--scenario", flags->scenario, "Scenario YAML (default: built-in 3-node cluster)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--listen", flags->listen, "HOST:PORT to listen on; port 0 picks a free port")->capture_default_str();
  cmd->add_flag("--tls", flags->tls, "Serve HTTPS with a self-signed certificate generated at start");
  cmd->add_option("--time-scale", flags->time_scale, "Simulated clock speed (10 = ten times faster than real time)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Seed for list shuffles and fault injection")->capture_default_str();
  cmd->footer(
      "Example:\n  omni-proxmox pve-sim --scenario docs/examples/pve-scenario.yaml --listen 127.0.0.1:8006\n"
      "See docs/pve-sim.md for the scenario format and the /_sim controls.");
  cmd->callback([flags, &ctx] { ctx.exit_code = RunPveSim(*flags, ctx); });
}

}  // namespace omni_proxmox::cli
