// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox doctor`: checks everything `run` needs, one line each with a fix, so an operator
// finds out what is wrong before the provider does. Takes the same flags and environment as `run`
// (cli/connection.h). A check whose prerequisite failed is shown as skipped with the reason,
// because its own result would only repeat the first failure.
//
// Exit code 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for bad flags.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/connection.h"
#include "cli/pve_facts.h"
#include "cli/text_table.h"
#include "omni/client_options.h"
#include "omni/endpoint.h"
#include "omni/join_config.h"
#include "omni/signing.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "omni/tls_roots.h"
#include "pve/errors.h"
#include "pve/privileges.h"
#include "util/clock.h"

namespace omni_proxmox::cli {
namespace {

using nlohmann::json;

// Omni shows a provider as connected while its heartbeat is younger than this.
constexpr std::chrono::seconds kHeartbeatWindow{31};
// A provisioned VM normally connects within a couple of minutes of its first boot.
constexpr std::chrono::minutes kMachineConnectWait{5};
// A key that expires within this is worth a warning: the provider stops when it does.
constexpr std::chrono::hours kKeyExpiryWarning{24 * 14};

enum class Outcome { kPass, kWarn, kFail, kSkip };

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPass:
      return "pass";
    case Outcome::kWarn:
      return "warn";
    case Outcome::kFail:
      return "fail";
    case Outcome::kSkip:
      return "skip";
  }
  return "?";
}

struct Check {
  std::string name;
  Outcome outcome = Outcome::kPass;
  std::string detail;
  std::string fix;  // empty when there is nothing to do
};

class Report {
 public:
  void Pass(std::string name, std::string detail) { Add(std::move(name), Outcome::kPass, std::move(detail), ""); }
  void Warn(std::string name, std::string detail, std::string fix) {
    Add(std::move(name), Outcome::kWarn, std::move(detail), std::move(fix));
  }
  void Fail(std::string name, std::string detail, std::string fix) {
    Add(std::move(name), Outcome::kFail, std::move(detail), std::move(fix));
  }
  void Skip(std::string name, const std::string& blocker) {
    Add(std::move(name), Outcome::kSkip, fmt::format("skipped: needs {}", blocker), "");
  }
  void SkipAll(const std::vector<std::string>& names, const std::string& blocker) {
    for (const auto& n : names) Skip(n, blocker);
  }

  bool failed() const {
    return std::any_of(checks_.begin(), checks_.end(), [](const Check& c) { return c.outcome == Outcome::kFail; });
  }
  const std::vector<Check>& checks() const { return checks_; }

 private:
  void Add(std::string name, Outcome outcome, std::string detail, std::string fix) {
    checks_.push_back({std::move(name), outcome, std::move(detail), std::move(fix)});
  }
  std::vector<Check> checks_;
};

std::string Msg(const absl::Status& status) { return std::string(status.message()); }

std::string HumanAge(std::chrono::seconds age) {
  if (age < std::chrono::seconds{120}) return fmt::format("{} s", age.count());
  if (age < std::chrono::hours{2}) return fmt::format("{} min", age.count() / 60);
  if (age < std::chrono::hours{48}) return fmt::format("{} h", age.count() / 3600);
  return fmt::format("{} days", age.count() / 86400);
}

std::string UtcDate(util::Clock::SystemTime when) {
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:%Y-%m-%d %H:%M} UTC", tm);
}

// --- Proxmox ---------------------------------------------------------------------------------

