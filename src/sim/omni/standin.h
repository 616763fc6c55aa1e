// SPDX-License-Identifier: Apache-2.0
#pragma once

// The Omni stand-in: a loopback gRPC server (plaintext h2c) serving cosi.resource.State and the
// parts of management.ManagementService an infra provider uses, with Omni's signature checks,
// infra-provider access rules and the controllers a provider can observe, plus a fake Image
// Factory over HTTP. Tests, the demo and operators drive it through the controls below or
// `omni-proxmox omni-sim`. See docs/omni-sim.md.
//
// Thread-safe: the gRPC server, the factory and the controllers run on their own threads; every
// public method may be called from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "sim/omni/accounts.h"
#include "sim/omni/journal.h"
#include "sim/omni/state_store.h"
#include "util/clock.h"

namespace omni_proxmox::sim::omni {

struct StandInOptions {
  std::string provider_id = "proxmox";
  std::string bind_address = "127.0.0.1";
  int grpc_port = 0;     // 0 = free port
  int factory_port = 0;  // Image Factory fake (HTTP)
  // Unauthenticated HTTP control endpoint for shells and demos (docs/omni-sim.md); -1 = off,
  // 0 = a free port. Bind it to loopback only.
  int control_port = -1;
  std::string keys_dir;  // if set, write admin.key and <provider-id>.key (base64 JSON) there
  // If set, keys, resources (all but infra-provider-ephemeral), schematics, the self-signed TLS
  // certificate and the ports chosen are kept in DIR/state.json and loaded at the next start: a
  // restart with the same directory is what an Omni restart looks like to a provider. Ports left
  // at 0 reuse the ones the snapshot names.
  std::string state_dir;
  // Omni's admission of MachineClasses and MachineRequestSets (section 8): providerdata checked
  // against the provider's published schema, request sets refused for a provider without an
  // InfraProviderStatus. On, as in Omni: scale after the provider has published its status, and
  // feed deliberately bad providerdata with PlantMachineRequest. `omni-sim --lenient` turns it off.
  bool omni_admission = true;
  const util::Clock* clock = nullptr;  // optional injected clock
  // The mutation journal's clock (journal.h); nullptr = util::RealClock(), whose monotonic time
  // the Proxmox simulator's journal and a test's own clock share. Not `clock`: that one may be simulated.
  const util::Clock* journal_clock = nullptr;
  std::uint64_t seed = 1;
  // What Omni advertises to machines (SiderolinkAPIConfig); machines never dial it here.
  std::string siderolink_api_url = "https://127.0.0.1:8090";
  int events_port = 8091;
  int logs_port = 8092;
  std::string talos_version = "1.10.4";  // default for MachineRequestSets
  // Omni's "connected" window for the provider heartbeat.
  std::chrono::seconds heartbeat_window = std::chrono::seconds(31);
  // Serve gRPC over TLS instead of plaintext h2c. Without a certificate and key (PEM), a
  // self-signed one for the bind address and "localhost" is generated; tls_ca_pem() returns it.
  bool tls = false;
  std::string tls_cert_pem;
  std::string tls_key_pem;
};

// The auto-provision part of a MachineClass (Omni's MachineClassSpec.auto_provision).
struct MachineClassOptions {
  std::string provider_id;  // empty = the stand-in's provider
  std::vector<std::string> kernel_args;
  std::map<std::uint32_t, std::string> meta_values;
  int grpc_tunnel = 0;  // specs.GrpcTunnelMode
};

// One machine that joined (InfraMachineRegistration created).
struct JoinedMachine {
  std::string uuid;
  std::string machine_request;
  std::string provider_id;
};

class StandIn {
 public:
  static absl::StatusOr<std::unique_ptr<StandIn>> Start(StandInOptions options);
  ~StandIn();
  StandIn(const StandIn&) = delete;
  StandIn& operator=(const StandIn&) = delete;

  std::string grpc_endpoint() const;  // "http://127.0.0.1:PORT" ("https://..." with TLS)
  std::string factory_url() const;    // "http://127.0.0.1:PORT"
  std::string control_url() const;    // "http://127.0.0.1:PORT", or "" when control_port is -1
  std::string provider_key() const;   // base64 JSON infra-provider key
  std::string admin_key() const;
  const std::string& provider_id() const;
  int grpc_port() const;
  // With TLS: the PEM certificate clients should trust (written to keys_dir/ca.pem too). Else "".
  std::string tls_ca_pem() const;

