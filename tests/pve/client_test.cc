// SPDX-License-Identifier: Apache-2.0
// The HTTP client against the strict Proxmox simulator over real loopback sockets (TLS on).
// Time is a ManualClock shared by the client and the simulator: the client's injected sleep
// advances it, so task durations and ticket lifetimes pass without real waiting.

#include "pve/client.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "pve/errors.h"
#include "pve/privileges.h"
#include "sim/pve/scenario_builder.h"
#include "sim/pve/simulator.h"
#include "support/switch_gate.h"
#include "util/clock.h"
#include "util/log.h"

namespace omni_proxmox::pve {
namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

// Two nodes with a directory storage for ISOs and disks and LVM-thin; root@pam's token and a
// read-only auditor with a token of its own.
sim::pve::Scenario Scenario() {
  sim::pve::Scenario scenario;
  scenario.nodes = sim::pve::NumberedNodes(2, 16, 64);
  scenario.storages = {{.id = "local", .content = {"iso", "vztmpl", "backup", "images"}, .path = "/var/lib/vz"},
                       sim::pve::LocalLvmThinStorage()};
  scenario.users.push_back({.userid = "auditor@pve",
                            .password = "audit-pw",
                            .tokens = {{.name = "ro", .secret = "0a1b2c3d-0000-4000-8000-000000000001"}}});
  scenario.acls = {{.path = "/", .ugid = "auditor@pve", .role = "PVEAuditor"}};
  return scenario;
}

constexpr char kRootPassword[] = "pve-sim-root";

// The simulator's TLS shutdown can write to a socket the client already closed; like any
// server process, this binary must not die of SIGPIPE for it.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sim::pve::SimulatorOptions options;
    options.scenario_yaml = Scenario().Yaml();
    options.tls = true;
    options.clock = &clock_;
    options.seed = 7;
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
  }

  ClientOptions BaseOptions() {
    ClientOptions o;
    o.base_url = sim_->base_url() + "/api2/json";
    o.ca_pem = sim_->ca_certificate_pem();
    o.request_timeout = 20s;
    o.random = std::make_shared<util::Random>(42);
    o.sleep = [this](milliseconds d) {
      ++sleeps_;
      slept_ms_ += d.count();
      clock_.Advance(d);
    };
    return o;
  }

  ClientOptions TokenOptions() {
    ClientOptions o = BaseOptions();
    o.token_id = sim_->default_token_id();
    o.token_secret = util::Secret<std::string>(sim_->default_token_secret());
    return o;
  }

  ClientOptions PasswordOptions() {
    ClientOptions o = BaseOptions();
    o.username = "root@pam";
    o.password = util::Secret<std::string>(kRootPassword);
    return o;
  }

  std::unique_ptr<Client> Make(const ClientOptions& options) {
    auto client = MakeHttpClient(options, clock_);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  util::Clock::MonotonicTime In(std::chrono::nanoseconds d) { return clock_.Monotonic() + d; }

  // Creates a small VM and waits for the create task.
  std::int64_t CreateVm(Client& client, const std::string& node) {
    auto vmid = client.NextId();
    EXPECT_TRUE(vmid.ok()) << vmid.status();
    auto upid = client.CreateVm(node, *vmid,
                                {{"name", fmt::format("talos-{}", *vmid)},
                                 {"memory", "2048"},
                                 {"cores", "2"},
                                 {"scsi0", "local-lvm:8"},
                                 {"net0", "virtio,bridge=vmbr0,firewall=1"},
                                 {"onboot", FormBool(true)}});
    EXPECT_TRUE(upid.ok()) << upid.status();
    if (!upid.ok()) return 0;
    auto done = client.WaitTask(*upid, In(60s));
    EXPECT_TRUE(done.ok()) << done.status();
    return *vmid;
  }

  util::ManualClock clock_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::atomic<std::int64_t> slept_ms_{0};
  std::atomic<int> sleeps_{0};
};

TEST_F(ClientTest, TokenAuthOverVerifiedTlsWithCaFile) {
  // Per process: ctest runs test cases in parallel processes that would overwrite a shared file.
  std::string ca_path = ::testing::TempDir() + "/pve-sim-ca-client-" + std::to_string(getpid()) + ".pem";
  {
    std::ofstream out(ca_path);
    out << sim_->ca_certificate_pem();
  }
  ClientOptions options = TokenOptions();
  options.ca_pem.clear();
  options.ca_file = ca_path;
  auto client = Make(options);
  ASSERT_NE(client, nullptr);
  auto version = client->Version();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_FALSE(version->version.empty());
  auto perms = client->GetPermissions();
  ASSERT_TRUE(perms.ok()) << perms.status();
  EXPECT_TRUE((*perms)["/"]["Sys.Audit"]);
}

