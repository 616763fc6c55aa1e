// SPDX-License-Identifier: Apache-2.0
#include "cli/connection.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "omni/client_options.h"
#include "util/log.h"
#include "util/status_macros.h"

namespace omni_proxmox::cli {
namespace {

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(fmt::format("{}: cannot read '{}'", flag, path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// OMNI_DOMAIN is a host name (the compose stack builds Omni's URLs from it too), but "https://host"
// is what people paste: take it as meant. Any other scheme would change what the provider talks
// (plaintext), so it is refused rather than guessed.
absl::StatusOr<std::string> EndpointFromDomain(const std::string& domain) {
  const auto scheme_end = domain.find("://");
  if (scheme_end == std::string::npos) return fmt::format("https://{}/", domain);
  if (Lower(domain.substr(0, scheme_end)) == "https") return domain;
  return absl::InvalidArgumentError(
      fmt::format("OMNI_DOMAIN '{}': a host name is expected (the provider adds https://); write "
                  "OMNI_DOMAIN={}, or set OMNI_ENDPOINT (or --omni-api-endpoint) to the full URL",
                  domain, domain.substr(scheme_end + 3)));
}

}  // namespace

void AddConnectionFlags(CLI::App& cmd, ConnectionFlags& flags) {
  cmd.add_option("--config-file", flags.config_file, "Proxmox config.yaml (the Go provider's format)");
  cmd.add_option("--omni-api-endpoint", flags.endpoint, "Omni API endpoint (env OMNI_ENDPOINT, or OMNI_DOMAIN)");
  cmd.add_option("--omni-service-account-key", flags.key,
                 "Infra provider key (env OMNI_SERVICE_ACCOUNT_KEY or OMNI_INFRA_PROVIDER_KEY); prefer the -file "
                 "form, which keeps it out of the process list");
  cmd.add_option("--omni-service-account-key-file", flags.key_file,
                 "File holding the infra provider key (env OMNI_INFRA_PROVIDER_KEY_FILE)");
  cmd.add_option("--id", flags.id, "Provider ID; must equal the key's identity (default: the key's, else proxmox)")
      ->each([&flags](const std::string&) { flags.id_given = true; })
      ->capture_default_str();
  cmd.add_flag("--insecure-skip-verify", flags.insecure_skip_verify, "Do not verify Omni's TLS certificate");
  cmd.add_option("--omni-ca-file", flags.omni_ca_file,
                 "PEM CA bundle to verify Omni's TLS certificate with, instead of the system one (env OMNI_CA_FILE; "
                 "else GRPC_DEFAULT_SSL_ROOTS_FILE_PATH or SSL_CERT_FILE)");
}

std::pair<std::string, std::string> ResolveOmniCaFile(const ConnectionFlags& flags) {
  if (!flags.omni_ca_file.empty()) return {flags.omni_ca_file, "--omni-ca-file"};
  if (auto file = Env("OMNI_CA_FILE")) return {*file, "OMNI_CA_FILE"};
  return {"", ""};
}

std::optional<std::string> Env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

absl::StatusOr<std::string> ResolveOmniEndpoint(const ConnectionFlags& flags) {
  std::string endpoint = flags.endpoint;
  if (endpoint.empty()) endpoint = Env("OMNI_ENDPOINT").value_or("");
  if (endpoint.empty()) {
    if (auto domain = Env("OMNI_DOMAIN")) {
      OP_ASSIGN_OR_RETURN(endpoint, EndpointFromDomain(*domain));
    }
  }
  if (endpoint.empty()) {
    return absl::InvalidArgumentError(
        "no Omni endpoint: pass --omni-api-endpoint https://<account>.omni.siderolabs.io/ or set "
        "OMNI_ENDPOINT (or OMNI_DOMAIN)");
  }
  return endpoint;
}

absl::StatusOr<omni::ServiceAccountKey> ResolveProviderKey(const ConnectionFlags& flags) {
  std::string encoded = flags.key;
  if (encoded.empty() && !flags.key_file.empty()) {
    OP_ASSIGN_OR_RETURN(encoded, ReadSecretFile(flags.key_file, "--omni-service-account-key-file"));
  }
  if (encoded.empty()) encoded = Env("OMNI_SERVICE_ACCOUNT_KEY").value_or(Env("OMNI_INFRA_PROVIDER_KEY").value_or(""));
  // The file form of the variable, for container secrets (/run/secrets/...) named in a compose .env.
  if (const auto file = Env(kProviderKeyFileEnv); encoded.empty() && file) {
    OP_ASSIGN_OR_RETURN(encoded, ReadSecretFile(*file, kProviderKeyFileEnv));
  }
  if (encoded.empty()) {
    return absl::InvalidArgumentError(
        "no infra provider key: pass --omni-service-account-key-file FILE (keeps it out of the process list), "
        "--omni-service-account-key, or set OMNI_INFRA_PROVIDER_KEY_FILE, OMNI_SERVICE_ACCOUNT_KEY or "
        "OMNI_INFRA_PROVIDER_KEY");
  }
  auto key = omni::DecodeServiceAccountKey(encoded);
  if (!key.ok()) {
    return absl::InvalidArgumentError(fmt::format("infra provider key: {}", std::string(key.status().message())));
  }
  return *std::move(key);
}

absl::StatusOr<std::string> ResolveProviderId(const ConnectionFlags& flags, const omni::ServiceAccountKey& key) {
  OP_ASSIGN_OR_RETURN(const std::string key_id, omni::ProviderIdFromKeyName(key.name));
  if (flags.id == key_id) return key_id;
  if (Lower(flags.id) == Lower(key_id)) {
    return absl::InvalidArgumentError(
        fmt::format("provider ID '{}' (--id) differs only in case from the key's identity '{}' ({}); Omni IDs are "
                    "case-sensitive, so use --id {}",
                    flags.id, key_id, key.name, key_id));
  }
  if (flags.id_given) {
    return absl::InvalidArgumentError(
        fmt::format("provider ID '{}' (--id) does not match the key's identity '{}' ({}); use --id {} "
                    "or the key of provider '{}'",
                    flags.id, key_id, key.name, key_id, flags.id));
  }
  util::Logger("cli")->info("using provider ID '{}' from the key (no --id given)", key_id);
  return key_id;
}

absl::StatusOr<pve::ClientOptions> ResolvePveOptions(const ConnectionFlags& flags) {
  if (!flags.config_file.empty()) return pve::LoadConfigFile(flags.config_file);
  auto options = pve::ConfigFromEnv([](const char* name) { return Env(name); });
  if (!options.ok()) {
    return absl::InvalidArgumentError(fmt::format("no --config-file and no Proxmox settings in the environment: {}",
                                                  std::string(options.status().message())));
  }
  return options;
}

absl::StatusOr<omni::ServiceAccountKey> ReadOperatorKey(const std::string& key_file) {
  OP_ASSIGN_OR_RETURN(std::string text, ReadSecretFile(key_file, "--omni-operator-key-file"));
  // omnictl serviceaccount create prints OMNI_SERVICE_ACCOUNT_KEY=<key> among other lines.
  constexpr std::string_view kAssignment = "OMNI_SERVICE_ACCOUNT_KEY=";
  if (auto at = text.find(kAssignment); at != std::string::npos) {
    text = text.substr(at + kAssignment.size());
    text = text.substr(0, text.find_first_of("\r\n"));
  }
  auto key = omni::DecodeServiceAccountKey(text);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("--omni-operator-key-file '{}': {}; it takes the key of omnictl "
                    "serviceaccount create NAME --role Reader",
                    key_file, std::string(key.status().message())));
  }
  return *std::move(key);
}

absl::StatusOr<OperatorConnection> ConnectOperator(const ConnectionFlags& flags, const std::string& key_file) {
  OperatorConnection out;
  OP_ASSIGN_OR_RETURN(out.key, ReadOperatorKey(key_file));
  omni::ClientOptions options;
  OP_ASSIGN_OR_RETURN(options.endpoint, ResolveOmniEndpoint(flags));
  options.insecure_skip_verify = flags.insecure_skip_verify;
  options.key = out.key;
  options.require_infra_provider_key = false;  // a user's service account, not a provider's
  out.random = std::make_unique<util::Random>(util::Random::SeedFromDevice());
  options.random = out.random.get();
  OP_ASSIGN_OR_RETURN(out.state, omni::MakeGrpcStateClient(options));
  return out;
}

absl::StatusOr<Connections> Connect(const ConnectionFlags& flags, const ConnectOptions& extra) {
  Connections out;
  OP_ASSIGN_OR_RETURN(out.key, ResolveProviderKey(flags));
  OP_ASSIGN_OR_RETURN(out.provider_id, ResolveProviderId(flags, out.key));
  OP_ASSIGN_OR_RETURN(out.endpoint, ResolveOmniEndpoint(flags));
  OP_ASSIGN_OR_RETURN(out.pve_options, ResolvePveOptions(flags));
  out.pve_options.replica = extra.replica;
  out.pve_options.mutation_gate = extra.mutation_gate;
  OP_ASSIGN_OR_RETURN(out.pve, pve::MakeHttpClient(out.pve_options, util::RealClock()));

  out.random = std::make_unique<util::Random>(util::Random::SeedFromDevice());
  omni::ClientOptions omni_options;
  omni_options.endpoint = out.endpoint;
  omni_options.insecure_skip_verify = flags.insecure_skip_verify;
  std::tie(omni_options.tls_ca_file, omni_options.tls_ca_file_origin) = ResolveOmniCaFile(flags);
  omni_options.key = out.key;
  omni_options.provider_id = out.provider_id;
  omni_options.random = out.random.get();
  omni_options.replica = extra.replica;
  out.omni_monitor = std::make_shared<omni::CallMonitor>();
  omni_options.monitor = out.omni_monitor;
  if (extra.ungated_state) {
    OP_ASSIGN_OR_RETURN(out.ungated_state, omni::MakeGrpcStateClient(omni_options));
  }
  omni_options.mutation_gate = extra.mutation_gate;
  OP_ASSIGN_OR_RETURN(out.state, omni::MakeGrpcStateClient(omni_options));
  OP_ASSIGN_OR_RETURN(out.management, omni::MakeGrpcManagementClient(omni_options));
  return out;
}

}  // namespace omni_proxmox::cli
