// SPDX-License-Identifier: Apache-2.0
// The provisioning guarantees of issue #7 end to end over real sockets: one Talos ISO download per
// shared storage (or per node for local storage) however many requests ask at once, a VMID taken
// between the provider's choice and its create retried with a fresh VMID, and no hostname config
// patch (the hostname reaches the machine through cloud-init meta-data only).

#include <array>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "integration/e2e_fixture.h"
#include "omni/join_config.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/model/providerdata.h"
#include "provider/provider.h"
#include "pve/client.h"
#include "pve/limited_client.h"
#include "sim/omni/standin.h"
#include "sim/pve/scenario_builder.h"
#include "sim/pve/simulator.h"
#include "util/metrics.h"

namespace omni_proxmox::provider {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using Stage = specs::MachineRequestStatusSpec;
using e2e::Str;

// The fixture's four nodes, where "local" holds ISOs per node, plus "isos" (listed first): one cephfs
// storage every node sees.
sim::pve::Scenario WithSharedIsoStorage() {
  sim::pve::Scenario scenario = e2e::FourNodeScenario();
  scenario.storages.insert(scenario.storages.begin(),
                           {.id = "isos", .type = "cephfs", .content = {"iso"}, .size_gib = 200, .shared = true});
  return scenario;
}

constexpr const char* kLocalIsoClass = R"(cores: 2
memory: 4096
disk_size: 20
network_bridge: vmbr0
storage_selector: name == "vm_ssd"
iso_storage_selector: name == "local"
)";

constexpr const char* kSharedIsoClass = R"(cores: 2
memory: 4096
disk_size: 20
network_bridge: vmbr0
storage_selector: name == "vm_ssd"
iso_storage_selector: name == "isos"
)";

class ProvisioningE2ETest : public e2e::E2EFixture {
 protected:
  sim::pve::Scenario Scenario() const override { return WithSharedIsoStorage(); }
};

std::map<std::string, int> DownloadsPerNode(const Json& tasks) {
  std::map<std::string, int> out;
  for (const auto& task : tasks) {
    if (task["type"] == "download") ++out[task["node"].get<std::string>()];
  }
  return out;
}

// Eight requests at once, on four nodes, with the Talos ISO on one shared storage: one download
// serves them all and every VM boots the same volume.
TEST_F(ProvisioningE2ETest, SharedIsoStorageIsDownloadedOnceForConcurrentRequests) {
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kSharedIsoClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 8).ok());
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 8; }, std::chrono::seconds{120})) << Dump();

  const Json vms = Vms();
  ASSERT_EQ(vms.size(), 8u) << vms.dump(1);
  std::set<std::string> nodes, talos_volumes;
  for (const auto& vm : vms) {
    nodes.insert(vm["node"].get<std::string>());
    const std::string ide2 = Str(vm["config"]["ide2"]);
    talos_volumes.insert(ide2.substr(0, ide2.find(',')));
  }
  EXPECT_GE(nodes.size(), 2u) << "the VMs spread over several nodes";
  ASSERT_EQ(talos_volumes.size(), 1u) << vms.dump(1);
  EXPECT_THAT(*talos_volumes.begin(), HasSubstr("isos:iso/talos-"));

  const Json tasks = sim_->StateForTest()["tasks"];
  int downloads = 0;
  for (const auto& [node, count] : DownloadsPerNode(tasks)) downloads += count;
  EXPECT_EQ(downloads, 1) << tasks.dump(1);
}

// The same with per-node ISO storage: one download on each node that got a VM, none elsewhere.
TEST_F(ProvisioningE2ETest, LocalIsoStorageIsDownloadedOncePerNodeUsed) {
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kLocalIsoClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 6).ok());
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 6; }, std::chrono::seconds{120})) << Dump();

  std::set<std::string> nodes_used;
  for (const auto& vm : Vms()) {
    nodes_used.insert(vm["node"].get<std::string>());
    EXPECT_THAT(Str(vm["config"]["ide2"]), HasSubstr("local:iso/talos-"));
  }
  const Json tasks = sim_->StateForTest()["tasks"];
  const auto downloads = DownloadsPerNode(tasks);
  EXPECT_GE(nodes_used.size(), 2u);
  EXPECT_EQ(downloads.size(), nodes_used.size()) << tasks.dump(1);
  for (const auto& [node, count] : downloads) {
    EXPECT_TRUE(nodes_used.contains(node)) << node;
    EXPECT_EQ(count, 1) << node << ": " << tasks.dump(1);
  }
}