TEST_F(ClientTest, TlsVerificationIsOnByDefault) {
  ClientOptions options = TokenOptions();
  options.ca_pem.clear();  // the simulator's self-signed CA is not in the system store
  auto client = Make(options);
  ASSERT_NE(client, nullptr);
  auto version = client->Version();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(ClassifyError(version.status()), ErrorKind::kTls) << version.status();
  EXPECT_NE(std::string(version.status().message()).find("caFile"), std::string::npos);
  EXPECT_EQ(sim_->RequestCount("GET /version"), 0u);
  // A TLS failure is not transient: no retries.
  EXPECT_EQ(slept_ms_.load(), 0);
}

TEST_F(ClientTest, InsecureSkipVerifyTurnsVerificationOff) {
  ClientOptions options = TokenOptions();
  options.ca_pem.clear();
  options.insecure_skip_verify = true;
  auto client = Make(options);
  ASSERT_NE(client, nullptr);
  auto version = client->Version();
  EXPECT_TRUE(version.ok()) << version.status();
}

TEST_F(ClientTest, MissingCaFileIsAClearOptionError) {
  ClientOptions options = TokenOptions();
  options.ca_file = "/nonexistent/ca.pem";
  auto client = MakeHttpClient(options, clock_);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(ClassifyError(client.status()), ErrorKind::kBadParameter);
  EXPECT_NE(std::string(client.status().message()).find("/nonexistent/ca.pem"), std::string::npos);
}

TEST_F(ClientTest, BadCredentialsAreAuthErrors) {
  ClientOptions token = TokenOptions();
  token.token_secret = util::Secret<std::string>("wrong-secret");
  auto client = Make(token);
  auto version = client->Version();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(ClassifyError(version.status()), ErrorKind::kAuth) << version.status();
  EXPECT_EQ(version.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(std::string(version.status().message()).find("Authentication failed!"), std::string::npos);
  EXPECT_EQ(std::string(version.status().message()).find("wrong-secret"), std::string::npos);

  ClientOptions password = PasswordOptions();
  password.password = util::Secret<std::string>("not-the-password");
  auto ticket_client = Make(password);
  auto nodes = ticket_client->ListNodes();
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(ClassifyError(nodes.status()), ErrorKind::kAuth) << nodes.status();
  EXPECT_EQ(std::string(nodes.status().message()).find("not-the-password"), std::string::npos);
}

TEST_F(ClientTest, TicketAuthSendsCsrfOnWrites) {
  auto client = Make(PasswordOptions());
  ASSERT_NE(client, nullptr);
  auto nodes = client->ListNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  // A POST with a ticket is refused without the CSRF token, so a created VM proves it was sent.
  std::int64_t vmid = CreateVm(*client, "pve1");
  ASSERT_NE(vmid, 0);
  auto status = client->GetVmStatus("pve1", vmid);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->status, "stopped");
  EXPECT_EQ(sim_->RequestCount("POST /access/ticket"), 1u);
}

TEST_F(ClientTest, TicketIsRenewedBeforeExpiryAndSurvivesHours) {
  auto client = Make(PasswordOptions());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Version().ok());
  EXPECT_EQ(sim_->RequestCount("POST /access/ticket"), 1u);
  // Within the renewal age the ticket is reused.
  clock_.Advance(30min);
  ASSERT_TRUE(client->Version().ok());
  EXPECT_EQ(sim_->RequestCount("POST /access/ticket"), 1u);
  // Past it (1 h by default), the client renews before the call.
  for (int hour = 0; hour < 6; ++hour) {
    clock_.Advance(61min);
    auto version = client->Version();
    ASSERT_TRUE(version.ok()) << "after " << hour << " h: " << version.status();
    // A write, so the CSRF token of the renewed ticket is checked too; it reaches the handler.
    auto update = client->UpdateVmConfig("pve1", 999999, {{"cores", "2"}});
    ASSERT_FALSE(update.ok());
    EXPECT_EQ(ClassifyError(update.status()), ErrorKind::kNotFound) << update.status();
  }
  EXPECT_EQ(sim_->RequestCount("POST /access/ticket"), 7u);
}