void CheckProxmox(const ConnectionFlags& flags, Report& report) {
  const std::vector<std::string> after_config = {"proxmox reachable", "proxmox tls",        "proxmox auth",
                                                 "proxmox version",   "proxmox privileges", "proxmox nodes"};
  pve::ClientOptions options;
  auto client = MakeOperatorPveClient(flags, &options);
  if (!client.ok()) {
    report.Fail("proxmox config", Msg(client.status()),
                "pass --config-file config.yaml with proxmox: url, tokenID and tokenSecret (or username/password), "
                "or set PROXMOX_URL, PROXMOX_TOKEN_ID and PROXMOX_TOKEN_SECRET");
    report.SkipAll(after_config, "a usable Proxmox configuration");
    return;
  }
  const std::string auth_id = options.token_id.empty() ? options.username : options.token_id;
  report.Pass("proxmox config",
              fmt::format("{} ({}), {} {}", flags.config_file.empty() ? "PROXMOX_* environment" : flags.config_file,
                          options.base_url, options.token_id.empty() ? "user" : "API token", auth_id));

  auto version = (*client)->Version();
  const pve::ErrorKind kind = version.ok() ? pve::ErrorKind::kOk : pve::ClassifyError(version.status());
  if (!version.ok() && kind != pve::ErrorKind::kTls && kind != pve::ErrorKind::kAuth &&
      kind != pve::ErrorKind::kPermission) {
    report.Fail("proxmox reachable", fmt::format("{}: {}", options.base_url, Msg(version.status())),
                "check proxmox.url (https://HOST:8006/api2/json), DNS, and that this host may reach port 8006");
    report.SkipAll({"proxmox tls", "proxmox auth", "proxmox version", "proxmox privileges", "proxmox nodes"},
                   "a reachable Proxmox");
    return;
  }
  report.Pass("proxmox reachable", options.base_url);

  if (kind == pve::ErrorKind::kTls) {
    const bool ca_given = !options.ca_file.empty() || !options.ca_pem.empty();
    report.Fail(
        "proxmox tls",
        ca_given ? fmt::format("the certificate does not verify against {}: {}",
                               options.ca_file.empty() ? "the configured CA" : options.ca_file, Msg(version.status()))
                 : fmt::format("no caFile set, and the system CA store does not verify it: {}", Msg(version.status())),
        ca_given ? "check that caFile is the CA of this cluster (/etc/pve/pve-root-ca.pem on a node, not "
                   "pve-ssl.pem), and that proxmox.url names the host as the certificate does"
                 : "set proxmox.caFile to the cluster's CA (/etc/pve/pve-root-ca.pem on a node), or, "
                   "knowingly, insecureSkipVerify: true");
    report.SkipAll({"proxmox auth", "proxmox version", "proxmox privileges", "proxmox nodes"},
                   "a verified TLS connection");
    return;
  }
  if (options.base_url.starts_with("http://")) {
    report.Warn("proxmox tls", "plain http: credentials travel unencrypted", "use the https:// URL of the API");
  } else if (options.insecure_skip_verify) {
    report.Warn("proxmox tls", "certificate verification skipped (insecureSkipVerify: true)",
                "set proxmox.caFile to the cluster's CA (/etc/pve/pve-root-ca.pem) and drop insecureSkipVerify");
  } else {
    report.Pass("proxmox tls", options.ca_file.empty() && options.ca_pem.empty()
                                   ? "certificate verified against the system CA store"
                                   : fmt::format("certificate verified against {}",
                                                 options.ca_file.empty() ? "the configured CA" : options.ca_file));
  }

  if (!version.ok()) {
    report.Fail("proxmox auth", fmt::format("{} was refused: {}", auth_id, Msg(version.status())),
                options.token_id.empty()
                    ? fmt::format("check username, password and realm ({}), and that the user is enabled "
                                  "(pveum user list); an API token (tokenID, tokenSecret) avoids passwords",
                                  options.username)
                    : "check tokenID (USER@REALM!NAME) and tokenSecret, and that the token exists and has not "
                      "expired (pveum user token list USER@REALM)");
    report.SkipAll({"proxmox version", "proxmox privileges", "proxmox nodes"}, "authentication");
    return;
  }
  report.Pass("proxmox auth", fmt::format("authenticated as {}", auth_id));
  const int major = std::atoi(version->version.c_str());
  if (major < 8) {
    report.Warn("proxmox version", fmt::format("Proxmox VE {}", version->version),
                "upgrade to Proxmox VE 8 or 9; older versions lack download-url and resource mappings");
  } else {
    report.Pass("proxmox version", fmt::format("Proxmox VE {}", version->version));
  }

  auto permissions = (*client)->GetPermissions();
  if (!permissions.ok()) {
    report.Fail("proxmox privileges", fmt::format("cannot read /access/permissions: {}", Msg(permissions.status())),
                "check the token's privileges; /access/permissions needs no privilege of its own");
  } else if (auto check = pve::CheckPrivileges(*permissions, pve::ProvisioningPrivileges(), auth_id); !check.ok()) {
    const auto commands = pve::GrantCommands(*permissions, pve::ProvisioningPrivileges(), auth_id);
    report.Fail("proxmox privileges", Msg(check),
                fmt::format("on a Proxmox node, as root, run (docs/proxmox-permissions.md says why each is "
                            "needed):\n      {}",
                            fmt::join(commands, "\n      ")));
  } else {
    report.Pass("proxmox privileges",
                fmt::format("all {} privileges the provider needs are granted", pve::ProvisioningPrivileges().size()));
  }

  auto facts = ReadClusterFacts(**client);
  if (!facts.ok()) {
    report.Fail("proxmox nodes", fmt::format("cannot list nodes: {}", Msg(facts.status())),
                "grant Sys.Audit on /nodes to the token");
    return;
  }
  std::vector<std::string> online, offline;
  for (const auto& node : *facts) {
    (node.snapshot.online ? online : offline)
        .push_back(node.storage_error.empty()
                       ? node.snapshot.name
                       : fmt::format("{} (unreachable: {})", node.snapshot.name, node.storage_error));
  }
  if (online.empty()) {
    report.Fail("proxmox nodes", fmt::format("no node is online (offline: {})", fmt::join(offline, ", ")),
                "bring a node online; VMs are only placed on online nodes");
  } else if (!offline.empty()) {
    report.Warn("proxmox nodes",
                fmt::format("online: {}; offline: {}", fmt::join(online, ", "), fmt::join(offline, ", ")),
                "VMs are not placed on offline nodes; bring them back or ignore this if intended");
  } else {
    report.Pass("proxmox nodes", fmt::format("online: {}", fmt::join(online, ", ")));
  }
  for (const auto& node : *facts) {
    if (!node.snapshot.online) continue;
    std::vector<std::string> iso, images;
    for (const auto& s : node.snapshot.storages) {
      if (!s.enabled || !s.active) continue;
      if (std::find(s.content.begin(), s.content.end(), "iso") != s.content.end()) iso.push_back(s.name);
      if (UsableForDisks(s)) images.push_back(s.name);
    }
    const std::string name = fmt::format("storage on {}", node.snapshot.name);
    if (iso.empty() || images.empty()) {
      std::vector<std::string> missing;
      if (iso.empty()) missing.push_back("no enabled, active storage with 'iso' content (for the Talos ISO)");
      if (images.empty()) missing.push_back("no enabled, active storage with 'images' content (for VM disks)");
      report.Fail(name, fmt::format("{}", fmt::join(missing, "; ")),
                  "enable the content type on a storage in Datacenter -> Storage (e.g. pvesm set local --content "
                  "iso,images)");
    } else {
      report.Pass(name, fmt::format("iso: {}; images: {}", fmt::join(iso, ", "), fmt::join(images, ", ")));
    }
  }
}

