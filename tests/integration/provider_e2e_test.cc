// The provider end to end over real sockets: the Proxmox simulator, the Omni stand-in, and
// the reconciler with its controller, as `omni-proxmox run` wires them.

#include <atomic>
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "omni/keys.h"
#include "omni/management_client.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/machine.pb.h"
#include "provider/model/providerdata.h"
#include "provider/reconciler/controller.h"
#include "provider/reconciler/machine_reconciler.h"
#include "pve/client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"

namespace omni_proxmox::provider {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using Stage = specs::MachineRequestStatusSpec;

constexpr const char* kScenario = R"yaml(
cluster:
  name: e2e
  vmid_range: [100, 100000]
nodes:
  - {name: pve1, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve2, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve3, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
  - {name: pve4, cpus: 16, memory_gib: 64, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup], size_gib: 100}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 500}
  - {id: vm_ssd, type: rbd, content: [images], shared: true, size_gib: 4000}
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
tasks:
  durations: {qmcreate: 2, qmstart: 1, qmstop: 1, qmshutdown: 1, qmconfig: 0.5, download: 5, imgcopy: 1, qmdestroy: 2, imgdel: 0.5}
)yaml";

constexpr const char* kWorkerClass = R"(cores: 4
sockets: 1
memory: 8192
disk_size: 40
network_bridge: vmbr0
storage_selector: type == "rbd" && name == "vm_ssd"
)";

// Config values as text, whether the simulator keeps them as JSON numbers or strings.
std::string Str(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

class ProviderE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox"});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);

    sim::pve::SimulatorOptions sim_options;
    sim_options.scenario_yaml = kScenario;
    sim_options.time_scale = 25;
    sim_options.on_vm_started = [this](const sim::pve::VmBootInfo& boot) {
      auto joined = standin_->MachineJoined(boot.user_data, boot.smbios_uuid);
      std::lock_guard lock(mutex_);
      if (joined.ok()) {
        joined_.insert(boot.smbios_uuid);
      } else {
        join_errors_.push_back(std::string(joined.message()));
      }
    };
    auto sim = sim::pve::Simulator::Start(sim_options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);

    pve::ClientOptions pve_options;
    pve_options.base_url = sim_->base_url() + "/api2/json";
    pve_options.token_id = sim_->default_token_id();
    pve_options.token_secret = util::Secret<std::string>(sim_->default_token_secret());
    auto pve = pve::MakeHttpClient(pve_options, util::RealClock());
    ASSERT_TRUE(pve.ok()) << pve.status();
    pve_ = std::move(*pve);

    auto key = omni::DecodeServiceAccountKey(standin_->provider_key());
    ASSERT_TRUE(key.ok()) << key.status();
    omni::ClientOptions omni_options;
    omni_options.endpoint = standin_->grpc_endpoint();
    omni_options.key = *key;
    omni_options.provider_id = "proxmox";
    omni_options.random = &random_;
    auto state = omni::MakeGrpcStateClient(omni_options);
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = std::move(*state);
    auto management = omni::MakeGrpcManagementClient(omni_options);
    ASSERT_TRUE(management.ok()) << management.status();
    management_ = std::move(*management);

    ReconcilerOptions options;
    options.provider_id = "proxmox";
    options.task_poll = milliseconds{100};
    options.failed_retry = milliseconds{2000};
    options.shutdown_timeout = std::chrono::seconds{5};
    reconciler_ = std::make_unique<MachineReconciler>(options, *pve_, *state_, *management_, standin_->factory_url(),
                                                      util::RealClock(), random_);
    ControllerOptions controller_options;
    controller_options.info = {.id = "proxmox",
                               .name = "Proxmox",
                               .description = "omni-proxmox under test",
                               .icon = "",
                               .schema = ProviderDataJsonSchema(),
                               .version = "test"};
    controller_options.concurrency = 8;
    controller_options.heartbeat_interval = milliseconds{1000};
    controller_options.resync_interval = milliseconds{3000};
    controller_ = std::make_unique<ProviderController>(controller_options, *reconciler_, *state_, *pve_,
                                                       util::RealClock(), random_);
  }

  void StartProvider() { controller_->Start(); }

  void TearDown() override {
    if (controller_) controller_->Stop();
    controller_.reset();
    reconciler_.reset();
  }

  std::vector<omni::Resource> Statuses() {
    auto list =
        state_->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), {}});
    return list.ok() ? *list : std::vector<omni::Resource>{};
  }

  std::map<std::string, Stage> StatusSpecs() {
    std::map<std::string, Stage> out;
    for (const auto& r : Statuses()) {
      Stage spec;
      if (omni::DecodeSpec(r, spec).ok()) out[r.metadata.id] = spec;
    }
    return out;
  }

  int Provisioned() {
    int n = 0;
    for (const auto& [id, spec] : StatusSpecs()) n += spec.stage() == Stage::PROVISIONED;
    return n;
  }

  Json Vms() { return sim_->StateForTest()["vms"]; }

  int MachineRequests() {
    auto list = state_->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), {}});
    return list.ok() ? static_cast<int>(list->size()) : -1;
  }

  bool WaitFor(const std::function<bool()>& predicate, std::chrono::seconds timeout = std::chrono::seconds{60}) {
    return standin_->WaitFor(predicate, timeout);
  }

  std::string Dump() {
    std::string out;
    for (const auto& [id, spec] : StatusSpecs()) {
      out += fmt::format("{}: stage={} status={} error={}\n", id, static_cast<int>(spec.stage()), spec.status(),
                         spec.error());
    }
    std::lock_guard lock(mutex_);
    for (const auto& e : join_errors_) out += "join error: " + e + "\n";
    return out;
  }

  util::Random random_{42};
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::unique_ptr<pve::Client> pve_;
  std::unique_ptr<omni::StateClient> state_;
  std::unique_ptr<omni::ManagementClient> management_;
  std::unique_ptr<MachineReconciler> reconciler_;
  std::unique_ptr<ProviderController> controller_;

  std::mutex mutex_;
  std::set<std::string> joined_;
  std::vector<std::string> join_errors_;
};