  // --- test/demo controls ---------------------------------------------------------------------
  // Creates or replaces MachineClasses/<id> with auto-provisioning through the provider. When the
  // provider has published an InfraProviderStatus, the providerdata must satisfy its JSON schema
  // (InvalidArgument with Omni's "config value ...: ..." messages, see providerdata_schema.h).
  absl::Status ApplyMachineClass(std::string id, std::string providerdata_yaml, MachineClassOptions extra = {});
  // Creates or updates MachineRequestSets/<set_id> for `machine_class` with `count` machines; the
  // controller then creates MachineRequests "<set>-<6 chars>" or tears extra ones down. Count 0
  // tears every request of the set down. A count above 0 needs the class's provider to have
  // published its InfraProviderStatus (FailedPrecondition "failed to get provider ..." otherwise)
  // and providerdata that satisfies its schema, as Omni admits request sets.
  absl::Status ScaleMachineRequestSet(std::string set_id, std::string machine_class, int count);
  // `omnictl cluster template sync -f`: the multi-document template (kind Cluster, ControlPlane,
  // Workers with machineClass {name, size}) becomes Clusters/<name> and MachineSets
  // "<name>-control-planes", "<name>-workers" / "<name>-<workers name>"; machine sets the template
  // no longer names are removed. The controllers then make a MachineRequestSet per machine set
  // whose class auto-provisions (cluster_controllers.cc). Returns the cluster's name. The classes
  // must exist (NotFound); static machines are not simulated (Unimplemented).
  absl::StatusOr<std::string> SyncClusterTemplate(const std::string& template_yaml);
  // `omnictl cluster delete NAME`: its machine sets go, then their request sets and requests.
  absl::Status DeleteCluster(const std::string& name);
  // A machine booted with `user_data`: verifies the join token (HMAC against the provider's join
  // token, provider ID, machine request) and registers the machine (InfraMachineRegistrations/<uuid>).
  absl::Status MachineJoined(const std::string& user_data, const std::string& machine_uuid);

  // Registers another infra provider (InfraProviders/<id>, ProviderJoinConfigs/<id>) and returns
  // its key; or removes the registration (InfraProviders/<id>) to test the "must exist" rule.
  absl::StatusOr<std::string> AddInfraProvider(const std::string& id);
  absl::Status RemoveInfraProvider(const std::string& id);
  // Revokes a key by its encoded form (every later call signed with it is refused).
  absl::Status RevokeKey(const std::string& encoded_key);
  // `omnictl serviceaccount destroy NAME` (e.g. "infra-provider:proxmox"): unary calls signed with
  // its keys answer Unauthenticated "invalid signature" at once; watch streams already open keep
  // delivering events, as in Omni (omni-protocol.md section 8).
  absl::Status DestroyServiceAccount(const std::string& name);
  // `omnictl infraprovider delete ID`: InfraProviders/<id>, its InfraProviderStatus, its
  // ProviderJoinConfig and its service account go; the ephemeral InfraProviderHealthStatus lingers.
  absl::Status DeleteInfraProvider(const std::string& id);
  // `omnictl serviceaccount create NAME --role ROLE` (Reader, Operator or Admin): returns the key
  // in the base64 JSON format; its identity is NAME@serviceaccount.omni.sidero.dev.
  absl::StatusOr<std::string> CreateServiceAccount(const std::string& name, Role role);
  // Creates MachineRequests/<id> for the stand-in's provider directly, without the
  // MachineRequestSet admission: what a request set admitted under an older provider schema leaves
  // behind, so tests can feed the provider providerdata Omni would refuse today.
  absl::Status PlantMachineRequest(const std::string& id, const std::string& providerdata_yaml,
                                   const std::string& request_set = "");
  // Publishes InfraProviderStatuses/<id> with `schema_json` as if the provider had started, for
  // tests that exercise MachineRequestSets without running a provider.
  absl::Status PublishProviderStatusForTest(const std::string& provider_id, const std::string& schema_json = "");

  // --- inspection ---------------------------------------------------------------------------
  StateStore& state();
  // Whether the provider has published InfraProviderStatuses/<id> (it does when it starts): from
  // then on Omni admits request sets for it, checked against the schema it published.
  bool ProviderStatusPublished(const std::string& provider_id) const;
  // Whether Omni would show the provider as connected: heartbeat younger than heartbeat_window.
  bool ProviderConnected(const std::string& provider_id) const;
  std::vector<JoinedMachine> JoinedMachines() const;
  // Calls whose signature was accepted, by full gRPC method ("/cosi.resource.State/Get"); a
  // watch counts once per stream opened.
  std::map<std::string, std::uint64_t> SignedCalls() const;
  // Every mutating call admitted, with the replica that sent it, and the leader lease's history
  // (journal.h); the control endpoint serves the same as GET /journal.
  const Journal& journal() const;
  std::string JoinToken(const std::string& provider_id) const;  // the plain per-provider token
  // Blocks until `predicate` holds (checked after every state change) or `timeout` passes.
  bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) const;

  // --- restart hooks ------------------------------------------------------------------------------
  // Stops the gRPC server (open streams end with an error); state is kept.
  void StopServing();
  // Serves again on the same port; resumed watches with old bookmarks continue.
  absl::Status ResumeServing();
  // A real Omni restart: stop serving, invalidate every bookmark (resumes fail with
  // FailedPrecondition, so clients must re-bootstrap), drop the in-memory namespace
  // infra-provider-ephemeral (heartbeats), and serve again on the same port.
  absl::Status RestartAsNewProcess();

  class Impl;  // implementation detail (standin.cc); public only so the gRPC services can name it

 private:
  explicit StandIn(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace omni_proxmox::sim::omni