TEST_F(ClientTest, ExpiredTicketIsReplacedByAFreshLogin) {
  ClientOptions options = PasswordOptions();
  options.ticket_renew_after = std::chrono::hours(10);  // never renews on its own
  auto client = Make(options);
  ASSERT_TRUE(client->Version().ok());
  clock_.Advance(2h + 1min);  // the server now refuses the ticket with 401
  auto version = client->Version();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(sim_->RequestCount("POST /access/ticket"), 2u);
  EXPECT_EQ(sim_->RequestCount("GET /version"), 3u);  // one refused, then repeated
}

TEST_F(ClientTest, InventoryCalls) {
  auto client = Make(TokenOptions());
  auto nodes = client->ListNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 2u);
  for (const auto& node : *nodes) {
    EXPECT_EQ(node.status, NodeStatus::kOnline) << node.name;
    EXPECT_TRUE(node.max_mem_bytes.has_value());
  }
  auto storages = client->NodeStorages("pve1", "iso");
  ASSERT_TRUE(storages.ok()) << storages.status();
  ASSERT_EQ(storages->size(), 1u);
  EXPECT_EQ((*storages)[0].storage, "local");
  EXPECT_TRUE((*storages)[0].HasContent("iso"));
  EXPECT_GT((*storages)[0].total_bytes, 0);
  auto all = client->NodeStorages("pve1");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);

  auto id = client->NextId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, 100);
  std::int64_t vmid = CreateVm(*client, "pve2");
  ASSERT_EQ(vmid, 100);
  auto resources = client->ClusterResources(ResourceType::kVm);
  ASSERT_TRUE(resources.ok()) << resources.status();
  ASSERT_EQ(resources->size(), 1u);
  EXPECT_EQ((*resources)[0].vmid, 100);
  EXPECT_EQ((*resources)[0].node, "pve2");
  auto storage_resources = client->ClusterResources(ResourceType::kStorage);
  ASSERT_TRUE(storage_resources.ok());
  for (const auto& r : *storage_resources) EXPECT_EQ(r.type, "storage");
  auto vms = client->ListVms("pve2");
  ASSERT_TRUE(vms.ok()) << vms.status();
  ASSERT_EQ(vms->size(), 1u);
  EXPECT_EQ((*vms)[0].name, "talos-100");
  EXPECT_EQ(client->NextId().value(), 101);
}

TEST_F(ClientTest, VmLifecycle) {
  auto client = Make(TokenOptions());
  std::int64_t vmid = CreateVm(*client, "pve1");
  ASSERT_NE(vmid, 0);
  auto config = client->GetVmConfig("pve1", vmid);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->Get("memory"), "2048");
  EXPECT_EQ(config->Get("onboot"), "1");
  EXPECT_FALSE(config->digest.empty());
  ASSERT_TRUE(config->Get("boot").has_value());
  EXPECT_NE(config->Get("net0")->find("bridge=vmbr0"), std::string::npos);

  auto update = client->UpdateVmConfig("pve1", vmid, {{"tags", "omni;Machine-Request"}});
  ASSERT_TRUE(update.ok()) << update.status();
  if (update->has_value()) {
    ASSERT_TRUE(client->WaitTask(**update, In(30s)).ok());
  }
  EXPECT_EQ(client->GetVmConfig("pve1", vmid)->Get("tags"), "machine-request;omni");

  auto start = client->StartVm("pve1", vmid);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->node, "pve1");
  EXPECT_EQ(start->type, "qmstart");
  EXPECT_EQ(start->user, sim_->default_token_id());
  ASSERT_TRUE(client->WaitTask(*start, In(30s)).ok());
  EXPECT_EQ(client->GetVmStatus("pve1", vmid)->status, "running");

  // Deleting a running VM is refused synchronously.
  auto refused = client->DeleteVm("pve1", vmid, true, true);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("is running"), std::string::npos) << refused.status();

  auto shutdown = client->ShutdownVm("pve1", vmid, {.timeout = 30s, .force_stop = true});
  ASSERT_TRUE(shutdown.ok()) << shutdown.status();
  ASSERT_TRUE(client->WaitTask(*shutdown, In(120s)).ok());
  EXPECT_EQ(client->GetVmStatus("pve1", vmid)->status, "stopped");
  auto stop = client->StopVm("pve1", vmid);  // stopping a stopped VM is OK
  ASSERT_TRUE(stop.ok()) << stop.status();
  ASSERT_TRUE(client->WaitTask(*stop, In(30s)).ok());

  auto destroy = client->DeleteVm("pve1", vmid, true, true);
  ASSERT_TRUE(destroy.ok()) << destroy.status();
  ASSERT_TRUE(client->WaitTask(*destroy, In(60s)).ok());
  auto gone = client->GetVmStatus("pve1", vmid);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(ClassifyError(gone.status()), ErrorKind::kNotFound) << gone.status();
}

