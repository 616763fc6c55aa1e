// SPDX-License-Identifier: Apache-2.0
#pragma once

// Internal to sim/omni: the stand-in's implementation object and the resource codec its parts
// share (gRPC services in services.cc, controllers in controllers.cc, the HTTP control endpoint
// in control.cc, the --state-dir snapshot in persistence.cc, start-up and the public controls in
// standin.cc). Nothing outside src/sim/omni includes it.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>
#include <spdlog/spdlog.h>

#include "cosi/resource.pb.h"
#include "sim/omni/access.h"
#include "sim/omni/accounts.h"
#include "sim/omni/factory.h"
#include "sim/omni/journal.h"
#include "sim/omni/standin.h"
#include "sim/omni/state_store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/random.h"

namespace httplib {
class Server;
}

namespace omni_proxmox::sim::omni {

namespace pb = ::cosi::resource;

inline constexpr char kCleanupFinalizer[] = "MachineRequestStatusCleanupController";
// Owners of what the stand-in's cluster controllers write (Omni's controller names).
inline constexpr char kMachineProvisionController[] = "MachineProvisionController";
inline constexpr char kMachineSetNodeController[] = "MachineSetNodeController";
inline constexpr char kMachineSetStatusController[] = "MachineSetStatusController";
inline constexpr char kClusterMachineRequestStatusController[] = "ClusterMachineRequestStatusController";
inline constexpr char kClusterController[] = "ClusterTemplateSync";
inline constexpr char kSiderolinkConfigId[] = "siderolink-config";
inline constexpr char kFeaturesConfigId[] = "features-config";
inline constexpr char kSiderolinkHost[] = "fdae:41e4:649b:9303::1";  // Omni's fixed SideroLink address
inline constexpr auto kWatchPoll = std::chrono::milliseconds(100);
inline constexpr char kAlphanumeric[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// --- codec (codec.cc) ---------------------------------------------------------------------------
grpc::Status ToGrpc(const absl::Status& status);
// Typed specs for the types Omni registers (nullptr for the others, stored verbatim).
std::unique_ptr<google::protobuf::Message> NewSpec(const std::string& type);
std::string RenderYaml(const google::protobuf::Message& message);
// Decodes and re-renders a known type's spec. InvalidArgument names the field on bad bytes.
absl::Status NormalizeSpec(Resource& resource);
bool SpecsEqual(const std::string& type, const std::string& a, const std::string& b);
google::protobuf::Timestamp ToTimestamp(util::Clock::SystemTime t);
util::Clock::SystemTime FromTimestamp(const google::protobuf::Timestamp& ts);
void ToProto(const Resource& r, pb::Resource* out);
// Reads created/updated too: a Create keeps the client's (absent = the epoch, as in Omni).
absl::StatusOr<Resource> FromProto(const pb::Resource& in, const char* field);
ResourceFilter FilterFromProto(const google::protobuf::RepeatedPtrField<pb::LabelQuery>& queries,
                               const pb::IDQuery* id_query);
// Confines a filter to resources labelled for `provider_id` (Omni's shared-namespace rule).
void ConfineToProvider(ResourceFilter& filter, const std::string& provider_id);
bool LabelledFor(const Resource& r, const std::string& provider_id);
std::string RandomString(util::Random& random, int n, const char* alphabet);
Metadata ClientMetadata(const grpc::ServerContext& ctx);
// The replica a provider names in its x-omni-proxmox-replica metadata ("" when absent).
std::string ReplicaOf(const Metadata& metadata);

template <typename Spec>
Resource MakeResource(const std::string& ns, const std::string& type, const std::string& id, const Spec& spec,
                      Labels labels = {}) {
  Resource r;
  r.ns = ns;
  r.type = type;
  r.id = id;
  r.labels = std::move(labels);
  r.proto_spec = spec.SerializeAsString();
  r.yaml_spec = RenderYaml(spec);
  return r;
}

// The gRPC services (services.cc).
std::unique_ptr<grpc::Service> MakeStateService(StandIn::Impl& impl);
std::unique_ptr<grpc::Service> MakeManagementService(StandIn::Impl& impl);

// One key the stand-in issued, with the role it was registered with (kept in --state-dir).
struct IssuedKey {
  GeneratedKey key;
  Role role = Role::kNone;
};

class StandIn::Impl {
 public:
  explicit Impl(StandInOptions options);
  ~Impl();

  absl::Status Init();
  absl::Status StartControl(StandIn& standin);
  absl::Status Serve();
  void StopServing();

  // Auth + static rules + the "provider must be registered" rule, in Omni's order.
  absl::StatusOr<std::pair<Caller, AccessScope>> Admit(grpc::ServerContext* ctx, const char* method, Verb verb,
                                                       const std::string& ns, const std::string& type,
                                                       const std::string& id);

  void ControllerLoop(std::stop_token stop);
  void ReconcileOnce();
  void ReconcileRequestSets();
  void ReconcileStatuses();
  // Omni's cluster controllers (cluster_controllers.cc): request sets for auto-provisioned
  // machine sets, machine set nodes and statuses, ClusterMachineRequestStatuses.
  void ReconcileClusters();
  void ReconcileMachineProvision();
  void ReconcileMachineSetNodes();
  void ReconcileMachineSetStatuses();
  void ReconcileClusterMachineRequestStatuses();

  // Seeds what a fresh Omni has (namespaces, definitions, keys, join configs); not when a
  // snapshot was loaded from --state-dir.
  absl::Status SeedFresh();
  absl::StatusOr<GeneratedKey> NewProvider(const std::string& id);
  std::string RenderJoinConfig(const std::string& token) const;
  absl::Status WriteKeyFiles() const;
  // Omni's MachineRequestSet admission: the provider must have published an InfraProviderStatus,
  // and the providerdata must satisfy the schema in it.
  absl::Status AdmitProviderData(const std::string& provider_id, const std::string& providerdata,
                                 bool require_status) const;

  // --- --state-dir (persistence.cc) ---
  // Loads DIR/state.json when it exists; false when there is none (a fresh Omni).
  absl::StatusOr<bool> LoadState();
  absl::Status SaveState();
  void PersistLoop(std::stop_token stop);

  StandInOptions options_;
  const util::Clock& clock_;
  util::Random random_;
  StateStore store_;
  KeyRegistry keys_;
  std::shared_ptr<spdlog::logger> log_;
  // Calls whose signature was accepted, by full method name (what a provider costs Omni).
  void CountSignedCall(const char* method) {
    std::lock_guard lock(signed_calls_mutex_);
    ++signed_calls_[method];
  }
  mutable std::mutex signed_calls_mutex_;
  std::map<std::string, std::uint64_t> signed_calls_;
  Journal journal_;  // fed by Admit and the store's publish hook
  // A refused signature at warning level, naming the key and the check that failed: at most one
  // line per distinct reason every 10 s, with how many were left out, since a provider with a
  // rejected key makes such calls from every worker at once.
  void LogRefusedSignature(const char* method, const std::string& reason);
  struct RefusalLog {
    util::Clock::MonotonicTime last{};
    std::uint64_t suppressed = 0;
  };
  std::mutex refusals_mutex_;
  std::map<std::string, RefusalLog> refusals_;
  GeneratedKey admin_key_;
  GeneratedKey provider_key_;
  std::unique_ptr<FakeImageFactory> factory_;
  std::unique_ptr<httplib::Server> control_;
  std::thread control_thread_;
  int control_port_ = -1;
  std::unique_ptr<grpc::Service> state_service_;
  std::unique_ptr<grpc::Service> management_service_;
  std::mutex server_mutex_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  std::atomic<bool> stopping_{false};
  std::jthread controller_;
  std::jthread persister_;
  std::vector<std::string> loaded_schematics_;  // from --state-dir, put into the factory at start
  mutable std::mutex joined_mutex_;
  std::vector<JoinedMachine> joined_;
  // Every key handed out (admin, providers, operators) by account name; guarded by keys_mutex_.
  mutable std::mutex keys_mutex_;
  std::map<std::string, IssuedKey> issued_;
  std::atomic<std::uint64_t> keys_epoch_{0};  // bumped when issued_ changes, so the snapshot follows
};

}  // namespace omni_proxmox::sim::omni
