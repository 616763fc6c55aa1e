// SPDX-License-Identifier: Apache-2.0
// The steps that make and remove the VM: "createVm", "startVm", "removeVm" and "removeCidata",
// against the simulator on simulated time. What is asserted is the simulated cluster, not the calls.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "provider/ownership/markers.h"
#include "provider/steps/step_world.h"
#include "provider/steps/steps_internal.h"

namespace omni_proxmox::provider::steptest {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

class VmStepsTest : public StepWorld {
 protected:
  // A request with everything a create needs: placement, schematic, Talos and cloud-init ISOs.
  std::unique_ptr<Request> ReadyToCreate(const std::string& id, const std::string& node = "pve1") {
    auto request = NewRequest(id);
    request->machine.set_node(node);
    request->machine.set_boot_storage("local-lvm");
    for (auto make : {steps::MakeSchematic, steps::MakeTalosIso, steps::MakeCidata}) {
      auto step = make(*services_);
      EXPECT_EQ(RunToEnd(*step, request->ctx).kind, StepResult::Kind::kNext) << step->name();
    }
    return request;
  }

  std::optional<Json> Vm(int vmid) {
    for (const auto& vm : Vms()) {
      if (vm["vmid"] == vmid) return vm;
    }
    return std::nullopt;
  }

  void PlantVm(const std::string& node, int vmid, const std::string& name, const std::string& tags) {
    pve::FormFields fields = {{"name", name}, {"memory", "1024"}, {"scsi0", "local-lvm:2"}};
    if (!tags.empty()) fields.emplace_back("tags", tags);
    auto upid = pve_http_->CreateVm(node, vmid, fields);
    ASSERT_TRUE(upid.ok()) << upid.status();
    clock_.Advance(std::chrono::seconds{3});
  }

  std::string Markers(const std::string& request) {
    return fmt::format("{};{};{};{}", kManagedTag, ProviderTag("proxmox"),
                       InstanceTag(services_->join.OurScope()->instance), RequestTag(request));
  }
};

TEST_F(VmStepsTest, CreatesTheVmOnceWithItsMarkersAfterSavingTheIntent) {
  auto create = steps::MakeCreateVm(*services_);
  auto request = ReadyToCreate("workers-aaaaaa");
  const StepResult started = create->Run(request->ctx);
  ASSERT_EQ(started.kind, StepResult::Kind::kWait) << started.error;
  EXPECT_EQ(request->saves, 1) << "the intent is saved before the create call";
  EXPECT_TRUE(request->machine.markers());
  EXPECT_NE(request->machine.vmid(), 0u);
  ASSERT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kNext);
  auto vm = Vm(static_cast<int>(request->machine.vmid()));
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ((*vm)["node"], "pve1");
  const std::string tags = (*vm)["config"]["tags"].get<std::string>();
  EXPECT_TRUE(
      IsOwnedBy(tags, (*vm)["config"]["name"].get<std::string>(), *services_->join.OurScope(), "workers-aaaaaa"))
      << tags;
  EXPECT_EQ(counters_.vms_created.load(), 1);
  // Done: later passes neither list nor create.
  const auto creates = sim_->RequestCount("POST /nodes/{node}/qemu");
  EXPECT_EQ(create->Run(request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), creates);
}

TEST_F(VmStepsTest, AdoptsTheVmThatCarriesTheRequestsMarkersWhereverItIs) {
  PlantVm("pve2", 777, "workers-aaaaaa", Markers("workers-aaaaaa"));
  auto create = steps::MakeCreateVm(*services_);
  auto request = ReadyToCreate("workers-aaaaaa", "pve1");
  ASSERT_EQ(create->Run(request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(request->machine.vmid(), 777u);
  EXPECT_EQ(request->machine.node(), "pve2");
  EXPECT_EQ(counters_.vms_adopted.load(), 1);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), 1u) << "only the planted VM was created";
}

