// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox omni-sim`: runs the Omni stand-in (docs/omni-sim.md) until SIGINT/SIGTERM, or,
// with --stdin, until stdin closes while reading control lines from it:
//
//   class <id> <providerdata-file>      create or replace a MachineClass
//   scale <set> <class> <count>         create or scale a MachineRequestSet
//   join <uuid> <user-data-file>        a machine booted with this user-data joins
//   plant <request-id> <providerdata-file>   a MachineRequest admitted under an older schema
//   service-account <name> <role>       omnictl serviceaccount create (prints the key)
//   destroy-service-account <name>      omnictl serviceaccount destroy
//   delete-provider <id>                omnictl infraprovider delete
//   cluster-template <file>             omnictl cluster template sync -f <file>
//   delete-cluster <name>               omnictl cluster delete <name>
//
// Each control line is answered with "ok" or "error: ...". Exit code 0, 1 when a control line
// failed or a port is in use, 2 for bad flags.

#include <signal.h>

#include <charconv>
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
  std::string listen;  // HOST:PORT of the gRPC API; the factory and control ports share HOST
  std::string bind;    // old spelling: --bind HOST
  int grpc_port = -1;  // old spelling: --grpc-port PORT
  bool stdin_control = false;
  bool lenient = false;
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
  if (verb == "plant") {
    std::string id, file;
    if (!(words >> id >> file)) return absl::InvalidArgumentError("usage: plant <request-id> <providerdata-file>");
    auto data = ReadFile(file);
    if (!data.ok()) return data.status();
    return standin.PlantMachineRequest(id, *data);
  }
  if (verb == "service-account") {
    std::string name, role_name;
    if (!(words >> name >> role_name)) return absl::InvalidArgumentError("usage: service-account <name> <role>");
    auto role = sim::omni::ParseRole(role_name);
    if (!role.ok()) return role.status();
    auto key = standin.CreateServiceAccount(name, *role);
    if (!key.ok()) return key.status();
    std::cout << *key << "\n";
    return absl::OkStatus();
  }
  if (verb == "destroy-service-account") {
    std::string name;
    if (!(words >> name)) return absl::InvalidArgumentError("usage: destroy-service-account <name>");
    return standin.DestroyServiceAccount(name);
  }
  if (verb == "delete-provider") {
    std::string id;
    if (!(words >> id)) return absl::InvalidArgumentError("usage: delete-provider <id>");
    return standin.DeleteInfraProvider(id);
  }
  if (verb == "cluster-template") {
    std::string file;
    if (!(words >> file)) return absl::InvalidArgumentError("usage: cluster-template <file>");
    auto data = ReadFile(file);
    if (!data.ok()) return data.status();
    return standin.SyncClusterTemplate(*data).status();
  }
  if (verb == "delete-cluster") {
    std::string name;
    if (!(words >> name)) return absl::InvalidArgumentError("usage: delete-cluster <name>");
    return standin.DeleteCluster(name);
  }
  return absl::InvalidArgumentError(
      fmt::format("unknown control '{}': use class, scale, join, plant, service-account, destroy-service-account, "
                  "delete-provider, cluster-template or delete-cluster",
                  verb));
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

bool IsLoopback(const std::string& host) { return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0; }

// --listen HOST:PORT, or the old --bind HOST and --grpc-port PORT (not both spellings at once).
absl::Status ResolveListen(OmniSimFlags& flags) {
  if (!flags.listen.empty() && (!flags.bind.empty() || flags.grpc_port >= 0)) {
    return absl::InvalidArgumentError("--listen replaces --bind and --grpc-port: give only --listen HOST:PORT");
  }
  if (!flags.bind.empty()) flags.options.bind_address = flags.bind;
  if (flags.grpc_port >= 0) flags.options.grpc_port = flags.grpc_port;
  if (flags.listen.empty()) return absl::OkStatus();
  const auto colon = flags.listen.rfind(':');
  int port = -1;
  if (colon != std::string::npos && colon + 1 < flags.listen.size()) {
    const std::string digits = flags.listen.substr(colon + 1);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) port = -1;
  }
  std::string host = colon == std::string::npos ? "" : flags.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        fmt::format("--listen '{}' must be HOST:PORT, e.g. 127.0.0.1:8099 (port 0 picks a free one)", flags.listen));
  }
  flags.options.bind_address = host;
  flags.options.grpc_port = port;
  return absl::OkStatus();
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
  cmd->add_option("--listen", flags->listen,
                  "HOST:PORT of the gRPC API (default 127.0.0.1:0, a free port); the Image Factory fake and the "
                  "control endpoint listen on HOST too. Keep it loopback: the control endpoint has no authentication");
  // The spellings before --listen, kept for scripts.
  cmd->add_option("--bind", flags->bind, "")->group("");
  cmd->add_option("--grpc-port", flags->grpc_port, "")->group("");
  cmd->add_option("--state-dir", flags->options.state_dir,
                  "Keep keys, resources and ports here across restarts, as Omni keeps them in etcd (default: none, "
                  "every start is a fresh Omni)");
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
  cmd->add_flag("--lenient", flags->lenient,
                "Admit MachineRequestSets for a provider that has not published its status, and providerdata its "
                "schema refuses (Omni refuses both); for tests of older providers");
  cmd->footer(
      "Examples:\n"
      "  omni-proxmox omni-sim --tls --keys-dir omni-keys --listen 127.0.0.1:8099 --control-port 8098\n"
      "  omni-proxmox omni-sim --tls --keys-dir omni-keys --state-dir omni-state   # survives restarts\n"
      "  curl -X PUT --data-binary @providerdata.yaml http://127.0.0.1:8098/machine-classes/small\n"
      "  curl -X PUT -d '' 'http://127.0.0.1:8098/machine-request-sets/workers?machine_class=small&count=3'\n"
      "See docs/omni-sim.md for every control. Exit code 1 when a port is in use or a --stdin control failed,\n"
      "2 for bad flags.");

  cmd->callback([flags, &ctx] {
    if (flags->random_seed) flags->options.seed = util::Random::SeedFromDevice();
    flags->options.omni_admission = !flags->lenient;
    if (auto status = ResolveListen(*flags); !status.ok()) {
      std::cerr << "omni-proxmox omni-sim: " << status.message() << "\n";
      ctx.exit_code = kExitUsage;
      return;
    }
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
    if (!IsLoopback(flags->options.bind_address)) {
      std::cerr << fmt::format(
          "omni-proxmox omni-sim: warning: listening on {} beyond loopback; the control endpoint has no "
          "authentication and the stand-in's keys are for tests: anyone who reaches it can create and delete "
          "machines\n",
          flags->options.bind_address);
    }
    auto standin = sim::omni::StandIn::Start(flags->options);
    if (!standin.ok()) {
      std::cerr << "omni-proxmox omni-sim: " << standin.status().message() << "\n";
      // A busy port is the environment's fault, not the command line's (as pve-sim answers).
      ctx.exit_code = standin.status().code() == absl::StatusCode::kUnavailable ? kExitFindings : kExitUsage;
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
