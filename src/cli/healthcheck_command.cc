// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox healthcheck`: asks a running provider's status server for /healthz (or /readyz
// with --ready) and exits 0 when it answers 200, 1 when it answers anything else or nothing. It
// is the container image's HEALTHCHECK and a probe for compose and scripts, so the image needs no
// curl or wget. The address comes from --listen, else OMNI_PROXMOX_LISTEN (which `run --listen`
// also reads), else run's default; a wildcard host (0.0.0.0, ::) is probed on loopback.

#include <httplib.h>

#include <iostream>
#include <string>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/status_server.h"

namespace omni_proxmox::cli {
namespace {

struct HealthcheckFlags {
  std::string listen = std::string(kDefaultListen);
  bool ready = false;
  int timeout_seconds = 5;
};

// The address to connect to for a --listen value: the wildcards name every interface, and
// loopback is the one that is always there.
std::string ProbeHost(const std::string& listen_host) {
  if (listen_host == "0.0.0.0" || listen_host.empty()) return "127.0.0.1";
  if (listen_host == "::") return "::1";
  return listen_host;
}

// httplib's own names for its errors are single words ("Connection").
std::string Reason(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "cannot connect (is the provider running, and is this its --listen address?)";
    case httplib::Error::ConnectionTimeout:
      return "timed out connecting";
    case httplib::Error::Read:
      return "the connection closed without an answer";
    default:
      return httplib::to_string(error);
  }
}

int RunHealthcheck(const HealthcheckFlags& flags) {
  auto address = ParseListenAddress(flags.listen);
  if (!address.ok()) {
    std::cerr << "omni-proxmox healthcheck: " << address.status().message() << "\n";
    return kExitUsage;
  }
  if (address->port == 0) {
    std::cerr << fmt::format(
        "omni-proxmox healthcheck: --listen '{}': port 0 names no server; give the port "
        "`run --listen` uses\n",
        flags.listen);
    return kExitUsage;
  }
  const std::string host = ProbeHost(address->host);
  const char* path = flags.ready ? "/readyz" : "/healthz";
  httplib::Client client(host, address->port);
  client.set_connection_timeout(flags.timeout_seconds, 0);
  client.set_read_timeout(flags.timeout_seconds, 0);
  client.set_write_timeout(flags.timeout_seconds, 0);
  const std::string where =
      fmt::format("{}:{}{}", host.find(':') != std::string::npos ? "[" + host + "]" : host, address->port, path);
  auto reply = client.Get(path);
  if (!reply) {
    std::cout << fmt::format("unhealthy: no answer from {}: {}\n", where, Reason(reply.error()));
    return kExitFindings;
  }
  if (reply->status != 200) {
    std::cout << fmt::format("unhealthy: {} answered {}: {}\n", where, reply->status, reply->body);
    return kExitFindings;
  }
  std::cout << fmt::format("ok: {}\n", where);
  return kExitOk;
}

}  // namespace

void RegisterHealthcheckCommand(CLI::App& root, CommandContext& ctx) {
  auto flags = std::make_shared<HealthcheckFlags>();
  auto* cmd = root.add_subcommand("healthcheck",
                                  "Probe a running provider's /healthz (or /readyz): exit 0 when healthy, 1 when not");
  cmd->add_option("--listen", flags->listen, "The provider's --listen address")
      ->envname(std::string(kListenEnv))
      ->capture_default_str();
  cmd->add_flag("--ready", flags->ready, "Probe /readyz (registered, Omni and Proxmox reachable) instead of /healthz");
  cmd->add_option("--timeout", flags->timeout_seconds, "Seconds to wait for the connection and for the answer")
      ->check(CLI::Range(1, 300))
      ->capture_default_str();
  cmd->footer(
      "Examples:\n"
      "  omni-proxmox healthcheck                       # the default --listen, 127.0.0.1:9489\n"
      "  OMNI_PROXMOX_LISTEN=:9489 omni-proxmox healthcheck --ready\n"
      "Dockerfile: HEALTHCHECK CMD [\"omni-proxmox\", \"healthcheck\"]");
  cmd->callback([flags, &ctx] { ctx.exit_code = RunHealthcheck(*flags); });
}

}  // namespace omni_proxmox::cli