TEST_F(ClientTest, ErrorClassesFromTheServer) {
  auto client = Make(TokenOptions());
  // not-found: the reason phrase "Configuration file ... does not exist".
  auto missing = client->GetVmStatus("pve1", 4242);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ClassifyError(missing.status()), ErrorKind::kNotFound) << missing.status();
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto missing_volume = client->GetVolume("pve1", "local", "local:iso/none.iso");
  ASSERT_FALSE(missing_volume.ok());
  EXPECT_EQ(ClassifyError(missing_volume.status()), ErrorKind::kNotFound) << missing_volume.status();

  // already-exists: a second create of the same VMID (here on another node).
  std::int64_t vmid = CreateVm(*client, "pve1");
  auto again = client->CreateVm("pve2", vmid, {{"memory", "512"}});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(ClassifyError(again.status()), ErrorKind::kAlreadyExists) << again.status();

  // locked: a config change while the create task still holds `lock: create`.
  auto id = client->NextId();
  ASSERT_TRUE(id.ok());
  auto creating = client->CreateVm("pve1", *id, {{"memory", "512"}, {"scsi0", "local-lvm:4"}});
  ASSERT_TRUE(creating.ok()) << creating.status();
  auto locked = client->UpdateVmConfig("pve1", *id, {{"cores", "4"}});
  ASSERT_FALSE(locked.ok());
  EXPECT_EQ(ClassifyError(locked.status()), ErrorKind::kLocked) << locked.status();
  EXPECT_EQ(locked.status().code(), absl::StatusCode::kAborted);
  ASSERT_TRUE(client->WaitTask(*creating, In(60s)).ok());

  // bad-parameter: the 400 errors map, per field.
  auto bad = client->CreateVm("pve1", 777, {{"name", "not_a_dns_name"}, {"memory", "lots"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ClassifyError(bad.status()), ErrorKind::kBadParameter) << bad.status();
  auto fields = ParameterErrors(bad.status());
  EXPECT_EQ(fields.count("name"), 1u) << bad.status();

  // unsupported / bad vmid handled client-side.
  auto vmid_in_params = client->CreateVm("pve1", 778, {{"vmid", "778"}});
  EXPECT_EQ(ClassifyError(vmid_in_params.status()), ErrorKind::kBadParameter);
}

TEST_F(ClientTest, ClassifiesFromTheReasonPhraseAloneLikePveBefore83) {
  // PVE < 8.3 sends {"data":null} without "message": only the status line carries the text.
  sim::pve::SimulatorOptions options;
  options.scenario_yaml = Scenario().Yaml();
  options.tls = true;
  options.clock = &clock_;
  options.error_message_field = false;
  auto old = sim::pve::Simulator::Start(options);
  ASSERT_TRUE(old.ok()) << old.status();
  ClientOptions client_options = TokenOptions();
  client_options.base_url = (*old)->base_url() + "/api2/json";
  client_options.ca_pem = (*old)->ca_certificate_pem();
  auto client = Make(client_options);
  auto missing = client->GetVmStatus("pve1", 4242);
  EXPECT_EQ(ClassifyError(missing.status()), ErrorKind::kNotFound) << missing.status();
  EXPECT_NE(std::string(missing.status().message()).find("qemu-server/4242.conf"), std::string::npos)
      << missing.status();
  auto bad = client->CreateVm("pve1", 777, {{"name", "not_a_dns_name"}});
  EXPECT_EQ(ClassifyError(bad.status()), ErrorKind::kBadParameter) << bad.status();
  EXPECT_EQ(ParameterErrors(bad.status()).count("name"), 1u) << bad.status();
}

TEST_F(ClientTest, InvalidArgumentsFailBeforeAnyRequest) {
  auto client = Make(TokenOptions());
  auto bad_node = client->ListVms("pve1/../x");
  EXPECT_EQ(ClassifyError(bad_node.status()), ErrorKind::kBadParameter) << bad_node.status();
  EXPECT_NE(std::string(bad_node.status().message()).find("node 'pve1/../x'"), std::string::npos);
  EXPECT_EQ(ClassifyError(client->ListVms("").status()), ErrorKind::kBadParameter);
  EXPECT_EQ(ClassifyError(client->GetVmStatus("pve1", 42).status()), ErrorKind::kBadParameter);
  EXPECT_EQ(ClassifyError(client->StartVm("pve1", 0).status()), ErrorKind::kBadParameter);
  EXPECT_EQ(ClassifyError(client->StorageContent("pve1", "bad/storage").status()), ErrorKind::kBadParameter);
  EXPECT_EQ(sim_->RequestCount("GET /nodes/{node}/qemu"), 0u);
  EXPECT_EQ(sim_->RequestCount("GET /nodes/{node}/qemu/{vmid}/status/current"), 0u);
  EXPECT_TRUE(client->ListVms("pve1").ok());
  EXPECT_EQ(sim_->RequestCount("GET /nodes/{node}/qemu"), 1u);  // the counter does count
}

TEST_F(ClientTest, PermissionErrorNamesPathAndPrivilege) {
  ClientOptions options = TokenOptions();
  options.token_id = "auditor@pve!ro";
  options.token_secret = util::Secret<std::string>("0a1b2c3d-0000-4000-8000-000000000001");
  auto client = Make(options);
  ASSERT_TRUE(client->ListNodes().ok());
  auto denied = client->CreateVm("pve1", 500, {{"memory", "512"}});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(ClassifyError(denied.status()), ErrorKind::kPermission) << denied.status();
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(std::string(denied.status().message()).find("Permission check failed ("), std::string::npos);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), 1u);  // never retried
}