TEST_F(VmStepsTest, AStoredVmidTakenByAForeignVmIsNeverTouched) {
  PlantVm("pve1", 500, "someone-elses", "");
  auto create = steps::MakeCreateVm(*services_);
  auto request = ReadyToCreate("workers-aaaaaa");
  request->machine.set_vmid(500);
  request->machine.set_markers(true);
  ASSERT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_NE(request->machine.vmid(), 500u);
  auto foreign = Vm(500);
  ASSERT_TRUE(foreign.has_value());
  EXPECT_EQ((*foreign)["config"]["name"], "someone-elses");
}

TEST_F(VmStepsTest, AnIsoThatVanishedBeforeTheCreateIsMadeAgainNotRetriedForever) {
  // Garbage collection removed the Talos ISO while it looked unused, between talosIso and createVm.
  auto create = steps::MakeCreateVm(*services_);
  auto iso = steps::MakeTalosIso(*services_);
  auto request = ReadyToCreate("workers-aaaaaa");
  const std::string volid = request->machine.volume_id();
  ASSERT_TRUE(HasVolume(volid));
  auto deleted = pve_http_->DeleteVolume("pve1", volid.substr(0, volid.find(':')), volid);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  clock_.Advance(std::chrono::seconds{3});
  ASSERT_FALSE(HasVolume(volid));

  EXPECT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kRetry);
  EXPECT_TRUE(request->machine.volume_id().empty()) << "talosIso runs again on the next pass";
  EXPECT_FALSE(request->machine.cidata_volume().empty()) << "the cloud-init ISO is still there";
  ASSERT_EQ(RunToEnd(*iso, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(request->machine.volume_id(), volid);
  EXPECT_TRUE(HasVolume(volid)) << "downloaded again";
  ASSERT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kNext);
}

TEST_F(VmStepsTest, ACreateWaitsForItsNodesTaskSlotWithoutBlocking) {
  auto create = steps::MakeCreateVm(*services_);
  auto a = ReadyToCreate("workers-aaaaaa");
  auto b = ReadyToCreate("workers-bbbbbb");
  auto c = ReadyToCreate("workers-cccccc");
  ASSERT_EQ(create->Run(a->ctx).kind, StepResult::Kind::kWait);
  ASSERT_EQ(create->Run(b->ctx).kind, StepResult::Kind::kWait);
  const StepResult third = create->Run(c->ctx);
  ASSERT_EQ(third.kind, StepResult::Kind::kWait);
  EXPECT_EQ(c->machine.vmid(), 0u) << "no VMID, no intent before the slot";
  EXPECT_EQ(c->saves, 0);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), 2u);
  ASSERT_EQ(RunToEnd(*create, a->ctx).kind, StepResult::Kind::kNext);
  ASSERT_EQ(RunToEnd(*create, c->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), 3u);
}

TEST_F(VmStepsTest, StartsTheVmAndLooksForItAgainWhenItVanishes) {
  auto create = steps::MakeCreateVm(*services_);
  auto start = steps::MakeStartVm(*services_);
  auto request = ReadyToCreate("workers-aaaaaa");
  ASSERT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kNext);
  ASSERT_EQ(RunToEnd(*start, request->ctx).kind, StepResult::Kind::kNext);
  const int vmid = static_cast<int>(request->machine.vmid());
  EXPECT_EQ((*Vm(vmid))["status"], "running");

  ASSERT_TRUE(sim_->DeleteVmOutOfBand(vmid).ok());
  EXPECT_EQ(start->Run(request->ctx).kind, StepResult::Kind::kWait) << "look again at once";
  EXPECT_EQ(request->machine.vmid(), 0u) << "gone: createVm makes it again";
}