// --- Omni ------------------------------------------------------------------------------------

void CheckMachinesConnect(omni::StateClient& state, const std::string& provider_id, Report& report);

// What the Omni client will trust, checked before it connects.
struct OmniTls {
  bool usable = true;     // false: the CA bundle the operator chose cannot be used (already failed)
  bool verified = false;  // a TLS endpoint whose certificate is verified: the call's outcome says how
  bool chosen = false;    // the bundle came from the operator (flag or variable), not the system
  std::string roots;      // "--omni-ca-file 'ca.pem' (1 certificate)", for messages
};

// A plain http:// (or grpc://) endpoint is warned about, as for Proxmox; skipped verification too.
// A CA bundle the operator named must be readable PEM.
OmniTls CheckOmniTlsSettings(const omni::ClientOptions& options, Report& report) {
  OmniTls tls;
  auto parsed = omni::ParseEndpoint(options.endpoint);
  if (!parsed.ok()) return tls;  // the client says so when it is made
  if (!parsed->tls) {
    report.Warn("omni tls",
                fmt::format("plain {}: the signed calls and Omni's answers travel unencrypted",
                            options.endpoint.substr(0, options.endpoint.find(':'))),
                "use Omni's https:// endpoint");
    return tls;
  }
  if (options.insecure_skip_verify) {
    report.Warn("omni tls", "certificate verification skipped (--insecure-skip-verify)",
                "pass --omni-ca-file with the CA that signed Omni's certificate and drop --insecure-skip-verify");
    return tls;
  }
  const omni::RootsFile file =
      omni::ResolveRootsFile(options.tls_ca_file, options.tls_ca_file_origin, omni::ProcessEnv);
  auto roots = omni::LoadRoots(file);
  tls.chosen = !file.system;
  if (!roots.ok()) {
    if (file.system) {
      tls.roots = "gRPC's default roots";  // no system bundle: gRPC falls back to its own
    } else {
      report.Fail("omni tls", Msg(roots.status()),
                  fmt::format("fix {} or unset it; it must name a PEM file with the CA that signed Omni's certificate",
                              file.origin));
      tls.usable = false;
      return tls;
    }
  } else {
    tls.roots = fmt::format("{} '{}' ({} certificate{})", file.origin, file.path, roots->certificates,
                            roots->certificates == 1 ? "" : "s");
  }
  tls.verified = true;
  return tls;
}

