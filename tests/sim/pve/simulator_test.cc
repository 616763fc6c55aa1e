// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/simulator.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "fmt/format.h"
#include "gtest/gtest.h"

#include "sim_test_util.h"
#include "util/clock.h"

namespace omni_proxmox::sim::pve {
namespace {

using nlohmann::json;
using testing::HttpResult;
using testing::SimClient;
using testing::WaitTask;

class PveSimTest : public ::testing::Test {
 protected:
  void Start(std::string scenario = "", bool tls = false) {
    SimulatorOptions options;
    options.scenario_yaml = std::move(scenario);
    options.clock = &clock_;
    options.tls = tls;
    options.seed = 7;
    options.on_vm_started = [this](const VmBootInfo& info) {
      std::lock_guard lock(boot_mutex_);
      boots_.push_back(info);
    };
    auto sim = Simulator::Start(std::move(options));
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    client_ = std::make_unique<SimClient>(*sim_, testing::TokenHeader(*sim_));
  }
  void SetUp() override { Start(); }

  // Creates a VM and waits for the create task; returns its exitstatus.
  std::string CreateVm(const std::string& node, int vmid, json extra = json::object()) {
    json body = {{"vmid", vmid},
                 {"name", fmt::format("vm{}", vmid)},
                 {"memory", "1024"},
                 {"scsi0", "local-lvm:8"},
                 {"net0", "virtio,bridge=vmbr0"}};
    for (auto& [key, value] : extra.items()) body[key] = value;
    auto result = client_->PostJson(fmt::format("/nodes/{}/qemu", node), body);
    if (result.status != 200) return fmt::format("http {} {}", result.status, result.reason);
    return WaitTask(*client_, clock_, result.data().get<std::string>());
  }

  json Config(const std::string& node, int vmid) {
    return client_->Get(fmt::format("/nodes/{}/qemu/{}/config", node, vmid)).data();
  }

  util::ManualClock clock_;
  std::unique_ptr<Simulator> sim_;
  std::unique_ptr<SimClient> client_;
  std::mutex boot_mutex_;
  std::vector<VmBootInfo> boots_;
};

// ---- transport and envelope ----

TEST_F(PveSimTest, VersionEnvelopeAndContentType) {
  auto result = client_->Get("/version");
  ASSERT_EQ(result.status, 200);
  EXPECT_EQ(result.data()["version"], "9.2.11");
  EXPECT_EQ(result.headers["Content-Type"], "application/json;charset=UTF-8");
}

TEST_F(PveSimTest, UnknownPathIs501WithReasonPhrase) {
  auto result = client_->Get("/nodes/pve1/foo");
  EXPECT_EQ(result.status, 501);
  EXPECT_EQ(result.reason, "Method 'GET /nodes/pve1/foo' not implemented");
}

TEST_F(PveSimTest, BodyOnDeleteIs501) {
  auto result = client_->Raw("DELETE", "/nodes/pve1/qemu/100", "purge=1", "application/x-www-form-urlencoded");
  EXPECT_EQ(result.status, 501);
  EXPECT_EQ(result.reason, "Unexpected content for method 'DELETE'");
}

TEST_F(PveSimTest, UnsupportedContentTypeIs506) {
  auto result = client_->Raw("POST", "/nodes/pve1/qemu", "vmid=100", "text/plain");
  EXPECT_EQ(result.status, 506);
  EXPECT_EQ(result.reason, "upload 'Content-Type 'text/plain' not implemented");
}

TEST_F(PveSimTest, ErrorTextIsInReasonPhraseAndBody) {
  auto result = client_->Get("/nodes/pve1/qemu/4242/status/current");
  EXPECT_EQ(result.status, 500);
  EXPECT_EQ(result.reason, "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist");
  EXPECT_TRUE(result.json["data"].is_null());
  EXPECT_EQ(result.json["message"], "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist\n");
}

TEST_F(PveSimTest, ErrorMessageFieldCanMimicOldServers) {
  Start(
      "cluster: {error_message_field: false}\nnodes: [{name: pve1}]\nusers: [{userid: root@pam, tokens: [{name: t, "
      "secret: s, privsep: false}]}]\n");
  auto result = client_->Get("/nodes/pve1/qemu/4242/config");
  EXPECT_EQ(result.status, 500);
  EXPECT_FALSE(result.json.contains("message"));
}

TEST_F(PveSimTest, FormAndJsonBodiesAndQueryOverridesBody) {
  auto form = client_->PostForm("/nodes/pve1/qemu", "vmid=150&name=from-form&memory=512");
  ASSERT_EQ(form.status, 200) << form.reason;
  // The query string overrides the body: name comes out as from-query.
  auto json_result = client_->PostJson("/nodes/pve1/qemu?name=from-query", {{"vmid", 151}, {"name", "from-body"}});
  ASSERT_EQ(json_result.status, 200) << json_result.reason;
  WaitTask(*client_, clock_, json_result.data().get<std::string>());
  EXPECT_EQ(Config("pve1", 151)["name"], "from-query");
}

TEST_F(PveSimTest, ConflictingPathParameterIs400) {
  auto result = client_->PostJson("/nodes/pve1/qemu/100/status/start", {{"node", "pve2"}});
  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(result.reason, "duplicate parameter (already defined in URI) with conflicting values!");
}

TEST_F(PveSimTest, ListsAreInRandomizedOrder) {
  std::set<std::string> node_orders, storage_orders;
  for (int i = 0; i < 20; ++i) {
    std::string nodes, storages;
    for (const auto& node : client_->Get("/nodes").data()) nodes += node["node"].get<std::string>() + ",";
    for (const auto& storage : client_->Get("/nodes/pve1/storage").data()) {
      storages += storage["storage"].get<std::string>() + ",";
    }
    node_orders.insert(nodes);
    storage_orders.insert(storages);
  }
  EXPECT_GT(node_orders.size(), 1u);
  EXPECT_GT(storage_orders.size(), 1u);
}

TEST_F(PveSimTest, ObjectKeyOrderVaries) {
  std::set<std::string> bodies;
  for (int i = 0; i < 10; ++i) bodies.insert(client_->Get("/version").body);
  EXPECT_GT(bodies.size(), 1u);
}

TEST_F(PveSimTest, BooleansAreIntegersInOutput) {
  for (const auto& storage : client_->Get("/nodes/pve1/storage").data()) {
    EXPECT_TRUE(storage["shared"].is_number_integer());
    EXPECT_TRUE(storage["enabled"].is_number_integer());
  }
}

// ---- validation ----

TEST_F(PveSimTest, SchemaViolationsGivePerParameterErrors) {
  auto result = client_->PostJson(
      "/nodes/pve1/qemu",
      {{"vmid", 99}, {"name", "bad_name"}, {"scsihw", "virtio"}, {"bogus", 1}, {"onboot", "true"}, {"cores", "two"}});
  ASSERT_EQ(result.status, 400);
  EXPECT_EQ(result.reason, "Parameter verification failed.");
  const auto& errors = result.json["errors"];
  EXPECT_EQ(errors["vmid"], "value must have a minimum value of 100");
  EXPECT_EQ(errors["name"], "invalid format - value does not look like a valid DNS name\n");
  EXPECT_EQ(errors["scsihw"],
            "value 'virtio' does not have a value in the enumeration 'lsi, lsi53c810, virtio-scsi-pci, "
            "virtio-scsi-single, megasas, pvscsi'");
  EXPECT_EQ(errors["bogus"], "property is not defined in schema and the schema does not allow additional properties");
  EXPECT_EQ(errors["onboot"], "type check ('boolean') failed - got 'true'");
  EXPECT_EQ(errors["cores"], "type check ('integer') failed - got 'two'");
}

TEST_F(PveSimTest, MissingRequiredParameter) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"name", "x"}});
  ASSERT_EQ(result.status, 400);
  EXPECT_EQ(result.json["errors"]["vmid"], "property is missing and it is not optional");
}

TEST_F(PveSimTest, JsonBooleansAreAccepted) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 160}, {"onboot", true}});
  EXPECT_EQ(result.status, 200) << result.reason << " " << result.body;
}