TEST_F(ProviderE2ETest, ScaleUpDownOnFourNodes) {
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kWorkerClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 12).ok());
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 12; }, std::chrono::seconds{90})) << Dump();

  // Twelve VMs, configured field by field from the providerdata, spread evenly, all running.
  Json vms = Vms();
  ASSERT_EQ(vms.size(), 12u) << vms.dump(1);
  std::map<std::string, int> per_node;
  std::set<std::string> names;
  const auto statuses = StatusSpecs();
  for (const auto& vm : vms) {
    const Json& c = vm["config"];
    ++per_node[vm["node"].get<std::string>()];
    EXPECT_EQ(vm["status"], "running");
    EXPECT_EQ(Str(c["cores"]), "4");
    EXPECT_EQ(Str(c["sockets"]), "1");
    EXPECT_EQ(Str(c["memory"]), "8192");
    EXPECT_THAT(Str(c["scsi0"]), HasSubstr("vm_ssd:"));
    EXPECT_THAT(Str(c["scsi0"]), HasSubstr("size=40G"));
    EXPECT_THAT(Str(c["net0"]), HasSubstr("bridge=vmbr0"));
    EXPECT_THAT(Str(c["ide2"]), HasSubstr("local:iso/talos-"));
    EXPECT_THAT(Str(c["ide0"]), HasSubstr("local:iso/omni-cidata-"));
    EXPECT_THAT(Str(c["tags"]), HasSubstr("omni-provider.proxmox"));
    const std::string name = Str(c["name"]);
    names.insert(name);
    ASSERT_TRUE(statuses.contains(name)) << name;
    EXPECT_THAT(Str(c["smbios1"]), HasSubstr("uuid=" + statuses.at(name).id()));
  }
  EXPECT_EQ(names.size(), 12u);
  EXPECT_EQ(per_node.size(), 4u);
  for (const auto& [node, count] : per_node) EXPECT_EQ(count, 3) << node;

  // Every machine joined with a join token the stand-in accepted.
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mutex_);
    return joined_.size() == 12;
  })) << Dump();

  // The Talos ISO was downloaded once per node (local ISO storage), not once per VM.
  const Json tasks = sim_->StateForTest()["tasks"];
  int downloads = 0;
  for (const auto& task : tasks) downloads += task["type"] == "download";
  EXPECT_EQ(downloads, 4) << tasks.dump();

  // 12 -> 3: exactly nine VMs go, the three that stay are the requests that stay.
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 3).ok());
  ASSERT_TRUE(WaitFor([&] { return Vms().size() == 3 && MachineRequests() == 3; }, std::chrono::seconds{90}))
      << Dump() << Vms().dump(1);
  std::set<std::string> remaining;
  for (const auto& vm : Vms()) remaining.insert(vm["config"]["name"].get<std::string>());
  for (const auto& [id, spec] : StatusSpecs()) EXPECT_TRUE(remaining.contains(id)) << id;

  // 3 -> 0: nothing of ours is left: no VM, no disk, no cloud-init ISO.
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(WaitFor([&] { return Vms().empty() && MachineRequests() == 0; }, std::chrono::seconds{90}))
      << Dump() << Vms().dump(1);
  const Json volumes = sim_->StateForTest()["volumes"];
  for (const auto& volume : volumes) {
    const std::string volid = volume["volid"];
    EXPECT_EQ(volid.find("omni-cidata"), std::string::npos) << volid;
    EXPECT_EQ(volid.find("vm-"), std::string::npos) << volid;
  }
  EXPECT_TRUE(Statuses().empty());
}