// A VM created out of band on the VMID /cluster/nextid just offered (nextid reserves nothing):
// the provider's create is refused with Proxmox's "already exists" error, and it retries with a
// fresh VMID, leaving the foreign VM alone.
TEST_F(ProvisioningE2ETest, VmidTakenBeforeTheCreateIsRetriedWithAFreshId) {
  // Answer nextid with the VMID it computed, but only after a pause in which the test takes it.
  sim_->SetFault("GET /cluster/nextid",
                 {.error_rate = 1.0, .status_code = 0, .latency = milliseconds{4000}, .after_effect = true});
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kSharedIsoClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 1).ok());
  ASSERT_TRUE(WaitFor([&] { return sim_->RequestCount("GET /cluster/nextid") > 0; }, std::chrono::seconds{60}))
      << Dump();
  // The cluster is empty, so the answer on its way is the first VMID of the range.
  constexpr int kForeignVmid = 100;
  pve::FormFields foreign = {{"name", "someone-elses"}, {"memory", "2048"}, {"scsi0", "local-lvm:4"}};
  auto upid = pve_http_->CreateVm("pve2", kForeignVmid, foreign);
  ASSERT_TRUE(upid.ok()) << upid.status();
  sim_->ClearFaults();
  ASSERT_TRUE(pve_http_->WaitTask(*upid, util::RealClock().Monotonic() + std::chrono::seconds{30}).ok());

  // A lost race is ordinary: retried at once with a fresh VMID, never shown as an error or failure.
  std::set<std::string> shown_errors;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& [id, spec] : StatusSpecs()) {
          if (!spec.error().empty()) shown_errors.insert(spec.error());
          if (spec.stage() == Stage::FAILED) shown_errors.insert("stage FAILED");
        }
        return Provisioned() == 1;
      },
      std::chrono::seconds{120}))
      << Dump() << Vms().dump(1);
  EXPECT_TRUE(shown_errors.empty()) << fmt::format("{}", fmt::join(shown_errors, "\n"));
  // Ours was refused once: the foreign create, our conflicting one, our retry.
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), 3u);
  const Json vms = Vms();
  ASSERT_EQ(vms.size(), 2u) << vms.dump(1);
  int ours = 0;
  for (const auto& vm : vms) {
    if (vm["vmid"] == kForeignVmid) {
      EXPECT_EQ(Str(vm["config"]["name"]), "someone-elses") << "the foreign VM is untouched";
      EXPECT_EQ(vm["node"], "pve2");
      EXPECT_EQ(Str(vm["config"]["memory"]), "2048");
    } else {
      ++ours;
      EXPECT_EQ(vm["status"], "running");
      EXPECT_THAT(Str(vm["config"]["tags"]), HasSubstr("omni-provider.proxmox"));
    }
  }
  EXPECT_EQ(ours, 1);
}

// The hostname is not patched into the machine config through Omni: the provider creates no
// config patch, and the cloud-init user-data is the join config alone while meta-data names the host.
TEST_F(ProvisioningE2ETest, NoHostnameConfigPatchAndCidataCarriesJoinConfigAndHostname) {
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kSharedIsoClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 2).ok());
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 2; }, std::chrono::seconds{120})) << Dump();
  ASSERT_TRUE(WaitFor([&] { return world_->Joined().size() == 2; })) << Dump();

  for (const auto& [ns, type] :
       {std::pair{omni::kNamespaceInfraProvider, omni::kTypeConfigPatchRequest},
        std::pair{omni::kNamespaceDefault, std::string_view("ConfigPatches.omni.sidero.dev")}}) {
    auto patches = standin_->state().List(std::string(ns), std::string(type));
    ASSERT_TRUE(patches.ok()) << patches.status();
    for (const auto& patch : *patches)
      ADD_FAILURE() << "unexpected " << type << " " << patch.id << ":\n" << patch.yaml_spec;
  }

  const auto statuses = StatusSpecs();
  const std::vector<sim::pve::VmBootInfo> boots = world_->Boots();
  ASSERT_EQ(boots.size(), 2u);
  for (const auto& boot : boots) {
    std::string request;
    for (const auto& [id, spec] : statuses) {
      if (spec.id() == boot.smbios_uuid) request = id;
    }
    ASSERT_FALSE(request.empty()) << "no request for " << boot.smbios_uuid << "\n" << Dump();
    // The join config: where to dial and the token Omni verified (MachineJoined succeeded).
    EXPECT_THAT(boot.user_data, HasSubstr("SideroLinkConfig")) << boot.user_data;
    EXPECT_THAT(boot.user_data, HasSubstr("jointoken=")) << boot.user_data;
    EXPECT_THAT(boot.user_data, Not(HasSubstr("HostnameConfig"))) << boot.user_data;
    EXPECT_THAT(boot.user_data, Not(HasSubstr("hostname"))) << boot.user_data;
    EXPECT_THAT(boot.meta_data, HasSubstr("instance-id:")) << boot.meta_data;
    EXPECT_THAT(boot.meta_data, HasSubstr("local-hostname: " + request + "\n")) << boot.meta_data;
    EXPECT_THAT(boot.meta_data, HasSubstr("\nhostname: " + request + "\n")) << boot.meta_data;
  }
}