TEST_F(ClientTest, PrivilegePreflight) {
  auto root = Make(TokenOptions());
  auto root_perms = root->GetPermissions();
  ASSERT_TRUE(root_perms.ok()) << root_perms.status();
  EXPECT_TRUE(CheckPrivileges(*root_perms, ProvisioningPrivileges(), sim_->default_token_id()).ok())
      << CheckPrivileges(*root_perms, ProvisioningPrivileges(), sim_->default_token_id());

  ClientOptions options = TokenOptions();
  options.token_id = "auditor@pve!ro";
  options.token_secret = util::Secret<std::string>("0a1b2c3d-0000-4000-8000-000000000001");
  auto auditor = Make(options);
  auto perms = auditor->GetPermissions();
  ASSERT_TRUE(perms.ok()) << perms.status();
  absl::Status check = CheckPrivileges(*perms, ProvisioningPrivileges(), options.token_id);
  EXPECT_EQ(ClassifyError(check), ErrorKind::kPermission);
  EXPECT_NE(std::string(check.message()).find("VM.Allocate on /vms"), std::string::npos) << check;
  EXPECT_EQ(std::string(check.message()).find("VM.Audit on /vms"), std::string::npos) << check;  // the auditor has it
}

TEST_F(ClientTest, OfflineNodeIsUnreachableWhileClusterCallsWork) {
  auto client = Make(TokenOptions());
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  auto storages = client->NodeStorages("pve2");
  ASSERT_FALSE(storages.ok());
  EXPECT_EQ(ClassifyError(storages.status()), ErrorKind::kNodeUnreachable) << storages.status();
  EXPECT_EQ(storages.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(HttpStatusOf(storages.status()), 595);
  EXPECT_EQ(sim_->RequestCount("GET /nodes/{node}/storage"), 1u);  // left to the caller's requeue
  auto nodes = client->ListNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  bool saw_offline = false;
  for (const auto& n : *nodes) saw_offline = saw_offline || (n.name == "pve2" && n.status == NodeStatus::kOffline);
  EXPECT_TRUE(saw_offline);
}

TEST_F(ClientTest, TransientErrorsRetryIdempotentCallsWithBackoff) {
  ClientOptions options = TokenOptions();
  options.retry.max_attempts = 4;
  auto client = Make(options);
  sim::pve::FaultSpec fault;
  fault.status_code = 503;
  fault.message = "Service Unavailable";
  sim_->SetFault("GET /nodes", fault);
  auto nodes = client->ListNodes();
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(ClassifyError(nodes.status()), ErrorKind::kTransient) << nodes.status();
  EXPECT_EQ(sleeps_.load(), 3);  // four attempts
  // Three backoff waits: full jitter, each within [base*2^n/2, base*2^n] and capped.
  EXPECT_GE(slept_ms_.load(), 100 + 200 + 400);
  EXPECT_LE(slept_ms_.load(), 200 + 400 + 800);

  sim_->ClearFaults();
  EXPECT_TRUE(client->ListNodes().ok());
}

TEST_F(ClientTest, NonIdempotentCallsAreNeverRetriedBlindly) {
  auto client = Make(TokenOptions());
  sim::pve::FaultSpec fault;
  fault.status_code = 500;
  fault.message = "got no worker upid - start worker failed";
  sim_->SetFault("POST /nodes/*/qemu", fault);
  auto create = client->CreateVm("pve1", 100, {{"memory", "512"}});
  ASSERT_FALSE(create.ok());
  EXPECT_EQ(ClassifyError(create.status()), ErrorKind::kTransient) << create.status();
  EXPECT_EQ(sleeps_.load(), 0);  // one attempt

  sim::pve::FaultSpec drop;
  drop.drop_connection = true;
  sim_->SetFault("POST /nodes/*/qemu", drop);
  create = client->CreateVm("pve1", 100, {{"memory", "512"}});
  ASSERT_FALSE(create.ok());
  EXPECT_EQ(ClassifyError(create.status()), ErrorKind::kTransient) << create.status();
  EXPECT_EQ(sleeps_.load(), 0);
  sim_->ClearFaults();
  EXPECT_EQ(ClassifyError(client->GetVmStatus("pve1", 100).status()), ErrorKind::kNotFound);  // nothing was created
}

TEST_F(ClientTest, DroppedConnectionsRetryForReads) {
  auto client = Make(TokenOptions());
  sim::pve::FaultSpec drop;
  drop.drop_connection = true;
  sim_->SetFault("GET /version", drop);
  auto version = client->Version();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(ClassifyError(version.status()), ErrorKind::kTransient) << version.status();
  EXPECT_EQ(sleeps_.load(), 3);
}

TEST_F(ClientTest, RequestTimeoutIsConfigurable) {
  // The server answers after 1.5 s; the client gives up after its 300 ms request timeout. (The
  // wait is the client's own deadline, not a sleep in the test.)
  ClientOptions options = TokenOptions();
  options.request_timeout = 300ms;
  options.retry.max_attempts = 1;
  auto client = Make(options);
  sim::pve::FaultSpec slow;
  slow.error_rate = 1.0;
  slow.latency = 1500ms;
  slow.status_code = 0;  // then answer normally
  sim_->SetFault("GET /version", slow);
  auto started = std::chrono::steady_clock::now();
  auto version = client->Version();
  auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(ClassifyError(version.status()), ErrorKind::kTransient) << version.status();
  EXPECT_NE(std::string(version.status().message()).find("within 300 ms"), std::string::npos) << version.status();
  EXPECT_LT(elapsed, 1400ms);
  sim_->ClearFaults();
}

TEST_F(ClientTest, ConnectionRefusedRetriesEvenWrites) {
  int port = sim_->port();
  ClientOptions options = BaseOptions();
  sim_.reset();  // nothing listens on the port any more
  options.base_url = fmt::format("https://127.0.0.1:{}/api2/json", port);
  options.token_id = "root@pam!omni";
  options.token_secret = util::Secret<std::string>("x");
  options.retry.max_attempts = 3;
  auto client = Make(options);
  auto create = client->CreateVm("pve1", 100, {{"memory", "512"}});
  ASSERT_FALSE(create.ok());
  EXPECT_EQ(ClassifyError(create.status()), ErrorKind::kTransient) << create.status();
  // Two backoff waits: the request provably never reached a server, so retrying is safe.
  EXPECT_EQ(sleeps_.load(), 2);
  EXPECT_GE(slept_ms_.load(), 100 + 200);
}

TEST_F(ClientTest, TaskWarningsAreSuccess) {
  auto client = Make(TokenOptions());
  std::int64_t vmid = CreateVm(*client, "pve1");
  sim_->FailNextTask("qmstart", "pve1", "WARNINGS");
  auto start = client->StartVm("pve1", vmid);
  ASSERT_TRUE(start.ok()) << start.status();
  auto done = client->WaitTask(*start, In(30s));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->Warnings(), 1);
  EXPECT_EQ(done->exit_status, "WARNINGS: 1");
}

