// SPDX-License-Identifier: Apache-2.0
#pragma once

// How every command that talks to Omni and Proxmox gets its settings: the Go provider's flags and
// environment variables (so one compose file or shell profile serves `run`, `doctor`, `status`
// and `gc` alike), resolved into clients. Internal to cli/.

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include <CLI/CLI.hpp>

#include "omni/keys.h"
#include "omni/management_client.h"
#include "omni/state_client.h"
#include "pve/client.h"
#include "pve/config.h"
#include "util/random.h"

namespace omni_proxmox::cli {

struct ConnectionFlags {
  std::string config_file;
  std::string endpoint;
  std::string key;
  std::string key_file;
  std::string id = "proxmox";
  bool id_given = false;
  bool insecure_skip_verify = false;
  std::string omni_ca_file;  // --omni-ca-file (env OMNI_CA_FILE)
};

// Adds --config-file, --omni-api-endpoint, --omni-service-account-key[-file], --id,
// --insecure-skip-verify and --omni-ca-file to `cmd`, bound to `flags` (which must outlive the parse).
void AddConnectionFlags(CLI::App& cmd, ConnectionFlags& flags);

// The value of an environment variable, or nullopt when unset or empty.
std::optional<std::string> Env(const char* name);

// The environment variable naming a file that holds the infra provider key (a compose secret).
inline constexpr char kProviderKeyFileEnv[] = "OMNI_INFRA_PROVIDER_KEY_FILE";

// Each resolver returns InvalidArgument with a message naming the flag or variable and the fix.
// The endpoint: --omni-api-endpoint, else OMNI_ENDPOINT, else https://$OMNI_DOMAIN/.
absl::StatusOr<std::string> ResolveOmniEndpoint(const ConnectionFlags& flags);
// The key: --omni-service-account-key, its -file form, else OMNI_SERVICE_ACCOUNT_KEY or
// OMNI_INFRA_PROVIDER_KEY, else the file OMNI_INFRA_PROVIDER_KEY_FILE names; decoded, never echoed.
absl::StatusOr<omni::ServiceAccountKey> ResolveProviderKey(const ConnectionFlags& flags);
// The provider ID: the key's identity. A different --id is an error; one differing only in case
// gets its own message naming both, because Omni IDs are case-sensitive.
absl::StatusOr<std::string> ResolveProviderId(const ConnectionFlags& flags, const omni::ServiceAccountKey& key);
// The CA bundle for Omni's TLS that the operator named, and the flag or variable it came from:
// --omni-ca-file, else OMNI_CA_FILE; {"", ""} when neither (omni/tls_roots.h then tries
// GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, SSL_CERT_FILE and the system bundle).
std::pair<std::string, std::string> ResolveOmniCaFile(const ConnectionFlags& flags);
// Proxmox settings: --config-file, else the environment (pve::ConfigFromEnv).
absl::StatusOr<pve::ClientOptions> ResolvePveOptions(const ConnectionFlags& flags);

// A service-account key for what the infra-provider key may not read (status --cluster): the file
// holds the base64 key omnictl prints (alone, or as its OMNI_SERVICE_ACCOUNT_KEY=... line).
absl::StatusOr<omni::ServiceAccountKey> ReadOperatorKey(const std::string& key_file);

// A State client signed by an operator key (any role), for reads that need Reader or more.
struct OperatorConnection {
  omni::ServiceAccountKey key;
  std::unique_ptr<util::Random> random;  // outlives the client, which borrows it
  std::unique_ptr<omni::StateClient> state;
};
absl::StatusOr<OperatorConnection> ConnectOperator(const ConnectionFlags& flags, const std::string& key_file);

// Everything a command needs to talk to both sides. Clients are created lazily by gRPC and
// libcurl, so a successful Connect() says the settings are usable, not that the peers answer.
struct Connections {
  std::string provider_id;
  std::string endpoint;
  pve::ClientOptions pve_options;
  omni::ServiceAccountKey key;
  std::unique_ptr<util::Random> random;  // outlives the Omni clients, which borrow it
  // Shared by the Omni clients: refusals of the key, answers that re-arm waiting watches.
  std::shared_ptr<omni::CallMonitor> omni_monitor;
  std::unique_ptr<pve::Client> pve;
  std::unique_ptr<omni::StateClient> state;
  std::unique_ptr<omni::ManagementClient> management;
  // Only with ConnectOptions::ungated_state: a State client the gate does not guard (the leader
  // lease's own writes).
  std::unique_ptr<omni::StateClient> ungated_state;
};

// What `run` adds to the clients: who this replica is, and the gate of its leader lease.
struct ConnectOptions {
  std::string replica;
  const util::MutationGate* mutation_gate = nullptr;  // must outlive the clients
  bool ungated_state = false;
};

absl::StatusOr<Connections> Connect(const ConnectionFlags& flags, const ConnectOptions& extra = {});

}  // namespace omni_proxmox::cli