TEST_F(ProviderE2ETest, InvalidProviderDataFailsWithoutAVm) {
  StartProvider();
  ASSERT_TRUE(
      standin_->ApplyMachineClass("broken", "cores: 4\nmemroy: 8192\ndisk_size: 40\nstorage_selector: x\n").ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("broken", "broken", 1).ok());
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& [id, spec] : StatusSpecs()) {
      if (spec.stage() == Stage::FAILED) return true;
    }
    return false;
  })) << Dump();
  const auto specs = StatusSpecs();
  ASSERT_EQ(specs.size(), 1u);
  const auto& spec = specs.begin()->second;
  EXPECT_THAT(spec.error(), HasSubstr("memroy: unknown key 'memroy'; did you mean 'memory'?"));
  EXPECT_THAT(spec.error(), HasSubstr("no VM was created"));
  EXPECT_TRUE(Vms().empty());
}

TEST_F(ProviderE2ETest, UnmatchedSelectorAndFullClusterFailWithoutAVm) {
  StartProvider();
  ASSERT_TRUE(
      standin_
          ->ApplyMachineClass("nomatch", "cores: 1\nmemory: 2048\ndisk_size: 10\nstorage_selector: name == \"nvme\"\n")
          .ok());
  ASSERT_TRUE(standin_
                  ->ApplyMachineClass("huge",
                                      "cores: 1\nmemory: 262144\ndisk_size: 10\nstorage_selector: "
                                      "type == \"lvmthin\"\n")
                  .ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("nomatch", "nomatch", 1).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("huge", "huge", 1).ok());
  ASSERT_TRUE(WaitFor([&] {
    int failed = 0;
    for (const auto& [id, spec] : StatusSpecs()) failed += spec.stage() == Stage::FAILED;
    return failed == 2;
  })) << Dump();
  for (const auto& [id, spec] : StatusSpecs()) {
    if (id.starts_with("nomatch")) {
      EXPECT_THAT(spec.error(), HasSubstr("no storage matches the selector"));
      EXPECT_THAT(spec.error(), HasSubstr("local-lvm (lvmthin)"));
    } else {
      EXPECT_THAT(spec.error(), HasSubstr("no node can fit 256 GiB of memory"));
    }
  }
  EXPECT_TRUE(Vms().empty());
}

TEST_F(ProviderE2ETest, MigratedAndOutOfBandDeletedVmsAreTornDownAndForeignVmsKept) {
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kWorkerClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 2).ok());
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 2; })) << Dump();
  Json vms = Vms();
  ASSERT_EQ(vms.size(), 2u);
  const int migrated = vms[0]["vmid"];
  const int deleted = vms[1]["vmid"];
  const std::string from = vms[0]["node"];
  const std::string to = from == "pve1" ? "pve2" : "pve1";
  ASSERT_TRUE(sim_->MigrateVm(migrated, to).ok());
  ASSERT_TRUE(sim_->DeleteVmOutOfBand(deleted).ok());

  // A foreign VM without our markers, to prove it is never touched.
  pve::FormFields foreign = {{"name", "someone-elses"}, {"memory", "2048"}, {"scsi0", "local-lvm:4"}};
  auto upid = pve_->CreateVm("pve3", 4242, foreign);
  ASSERT_TRUE(upid.ok()) << upid.status();
  ASSERT_TRUE(pve_->WaitTask(*upid, util::RealClock().Monotonic() + std::chrono::seconds{30}).ok());

  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(WaitFor([&] { return MachineRequests() == 0; })) << Dump() << Vms().dump(1);
  vms = Vms();
  ASSERT_EQ(vms.size(), 1u) << vms.dump(1);
  EXPECT_EQ(vms[0]["vmid"], 4242);
}

TEST_F(ProviderE2ETest, OfflineNodeIsSkipped) {
  StartProvider();
  ASSERT_TRUE(sim_->SetNodeOnline("pve1", false).ok());
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kWorkerClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 4).ok());
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 4; }, std::chrono::seconds{90})) << Dump();
  for (const auto& vm : Vms()) EXPECT_THAT(vm["node"].get<std::string>(), ::testing::AnyOf("pve3", "pve4"));
}

TEST_F(ProviderE2ETest, HealthReportsRegisteredAndConnected) {
  StartProvider();
  ASSERT_TRUE(WaitFor([&] { return standin_->ProviderConnected("proxmox") && controller_->Health().omni_ok; }))
      << controller_->Health().omni_error;
  auto health = controller_->Health();
  EXPECT_TRUE(health.registered);
  EXPECT_TRUE(health.proxmox_ok) << health.proxmox_error;
}