// gRPC reports a failed handshake as UNAVAILABLE; its text names the TLS layer.
bool LooksLikeTlsFailure(const std::string& message) {
  std::string lower = message;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* marker : {"handshake", "certificate", "ssl_error", "tsi_"}) {
    if (lower.find(marker) != std::string::npos) return true;
  }
  return false;
}

// A first call that failed in the TLS handshake: Omni answers, but its certificate does not
// verify. The fix names the CA flag, not DNS and the firewall. True when it was reported.
bool ReportedTlsFailure(const OmniTls& tls, const std::string& endpoint, const absl::Status& call, Report& report) {
  if (!tls.verified || call.code() != absl::StatusCode::kUnavailable || !LooksLikeTlsFailure(Msg(call))) return false;
  report.Pass("omni reachable", fmt::format("{} answers, but TLS fails", endpoint));
  report.Fail("omni tls", fmt::format("the certificate does not verify against {}: {}", tls.roots, Msg(call)),
              tls.chosen ? fmt::format("check that {} holds the CA that signed Omni's certificate, and that the "
                                       "endpoint names the host as the certificate does",
                                       tls.roots)
                         : "pass --omni-ca-file (or set OMNI_CA_FILE) with the CA that signed Omni's certificate, "
                           "or, knowingly, --insecure-skip-verify");
  report.SkipAll({"provider registered", "siderolink url", "machines connect", "provider heartbeat"},
                 "a verified TLS connection");
  return true;
}