TEST_F(PveSimTest, PropertyStringsAreChecked) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 170},
                                                       {"net0", "virtio,bridge=vmbr0,colour=red"},
                                                       {"scsi1", "local-lvm:8,cache=fast"},
                                                       {"smbios1", "uuid=not-a-uuid"},
                                                       {"boot", "order=scsi0;floppy"},
                                                       {"tags", "ok;bad tag!"},
                                                       {"hostpci0", "mapping=gpu,x-vga=maybe"},
                                                       {"ide2", "local:iso/x.iso,media=tape"},
                                                       {"scsi31", "local-lvm:8"}});
  ASSERT_EQ(result.status, 400);
  const auto& errors = result.json["errors"];
  EXPECT_NE(errors["net0"].get<std::string>().find("net0.colour"), std::string::npos) << errors.dump();
  EXPECT_NE(errors["scsi1"].get<std::string>().find("scsi1.cache: value 'fast' does not have a value"),
            std::string::npos);
  EXPECT_NE(errors["smbios1"].get<std::string>().find("smbios1.uuid"), std::string::npos);
  EXPECT_NE(errors["boot"].get<std::string>().find("invalid boot device 'floppy'"), std::string::npos);
  EXPECT_EQ(errors["tags"], "invalid format - invalid characters in tag\n");
  EXPECT_NE(errors["hostpci0"].get<std::string>().find("x-vga"), std::string::npos);
  EXPECT_NE(errors["ide2"].get<std::string>().find("ide2.media"), std::string::npos);
  EXPECT_EQ(errors["scsi31"], "property is not defined in schema and the schema does not allow additional properties");
}

TEST_F(PveSimTest, PropertyStringBooleansAcceptWords) {
  auto result = client_->PostJson("/nodes/pve1/qemu",
                                  {{"vmid", 171}, {"agent", "enabled=true"}, {"scsi0", "local-lvm:4,ssd=on"}});
  EXPECT_EQ(result.status, 200) << result.body;
}

TEST_F(PveSimTest, InvalidNodeNameIs400AndUnknownNodeIsHostnameLookup) {
  auto bad = client_->Get("/nodes/bad_node/qemu");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json["errors"]["node"], "invalid format - value does not look like a valid node name\n");
  auto unknown = client_->Get("/nodes/bogus/qemu");
  EXPECT_EQ(unknown.status, 500);
  EXPECT_EQ(unknown.reason,
            "hostname lookup 'bogus' failed - failed to get address info for: bogus: Name or service not known");
}

TEST_F(PveSimTest, UnknownCpuModel) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 172}, {"cpu", "x86-64-v9"}});
  ASSERT_EQ(result.status, 400);
  EXPECT_NE(result.json["errors"]["cpu"].get<std::string>().find("Built-in cputype 'x86-64-v9' is not defined"),
            std::string::npos);
}

// ---- auth ----

TEST_F(PveSimTest, NoCredentialsIs401NoTicketWithEmptyBody) {
  SimClient anonymous(*sim_, "");
  auto result = anonymous.Get("/version");
  EXPECT_EQ(result.status, 401);
  EXPECT_EQ(result.reason, "No ticket");
  EXPECT_TRUE(result.body.empty());
}

TEST_F(PveSimTest, WrongTokenSecretIs401AuthenticationFailed) {
  SimClient wrong(*sim_, fmt::format("PVEAPIToken={}=nope", sim_->default_token_id()));
  auto result = wrong.Get("/version");
  EXPECT_EQ(result.status, 401);
  EXPECT_EQ(result.reason, "Authentication failed!");
  EXPECT_TRUE(result.body.empty());
}

TEST_F(PveSimTest, TicketLoginCsrfAndExpiry) {
  SimClient anonymous(*sim_, "");
  auto bad = anonymous.PostForm("/access/ticket", "username=root@pam&password=wrong");
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(bad.reason, "authentication failure");
  auto login = anonymous.PostForm("/access/ticket", "username=root@pam&password=pve-sim-root");
  ASSERT_EQ(login.status, 200) << login.reason;
  std::string ticket = login.data()["ticket"];
  std::string csrf = login.data()["CSRFPreventionToken"];
  EXPECT_TRUE(std::regex_match(ticket, std::regex("^PVE:root@pam:[0-9A-F]{8}::.+$"))) << ticket;
  httplib::Headers cookie = {{"Cookie", "PVEAuthCookie=" + ticket}};
  EXPECT_EQ(anonymous.Get("/version", cookie).status, 200);
  auto no_csrf = anonymous.PostJson("/nodes/pve1/qemu", {{"vmid", 180}}, cookie);
  EXPECT_EQ(no_csrf.status, 401);
  EXPECT_EQ(no_csrf.reason, "Permission denied - invalid csrf token");
  httplib::Headers with_csrf = {{"Cookie", "PVEAuthCookie=" + ticket}, {"CSRFPreventionToken", csrf}};
  EXPECT_EQ(anonymous.PostJson("/nodes/pve1/qemu", {{"vmid", 180}}, with_csrf).status, 200);

  // Renewal with the ticket as password, then expiry after 2 h of simulated time.
  clock_.Advance(std::chrono::minutes(90));
  auto renewed = anonymous.PostForm("/access/ticket", "username=root@pam&password=" + ticket);
  ASSERT_EQ(renewed.status, 200);
  std::string new_ticket = renewed.data()["ticket"];
  clock_.Advance(std::chrono::minutes(31));
  auto expired = anonymous.Get("/version", cookie);
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(expired.reason, "Authentication failed!");
  EXPECT_EQ(anonymous.Get("/version", {{"Cookie", "PVEAuthCookie=" + new_ticket}}).status, 200);
}

constexpr const char* kAclScenario = R"yaml(
nodes: [{name: pve1}, {name: pve2}]
storages:
  - {id: local, type: dir, content: [iso, images]}
users:
  - userid: root@pam
    password: root
    tokens: [{name: omni, secret: root-secret, privsep: false}]
  - userid: omni@pve
    tokens:
      - {name: limited, secret: limited-secret, privsep: true}
      - {name: full, secret: full-secret, privsep: false}
acls:
  - {path: /vms, ugid: omni@pve, role: PVEVMAdmin}
  - {path: /storage, ugid: omni@pve, role: PVEDatastoreUser}
  - {path: /vms, ugid: omni@pve!limited, privs: [VM.Audit]}
)yaml";

TEST_F(PveSimTest, PrivsepTokenGetsIntersectionAnd403Text) {
  Start(kAclScenario);
  SimClient limited(*sim_, "PVEAPIToken=omni@pve!limited=limited-secret");
  auto denied = limited.PostJson("/nodes/pve1/qemu", {{"vmid", 200}});
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.reason, "Permission check failed (/vms/200, VM.Allocate)");
  SimClient full(*sim_, "PVEAPIToken=omni@pve!full=full-secret");
  auto ok = full.PostJson("/nodes/pve1/qemu", {{"vmid", 200}, {"scsi0", "local:4"}});
  EXPECT_EQ(ok.status, 200) << ok.reason;
  auto permissions = limited.Get("/access/permissions");
  ASSERT_EQ(permissions.status, 200);
  EXPECT_EQ(permissions.data()["/vms"], json({{"VM.Audit", 1}}));
  EXPECT_FALSE(permissions.data().contains("/storage"));
}

TEST_F(PveSimTest, NodesDropStatisticsWithoutSysAudit) {
  Start(kAclScenario);
  SimClient full(*sim_, "PVEAPIToken=omni@pve!full=full-secret");
  for (const auto& node : full.Get("/nodes").data()) {
    EXPECT_EQ(node["status"], "online");
    EXPECT_FALSE(node.contains("maxmem"));
    EXPECT_FALSE(node.contains("mem"));
  }
  auto status = full.Get("/nodes/pve1/status");
  EXPECT_EQ(status.status, 403);
  EXPECT_EQ(status.reason, "Permission check failed (/nodes/pve1, Sys.Audit)");
}