TEST_F(VmStepsTest, ARunningVmIsShutDownThenDeletedWithItsCloudInitIso) {
  auto create = steps::MakeCreateVm(*services_);
  auto start = steps::MakeStartVm(*services_);
  auto request = ReadyToCreate("workers-aaaaaa");
  ASSERT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kNext);
  ASSERT_EQ(RunToEnd(*start, request->ctx).kind, StepResult::Kind::kNext);
  const std::string cidata = request->machine.cidata_volume();
  ASSERT_TRUE(HasVolume(cidata));

  auto remove_vm = steps::MakeRemoveVm(*services_);
  auto remove_cidata = steps::MakeRemoveCidata(*services_);
  ASSERT_EQ(RunToEnd(*remove_vm, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_TRUE(Vms().empty());
  EXPECT_EQ(counters_.vms_deleted.load(), 1);
  ASSERT_EQ(RunToEnd(*remove_cidata, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_FALSE(HasVolume(cidata));
  EXPECT_TRUE(request->machine.cidata_volume().empty());
}

TEST_F(VmStepsTest, TeardownsAskingTogetherShareOneVmListingAndEachSeesItsOwnChanges) {
  auto create = steps::MakeCreateVm(*services_);
  auto start = steps::MakeStartVm(*services_);
  auto first = ReadyToCreate("workers-aaaaaa", "pve1");
  auto second = ReadyToCreate("workers-bbbbbb", "pve2");
  for (auto* request : {first.get(), second.get()}) {
    ASSERT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kNext);
    ASSERT_EQ(RunToEnd(*start, request->ctx).kind, StepResult::Kind::kNext);
  }
  const auto listings = [&] {
    return sim_->StateForTest()["requests"].value("GET /cluster/resources", std::uint64_t{0});
  };
  const auto status_reads = [&] {
    return sim_->StateForTest()["requests"].value("GET /nodes/{node}/qemu/{vmid}/status/current", std::uint64_t{0});
  };
  clock_.Advance(std::chrono::seconds{2});  // any listing of the way up is too old now
  auto remove_vm = steps::MakeRemoveVm(*services_);
  const std::uint64_t before = listings();
  const std::uint64_t reads_before = status_reads();
  // Both ask at the same moment: one listing serves both, and the listing's "running" is enough
  // to send the shutdowns.
  ASSERT_EQ(remove_vm->Run(first->ctx).kind, StepResult::Kind::kWait);
  ASSERT_EQ(remove_vm->Run(second->ctx).kind, StepResult::Kind::kWait);
  EXPECT_EQ(listings(), before + 1);
  EXPECT_EQ(status_reads(), reads_before);
  ASSERT_FALSE(first->machine.vm_stop_task().empty());
  ASSERT_FALSE(second->machine.vm_stop_task().empty());
  // Once its shutdown ended, a request is handed only a listing begun after it saw that, and its
  // VM is deleted in the same pass without another status read.
  clock_.Advance(std::chrono::seconds{2});
  ASSERT_EQ(remove_vm->Run(first->ctx).kind, StepResult::Kind::kWait);
  EXPECT_EQ(listings(), before + 2);
  EXPECT_FALSE(first->machine.vm_delete_task().empty());
  EXPECT_EQ(status_reads(), reads_before);
  ASSERT_EQ(RunToEnd(*remove_vm, first->ctx).kind, StepResult::Kind::kNext);
  ASSERT_EQ(RunToEnd(*remove_vm, second->ctx).kind, StepResult::Kind::kNext);
  EXPECT_TRUE(Vms().empty());
  EXPECT_EQ(counters_.vms_deleted.load(), 2);
}

TEST_F(VmStepsTest, TeardownLeavesAForeignVmAtTheStoredVmidAlone) {
  PlantVm("pve1", 600, "not-ours", "");
  auto request = NewRequest("workers-aaaaaa");
  request->machine.set_node("pve1");
  request->machine.set_vmid(600);
  request->machine.set_markers(true);
  auto remove_vm = steps::MakeRemoveVm(*services_);
  EXPECT_EQ(RunToEnd(*remove_vm, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_TRUE(Vm(600).has_value());
}

TEST_F(VmStepsTest, TheGoProvidersVmIsRecognisedByItsVmidAndSmbiosUuid) {
  // State as the Go provider writes it: no markers, the VMID and the SMBIOS uuid it gave the VM.
  auto request = NewRequest("workers-aaaaaa");
  pve::FormFields fields = {{"name", "talos-go"},
                            {"memory", "1024"},
                            {"smbios1", "uuid=" + request->machine.uuid()},
                            {"scsi0", "local-lvm:2"}};
  ASSERT_TRUE(pve_http_->CreateVm("pve2", 650, fields).ok());
  clock_.Advance(std::chrono::seconds{3});
  request->machine.set_node("pve2");
  request->machine.set_vmid(650);
  auto remove_vm = steps::MakeRemoveVm(*services_);
  EXPECT_EQ(RunToEnd(*remove_vm, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_FALSE(Vm(650).has_value());
}

TEST_F(VmStepsTest, AnotherOmnisVmWithTheSameRequestMarkersIsNeitherAdoptedNorRemoved) {
  // A second Omni whose provider also has the ID "proxmox", on the same cluster: same provider tag,
  // another instance tag.
  const std::string theirs = fmt::format("{};{};{};{}", kManagedTag, ProviderTag("proxmox"),
                                         InstanceTag("ffffeeeedddd"), RequestTag("workers-aaaaaa"));
  PlantVm("pve2", 777, "workers-aaaaaa", theirs);
  auto create = steps::MakeCreateVm(*services_);
  auto request = ReadyToCreate("workers-aaaaaa", "pve1");
  ASSERT_EQ(RunToEnd(*create, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_NE(request->machine.vmid(), 777u) << "made its own VM";
  EXPECT_EQ(counters_.vms_adopted.load(), 0);

  auto remove_vm = steps::MakeRemoveVm(*services_);
  ASSERT_EQ(RunToEnd(*remove_vm, request->ctx).kind, StepResult::Kind::kNext);
  ASSERT_EQ(Vms().size(), 1u) << "only our own VM went";
  auto other = Vm(777);
  ASSERT_TRUE(other.has_value());
  EXPECT_THAT((*other)["config"]["tags"].get<std::string>(), HasSubstr("omni-instance.ffffeeeedddd"));
}

TEST_F(VmStepsTest, TheGoProvidersVmGoesWithItsCloudInitIso) {
  // As the Go provider leaves a VM: no markers, its SMBIOS uuid, and "user-data-<vmid>.iso" attached.
  auto request = NewRequest("workers-aaaaaa");
  auto upload = pve_http_->UploadIso("pve2", "local", "user-data-651.iso", std::string(2048, 'x'));
  ASSERT_TRUE(upload.ok()) << upload.status();
  clock_.Advance(std::chrono::seconds{3});
  pve::FormFields fields = {{"name", "talos-go"},
                            {"memory", "1024"},
                            {"smbios1", "uuid=" + request->machine.uuid()},
                            {"scsi0", "local-lvm:2"},
                            {"ide2", "local:iso/user-data-651.iso,media=cdrom"}};
  ASSERT_TRUE(pve_http_->CreateVm("pve2", 651, fields).ok());
  clock_.Advance(std::chrono::seconds{3});
  ASSERT_TRUE(HasVolume("local:iso/user-data-651.iso"));
  request->machine.set_node("pve2");
  request->machine.set_vmid(651);
  auto remove_vm = steps::MakeRemoveVm(*services_);
  auto remove_cidata = steps::MakeRemoveCidata(*services_);
  ASSERT_EQ(RunToEnd(*remove_vm, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_FALSE(Vm(651).has_value());
  ASSERT_EQ(RunToEnd(*remove_cidata, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_FALSE(HasVolume("local:iso/user-data-651.iso"));
}

TEST_F(VmStepsTest, TheGoProvidersCloudInitIsoGoesEvenWhenItsVmWasAlreadyGone) {
  auto upload = pve_http_->UploadIso("pve2", "local", "user-data-652.iso", std::string(2048, 'x'));
  ASSERT_TRUE(upload.ok()) << upload.status();
  clock_.Advance(std::chrono::seconds{3});
  auto request = NewRequest("workers-aaaaaa");
  request->machine.set_node("pve2");
  request->machine.set_vmid(652);
  request->machine.set_volume_id("local:iso/talos-go.iso");
  auto remove_vm = steps::MakeRemoveVm(*services_);
  auto remove_cidata = steps::MakeRemoveCidata(*services_);
  ASSERT_EQ(RunToEnd(*remove_vm, request->ctx).kind, StepResult::Kind::kNext);
  ASSERT_EQ(RunToEnd(*remove_cidata, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_FALSE(HasVolume("local:iso/user-data-652.iso"));
}

}  // namespace
}  // namespace omni_proxmox::provider::steptest