// Omni's teardown order, watched from the stand-in: config patch requests made for the machine go
// first (a planted one, as the Go provider made them), then the status, then the VM (gone from
// Proxmox), then the provider's private state, and the MachineRequest's finalizer last. Each
// observation reads the later milestone before the earlier one, so a later milestone seen done
// while an earlier one is still pending is a real inversion, not a race of the reads.
TEST_F(ProvisioningE2ETest, TeardownFollowsOmniOrderAndRemovesTheFinalizerLast) {
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kSharedIsoClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 1).ok());
  ASSERT_TRUE(WaitFor([&] { return Provisioned() == 1; }, std::chrono::seconds{120})) << Dump();
  const std::string request = StatusSpecs().begin()->first;
  ASSERT_EQ(Vms().size(), 1u);

  const std::string infra(omni::kNamespaceInfraProvider);
  const std::string finalizer = omni::ProvisionControllerName("proxmox");
  auto& store = standin_->state();
  ASSERT_TRUE(store.Get(omni::ProviderNamespace("proxmox"), omni::ProviderMachineType("proxmox"), request).ok());
  // A config patch request for the machine, as the Go provider made them (we make none): it goes first.
  const std::string patch_id = request + "-hostname";
  sim::omni::Resource patch;
  patch.ns = infra;
  patch.type = std::string(omni::kTypeConfigPatchRequest);
  patch.id = patch_id;
  patch.labels = {{std::string(omni::kLabelInfraProviderId), "proxmox"},
                  {std::string(omni::kLabelMachineRequest), request}};
  ASSERT_TRUE(store.Create(patch, finalizer).ok());

  enum Milestone { kPatchGone, kStatusGone, kVmGone, kPrivateStateGone, kFinalizerGone, kMilestones };
  const char* const names[] = {"config patch request destroyed", "status destroyed", "VM gone from Proxmox",
                               "private state destroyed", "finalizer removed"};
  std::array<int, kMilestones> first_seen;
  first_seen.fill(-1);
  std::vector<std::string> inversions;
  int observation = 0;
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        std::array<bool, kMilestones> done{};
        // Latest milestone first (see above).
        auto machine_request = store.Get(infra, std::string(omni::kTypeMachineRequest), request);
        done[kFinalizerGone] = !machine_request.ok() || !machine_request->HasFinalizer(finalizer);
        done[kPrivateStateGone] =
            !store.Get(omni::ProviderNamespace("proxmox"), omni::ProviderMachineType("proxmox"), request).ok();
        done[kVmGone] = Vms().empty();
        done[kStatusGone] = !store.Get(infra, std::string(omni::kTypeMachineRequestStatus), request).ok();
        done[kPatchGone] = !store.Get(infra, std::string(omni::kTypeConfigPatchRequest), patch_id).ok();
        for (int later = 1; later < kMilestones; ++later) {
          for (int earlier = 0; earlier < later; ++earlier) {
            if (done[later] && !done[earlier]) {
              inversions.push_back(
                  fmt::format("observation {}: {} before {}", observation, names[later], names[earlier]));
            }
          }
        }
        for (int m = 0; m < kMilestones; ++m) {
          if (done[m] && first_seen[m] < 0) first_seen[m] = observation;
        }
        ++observation;
        return !machine_request.ok();
      },
      std::chrono::seconds{120}))
      << Dump() << Vms().dump(1);
  EXPECT_TRUE(inversions.empty()) << fmt::format("{}", fmt::join(inversions, "\n"));
  for (int m = 0; m < kMilestones; ++m) ASSERT_GE(first_seen[m], 0) << names[m];
  for (int m = 1; m < kMilestones; ++m) EXPECT_LE(first_seen[m - 1], first_seen[m]) << names[m];
  // The teardown took several steps the stand-in saw one by one, not a single observation.
  EXPECT_LT(first_seen[kPatchGone], first_seen[kFinalizerGone]);
}

// Requests deleted while their VMs are being created: passes that wait on a task work from a memo
// of the request, and the teardown (a watch event) must still reach them at once. Every VM, ISO
// and resource of ours is gone afterwards, and no request was left with a VM.
TEST_F(ProvisioningE2ETest, RequestsDeletedWhileTheirVmsAreCreatedAreTornDown) {
  StartProvider();
  ASSERT_TRUE(standin_->ApplyMachineClass("workers", kSharedIsoClass).ok());
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 6).ok());
  // Some VMs exist (created or being created) while none is provisioned yet.
  ASSERT_TRUE(WaitFor([&] { return !Vms().empty(); }, std::chrono::seconds{120})) << Dump();
  ASSERT_TRUE(standin_->ScaleMachineRequestSet("workers", "workers", 0).ok());
  ASSERT_TRUE(WaitFor([&] { return MachineRequests() == 0 && Vms().empty(); }, std::chrono::seconds{120}))
      << Dump() << Vms().dump(1);
  EXPECT_TRUE(StatusSpecs().empty()) << Dump();
  auto states = state_->List({omni::ProviderNamespace("proxmox"), omni::ProviderMachineType("proxmox"), {}});
  ASSERT_TRUE(states.ok()) << states.status();
  EXPECT_TRUE(states->empty());
  // No cloud-init ISO of ours is left on any storage (the shared Talos ISO is left to GC).
  const Json volumes = sim_->StateForTest()["volumes"];
  for (const auto& volume : volumes) {
    EXPECT_THAT(Str(volume["volid"]), Not(HasSubstr("cidata"))) << volumes.dump(1);
  }
}

}  // namespace
}  // namespace omni_proxmox::provider