TEST_F(PveSimTest, RootOnlyOptionsGive500ForTokens) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 210}, {"hugepages", "2"}});
  EXPECT_EQ(result.status, 500);
  EXPECT_EQ(result.reason, "only root can set 'hugepages' config");
  auto host = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 210}, {"hostpci0", "0000:01:00.0"}});
  EXPECT_EQ(host.reason, "only root can set 'hostpci0' config");
}

// ---- cluster and nodes ----

TEST_F(PveSimTest, OfflineNodeGives595WithEmptyBodyWhileClusterCallsWork) {
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  for (const std::string path : {"/nodes/pve2/qemu", "/nodes/pve2/status", "/nodes/pve2/storage"}) {
    auto result = client_->Get(path);
    EXPECT_EQ(result.status, 595) << path;
    EXPECT_TRUE(result.body.empty());
  }
  EXPECT_EQ(client_->Get("/cluster/resources").status, 200);
  EXPECT_EQ(client_->Get("/cluster/nextid").status, 200);
  json offline;
  for (const auto& node : client_->Get("/nodes").data()) {
    if (node["node"] == "pve2") offline = node;
  }
  EXPECT_EQ(offline["status"], "offline");
  EXPECT_TRUE(offline.contains("maxmem"));
  EXPECT_FALSE(offline.contains("mem"));
  EXPECT_FALSE(offline.contains("uptime"));
  clock_.Advance(std::chrono::minutes(6));
  for (const auto& node : client_->Get("/nodes").data()) {
    if (node["node"] != "pve2") continue;
    EXPECT_FALSE(node.contains("maxmem"));
    EXPECT_FALSE(node.contains("maxcpu"));
  }
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", true).ok());
  EXPECT_EQ(client_->Get("/nodes/pve2/qemu").status, 200);
}

TEST_F(PveSimTest, ControlsOverHttp) {
  SimClient sim_http(*sim_, "");
  EXPECT_EQ(sim_http.Raw("POST", "/_sim/node/pve3/offline", "", "").status, 200);
  EXPECT_EQ(client_->Get("/nodes/pve3/qemu").status, 595);
  EXPECT_EQ(sim_http.Raw("POST", "/_sim/node/pve3/online", "", "").status, 200);
  EXPECT_EQ(client_->Get("/nodes/pve3/qemu").status, 200);
  EXPECT_EQ(sim_http.Raw("POST", "/_sim/node/nope/online", "", "").status, 404);
  auto state = sim_http.Get("/_sim/state");
  ASSERT_EQ(state.status, 200);
  EXPECT_EQ(state.data()["nodes"].size(), 3u);
  EXPECT_GE(state.data()["requests"]["GET /nodes/{node}/qemu"].get<int>(), 2);
}

TEST_F(PveSimTest, ClusterStatusAndResources) {
  auto status = client_->Get("/cluster/status");
  ASSERT_EQ(status.status, 200);
  EXPECT_EQ(status.data()[0]["type"], "cluster");
  ASSERT_EQ(CreateVm("pve1", 300, {{"tags", "B;a"}}), "OK");
  auto vms = client_->Get("/cluster/resources?type=vm").data();
  ASSERT_EQ(vms.size(), 1u);
  EXPECT_EQ(vms[0]["id"], "qemu/300");
  EXPECT_EQ(vms[0]["node"], "pve1");
  EXPECT_EQ(vms[0]["tags"], "a;b");
  auto storages = client_->Get("/cluster/resources?type=storage").data();
  int fast_lvm = 0, nas = 0;
  for (const auto& entry : storages) {
    if (entry["storage"] == "fast-lvm") ++fast_lvm;
    if (entry["storage"] == "nas") ++nas;
  }
  EXPECT_EQ(fast_lvm, 1);  // restricted to pve1
  EXPECT_EQ(nas, 3);       // one entry per node
  EXPECT_EQ(client_->Get("/cluster/resources?type=pool").status, 400);
}

TEST_F(PveSimTest, NextIdIsAStringAndReservesNothing) {
  auto first = client_->Get("/cluster/nextid");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.data(), "100");
  EXPECT_EQ(client_->Get("/cluster/nextid").data(), "100");
  ASSERT_EQ(CreateVm("pve2", 100), "OK");
  EXPECT_EQ(client_->Get("/cluster/nextid").data(), "101");
  auto taken = client_->Get("/cluster/nextid?vmid=100");
  EXPECT_EQ(taken.status, 400);
  EXPECT_EQ(taken.json["errors"]["vmid"], "VM 100 already exists");
  EXPECT_EQ(client_->Get("/cluster/nextid?vmid=555").data(), "555");
}

// ---- VMs ----

TEST_F(PveSimTest, CreateLockIsVisibleImmediatelyAndBlocksConfigChanges) {
  auto created = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 400}, {"name", "talos-a"}, {"scsi0", "local-lvm:8"}});
  ASSERT_EQ(created.status, 200);
  std::string upid = created.data();
  auto list = client_->Get("/nodes/pve1/qemu").data();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["lock"], "create");
  EXPECT_EQ(list[0]["name"], "VM 400");
  EXPECT_EQ(list[0]["maxmem"], 512LL * 1024 * 1024);
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/400/status/current").data()["lock"], "create");
  EXPECT_EQ(client_->Get("/cluster/resources?type=vm").data()[0]["lock"], "create");
  auto blocked = client_->PostJson("/nodes/pve1/qemu/400/config", {{"tags", "x"}});
  EXPECT_EQ(blocked.status, 500);
  EXPECT_EQ(blocked.reason, "VM is locked (create)");
  auto del = client_->Delete("/nodes/pve1/qemu/400");
  ASSERT_EQ(del.status, 200);
  EXPECT_EQ(WaitTask(*client_, clock_, del.data()), "VM is locked (create)");
  EXPECT_EQ(WaitTask(*client_, clock_, upid), "OK");
  EXPECT_FALSE(Config("pve1", 400).contains("lock"));
}

TEST_F(PveSimTest, CreateFillsDefaultsLikePve) {
  ASSERT_EQ(
      CreateVm("pve1", 401,
               {{"cdrom", "none"}, {"tags", "Machine-Request.ABC,omni;omni"}, {"scsi0", "local-lvm:40,iothread=1"}}),
      "OK");
  auto config = Config("pve1", 401);
  EXPECT_EQ(config["boot"], "order=scsi0;ide2;net0");
  EXPECT_TRUE(std::regex_match(config["net0"].get<std::string>(),
                               std::regex("^virtio=BC:24:11:[0-9A-F]{2}:[0-9A-F]{2}:[0-9A-F]{2},bridge=vmbr0$")))
      << config["net0"];
  EXPECT_TRUE(std::regex_match(config["smbios1"].get<std::string>(), std::regex("^uuid=[0-9a-f-]{36}$")));
  EXPECT_EQ(config["tags"], "machine-request.abc;omni");
  EXPECT_EQ(config["scsi0"], "local-lvm:vm-401-disk-0,iothread=1,size=40G");
  EXPECT_EQ(config["ide2"], "none,media=cdrom");
  EXPECT_EQ(config["memory"], "1024");
  EXPECT_TRUE(config["memory"].is_string());
  EXPECT_TRUE(config.contains("digest"));
  EXPECT_TRUE(config.contains("vmgenid"));
}

TEST_F(PveSimTest, CreateOfTakenIdFailsSynchronously) {
  auto first = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 500}});
  ASSERT_EQ(first.status, 200);
  auto second = client_->PostJson("/nodes/pve2/qemu", {{"vmid", 500}});
  EXPECT_EQ(second.status, 500);
  EXPECT_EQ(second.reason, "unable to create VM 500 - VM 500 already exists on node 'pve1'");
}

TEST_F(PveSimTest, ConcurrentCreatesOfOneIdHaveExactlyOneWinner) {
  std::atomic<int> ok{0}, exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      SimClient client(*sim_, testing::TokenHeader(*sim_));
      auto result = client.PostJson(fmt::format("/nodes/pve{}/qemu", 1 + i % 3), {{"vmid", 510}});
      if (result.status == 200) ++ok;
      if (result.reason.find("already exists on node") != std::string::npos) ++exists;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(exists.load(), 5);
}