TEST_F(ClientTest, TaskFailureCarriesTheLogTail) {
  auto client = Make(TokenOptions());
  std::int64_t vmid = CreateVm(*client, "pve1");
  sim_->FailNextTask("qmstart", "pve1", "start failed: QEMU exited with code 1");
  auto start = client->StartVm("pve1", vmid);
  ASSERT_TRUE(start.ok()) << start.status();
  auto done = client->WaitTask(*start, In(30s));
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(ClassifyError(done.status()), ErrorKind::kTaskFailed) << done.status();
  EXPECT_NE(std::string(done.status().message()).find("start failed: QEMU exited with code 1"), std::string::npos);
  auto tail = TaskLogTail(done.status());
  ASSERT_FALSE(tail.empty());
  EXPECT_NE(tail.back().find("TASK ERROR"), std::string::npos) << tail.back();
}

TEST_F(ClientTest, TaskErrorsAreClassifiedLikeHttpErrors) {
  auto client = Make(TokenOptions());
  std::int64_t vmid = CreateVm(*client, "pve1");
  sim_->FailNextTask("qmstart", "pve1", "VM is locked (backup)");
  auto start = client->StartVm("pve1", vmid);
  ASSERT_TRUE(start.ok()) << start.status();
  auto done = client->WaitTask(*start, In(30s));
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(ClassifyError(done.status()), ErrorKind::kLocked) << done.status();
}