// Switching from the Go provider: its state (MachineSpec fields 1-8, 11; VMs without our markers) is
// honoured: a half-provisioned request is finished on its existing VM, and teardown deletes the VMs
// the state names, identified by VMID and SMBIOS uuid, and nothing else.
TEST_F(ProviderE2ETest, GoProviderStateIsAdoptedAndTornDown) {
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kWorkerClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 2).ok());
  ASSERT_TRUE(WaitFor([&] { return MachineRequests() == 2; }));
  auto requests =
      state_->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), {}});
  ASSERT_TRUE(requests.ok());
  const std::string owner = omni::ProvisionControllerName("proxmox");
  struct Legacy {
    std::string request;
    int vmid;
    std::string node;
    std::string uuid;
    bool provisioned;
  };
  std::vector<Legacy> legacy = {
      {(*requests)[0].metadata.id, 700, "pve2", "11111111-2222-4333-8444-555555555555", true},
      {(*requests)[1].metadata.id, 701, "pve3", "66666666-7777-4888-9999-aaaaaaaaaaaa", false}};
  for (const auto& l : legacy) {
    // What the Go provider leaves behind: its finalizer, a status, its state, and a VM without our markers.
    ASSERT_TRUE(state_->AddFinalizer((*requests)[l.provisioned ? 0 : 1].pointer(), owner).ok());
    omni::Resource status;
    status.metadata = {.ns = std::string(omni::kNamespaceInfraProvider),
                       .type = std::string(omni::kTypeMachineRequestStatus),
                       .id = l.request};
    status.metadata.labels = (*requests)[l.provisioned ? 0 : 1].metadata.labels;
    Stage spec;
    spec.set_id(l.uuid);
    spec.set_stage(l.provisioned ? Stage::PROVISIONED : Stage::PROVISIONING);
    spec.set_status(l.provisioned ? "Provision Complete" : "Running Step: \"startVM\" (5/5)");
    omni::EncodeSpec(spec, status);
    ASSERT_TRUE(state_->Create(status, owner).ok());
    omni::Resource machine;
    machine.metadata = {
        .ns = omni::ProviderNamespace("proxmox"), .type = omni::ProviderMachineType("proxmox"), .id = l.request};
    MachineSpec go_state;
    go_state.set_uuid(l.uuid);
    go_state.set_node(l.node);
    go_state.set_vmid(l.vmid);
    go_state.set_schematic("376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba");
    go_state.set_talos_version("1.10.4");
    omni::EncodeSpec(go_state, machine);
    ASSERT_TRUE(state_->Create(machine, owner).ok());
    pve::FormFields vm = {{"name", "talos-" + l.request},
                          {"memory", "8192"},
                          {"scsi0", "vm_ssd:40"},
                          {"smbios1", "uuid=" + l.uuid},
                          {"tags", "machine-request." + l.request}};
    auto upid = pve_->CreateVm(l.node, l.vmid, vm);
    ASSERT_TRUE(upid.ok()) << upid.status();
    ASSERT_TRUE(pve_->WaitTask(*upid, util::RealClock().Monotonic() + std::chrono::seconds{30}).ok());
    if (l.provisioned) {
      auto start = pve_->StartVm(l.node, l.vmid);
      ASSERT_TRUE(start.ok());
      ASSERT_TRUE(pve_->WaitTask(*start, util::RealClock().Monotonic() + std::chrono::seconds{30}).ok());
    }
  }
  // A stranger with a VMID next to them and another uuid.
  auto foreign = pve_->CreateVm("pve3", 702,
                                {{"name", "talos-foreign"},
                                 {"memory", "2048"},
                                 {"scsi0", "local-lvm:4"},
                                 {"smbios1", "uuid=" + legacy[1].uuid.substr(0, 35) + "b"}});
  ASSERT_TRUE(foreign.ok());
  ASSERT_TRUE(pve_->WaitTask(*foreign, util::RealClock().Monotonic() + std::chrono::seconds{30}).ok());

  StartProvider();
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 2; })) << Dump();
  Json vms = Vms();
  EXPECT_EQ(vms.size(), 3u) << "no second VM for a request the Go provider had started: " << vms.dump(1);
  for (const auto& vm : vms) {
    if (vm["vmid"] == 701) {
      EXPECT_EQ(vm["status"], "running") << "the half-provisioned VM was started";
    }
  }

  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(WaitFor([&] { return MachineRequests() == 0; })) << Dump() << Vms().dump(1);
  vms = Vms();
  ASSERT_EQ(vms.size(), 1u) << vms.dump(1);
  EXPECT_EQ(vms[0]["vmid"], 702);
}

}  // namespace
}  // namespace omni_proxmox::provider