TEST_F(PveSimTest, ThickStorageFullFailsCreateAndRemovesConfig) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 600}, {"scsi0", "fast-lvm:80"}});
  ASSERT_EQ(result.status, 200);
  std::string status = WaitTask(*client_, clock_, result.data());
  EXPECT_NE(status.find("unable to create VM 600 - scsi0: not enough free space"), std::string::npos) << status;
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/600/config").status, 500);
  EXPECT_EQ(client_->Get("/cluster/nextid?vmid=600").data(), "600");
  // Thin storage over-commits without failing.
  EXPECT_EQ(CreateVm("pve1", 601, {{"scsi0", "local-lvm:4000"}}), "OK");
  // Space accounting: a 40 GiB thick disk raises used.
  EXPECT_EQ(CreateVm("pve1", 602, {{"scsi0", "fast-lvm:40"}}), "OK");
  for (const auto& storage : client_->Get("/nodes/pve1/storage?storage=fast-lvm").data()) {
    EXPECT_EQ(storage["used"], 40LL << 30);
    EXPECT_EQ(storage["avail"], 10LL << 30);
  }
  auto full = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 603}, {"scsi0", "fast-lvm:20"}});
  EXPECT_NE(WaitTask(*client_, clock_, full.data()).find("not enough free space"), std::string::npos);
}

TEST_F(PveSimTest, CreateWithMissingIsoFails) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 610}, {"cdrom", "local:iso/missing.iso"}});
  ASSERT_EQ(result.status, 200);
  EXPECT_EQ(WaitTask(*client_, clock_, result.data()),
            "unable to create VM 610 - volume local:iso/missing.iso does not exist");
}

TEST_F(PveSimTest, StorageWithoutImagesIsRejected) {
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 620}, {"scsi0", "local-lvm:4"}, {"scsi1", "nas:4"}});
  EXPECT_EQ(result.status, 200);
  Start(
      "nodes: [{name: pve1}]\nstorages: [{id: isos, type: dir, content: [iso]}]\nusers: [{userid: root@pam, "
      "tokens: [{name: t, secret: s, privsep: false}]}]\n");
  auto rejected = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 620}, {"scsi0", "isos:4"}});
  EXPECT_EQ(rejected.status, 400);
  EXPECT_EQ(rejected.json["errors"]["storage"], "storage 'isos' does not support vm images");
}

TEST_F(PveSimTest, StatusOfVmOnAnotherNodeLooksMissing) {
  ASSERT_EQ(CreateVm("pve1", 700), "OK");
  auto result = client_->Get("/nodes/pve2/qemu/700/status/current");
  EXPECT_EQ(result.status, 500);
  EXPECT_EQ(result.reason, "Configuration file 'nodes/pve2/qemu-server/700.conf' does not exist");
  ASSERT_TRUE(sim_->MigrateVm(700, "pve2").ok());
  EXPECT_EQ(client_->Get("/nodes/pve2/qemu/700/status/current").status, 200);
}

TEST_F(PveSimTest, StartStopLifecycle) {
  ASSERT_EQ(CreateVm("pve1", 710, {{"scsihw", "virtio-scsi-single"}}), "OK");
  auto start = client_->PostJson("/nodes/pve1/qemu/710/status/start", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, start.data()), "OK");
  auto status = client_->Get("/nodes/pve1/qemu/710/status/current").data();
  EXPECT_EQ(status["status"], "running");
  EXPECT_EQ(status["qmpstatus"], "running");
  EXPECT_TRUE(status.contains("pid"));
  auto again = client_->PostJson("/nodes/pve1/qemu/710/status/start", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, again.data()), "VM 710 already running");
  auto del = client_->Delete("/nodes/pve1/qemu/710");
  EXPECT_EQ(del.status, 500);
  EXPECT_EQ(del.reason, "VM 710 is running - destroy failed");
  auto stop = client_->PostJson("/nodes/pve1/qemu/710/status/stop", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, stop.data()), "OK");
  auto stop_again = client_->PostJson("/nodes/pve1/qemu/710/status/stop", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, stop_again.data()), "OK");
  auto reboot = client_->PostJson("/nodes/pve1/qemu/710/status/reboot", json::object());
  EXPECT_EQ(reboot.status, 500);
  EXPECT_EQ(reboot.reason, "VM 710 not running");
}

TEST_F(PveSimTest, StartFailsForMissingBridgeAndMapping) {
  ASSERT_EQ(CreateVm("pve2", 720, {{"net0", "virtio,bridge=vmbr1"}}), "OK");  // vmbr1 exists only on pve1
  auto start = client_->PostJson("/nodes/pve2/qemu/720/status/start", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, start.data()), "bridge 'vmbr1' does not exist");
  ASSERT_EQ(CreateVm("pve2", 721, {{"hostpci0", "mapping=gpu"}}), "OK");  // gpu is mapped only on pve1
  auto pci = client_->PostJson("/nodes/pve2/qemu/721/status/start", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, pci.data()), "PCI device mapping not found for 'gpu'");
  ASSERT_EQ(CreateVm("pve1", 722, {{"hostpci0", "mapping=gpu"}, {"net0", "virtio,bridge=vmbr1"}}), "OK");
  auto ok = client_->PostJson("/nodes/pve1/qemu/722/status/start", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, ok.data()), "OK");
}

TEST_F(PveSimTest, IothreadWithoutVirtioScsiSingleEndsWithWarnings) {
  ASSERT_EQ(CreateVm("pve1", 730, {{"scsi0", "local-lvm:8,iothread=1"}}), "OK");
  auto start = client_->PostJson("/nodes/pve1/qemu/730/status/start", json::object());
  std::string upid = start.data();
  EXPECT_EQ(WaitTask(*client_, clock_, upid), "WARNINGS: 1");
  auto log = client_->Get(fmt::format("/nodes/pve1/tasks/{}/log", upid));
  EXPECT_EQ(log.json["total"], 2);
  EXPECT_EQ(log.data()[0]["t"],
            "WARN: iothread is only valid with virtio disk or virtio-scsi-single controller, ignoring");
  EXPECT_EQ(log.data()[1]["t"], "TASK WARNINGS: 1");
}

TEST_F(PveSimTest, ShutdownWithoutGuestCooperationTimesOut) {
  Start(
      "cluster: {shutdown_cooperative: false}\nnodes: [{name: pve1}]\nstorages: [{id: local, content: [images]}]\n"
      "users: [{userid: root@pam, tokens: [{name: t, secret: s, privsep: false}]}]\n");
  ASSERT_EQ(CreateVm("pve1", 740, {{"scsi0", "local:4"}}), "OK");
  WaitTask(*client_, clock_, client_->PostJson("/nodes/pve1/qemu/740/status/start", json::object()).data());
  auto shutdown = client_->PostJson("/nodes/pve1/qemu/740/status/shutdown", {{"timeout", 30}});
  EXPECT_EQ(WaitTask(*client_, clock_, shutdown.data()), "VM quit/powerdown failed - got timeout");
  auto forced = client_->PostJson("/nodes/pve1/qemu/740/status/shutdown", {{"forceStop", 1}});
  EXPECT_EQ(WaitTask(*client_, clock_, forced.data()), "OK");
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/740/status/current").data()["status"], "stopped");
}

TEST_F(PveSimTest, ConfigPostIsATaskAndPutIsSynchronous) {
  ASSERT_EQ(CreateVm("pve1", 750), "OK");
  std::string digest = Config("pve1", 750)["digest"];
  auto put = client_->PutJson("/nodes/pve1/qemu/750/config", {{"description", "hello"}, {"delete", "net0"}});
  EXPECT_EQ(put.status, 200);
  EXPECT_TRUE(put.data().is_null());
  auto config = Config("pve1", 750);
  EXPECT_EQ(config["description"], "hello");
  EXPECT_FALSE(config.contains("net0"));
  auto stale = client_->PostJson("/nodes/pve1/qemu/750/config", {{"onboot", 1}, {"digest", digest}});
  EXPECT_EQ(stale.status, 500);
  EXPECT_EQ(stale.reason, "checksum mismatch (file change by other user?)");
  auto post = client_->PostJson("/nodes/pve1/qemu/750/config", {{"onboot", 1}});
  ASSERT_EQ(post.status, 200);
  EXPECT_EQ(testing::UpidNode(post.data()), "pve1");
  EXPECT_EQ(WaitTask(*client_, clock_, post.data()), "OK");
  EXPECT_EQ(Config("pve1", 750)["onboot"], 1);
  auto empty = client_->PostJson("/nodes/pve1/qemu/750/config", json::object());
  EXPECT_EQ(empty.reason, "no options specified");
  auto balloon = client_->PutJson("/nodes/pve1/qemu/750/config", {{"balloon", 4096}});
  EXPECT_EQ(balloon.reason, "balloon value too large (must be smaller than assigned memory)");
}