TEST_F(ClientTest, WaitHasItsOwnDeadline) {
  auto client = Make(TokenOptions());
  auto vmid = client->NextId();
  auto create = client->CreateVm("pve1", *vmid, {{"memory", "512"}});  // qmcreate takes 2 simulated s
  ASSERT_TRUE(create.ok()) << create.status();
  auto start = clock_.Monotonic();
  auto waited = client->WaitTask(*create, In(500ms));
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(ClassifyError(waited.status()), ErrorKind::kTimeout) << waited.status();
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kDeadlineExceeded);
  auto elapsed = clock_.Monotonic() - start;
  EXPECT_GE(elapsed, 500ms);
  EXPECT_LT(elapsed, 1s);
  // The task itself goes on; a later wait sees it finish.
  EXPECT_TRUE(client->WaitTask(*create, In(60s)).ok());
}

TEST_F(ClientTest, ListTasksFindsInFlightWork) {
  auto client = Make(TokenOptions());
  std::int64_t done_vmid = CreateVm(*client, "pve1");
  auto vmid = client->NextId();
  auto create = client->CreateVm("pve1", *vmid, {{"memory", "512"}});
  ASSERT_TRUE(create.ok()) << create.status();
  auto active = client->ListTasks("pve1", std::nullopt, true);
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0].upid, create->text);
  EXPECT_TRUE((*active)[0].running);
  auto for_done = client->ListTasks("pve1", done_vmid, false);
  ASSERT_TRUE(for_done.ok()) << for_done.status();
  ASSERT_EQ(for_done->size(), 1u);
  EXPECT_EQ((*for_done)[0].type, "qmcreate");
  EXPECT_TRUE((*for_done)[0].Succeeded());
  EXPECT_TRUE((*for_done)[0].end_time_unix.has_value());
}

TEST_F(ClientTest, UploadListAndDeleteIso) {
  auto client = Make(TokenOptions());
  std::string bytes(300 * 1024, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 31 % 251);
  auto upload = client->UploadIso("pve1", "local", "user-data-105.iso", bytes);
  ASSERT_TRUE(upload.ok()) << upload.status();
  EXPECT_EQ(upload->type, "imgcopy");
  ASSERT_TRUE(client->WaitTask(*upload, In(30s)).ok());
  auto stored = sim_->VolumeContentForTest("pve1", "local:iso/user-data-105.iso");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, bytes);

  auto content = client->StorageContent("pve1", "local", "iso");
  ASSERT_TRUE(content.ok()) << content.status();
  bool found = false;
  for (const auto& v : *content) found = found || v.volid == "local:iso/user-data-105.iso";
  EXPECT_TRUE(found);
  auto info = client->GetVolume("pve1", "local", "local:iso/user-data-105.iso");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size_bytes, static_cast<std::int64_t>(bytes.size()));

  auto del = client->DeleteVolume("pve1", "local", "local:iso/user-data-105.iso");
  ASSERT_TRUE(del.ok()) << del.status();
  ASSERT_TRUE(client->WaitTask(*del, In(30s)).ok());
  auto gone = client->GetVolume("pve1", "local", "local:iso/user-data-105.iso");
  EXPECT_EQ(ClassifyError(gone.status()), ErrorKind::kNotFound) << gone.status();
}

