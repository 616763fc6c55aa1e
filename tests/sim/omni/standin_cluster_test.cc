// SPDX-License-Identifier: Apache-2.0
// The stand-in's clusters: cluster template sync and its errors, Omni's controllers deriving
// request sets, machine set nodes and statuses, ClusterMachineRequestStatuses, and cluster deletion.

#include <chrono>
#include <string>

#include "gtest/gtest.h"

#include "omni/specs/omni.pb.h"
#include "sim/omni/standin.h"

namespace omni_proxmox::sim::omni {
namespace {

using std::chrono::seconds;

constexpr char kTemplate[] = R"(kind: Cluster
name: c1
kubernetes:
  version: v1.32.0
talos:
  version: v1.10.4
---
kind: ControlPlane
machineClass:
  name: small
  size: 1
---
kind: Workers
name: gpu
machineClass:
  name: small
  size: 2
)";

class StandInClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto standin = StandIn::Start({.provider_id = "proxmox"});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    ASSERT_TRUE(standin_->PublishProviderStatusForTest("proxmox").ok());
    ASSERT_TRUE(standin_->ApplyMachineClass("small", "cores: 2\n").ok());
  }

  std::size_t Count(const std::string& ns, const std::string& type) {
    auto list = standin_->state().List(ns, type);
    return list.ok() ? list->size() : 0;
  }

  std::unique_ptr<StandIn> standin_;
};

TEST_F(StandInClusterTest, TemplateErrorsNameTheFix) {
  std::string two_control_planes = std::string(kTemplate) + "---\nkind: ControlPlane\nmachineClass: {name: small}\n";
  auto twice = standin_->SyncClusterTemplate(two_control_planes);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(twice.status().message().find("template should contain 1 controlplane, got 2"), std::string::npos)
      << twice.status();
  std::string unknown_class(kTemplate);
  unknown_class.replace(unknown_class.rfind("small"), 5, "large");
  auto missing = standin_->SyncClusterTemplate(unknown_class);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("machine class 'large' (machine set c1-gpu) does not exist"),
            std::string::npos)
      << missing.status();
  auto static_machines = standin_->SyncClusterTemplate(
      "kind: Cluster\nname: c2\ntalos: {version: v1.10.4}\n---\nkind: ControlPlane\n"
      "machines: [4aed1106-6f44-4be9-9796-d4b5b0b5b0b5]\n");
  EXPECT_EQ(static_machines.status().code(), absl::StatusCode::kUnimplemented) << static_machines.status();
  auto typo = standin_->SyncClusterTemplate("kind: Cluster\nname: c3\ntalso: {version: v1.10.4}\n");
  EXPECT_NE(typo.status().message().find("field talso not found in type models.Cluster"), std::string::npos)
      << typo.status();
  EXPECT_EQ(Count("default", "Clusters.omni.sidero.dev"), 0u);  // nothing half-synced
}

TEST_F(StandInClusterTest, MachineSetsGetRequestSetsAndRequestsGetClusterStatuses) {
  auto synced = standin_->SyncClusterTemplate(kTemplate);
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(*synced, "c1");
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        return Count("infra-provider", "MachineRequests.omni.sidero.dev") == 3 &&
               Count("default", "ClusterMachineRequestStatuses.omni.sidero.dev") == 3;
      },
      seconds{10}));
  auto set = standin_->state().Get("default", "MachineRequestSets.omni.sidero.dev", "c1-gpu");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->owner, "MachineProvisionController");
  specs::MachineRequestSetSpec spec;
  ASSERT_TRUE(spec.ParseFromString(set->proto_spec));
  EXPECT_EQ(spec.machine_count(), 2);
  EXPECT_EQ(spec.talos_version(), "1.10.4");
  EXPECT_EQ(spec.provider_id(), "proxmox");
  // Omni's set, not the operator's: scaling it by hand is refused.
  EXPECT_EQ(standin_->ScaleMachineRequestSet("c1-gpu", "small", 5).code(), absl::StatusCode::kPermissionDenied);
  auto machine_set = standin_->state().Get("default", "MachineSets.omni.sidero.dev", "c1-control-planes");
  ASSERT_TRUE(machine_set.ok());
  EXPECT_EQ(machine_set->labels.at("omni.sidero.dev/cluster"), "c1");
  EXPECT_TRUE(machine_set->labels.contains("omni.sidero.dev/role-controlplane"));
  const auto statuses = standin_->state().List("default", "ClusterMachineRequestStatuses.omni.sidero.dev");
  ASSERT_TRUE(statuses.ok()) << statuses.status();
  for (const auto& status : *statuses) {
    specs::ClusterMachineRequestStatusSpec cluster_status;
    ASSERT_TRUE(cluster_status.ParseFromString(status.proto_spec));
    EXPECT_EQ(cluster_status.stage(), specs::ClusterMachineRequestStatusSpec::PENDING) << status.id;
    EXPECT_EQ(status.labels.at("omni.sidero.dev/cluster"), "c1");
  }

  // A template without the workers prunes their machine set, its request set and requests.
  const std::string no_workers(kTemplate, std::string(kTemplate).find("---\nkind: Workers"));
  ASSERT_TRUE(standin_->SyncClusterTemplate(no_workers).ok());
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        return Count("default", "MachineSets.omni.sidero.dev") == 1 &&
               !standin_->state().Get("default", "MachineRequestSets.omni.sidero.dev", "c1-gpu").ok();
      },
      seconds{10}));

  ASSERT_TRUE(standin_->DeleteCluster("c1").ok());
  ASSERT_TRUE(standin_->WaitFor(
      [&] {
        return Count("default", "MachineSets.omni.sidero.dev") == 0 &&
               Count("default", "MachineRequestSets.omni.sidero.dev") == 0;
      },
      seconds{10}));
  EXPECT_EQ(standin_->DeleteCluster("c1").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