void CheckOmni(const ConnectionFlags& flags, Report& report) {
  auto endpoint = ResolveOmniEndpoint(flags);
  if (!endpoint.ok()) {
    report.Fail("omni endpoint", Msg(endpoint.status()), "pass --omni-api-endpoint or set OMNI_ENDPOINT");
  } else {
    report.Pass("omni endpoint", *endpoint);
  }

  auto key = ResolveProviderKey(flags);
  std::string key_blocker;
  if (!key.ok()) {
    report.Fail("omni key", Msg(key.status()),
                "create one with omnictl infraprovider create <id> and pass it with --omni-service-account-key-file");
    key_blocker = "a usable provider key";
  } else if (auto info = omni::InspectPgpKey(key->armored_private_key.Reveal(), util::RealClock().Now()); !info.ok()) {
    report.Fail("omni key", fmt::format("{}: {}", key->name, Msg(info.status())),
                "create a new key with omnictl infraprovider create <id> (or renew it in the Omni UI)");
    key_blocker = "a valid provider key";
  } else if (info->expires && *info->expires <= util::RealClock().Now()) {
    report.Fail("omni key", fmt::format("{} expired on {}", key->name, UtcDate(*info->expires)),
                "create a new key with omnictl infraprovider create <id>");
    key_blocker = "an unexpired provider key";
  } else if (info->expires && *info->expires - util::RealClock().Now() < kKeyExpiryWarning) {
    report.Warn("omni key", fmt::format("{} expires on {}", key->name, UtcDate(*info->expires)),
                "renew the key before it expires; the provider cannot talk to Omni after that");
  } else {
    report.Pass("omni key", fmt::format("{}, {}", key->name,
                                        info->expires ? "expires " + UtcDate(*info->expires) : "never expires"));
  }

  std::string provider_id;
  if (key_blocker.empty()) {
    auto id = ResolveProviderId(flags, *key);
    if (!id.ok()) {
      report.Fail("provider id", Msg(id.status()), "drop --id, or pass the ID exactly as in the key");
    } else {
      provider_id = *id;
      report.Pass("provider id", fmt::format("'{}' (the key's identity)", provider_id));
    }
  } else {
    report.Skip("provider id", key_blocker);
  }

  const std::vector<std::string> remote = {"omni reachable", "provider registered", "siderolink url",
                                           "machines connect", "provider heartbeat"};
  if (!endpoint.ok() || !key_blocker.empty() || provider_id.empty()) {
    report.SkipAll(remote, !endpoint.ok()         ? "an Omni endpoint"
                           : !key_blocker.empty() ? key_blocker
                                                  : "a provider ID that matches the key");
    return;
  }

  omni::ClientOptions options;
  options.endpoint = *endpoint;
  options.insecure_skip_verify = flags.insecure_skip_verify;
  std::tie(options.tls_ca_file, options.tls_ca_file_origin) = ResolveOmniCaFile(flags);
  const auto tls = CheckOmniTlsSettings(options, report);
  if (!tls.usable) {
    report.SkipAll(remote, "a usable CA bundle for Omni");
    return;
  }
  options.key = *key;
  options.provider_id = provider_id;
  options.call_timeout = std::chrono::milliseconds{15'000};
  util::Random random(util::Random::SeedFromDevice());
  options.random = &random;
  auto state = omni::MakeGrpcStateClient(options);
  if (!state.ok()) {
    report.Fail("omni reachable", Msg(state.status()), "check --omni-api-endpoint and the key");
    report.SkipAll({"provider registered", "siderolink url", "machines connect", "provider heartbeat"},
                   "an Omni client");
    return;
  }
  // A provider may not read InfraProviders/<id> itself, but Omni refuses every call into the
  // provider namespaces with "infra provider ... is not registered" until it exists: reading our
  // own heartbeat answers both questions.
  auto health = (*state)->Get({std::string(omni::kNamespaceInfraProviderEphemeral),
                               std::string(omni::kTypeInfraProviderHealthStatus), provider_id});
  const auto code = health.ok() ? absl::StatusCode::kOk : health.status().code();
  if (ReportedTlsFailure(tls, *endpoint, health.status(), report)) return;
  if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded) {
    report.Fail("omni reachable", fmt::format("{}: {}", *endpoint, Msg(health.status())),
                "check --omni-api-endpoint (https://<account>.omni.siderolabs.io/), DNS and the firewall");
    report.SkipAll({"provider registered", "siderolink url", "machines connect", "provider heartbeat"},
                   "a reachable Omni");
    return;
  }
  if (code == absl::StatusCode::kUnauthenticated) {
    // "invalid signature" is all Omni says: the key is unknown here, whatever the cause.
    report.Fail("omni reachable",
                fmt::format("{} does not know the key {}: {}", *endpoint, key->name, Msg(health.status())),
                fmt::format("this endpoint does not know this key: it may belong to another Omni (check "
                            "--omni-api-endpoint) or its service account was destroyed here (create a new key with "
                            "omnictl infraprovider create {})",
                            provider_id));
    report.SkipAll({"provider registered", "siderolink url", "machines connect", "provider heartbeat"},
                   "a key Omni accepts");
    return;
  }
  report.Pass("omni reachable", fmt::format("{}, key accepted", *endpoint));
  if (tls.verified) report.Pass("omni tls", fmt::format("certificate verified against {}", tls.roots));
  if (code == absl::StatusCode::kPermissionDenied) {
    const bool missing = Msg(health.status()).find("not registered") != std::string::npos;
    report.Fail("provider registered",
                missing ? fmt::format("InfraProviders/{} does not exist in Omni: {}", provider_id, Msg(health.status()))
                        : fmt::format("Omni denies provider '{}': {}", provider_id, Msg(health.status())),
                fmt::format("register the provider with omnictl infraprovider create {} (IDs are case-sensitive; "
                            "the key must be that provider's)",
                            provider_id));
    report.SkipAll({"siderolink url", "machines connect", "provider heartbeat"}, "a registered provider");
    return;
  }
  report.Pass("provider registered", fmt::format("InfraProviders/{} exists", provider_id));
  CheckMachinesConnect(**state, provider_id, report);

  if (code == absl::StatusCode::kNotFound) {
    report.Warn("provider heartbeat", "no heartbeat yet: the provider has not run against this Omni",
                "start it: omni-proxmox run (with the same flags)");
    return;
  }
  if (!health.ok()) {
    report.Fail("provider heartbeat", fmt::format("cannot read the heartbeat: {}", Msg(health.status())),
                "check the key's access to the infra-provider-ephemeral namespace");
    return;
  }
  specs::InfraProviderHealthStatusSpec spec;
  if (!spec.ParseFromString(health->proto_spec)) {
    report.Fail("provider heartbeat", "the heartbeat resource does not decode", "check the Omni version");
    return;
  }
  const auto beat = util::Clock::SystemTime{} + std::chrono::seconds{spec.last_heartbeat_timestamp().seconds()};
  const auto age = std::chrono::duration_cast<std::chrono::seconds>(util::RealClock().Now() - beat);
  if (age > kHeartbeatWindow) {
    report.Fail("provider heartbeat",
                fmt::format("last heartbeat {} ago (Omni shows the provider disconnected after {} s)", HumanAge(age),
                            kHeartbeatWindow.count()),
                "is omni-proxmox run running? check its logs and its /readyz endpoint");
  } else if (!spec.error().empty()) {
    report.Fail("provider heartbeat", fmt::format("fresh ({} ago) but reports: {}", HumanAge(age), spec.error()),
                "fix the error the provider reports (usually its Proxmox connection)");
  } else {
    report.Pass("provider heartbeat", fmt::format("fresh ({} ago)", HumanAge(std::max(age, std::chrono::seconds{0}))));
  }
}