TEST_F(PveSimTest, WorkersOnOneVmidSerializeAndTimeOut) {
  Start(
      "nodes: [{name: pve1}]\nstorages: [{id: local, content: [images]}]\ntasks: {durations: {qmconfig: 6}}\n"
      "users: [{userid: root@pam, tokens: [{name: t, secret: s, privsep: false}]}]\n");
  ASSERT_EQ(CreateVm("pve1", 760, {{"scsi0", "local:4"}}), "OK");
  auto first = client_->PostJson("/nodes/pve1/qemu/760/config", {{"description", "a"}});
  auto second = client_->PostJson("/nodes/pve1/qemu/760/config", {{"description", "b"}});
  auto third = client_->PostJson("/nodes/pve1/qemu/760/config", {{"description", "c"}});
  ASSERT_EQ(third.status, 200);
  EXPECT_EQ(WaitTask(*client_, clock_, first.data()), "OK");
  EXPECT_EQ(WaitTask(*client_, clock_, second.data()), "OK");
  EXPECT_EQ(WaitTask(*client_, clock_, third.data()),
            "can't lock file '/var/lock/qemu-server/lock-760.conf' - got timeout");
  EXPECT_EQ(Config("pve1", 760)["description"], "b");
}

// A flock held outside the API (a backup, a hung migration): workers on the VM and a config PUT
// fail as PVE's do until it is released; the VM stays as it was.
TEST_F(PveSimTest, HeldVmLockFailsWorkersAndPutsUntilReleased) {
  ASSERT_EQ(CreateVm("pve1", 770), "OK");
  ASSERT_TRUE(sim_->HoldVmLock(770, std::chrono::minutes{10}).ok());
  const std::string timeout = "can't lock file '/var/lock/qemu-server/lock-770.conf' - got timeout";
  auto del = client_->Delete("/nodes/pve1/qemu/770?purge=1");
  ASSERT_EQ(del.status, 200);
  EXPECT_EQ(WaitTask(*client_, clock_, del.data()), timeout);
  auto put = client_->PutJson("/nodes/pve1/qemu/770/config", {{"description", "x"}});
  EXPECT_EQ(put.status, 500);
  EXPECT_EQ(put.reason, timeout);
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/770/status/current").data()["lock"], nullptr);
  EXPECT_EQ(sim_->HoldVmLock(771, std::chrono::seconds{1}).code(), absl::StatusCode::kNotFound);
  // Over /_sim as well: releasing lets the next worker take the flock at once.
  auto release = client_->PostJson("/_sim/vm/770/hold-lock", {{"seconds", "0"}});
  ASSERT_EQ(release.status, 200) << release.reason;
  auto again = client_->Delete("/nodes/pve1/qemu/770?purge=1");
  EXPECT_EQ(WaitTask(*client_, clock_, again.data()), "OK");
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/770/config").status, 500);
}

TEST_F(PveSimTest, DeleteHoldsVmidUntilTaskEndsAndFreesDisks) {
  ASSERT_EQ(CreateVm("pve1", 800, {{"scsi0", "fast-lvm:10"}}), "OK");
  auto del = client_->Delete("/nodes/pve1/qemu/800?purge=1&destroy-unreferenced-disks=1");
  ASSERT_EQ(del.status, 200);
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/800/status/current").data()["lock"], "destroyed");
  EXPECT_EQ(client_->Get("/cluster/nextid?vmid=800").status, 400);
  auto blocked = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 800}});
  EXPECT_EQ(blocked.reason, "unable to create VM 800 - VM 800 already exists on node 'pve1'");
  EXPECT_EQ(WaitTask(*client_, clock_, del.data()), "OK");
  EXPECT_EQ(client_->Get("/cluster/nextid?vmid=800").data(), "800");
  for (const auto& storage : client_->Get("/nodes/pve1/storage?storage=fast-lvm").data()) EXPECT_EQ(storage["used"], 0);
  auto missing = client_->Delete("/nodes/pve1/qemu/800");
  EXPECT_EQ(missing.reason, "Configuration file 'nodes/pve1/qemu-server/800.conf' does not exist");
}

TEST_F(PveSimTest, OutOfBandDeleteAndInjectedTaskFailure) {
  ASSERT_EQ(CreateVm("pve1", 810), "OK");
  ASSERT_TRUE(sim_->DeleteVmOutOfBand(810).ok());
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/810/config").status, 500);
  sim_->FailNextTask("qmcreate", "", "storage migration failed");
  EXPECT_EQ(CreateVm("pve1", 811), "storage migration failed");
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/811/config").status, 500);
  sim_->FailNextTask("qmstop", "pve1", "WARNINGS");
  ASSERT_EQ(CreateVm("pve1", 812), "OK");
  auto stop = client_->PostJson("/nodes/pve1/qemu/812/status/stop", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, stop.data()), "WARNINGS: 1");
}

TEST_F(PveSimTest, AgentInterfaces) {
  ASSERT_EQ(CreateVm("pve1", 820, {{"agent", "enabled=1"}}), "OK");
  auto stopped = client_->Get("/nodes/pve1/qemu/820/agent/network-get-interfaces");
  EXPECT_EQ(stopped.reason, "QEMU guest agent is not running");
  WaitTask(*client_, clock_, client_->PostJson("/nodes/pve1/qemu/820/status/start", json::object()).data());
  auto running = client_->Get("/nodes/pve1/qemu/820/agent/network-get-interfaces");
  ASSERT_EQ(running.status, 200);
  EXPECT_EQ(running.data()["result"].size(), 2u);
  ASSERT_EQ(CreateVm("pve1", 821), "OK");
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/821/agent/network-get-interfaces").reason, "No QEMU guest agent configured");
}

// ---- tasks ----

TEST_F(PveSimTest, UpidFormatAndTasksOnlyOnTheirNode) {
  auto created = client_->PostJson("/nodes/pve2/qemu", {{"vmid", 900}});
  std::string upid = created.data();
  EXPECT_TRUE(std::regex_match(
      upid, std::regex("^UPID:pve2:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:qmcreate:900:root@pam!omni:$")))
      << upid;
  auto status = client_->Get(fmt::format("/nodes/pve2/tasks/{}/status", upid)).data();
  EXPECT_EQ(status["status"], "running");
  EXPECT_FALSE(status.contains("exitstatus"));
  EXPECT_EQ(status["user"], "root@pam");
  EXPECT_EQ(status["tokenid"], "omni");
  auto elsewhere = client_->Get(fmt::format("/nodes/pve1/tasks/{}/status", upid));
  EXPECT_EQ(elsewhere.status, 400);
  EXPECT_EQ(elsewhere.json["errors"]["upid"], "no such task");
  auto garbage = client_->Get("/nodes/pve1/tasks/UPID:nope/status");
  EXPECT_EQ(garbage.json["errors"]["upid"], "unable to parse worker upid");
  auto active = client_->Get("/nodes/pve2/tasks?source=active&vmid=900").data();
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(WaitTask(*client_, clock_, upid), "OK");
  auto log = client_->Get(fmt::format("/nodes/pve2/tasks/{}/log?limit=0", upid));
  EXPECT_EQ(log.data().back()["t"], "TASK OK");
  EXPECT_EQ(client_->Get("/nodes/pve2/tasks?source=active").data().size(), 0u);
  EXPECT_EQ(client_->Get("/nodes/pve2/tasks?typefilter=qmcreate").data().size(), 1u);
}

