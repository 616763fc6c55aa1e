// `omni-proxmox omni-sim`: runs the Omni stand-in (docs/omni-sim.md) until SIGINT/SIGTERM, or,
// with --stdin, until stdin closes while reading control lines from it:
//
//   class <id> <providerdata-file>      create or replace a MachineClass
//   scale <set> <class> <count>         create or scale a MachineRequestSet
//   join <uuid> <user-data-file>        a machine booted with this user-data joins
//
// Each control line is answered with "ok" or "error: ...". Exit code 0, 1 when a control line
// failed, 2 for bad flags or when the stand-in cannot start.

#include <signal.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "sim/omni/standin.h"
#include "util/random.h"

namespace omni_proxmox::cli {
namespace {

struct OmniSimFlags {
  sim::omni::StandInOptions options;
  bool stdin_control = false;
  bool random_seed = false;
  std::string tls_cert_file;
  std::string tls_key_file;
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(fmt::format("cannot read '{}'", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::Status RunControlLine(sim::omni::StandIn& standin, const std::string& line) {
  std::istringstream words(line);
  std::string verb;
  words >> verb;
  if (verb == "class") {
    std::string id, file;
    if (!(words >> id >> file)) return absl::InvalidArgumentError("usage: class <id> <providerdata-file>");
    auto data = ReadFile(file);
    if (!data.ok()) return data.status();
    return standin.ApplyMachineClass(id, *data);
  }
  if (verb == "scale") {
    std::string set, klass;
    int count = 0;
    if (!(words >> set >> klass >> count)) return absl::InvalidArgumentError("usage: scale <set> <class> <count>");
    return standin.ScaleMachineRequestSet(set, klass, count);
  }
  if (verb == "join") {
    std::string uuid, file;
    if (!(words >> uuid >> file)) return absl::InvalidArgumentError("usage: join <uuid> <user-data-file>");
    auto data = ReadFile(file);
    if (!data.ok()) return data.status();
    return standin.MachineJoined(*data, uuid);
  }
  return absl::InvalidArgumentError(fmt::format("unknown control '{}': use class, scale or join", verb));
}

void PrintEndpoints(const sim::omni::StandIn& standin, const OmniSimFlags& flags, OutputFormat format) {
  const auto& o = flags.options;
  std::string admin_file, provider_file, ca_file;
  if (!o.keys_dir.empty()) {
    admin_file = o.keys_dir + "/admin.key";
    provider_file = o.keys_dir + "/" + o.provider_id + ".key";
    if (!standin.tls_ca_pem().empty()) ca_file = o.keys_dir + "/ca.pem";
  }
  if (format == OutputFormat::kJson) {
    nlohmann::json out = {{"grpc_endpoint", standin.grpc_endpoint()},
                          {"factory_url", standin.factory_url()},
                          {"control_url", standin.control_url()},
                          {"provider_id", standin.provider_id()},
                          {"admin_key_file", admin_file},
                          {"provider_key_file", provider_file},
                          {"tls_ca_file", ca_file}};
    std::cout << out.dump() << std::endl;
    return;
  }
  std::cout << "omni stand-in running\n"
            << fmt::format("  grpc endpoint   {}\n", standin.grpc_endpoint())
            << fmt::format("  image factory   {}\n", standin.factory_url())
            << fmt::format("  control         {}\n", standin.control_url().empty() ? "-" : standin.control_url())
            << fmt::format("  provider id     {}\n", standin.provider_id());
  if (!admin_file.empty()) {
    std::cout << fmt::format("  admin key       {}\n  provider key    {}\n", admin_file, provider_file);
  }
  if (!ca_file.empty()) std::cout << fmt::format("  tls ca          {}\n", ca_file);
  std::cout << std::flush;
}

}  // namespace

void RegisterOmniSimCommand(CLI::App& root, CommandContext& ctx) {
  auto flags = std::make_shared<OmniSimFlags>();
  auto* cmd =
      root.add_subcommand("omni-sim", "Run the Omni stand-in (gRPC State + management API, Image Factory fake)");
  cmd->add_option("--provider-id", flags->options.provider_id, "Infra provider ID to register and issue a key for")
      ->capture_default_str();
  cmd->add_option("--keys-dir", flags->options.keys_dir,
                  "Write admin.key and <provider-id>.key (base64 JSON service-account keys) here");
  cmd->add_option("--bind", flags->options.bind_address, "Address to listen on (keep it loopback)")
      ->capture_default_str();
  cmd->add_option("--grpc-port", flags->options.grpc_port, "gRPC port (0 = a free port)")->capture_default_str();
  cmd->add_option("--factory-port", flags->options.factory_port, "Image Factory fake port (0 = a free port)")
      ->capture_default_str();
  flags->options.control_port = 0;
  cmd->add_option("--control-port", flags->options.control_port,
                  "Unauthenticated HTTP control port for curl (0 = a free port, -1 = off)")
      ->capture_default_str();
  cmd->add_option("--talos-version", flags->options.talos_version, "Talos version of new machine requests")
      ->capture_default_str();
  cmd->add_option("--siderolink-api-url", flags->options.siderolink_api_url,
                  "SideroLink API URL advertised to machines")
      ->capture_default_str();
  cmd->add_option("--seed", flags->options.seed, "Seed for join tokens and request IDs")->capture_default_str();
  cmd->add_flag("--random-seed", flags->random_seed, "Seed from the operating system instead of --seed");
  cmd->add_flag("--tls", flags->options.tls,
                "Serve gRPC over TLS (self-signed for --bind and localhost unless --tls-cert/--tls-key; "
                "the certificate is written to <keys-dir>/ca.pem)");
  cmd->add_option("--tls-cert", flags->tls_cert_file, "PEM certificate for --tls")->check(CLI::ExistingFile);
  cmd->add_option("--tls-key", flags->tls_key_file, "PEM private key for --tls")->check(CLI::ExistingFile);
  cmd->add_flag("--stdin", flags->stdin_control, "Read control lines from stdin; stop when it closes");
  cmd->footer(
      "Example:\n"
      "  omni-proxmox omni-sim --provider-id proxmox --keys-dir /tmp/omni-keys\n"
      "  curl -X PUT --data-binary @providerdata.yaml http://127.0.0.1:PORT/machine-classes/small\n"
      "  curl -X PUT 'http://127.0.0.1:PORT/machine-request-sets/workers?machine_class=small&count=3'");

  cmd->callback([flags, &ctx] {
    if (flags->random_seed) flags->options.seed = util::Random::SeedFromDevice();
    for (auto [file, pem] : {std::pair{&flags->tls_cert_file, &flags->options.tls_cert_pem},
                             std::pair{&flags->tls_key_file, &flags->options.tls_key_pem}}) {
      if (file->empty()) continue;
      auto text = ReadFile(*file);
      if (!text.ok()) {
        std::cerr << "omni-proxmox omni-sim: " << text.status().message() << "\n";
        ctx.exit_code = kExitUsage;
        return;
      }
      *pem = *text;
    }
    if (!flags->stdin_control) {
      // Block the stop signals before any thread starts, so every thread inherits the mask and
      // sigwait() below is the only place they are received.
      sigset_t stop_signals;
      sigemptyset(&stop_signals);
      sigaddset(&stop_signals, SIGINT);
      sigaddset(&stop_signals, SIGTERM);
      pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    }
    auto standin = sim::omni::StandIn::Start(flags->options);
    if (!standin.ok()) {
      std::cerr << "omni-proxmox omni-sim: " << standin.status().message() << "\n";
      ctx.exit_code = kExitUsage;
      return;
    }
    PrintEndpoints(**standin, *flags, ctx.output);
    ctx.exit_code = kExitOk;
    if (flags->stdin_control) {
      std::string line;
      while (std::getline(std::cin, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto status = RunControlLine(**standin, line);
        if (status.ok()) {
          std::cout << "ok" << std::endl;
        } else {
          std::cout << "error: " << status.message() << std::endl;
          ctx.exit_code = kExitFindings;
        }
      }
      return;
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    int received = 0;
    sigwait(&stop_signals, &received);
  });
}

}  // namespace omni_proxmox::cli