// Machines not registering (the operator document's troubleshooting): where VMs must connect, and
// provisioned requests whose machine Omni has not seen.
void CheckMachinesConnect(omni::StateClient& state, const std::string& provider_id, Report& report) {
  auto siderolink = state.Get(
      {std::string(omni::kNamespaceDefault), std::string(omni::kTypeSiderolinkAPIConfig), "siderolink-config"});
  if (!siderolink.ok()) {
    report.Warn("siderolink url", fmt::format("cannot read SiderolinkAPIConfig: {}", Msg(siderolink.status())),
                "check the Omni version; VMs join through the URL it advertises");
  } else {
    specs::SiderolinkAPIConfigSpec spec;
    (void)omni::DecodeSpec(*siderolink, spec);
    const std::string& url = spec.machine_api_advertised_url();
    const bool local = url.find("://127.") != std::string::npos || url.find("://localhost") != std::string::npos ||
                       url.find("://[::1]") != std::string::npos;
    if (url.empty() || local) {
      report.Warn("siderolink url", fmt::format("Omni advertises '{}' to machines", url),
                  "VMs cannot reach a loopback address: set Omni's advertised SideroLink URL "
                  "(--siderolink-api-advertised-url) to an address the VM network reaches");
    } else {
      report.Pass("siderolink url", fmt::format("machines join through {} (it must be reachable from the VM "
                                                "network, port included)",
                                                url));
    }
  }
  const omni::LabelQuery ours = {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), provider_id)};
  auto statuses =
      state.List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), ours});
  auto registrations =
      state.List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeInfraMachineRegistration), ours});
  if (!statuses.ok() || !registrations.ok()) {
    report.Warn("machines connect",
                fmt::format("cannot list MachineRequestStatuses or InfraMachineRegistrations: {}",
                            Msg(statuses.ok() ? registrations.status() : statuses.status())),
                "check the key's access to the infra-provider namespace");
    return;
  }
  std::set<std::string> seen;
  for (const auto& r : *registrations) {
    if (auto it = r.metadata.labels.find(std::string(omni::kLabelMachineRequest)); it != r.metadata.labels.end()) {
      seen.insert(it->second);
    }
  }
  std::vector<std::string> waiting;
  for (const auto& s : *statuses) {
    specs::MachineRequestStatusSpec spec;
    if (!omni::DecodeSpec(s, spec).ok() || spec.stage() != specs::MachineRequestStatusSpec::PROVISIONED) continue;
    const auto age = std::chrono::duration_cast<std::chrono::seconds>(util::RealClock().Now() - s.metadata.updated);
    if (!seen.contains(s.metadata.id) && age > kMachineConnectWait) waiting.push_back(s.metadata.id);
  }
  if (waiting.empty()) {
    report.Pass("machines connect",
                fmt::format("every provisioned machine has connected to Omni ({} seen)", seen.size()));
    return;
  }
  report.Warn("machines connect", fmt::format("provisioned but never connected to Omni: {}", fmt::join(waiting, ", ")),
              "the usual causes: the SideroLink URL above is not reachable from the VM network (DNS, firewall, "
              "a tailnet-only name); the VM booted without the provider's join config (its cloud-init ISO "
              "missing or replaced, a template with its own config); a config patch that changes the machine's "
              "hostname or network so that it cannot come up. Check the VM console in Proxmox");
}