TEST_F(PveSimTest, AbortingACreateRemovesTheVm) {
  auto created = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 910}});
  std::string upid = created.data();
  EXPECT_EQ(client_->Delete(fmt::format("/nodes/pve1/tasks/{}", upid)).status, 200);
  EXPECT_EQ(WaitTask(*client_, clock_, upid), "received interrupt");
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/910/config").status, 500);
}

// ---- storage ----

TEST_F(PveSimTest, NodeStorageFiltersAndEnabledFlag) {
  auto pve2 = client_->Get("/nodes/pve2/storage").data();
  bool saw_fast = false;
  for (const auto& storage : pve2) {
    if (storage["storage"] != "fast-lvm") continue;
    saw_fast = true;
    EXPECT_EQ(storage["enabled"], 0);
    EXPECT_EQ(storage["total"], 0);
    EXPECT_FALSE(storage.contains("used_fraction"));
  }
  EXPECT_TRUE(saw_fast);
  for (const auto& storage : client_->Get("/nodes/pve2/storage?content=images").data()) {
    EXPECT_NE(storage["storage"], "fast-lvm");
  }
  auto iso = client_->Get("/nodes/pve1/storage?content=iso").data();
  EXPECT_EQ(iso.size(), 2u);  // local and nas
  EXPECT_EQ(client_->Get("/nodes/pve1/storage?storage=nope").json["errors"]["storage"], "No such storage.");
  auto config = client_->Get("/storage").data();
  EXPECT_EQ(config.size(), 4u);
}

TEST_F(PveSimTest, DownloadUrlBecomesVisibleOnlyAtTaskEnd) {
  auto missing = client_->Get("/nodes/pve1/storage/local/content/local:iso/talos.iso");
  EXPECT_EQ(missing.status, 500);
  EXPECT_EQ(missing.reason, "volume_size_info on 'local:iso/talos.iso' failed - no format");
  auto download =
      client_->PostJson("/nodes/pve1/storage/local/download-url",
                        {{"content", "iso"}, {"filename", "talos.iso"}, {"url", "https://factory.example/x.iso"}});
  ASSERT_EQ(download.status, 200);
  std::string upid = download.data();
  EXPECT_NE(upid.find(":download:talos.iso:"), std::string::npos);
  EXPECT_EQ(client_->Get("/nodes/pve1/storage/local/content?content=iso").data().size(), 0u);
  EXPECT_EQ(WaitTask(*client_, clock_, upid), "OK");
  auto listed = client_->Get("/nodes/pve1/storage/local/content?content=iso").data();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["volid"], "local:iso/talos.iso");
  auto info = client_->Get("/nodes/pve1/storage/local/content/iso/talos.iso");
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.data()["path"], "/var/lib/vz/template/iso/talos.iso");
  // local is per node: pve2 does not see it.
  EXPECT_EQ(client_->Get("/nodes/pve2/storage/local/content?content=iso").data().size(), 0u);

  auto again =
      client_->PostJson("/nodes/pve1/storage/local/download-url",
                        {{"content", "iso"}, {"filename", "talos.iso"}, {"url", "https://factory.example/x.iso"}});
  EXPECT_EQ(WaitTask(*client_, clock_, again.data()),
            "refusing to override existing file '/var/lib/vz/template/iso/talos.iso'");
  auto with_checksum =
      client_->PostJson("/nodes/pve1/storage/local/download-url", {{"content", "iso"},
                                                                   {"filename", "talos.iso"},
                                                                   {"url", "https://factory.example/x.iso"},
                                                                   {"checksum", "abc123"},
                                                                   {"checksum-algorithm", "sha256"}});
  auto quick = client_->Get(fmt::format("/nodes/pve1/tasks/{}/status", with_checksum.data().get<std::string>()));
  EXPECT_EQ(quick.data()["exitstatus"], "OK");  // finished at once, no clock advance
}

TEST_F(PveSimTest, DownloadUrlSynchronousChecksAndNormalization) {
  auto ext = client_->PostJson("/nodes/pve1/storage/local/download-url",
                               {{"content", "iso"}, {"filename", "talos.raw"}, {"url", "https://x/y"}});
  EXPECT_EQ(ext.status, 400);
  EXPECT_EQ(ext.json["errors"]["filename"], "wrong file extension");
  auto block = client_->PostJson("/nodes/pve1/storage/local-lvm/download-url",
                                 {{"content", "iso"}, {"filename", "t.iso"}, {"url", "https://x/y"}});
  EXPECT_EQ(block.reason, "can't upload to storage type 'lvmthin', not a file based storage!");
  auto content = client_->PostJson("/nodes/pve1/storage/nas/download-url",
                                   {{"content", "vztmpl"}, {"filename", "t.tar.gz"}, {"url", "https://x/y"}});
  EXPECT_EQ(content.reason, "storage 'nas' is not configured for content-type 'vztmpl'");
  auto url = client_->PostJson("/nodes/pve1/storage/nas/download-url",
                               {{"content", "iso"}, {"filename", "t.iso"}, {"url", "ftp://x/y"}});
  EXPECT_EQ(url.json["errors"]["url"], "value does not match the regex pattern");
  auto normalized = client_->PostJson("/nodes/pve1/storage/nas/download-url",
                                      {{"content", "iso"}, {"filename", "../a b/tal os.iso"}, {"url", "https://x/y"}});
  ASSERT_EQ(normalized.status, 200);
  EXPECT_EQ(WaitTask(*client_, clock_, normalized.data()), "OK");
  // nas is shared: visible from every node.
  auto listed = client_->Get("/nodes/pve3/storage/nas/content").data();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["volid"], "nas:iso/tal_os.iso");
}

TEST_F(PveSimTest, DownloadFailuresFromScenario) {
  Start(R"yaml(
nodes: [{name: pve1}]
storages: [{id: local, type: dir, content: [iso], path: /var/lib/vz}]
users: [{userid: root@pam, tokens: [{name: t, secret: s, privsep: false}]}]
downloads:
  - {url: "https://factory.example/404.iso", fail: "404 Not Found"}
  - {url: "https://factory.example/good.iso", sha256: "aa11"}
)yaml");
  auto notfound =
      client_->PostJson("/nodes/pve1/storage/local/download-url",
                        {{"content", "iso"}, {"filename", "a.iso"}, {"url", "https://factory.example/404.iso"}});
  EXPECT_EQ(WaitTask(*client_, clock_, notfound.data()), "download failed: 404 Not Found");
  auto mismatch =
      client_->PostJson("/nodes/pve1/storage/local/download-url", {{"content", "iso"},
                                                                   {"filename", "b.iso"},
                                                                   {"url", "https://factory.example/good.iso"},
                                                                   {"checksum", "bb22"},
                                                                   {"checksum-algorithm", "sha256"}});
  EXPECT_EQ(WaitTask(*client_, clock_, mismatch.data()), "checksum mismatch: got 'aa11' != expect 'bb22', aborting");
  auto missing_algorithm = client_->PostJson(
      "/nodes/pve1/storage/local/download-url",
      {{"content", "iso"}, {"filename", "c.iso"}, {"url", "https://factory.example/good.iso"}, {"checksum", "aa11"}});
  EXPECT_EQ(missing_algorithm.status, 400);
  EXPECT_TRUE(missing_algorithm.json["errors"].contains("checksum-algorithm"));
}