TEST_F(ClientTest, DownloadUrlWithChecksumIsIdempotent) {
  auto client = Make(TokenOptions());
  DownloadUrlRequest request;
  request.node = "pve1";
  request.storage = "local";
  request.filename = "talos.iso";
  request.url = "https://factory.talos.dev/image/abc/v1.10.0/nocloud-amd64.iso";
  auto first = client->DownloadUrl(request);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->type, "download");
  ASSERT_TRUE(client->WaitTask(*first, In(120s)).ok());
  EXPECT_TRUE(client->GetVolume("pve1", "local", "local:iso/talos.iso").ok());

  // Without a checksum, a second download refuses to override: already-exists from the task.
  auto second = client->DownloadUrl(request);
  ASSERT_TRUE(second.ok()) << second.status();
  auto refused = client->WaitTask(*second, In(120s));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ClassifyError(refused.status()), ErrorKind::kAlreadyExists) << refused.status();

  // Wrong extension: a 400 on the filename field.
  request.filename = "talos.raw";
  auto bad = client->DownloadUrl(request);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ClassifyError(bad.status()), ErrorKind::kBadParameter) << bad.status();
  EXPECT_EQ(ParameterErrors(bad.status()).count("filename"), 1u);
  request.checksum = "abc";
  EXPECT_EQ(ClassifyError(client->DownloadUrl(request).status()), ErrorKind::kBadParameter);
}

TEST_F(ClientTest, ConcurrentCallsShareOneLogin) {
  auto client = Make(PasswordOptions());
  constexpr int kThreads = 6;
  constexpr int kCallsPerThread = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        if (!client->ListNodes().ok()) ++failures;
        if (!client->NextId().ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(sim_->RequestCount("POST /access/ticket"), 1u);
  EXPECT_EQ(sim_->RequestCount("GET /nodes"), static_cast<std::uint64_t>(kThreads * kCallsPerThread));
}

TEST_F(ClientTest, DebugLogsRedactSecrets) {
  std::ostringstream captured;
  auto logger = util::Logger("pve");
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  logger->sinks().push_back(sink);
  auto old_level = logger->level();
  logger->set_level(spdlog::level::debug);

  auto ticket_client = Make(PasswordOptions());
  EXPECT_TRUE(ticket_client->ListNodes().ok());
  EXPECT_FALSE(ticket_client->UpdateVmConfig("pve1", 999999, {{"cores", "2"}}).ok());
  auto token_client = Make(TokenOptions());
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(token_client->Version().ok());

  logger->sinks().pop_back();
  logger->set_level(old_level);
  std::string text = captured.str();
  // Connection reuse: the five sequential token calls open one connection between them.
  std::size_t version_lines = 0, version_new = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("GET /version") == std::string::npos) continue;
    ++version_lines;
    if (line.find("new connection") != std::string::npos) ++version_new;
  }
  EXPECT_EQ(version_lines, 5u) << text;
  EXPECT_EQ(version_new, 1u) << text;
  EXPECT_NE(text.find("POST /access/ticket"), std::string::npos) << text;
  EXPECT_NE(text.find("GET /nodes"), std::string::npos) << text;
  EXPECT_NE(text.find("cores=2"), std::string::npos) << text;  // form fields are logged, redacted
  EXPECT_NE(text.find("password=%2A%2A%2A"), std::string::npos) << text;
  EXPECT_EQ(text.find(kRootPassword), std::string::npos) << text;
  EXPECT_EQ(text.find(sim_->default_token_secret()), std::string::npos) << text;
  EXPECT_EQ(text.find("PVE:root@pam"), std::string::npos) << text;  // no ticket either
  EXPECT_EQ(text.find("PVEAPIToken"), std::string::npos) << text;
}

}  // namespace
}  // namespace omni_proxmox::pve

namespace omni_proxmox::pve {
namespace {

using testing::SwitchGate;

// A closed gate keeps every mutation from going out (the simulator sees none), says why, and is
// never retried; reads go on.
TEST_F(ClientTest, AClosedMutationGateSendsNoMutation) {
  SwitchGate gate;
  ClientOptions options = TokenOptions();
  options.mutation_gate = &gate;
  options.replica = "host-a_1_aaaaaaaa";
  auto client = MakeHttpClient(options, clock_);
  ASSERT_TRUE(client.ok()) << client.status();
  gate.open = false;
  const auto creates = sim_->RequestCount("POST /nodes/{node}/qemu");
  auto refused = (*client)->CreateVm("pve1", 900, {{"name", "fenced"}, {"memory", "1024"}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ClassifyError(refused.status()), ErrorKind::kFenced);
  EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("this replica is a standby"));
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), creates);
  EXPECT_EQ(sleeps_, 0) << "not retried";
  EXPECT_TRUE((*client)->ListNodes().ok()) << "reads are not gated";
  gate.open = true;
  EXPECT_TRUE((*client)->CreateVm("pve1", 901, {{"name", "allowed"}, {"memory", "1024"}}).ok());
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), creates + 1);
}

}  // namespace
}  // namespace omni_proxmox::pve
