// SPDX-License-Identifier: Apache-2.0
// The steps that prepare what a VM boots from: "schematic", "talosIso" and "cloudInit", against
// the simulator and the stand-in on simulated time.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "provider/ownership/iso_names.h"
#include "provider/steps/step_world.h"
#include "provider/steps/steps_internal.h"

namespace omni_proxmox::provider::steptest {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class BootMediaTest : public StepWorld {
 protected:
  // A request placed on `node` with its schematic made.
  std::unique_ptr<Request> Prepared(const std::string& id, const std::string& node,
                                    const std::string& providerdata = kWorkerData) {
    auto request = NewRequest(id, providerdata);
    request->machine.set_node(node);
    request->machine.set_boot_storage("local-lvm");
    auto schematic = steps::MakeSchematic(*services_);
    EXPECT_EQ(schematic->Run(request->ctx).kind, StepResult::Kind::kNext);
    return request;
  }
};

TEST_F(BootMediaTest, SchematicComesFromOmniAndIsKeptForTheTalosVersion) {
  auto request = Prepared("workers-aaaaaa", "pve1");
  EXPECT_FALSE(request->machine.schematic().empty());
  EXPECT_EQ(request->machine.talos_version(), "1.10.4");
  const MachineSpec before = request->machine;
  const auto schematics = standin_->SignedCalls()["/management.ManagementService/CreateSchematicFromRaw"];
  auto schematic = steps::MakeSchematic(*services_);
  EXPECT_EQ(schematic->Run(request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(request->machine.SerializeAsString(), before.SerializeAsString());
  EXPECT_EQ(standin_->SignedCalls()["/management.ManagementService/CreateSchematicFromRaw"], schematics)
      << "nothing to do while the version is the same";
}

TEST_F(BootMediaTest, OneDownloadServesEveryRequestOnTheNode) {
  auto iso = steps::MakeTalosIso(*services_);
  auto a = Prepared("workers-aaaaaa", "pve1");
  auto b = Prepared("workers-bbbbbb", "pve1");
  const StepResult first = iso->Run(a->ctx);
  ASSERT_EQ(first.kind, StepResult::Kind::kWait) << first.error;
  EXPECT_THAT(a->machine.volume_upload_task(), StartsWith("UPID:pve1:"));
  ASSERT_EQ(iso->Run(b->ctx).kind, StepResult::Kind::kWait) << "the second request waits for the same download";
  EXPECT_EQ(RunToEnd(*iso, a->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(RunToEnd(*iso, b->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/storage/{storage}/download-url"), 1u);
  const std::string volid =
      "local:iso/" + TalosIsoFileName(a->machine.schematic(), "1.10.4", *services_->join.OurScope());
  EXPECT_EQ(a->machine.volume_id(), volid);
  EXPECT_EQ(b->machine.volume_id(), volid);
  EXPECT_TRUE(a->machine.volume_upload_task().empty());
  EXPECT_TRUE(HasVolume(volid));
}

TEST_F(BootMediaTest, NoIsoStorageMatchingTheSelectorFailsTheRequest) {
  auto iso = steps::MakeTalosIso(*services_);
  auto request =
      Prepared("workers-aaaaaa", "pve1", std::string(kWorkerData) + "iso_storage_selector: name == \"nfs-iso\"\n");
  const StepResult result = iso->Run(request->ctx);
  EXPECT_EQ(result.kind, StepResult::Kind::kFailed);
  EXPECT_THAT(result.error, HasSubstr("node pve1 has no enabled, active storage with 'iso' content matching "
                                      "iso_storage_selector"));
}

TEST_F(BootMediaTest, CloudInitIsoIsUploadedWithTheJoinConfigAndRecorded) {
  auto iso = steps::MakeTalosIso(*services_);
  auto cidata = steps::MakeCidata(*services_);
  auto request = Prepared("workers-aaaaaa", "pve2");
  ASSERT_EQ(RunToEnd(*iso, request->ctx).kind, StepResult::Kind::kNext);
  const StepResult uploading = cidata->Run(request->ctx);
  ASSERT_EQ(uploading.kind, StepResult::Kind::kWait) << uploading.error;
  EXPECT_FALSE(request->machine.cidata_upload_volume().empty()) << "the volume an upload makes is known before it ends";
  ASSERT_EQ(RunToEnd(*cidata, request->ctx).kind, StepResult::Kind::kNext);
  const std::string& volid = request->machine.cidata_volume();
  EXPECT_THAT(volid, StartsWith("local:iso/omni-cidata-workers-aaaaaa-"));
  EXPECT_EQ(request->machine.cidata_node(), "pve2");
  EXPECT_TRUE(request->machine.cidata_upload_volume().empty());
  auto content = sim_->VolumeContentForTest("pve2", volid);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_GT(content->size(), 1000u);
}

TEST_F(BootMediaTest, AFailedDownloadIsRetriedAndTheNextLookStartsAnother) {
  auto iso = steps::MakeTalosIso(*services_);
  auto request = Prepared("workers-aaaaaa", "pve1");
  sim_->FailNextTask("download", "pve1", "download failed: 404 Not Found");
  const StepResult result = RunToEnd(*iso, request->ctx);
  EXPECT_EQ(result.kind, StepResult::Kind::kRetry);
  EXPECT_THAT(result.error, HasSubstr("404 Not Found"));
  EXPECT_TRUE(request->machine.volume_upload_task().empty());
  EXPECT_EQ(RunToEnd(*iso, request->ctx).kind, StepResult::Kind::kNext);
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/storage/{storage}/download-url"), 2u);
}

}  // namespace
}  // namespace omni_proxmox::provider::steptest