TEST_F(PveSimTest, CloudInitUploadAndBootCallback) {
  std::string iso = testing::MakeCidataIso("#cloud-config\nmachine: join\n", "instance-id: abc\nlocal-hostname: x\n");
  std::string boundary = "XyZboundary";
  auto wrong_field = client_->Raw("POST", "/nodes/pve1/storage/local/upload",
                                  testing::MultipartBody(boundary, "iso", "file", "user-data-950.iso", iso),
                                  "multipart/form-data; boundary=" + boundary);
  EXPECT_EQ(wrong_field.status, 500);
  EXPECT_EQ(wrong_field.reason, "wrong field name 'file' for file upload, expected 'filename'");
  auto upload = client_->Raw("POST", "/nodes/pve1/storage/local/upload",
                             testing::MultipartBody(boundary, "iso", "filename", "user-data-950.iso", iso),
                             "multipart/form-data; boundary=" + boundary);
  ASSERT_EQ(upload.status, 200) << upload.reason;
  std::string upid = upload.data();
  EXPECT_NE(upid.find(":imgcopy::"), std::string::npos);
  EXPECT_EQ(WaitTask(*client_, clock_, upid), "OK");
  auto stored = sim_->VolumeContentForTest("pve1", "local:iso/user-data-950.iso");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(*stored, iso);

  ASSERT_EQ(CreateVm("pve1", 950, {{"smbios1", "uuid=3F0C1111-2222-4333-8444-555566667777"}}), "OK");
  auto config = Config("pve1", 950);
  auto post = client_->PostJson("/nodes/pve1/qemu/950/config", {{"ide0", "local:iso/user-data-950.iso,media=cdrom"},
                                                                {"boot", config["boot"].get<std::string>() + ";ide0"}});
  ASSERT_EQ(post.status, 200) << post.body;
  EXPECT_EQ(WaitTask(*client_, clock_, post.data()), "OK");
  EXPECT_EQ(Config("pve1", 950)["boot"], "order=scsi0;net0;ide0");
  auto start = client_->PostJson("/nodes/pve1/qemu/950/status/start", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, start.data()), "OK");
  std::lock_guard lock(boot_mutex_);
  ASSERT_EQ(boots_.size(), 1u);
  EXPECT_EQ(boots_[0].vmid, 950);
  EXPECT_EQ(boots_[0].node, "pve1");
  EXPECT_EQ(boots_[0].name, "vm950");
  EXPECT_EQ(boots_[0].smbios_uuid, "3f0c1111-2222-4333-8444-555566667777");
  EXPECT_EQ(boots_[0].user_data, "#cloud-config\nmachine: join\n");
  EXPECT_EQ(boots_[0].meta_data, "instance-id: abc\nlocal-hostname: x\n");
}

TEST_F(PveSimTest, DeleteContentTask) {
  auto download = client_->PostJson("/nodes/pve1/storage/local/download-url",
                                    {{"content", "iso"}, {"filename", "old.iso"}, {"url", "https://x/old.iso"}});
  WaitTask(*client_, clock_, download.data());
  auto del = client_->Delete("/nodes/pve1/storage/local/content/local:iso/old.iso");
  ASSERT_EQ(del.status, 200);
  EXPECT_EQ(WaitTask(*client_, clock_, del.data()), "OK");
  EXPECT_EQ(client_->Get("/nodes/pve1/storage/local/content/local:iso/old.iso").status, 500);
  auto mismatch = client_->Get("/nodes/pve1/storage/local/content/nas:iso/old.iso");
  EXPECT_EQ(mismatch.json["errors"]["volume"], "storage ID mismatch (nas != local)\n");
}

// ---- faults ----

TEST_F(PveSimTest, FaultInjection) {
  sim_->SetFault("POST /nodes/*/qemu", FaultSpec{1.0, 503, "service busy", std::chrono::milliseconds(0), false});
  auto faulted = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 990}});
  EXPECT_EQ(faulted.status, 503);
  EXPECT_EQ(faulted.reason, "service busy");
  EXPECT_EQ(client_->Get("/version").status, 200);
  sim_->SetFault("GET /version", FaultSpec{1.0, 500, "", std::chrono::milliseconds(0), true});
  EXPECT_EQ(client_->Get("/version").status, 0);  // dropped connection
  sim_->ClearFaults();
  EXPECT_EQ(client_->PostJson("/nodes/pve1/qemu", {{"vmid", 990}}).status, 200);
  SimClient sim_http(*sim_, "");
  EXPECT_EQ(sim_http.PostForm("/_sim/fault", "endpoint=GET%20/nodes&status=596&message=Broken%20pipe").status, 200);
  auto broken = client_->Get("/nodes");
  EXPECT_EQ(broken.status, 596);
  EXPECT_EQ(broken.reason, "Broken pipe");
  EXPECT_TRUE(broken.body.empty());
}

TEST_F(PveSimTest, RandomFaultRateIsSeeded) {
  sim_->SetFault("GET /version", FaultSpec{0.5, 500, "flaky", std::chrono::milliseconds(0), false});
  int failures = 0;
  for (int i = 0; i < 200; ++i) failures += client_->Get("/version").status == 500 ? 1 : 0;
  EXPECT_GT(failures, 50);
  EXPECT_LT(failures, 150);
}

// A fault after the effect: the create happens although the client never sees its UPID, as when
// a connection is lost mid-reply; a replaced answer hides a delete that went through.
TEST_F(PveSimTest, FaultAfterEffectCarriesTheRequestOut) {
  FaultSpec dropped;
  dropped.drop_connection = true;
  dropped.after_effect = true;
  sim_->SetFault("POST /nodes/*/qemu", dropped);
  EXPECT_EQ(client_->PostJson("/nodes/pve1/qemu", {{"vmid", 991}, {"name", "lost-reply"}}).status, 0);
  sim_->ClearFaults();
  json vms = sim_->StateForTest()["vms"];
  ASSERT_EQ(vms.size(), 1u) << vms.dump();
  EXPECT_EQ(vms[0]["vmid"], 991);

  SimClient sim_http(*sim_, "");
  ASSERT_EQ(
      sim_http
          .PostForm("/_sim/fault", "endpoint=POST%20/nodes/*/qemu&status=500&message=proxy%20timeout&after_effect=1")
          .status,
      200);
  auto hidden = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 992}, {"name", "hidden-create"}});
  EXPECT_EQ(hidden.status, 500);
  EXPECT_EQ(hidden.reason, "proxy timeout");
  EXPECT_EQ(sim_->StateForTest()["vms"].size(), 2u);

  // Without after_effect the request never reaches the cluster.
  sim_->SetFault("POST /nodes/*/qemu", FaultSpec{1.0, 500, "refused", std::chrono::milliseconds(0), false, false});
  EXPECT_EQ(client_->PostJson("/nodes/pve1/qemu", {{"vmid", 993}, {"name", "refused"}}).status, 500);
  EXPECT_EQ(sim_->StateForTest()["vms"].size(), 2u);
}

// ---- scenario ----

TEST(PveSimScenarioTest, ErrorsNameTheField) {
  SimulatorOptions options;
  options.scenario_yaml = "nodes: [{name: pve1, colour: blue}]";
  auto sim = Simulator::Start(options);
  ASSERT_FALSE(sim.ok());
  EXPECT_NE(std::string(sim.status().message()).find("nodes[0].colour"), std::string::npos) << sim.status();
  options.scenario_yaml = "nodes: [{name: pve1}]\nstorages: [{id: s1, nodes: [pve9]}]";
  sim = Simulator::Start(options);
  ASSERT_FALSE(sim.ok());
  EXPECT_NE(std::string(sim.status().message()).find("storages[0].nodes names unknown node 'pve9'"), std::string::npos);
  options.scenario_yaml = "nodes: [{name: pve1}]\nacls: [{path: /, ugid: a@pve, role: Wizard}]";
  sim = Simulator::Start(options);
  ASSERT_FALSE(sim.ok());
  EXPECT_NE(std::string(sim.status().message()).find("acls[0].role 'Wizard'"), std::string::npos);
}

TEST(PveSimScenarioTest, ExampleScenarioStarts) {
  std::ifstream file(std::string(OP_SOURCE_DIR) + "/docs/examples/pve-scenario.yaml");
  ASSERT_TRUE(file.good());
  std::stringstream text;
  text << file.rdbuf();
  SimulatorOptions options;
  options.scenario_yaml = text.str();
  auto sim = Simulator::Start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ((*sim)->StateForTest()["nodes"].size(), 3u);
}