void Print(const Report& report, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    json out = {{"ok", !report.failed()}, {"checks", json::array()}};
    for (const auto& c : report.checks()) {
      json entry = {{"check", c.name}, {"status", OutcomeName(c.outcome)}, {"detail", c.detail}};
      if (!c.fix.empty()) entry["fix"] = c.fix;
      out["checks"].push_back(std::move(entry));
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : report.checks()) rows.push_back({c.name, std::string(OutcomeName(c.outcome)), c.detail});
  std::cout << RenderTable({"CHECK", "STATUS", "DETAIL"}, rows);
  bool header = false;
  for (const auto& c : report.checks()) {
    if (c.fix.empty()) continue;
    if (!header) std::cout << "\nHow to fix:\n";
    header = true;
    std::cout << fmt::format("  {} ({}): {}\n", c.name, OutcomeName(c.outcome), c.fix);
  }
  std::cout << (report.failed() ? "\nSome checks failed.\n" : "\nAll checks passed.\n");
}

}  // namespace

void RegisterDoctorCommand(CLI::App& root, CommandContext& ctx) {
  auto* cmd = root.add_subcommand(
      "doctor", "Check the configuration, Proxmox and Omni: everything the provider needs, each with a fix");
  auto flags = std::make_shared<ConnectionFlags>();
  AddConnectionFlags(*cmd, *flags);
  cmd->footer(
      "Checks: the config file and credentials; Proxmox reachable, TLS, authentication, version, privileges\n"
      "(/access/permissions), nodes, ISO and disk storage per online node; the Omni endpoint, the key (valid,\n"
      "unexpired), the provider ID against the key, Omni reachable, InfraProviders/<id> registered, heartbeat.\n"
      "\n"
      "Examples:\n"
      "  omni-proxmox doctor --config-file config.yaml --omni-api-endpoint https://acme.omni.siderolabs.io/ \\\n"
      "      --omni-service-account-key-file provider.key\n"
      "  OMNI_ENDPOINT=... OMNI_INFRA_PROVIDER_KEY=... PROXMOX_URL=... omni-proxmox doctor\n"
      "  omni-proxmox --format json doctor --config-file config.yaml ... | jq '.checks[] | select(.status==\"fail\")'\n"
      "\n"
      "Exit code: 0 when no check failed (warnings allowed), 1 when any failed, 2 for bad flags.\n");
  cmd->callback([&ctx, flags] {
    Report report;
    CheckProxmox(*flags, report);
    CheckOmni(*flags, report);
    Print(report, ctx.output);
    ctx.exit_code = report.failed() ? kExitFindings : kExitOk;
    // As in every command: a --config-file that cannot be read is a usage error.
    if (!flags->config_file.empty() && !std::ifstream(flags->config_file)) {
      std::cerr << fmt::format("omni-proxmox doctor: --config-file '{}' cannot be read\n", flags->config_file);
      ctx.exit_code = kExitUsage;
    }
  });
}

}  // namespace omni_proxmox::cli