TEST(PveSimTlsTest, ServesHttpsWithGeneratedCertificate) {
  SimulatorOptions options;
  options.tls = true;
  auto sim = Simulator::Start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ((*sim)->base_url().rfind("https://127.0.0.1:", 0), 0u);
  std::string pem = (*sim)->ca_certificate_pem();
  EXPECT_NE(pem.find("BEGIN CERTIFICATE"), std::string::npos);
  // Per process: ctest runs test cases in parallel processes that would overwrite a shared file.
  std::string path = ::testing::TempDir() + "/pve-sim-ca-sim-" + std::to_string(getpid()) + ".pem";
  {
    std::ofstream out(path);
    out << pem;
  }
  httplib::Client client((*sim)->base_url());
  client.set_ca_cert_path(path.c_str());
  client.enable_server_certificate_verification(true);
  auto result = client.Get("/api2/json/version", {{"Authorization", testing::TokenHeader(**sim)}});
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
}

TEST(PveSimScaleTest, ThousandVmsOnFiftyNodes) {
  std::string scenario = "nodes:\n";
  for (int i = 1; i <= 50; ++i) scenario += fmt::format("  - {{name: node{}, cpus: 64, memory_gib: 512}}\n", i);
  scenario +=
      "storages: [{id: local-lvm, type: lvmthin, content: [images], size_gib: 10000}]\n"
      "tasks: {durations: {qmcreate: 0}}\n"
      "users: [{userid: root@pam, tokens: [{name: omni, secret: s, privsep: false}]}]\n";
  util::ManualClock clock;
  SimulatorOptions options;
  options.scenario_yaml = scenario;
  options.clock = &clock;
  auto sim = Simulator::Start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  SimClient client(**sim, testing::TokenHeader(**sim));
  for (int i = 0; i < 1000; ++i) {
    auto result = client.PostJson(fmt::format("/nodes/node{}/qemu", 1 + i % 50),
                                  {{"vmid", 1000 + i}, {"scsi0", "local-lvm:8"}, {"net0", "virtio,bridge=vmbr0"}});
    ASSERT_EQ(result.status, 200) << result.reason;
  }
  auto start = std::chrono::steady_clock::now();
  constexpr int kRequests = 200;
  for (int i = 0; i < kRequests; ++i) {
    auto result = client.Get(fmt::format("/nodes/node{}/qemu/{}/status/current", 1 + i % 50, 1000 + i));
    ASSERT_EQ(result.status, 200);
  }
  auto per_request = (std::chrono::steady_clock::now() - start) / kRequests;
  std::cout << "status/current with 1000 VMs: "
            << std::chrono::duration_cast<std::chrono::microseconds>(per_request).count() << " us/request\n";
  auto vms = client.Get("/cluster/resources?type=vm");
  EXPECT_EQ(vms.data().size(), 1000u);
  EXPECT_EQ(client.Get("/nodes").data().size(), 50u);
}

}  // namespace
}  // namespace omni_proxmox::sim::pve

namespace omni_proxmox::sim::pve {
namespace {

using nlohmann::json;
using testing::SimClient;
using testing::WaitTask;

class PveSimExtraTest : public ::testing::Test {
 protected:
  void Start(const std::string& scenario) {
    SimulatorOptions options;
    options.scenario_yaml = scenario;
    options.clock = &clock_;
    auto sim = Simulator::Start(std::move(options));
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    client_ = std::make_unique<SimClient>(*sim_, testing::TokenHeader(*sim_));
  }
  util::ManualClock clock_;
  std::unique_ptr<Simulator> sim_;
  std::unique_ptr<SimClient> client_;
};

constexpr const char* kSmall = R"yaml(
cluster: {resource_lag_s: 10}
nodes: [{name: pve1}, {name: pve2}]
storages: [{id: local, type: dir, content: [iso, images], path: /var/lib/vz}]
users:
  - userid: root@pam
    tokens: [{name: omni, secret: s, privsep: false}, {name: old, secret: o, privsep: false, expire: 1700000100}]
)yaml";

TEST_F(PveSimExtraTest, QuorumLossFailsCreates) {
  Start(kSmall);
  SimClient controls(*sim_, "");
  EXPECT_EQ(controls.PostForm("/_sim/quorum", "quorate=0").status, 200);
  auto result = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 100}});
  EXPECT_EQ(result.status, 500);
  EXPECT_EQ(result.reason, "cluster not ready - no quorum?");
  EXPECT_EQ(controls.PostForm("/_sim/quorum", "quorate=1").status, 200);
  EXPECT_EQ(client_->PostJson("/nodes/pve1/qemu", {{"vmid", 100}}).status, 200);
}

TEST_F(PveSimExtraTest, ClusterResourcesStatusLags) {
  Start(kSmall);
  auto created = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 100}, {"scsi0", "local:1"}});
  ASSERT_EQ(WaitTask(*client_, clock_, created.data()), "OK");
  auto start = client_->PostJson("/nodes/pve1/qemu/100/status/start", json::object());
  ASSERT_EQ(WaitTask(*client_, clock_, start.data()), "OK");
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/100/status/current").data()["status"], "running");
  EXPECT_EQ(client_->Get("/cluster/resources?type=vm").data()[0]["status"], "stopped");
  clock_.Advance(std::chrono::seconds(10));
  EXPECT_EQ(client_->Get("/cluster/resources?type=vm").data()[0]["status"], "running");
}

TEST_F(PveSimExtraTest, ExpiredTokenIsRejected) {
  Start(kSmall);
  SimClient old(*sim_, "PVEAPIToken=root@pam!old=o");
  EXPECT_EQ(old.Get("/version").status, 200);
  clock_.Advance(std::chrono::seconds(200));
  auto expired = old.Get("/version");
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(expired.reason, "Authentication failed!");
}

TEST_F(PveSimExtraTest, TicketInAuthorizationHeaderAndTokenSpaceForm) {
  Start(std::string(kSmall) + "\n");
  SimClient spaced(*sim_, "PVEAPIToken root@pam!omni=s");
  EXPECT_EQ(spaced.Get("/version").status, 200);
}

TEST_F(PveSimExtraTest, UploadOverwritesSilentlyAndMigrateControl) {
  Start(kSmall);
  std::string boundary = "b0undary";
  for (const std::string data : {"first", "second!"}) {
    auto upload = client_->Raw("POST", "/nodes/pve1/storage/local/upload",
                               testing::MultipartBody(boundary, "iso", "filename", "x.iso", data),
                               "multipart/form-data; boundary=" + boundary);
    ASSERT_EQ(upload.status, 200) << upload.reason;
    EXPECT_EQ(WaitTask(*client_, clock_, upload.data()), "OK");
  }
  EXPECT_EQ(*sim_->VolumeContentForTest("pve1", "local:iso/x.iso"), "second!");
  auto info = client_->Get("/nodes/pve1/storage/local/content/local:iso/x.iso");
  EXPECT_EQ(info.data()["size"], 7);

  auto created = client_->PostJson("/nodes/pve1/qemu", {{"vmid", 130}, {"scsi0", "local:1"}});
  ASSERT_EQ(WaitTask(*client_, clock_, created.data()), "OK");
  SimClient controls(*sim_, "");
  EXPECT_EQ(controls.PostForm("/_sim/vm/130/migrate", "node=pve2").status, 200);
  EXPECT_EQ(client_->Get("/nodes/pve1/qemu/130/config").status, 500);
  EXPECT_EQ(client_->Get("/nodes/pve2/qemu/130/config").data()["scsi0"], "local:130/vm-130-disk-0.qcow2,size=1G");
  EXPECT_EQ(client_->Get("/nodes/pve2/storage/local/content?vmid=130").data().size(), 1u);
  EXPECT_EQ(controls.PostForm("/_sim/fail-next-task", "type=qmstart&error=boom").status, 200);
  auto start = client_->PostJson("/nodes/pve2/qemu/130/status/start", json::object());
  EXPECT_EQ(WaitTask(*client_, clock_, start.data()), "boom");
  EXPECT_EQ(controls.PostForm("/_sim/vm/130/delete", "").status, 200);
  EXPECT_EQ(client_->Get("/nodes/pve2/storage/local/content?vmid=130").data().size(), 0u);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), 1u);
}

}  // namespace
}  // namespace omni_proxmox::sim::pve
