// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox plan` as a separate process against the TLS simulator: placement of N machines,
// the create parameters, and the findings that would make `run` fail.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/operator_world.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kWorkerClass = R"(metadata:
  namespace: default
  type: MachineClasses.omni.sidero.dev
  id: worker
spec:
  autoprovision:
    providerid: proxmox
    providerdata: |
      cores: 4
      memory: 8192
      disk_size: 40
      network_bridge: vmbr0
      storage_selector: type == "rbd" && name == "vm_ssd"
)";

class PlanCommand : public OperatorWorld {};

TEST_F(PlanCommand, SpreadsMachinesAndPrintsTheCreateParameters) {
  Write("worker.yaml", kWorkerClass);
  auto result = Run({"plan", Path("worker.yaml"), "--count", "3", "--config-file", Path("config.yaml")});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("Plan for COSI MachineClass 'worker': 3 machine(s) as provider 'proxmox'"));
  // One per node (spread), consecutive VMIDs from /cluster/nextid, all on the shared pool.
  EXPECT_THAT(result.out, ContainsRegex("worker-plan-1 +pve1 +100 +vm_ssd \\(40 GiB\\) +- +local +ok"));
  EXPECT_THAT(result.out, ContainsRegex("worker-plan-2 +pve2 +101 +vm_ssd"));
  EXPECT_THAT(result.out, ContainsRegex("worker-plan-3 +pve3 +102 +vm_ssd"));
  EXPECT_THAT(result.out, HasSubstr("POST /nodes/pve2/qemu\n    vmid=101\n    name=worker-plan-2\n"));
  EXPECT_THAT(result.out, HasSubstr("    scsi0=vm_ssd:40\n"));
  EXPECT_THAT(result.out, HasSubstr("    net0=virtio,bridge=vmbr0\n"));
  EXPECT_THAT(result.out, HasSubstr("No findings"));
  // Nothing was created.
  const nlohmann::json state = sim_->StateForTest();
  EXPECT_TRUE(state["vms"].empty());
  EXPECT_EQ(sim_->RequestCount("POST /nodes/{node}/qemu"), 0u);
}

TEST_F(PlanCommand, JsonHasPlacementReasonsAndOrderedParameters) {
  Write("worker.yaml", kWorkerClass);
  auto result =
      Run({"--format", "json", "plan", Path("worker.yaml"), "--count", "4", "--config-file", Path("config.yaml")});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const auto out = ParseJson(result.out);
  ASSERT_TRUE(out.is_object()) << result.out;
  EXPECT_TRUE(out["ok"].get<bool>());
  ASSERT_EQ(out["machines"].size(), 4u);
  // The fourth goes where the set has fewest members and most memory is left: pve1 or pve2, not pve3.
  EXPECT_NE(out["machines"][3]["node"], "pve3");
  EXPECT_EQ(out["machines"][0]["boot_storage"], "vm_ssd");
  EXPECT_THAT(out["machines"][0]["reasons"][0].get<std::string>(), HasSubstr("node 'pve1'"));
  const auto& params = out["machines"][0]["create_params"];
  EXPECT_EQ(params["memory"], "8192");
  EXPECT_EQ(params["cores"], "4");
  // In the order they are sent.
  const auto ordered = nlohmann::ordered_json::parse(result.out);
  EXPECT_EQ(ordered["machines"][0]["create_params"].begin().key(), "vmid");
}

TEST_F(PlanCommand, NotEnoughMemoryIsAFindingPerNode) {
  Write("big.yaml", "cores: 8\nmemory: 200000\ndisk_size: 40\nstorage_selector: type == \"lvmthin\"\n");
  auto result = Run({"plan", Path("big.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("cannot place"));
  EXPECT_THAT(result.out, ContainsRegex("pve3: [0-9.]+ GiB of memory free, needs 195.3 GiB"));

  auto json = Run({"--format", "json", "plan", Path("big.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(json.exit_code, 1);
  const auto out = ParseJson(json.out);
  EXPECT_FALSE(out["ok"].get<bool>());
  EXPECT_THAT(out["machines"][0]["error"].get<std::string>(), HasSubstr("of memory free"));
}

TEST_F(PlanCommand, SelectorMatchingNothingNamesEveryNodesStorages) {
  Write("zfs.yaml", "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"zfspool\"\n");
  auto result = Run({"plan", Path("zfs.yaml"), "--count", "2", "--config-file", Path("config.yaml")});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("no storage matches the selector on any node"));
  EXPECT_THAT(result.out, HasSubstr("local-lvm (lvmthin)"));
  // The same failure for both machines is one finding.
  EXPECT_THAT(result.out, HasSubstr("Findings (1):\n  - zfs-plan-1 .. zfs-plan-2:"));
}

TEST_F(PlanCommand, OfflineNodeIsSkipped) {
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  Write("worker.yaml", kWorkerClass);
  auto result =
      Run({"--format", "json", "plan", Path("worker.yaml"), "--count", "2", "--config-file", Path("config.yaml")});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const auto out = ParseJson(result.out);
  EXPECT_EQ(out["machines"][0]["node"], "pve1");
  EXPECT_EQ(out["machines"][1]["node"], "pve3");
  EXPECT_THAT(out["machines"][0]["reasons"].dump(), HasSubstr("rejected pve2: offline"));
}

TEST_F(PlanCommand, MissingPrivilegeIsAFinding) {
  Write("worker.yaml", kWorkerClass);
  auto result = Run({"plan", Path("worker.yaml"), "--config-file", Path("limited.yaml")});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("privileges: 'limited@pve!plan' lacks"));
  EXPECT_THAT(result.out, HasSubstr("VM.Allocate on /vms"));
}

TEST_F(PlanCommand, MissingBridgeRejectsEveryNode) {
  Write("vlan.yaml",
        "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n"
        "network_bridge: vmbr7\n");
  auto result = Run({"plan", Path("vlan.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("pve1: no bridge vmbr7; pve2: no bridge vmbr7; pve3: no bridge vmbr7"));
}

TEST_F(PlanCommand, BridgeOnOneNodeAndTaggedVlanNote) {
  // vmbr1 exists only on pve1, so every machine goes there; the tag on a bridge that is not
  // VLAN-aware is a note, not a failure.
  Write("vmbr1.yaml",
        "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n"
        "network_bridge: vmbr1\nvlan: 20\n");
  auto result =
      Run({"--format", "json", "plan", Path("vmbr1.yaml"), "--count", "2", "--config-file", Path("config.yaml")});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const auto out = ParseJson(result.out);
  EXPECT_EQ(out["machines"][0]["node"], "pve1");
  EXPECT_EQ(out["machines"][1]["node"], "pve1");
  EXPECT_THAT(out["machines"][0]["reasons"].dump(), HasSubstr("rejected pve2: no bridge vmbr1"));
  EXPECT_EQ(out["machines"][0]["create_params"]["net0"], "virtio,bridge=vmbr1,tag=20");
  ASSERT_EQ(out["notes"].size(), 1u);
  EXPECT_THAT(out["notes"][0].get<std::string>(), HasSubstr("vmbr1 is not VLAN-aware"));
}

TEST_F(PlanCommand, PciMappingMissingOnTheChosenNode) {
  Write("gpu.yaml",
        "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n"
        "pci_devices:\n  - mapping: gpu\n");
  auto result = Run({"plan", Path("gpu.yaml"), "--count", "2", "--config-file", Path("config.yaml")});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  // The first lands on pve1, which has the device; the second is spread to pve2, which has not.
  EXPECT_THAT(result.out, HasSubstr("gpu-plan-2: pci_devices[0]: pci mapping 'gpu' has no device on node pve2 "
                                    "(mapped on: pve1)"));
  EXPECT_THAT(result.out, Not(HasSubstr("gpu-plan-1: pci_devices")));

  Write("usb.yaml",
        "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n"
        "usb_devices:\n  - mapping: dongle\n");
  auto usb = Run({"plan", Path("usb.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(usb.exit_code, 1) << usb.out << usb.err;
  EXPECT_THAT(usb.out, HasSubstr("usb mapping 'dongle' does not exist"));
}

TEST_F(PlanCommand, ParametersTheOfficialSchemaRejectsAreFindings) {
  // Our parser leaves CPU models to Proxmox; the PVE schema the simulator uses knows the list.
  Write("cpu.yaml",
        "cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == \"lvmthin\"\n"
        "cpu_type: bogus-cpu\nhugepages: \"2\"\n");
  auto result = Run({"--format", "json", "plan", Path("cpu.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  const auto out = ParseJson(result.out);
  const std::string findings = out["findings"].dump();
  EXPECT_THAT(findings, HasSubstr("Proxmox would reject create parameter cpu='bogus-cpu'"));
  EXPECT_THAT(findings, HasSubstr("Built-in cputype 'bogus-cpu' is not defined"));
  // A token is not root@pam, even root's own.
  EXPECT_THAT(findings, HasSubstr("hugepages: Proxmox lets only root@pam set it"));
}

TEST_F(PlanCommand, OlderApiVersionKindForm) {
  Write("old-form.yaml", R"(apiVersion: infrastructure.omni.siderolabs.io/v1alpha1
kind: MachineClass
metadata:
  name: legacy
spec:
  provider: proxmox
  config:
    cores: 2
    memory: 2048
    disk_size: 10
    storage_selector: type == "lvmthin"
)");
  auto result = Run({"--format", "json", "plan", Path("old-form.yaml"), "--config-file", Path("config.yaml")});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const auto out = ParseJson(result.out);
  EXPECT_EQ(out["machine_class"], "legacy");
  EXPECT_EQ(out["form"], "apiVersion/kind MachineClass");
  EXPECT_EQ(out["machines"][0]["create_params"]["scsi0"], "local-lvm:10");
}

TEST_F(PlanCommand, InvalidProviderDataAndUnreadableFile) {
  Write("bad.yaml", "cores: 2\nmemroy: 2048\ndisk_size: 10\nstorage_selector: type ==\n");
  auto bad = Run({"plan", Path("bad.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(bad.exit_code, 1) << bad.out << bad.err;
  EXPECT_THAT(bad.out, HasSubstr("memroy"));
  auto missing = Run({"plan", Path("nope.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("nope.yaml"));
}

TEST_F(PlanCommand, AProviderIdDifferingOnlyInCaseIsWarnedAbout) {
  std::string shouted(kWorkerClass);
  shouted.replace(shouted.find("providerid: proxmox"), 19, "providerid: Proxmox");
  Write("shouted.yaml", shouted);
  auto table = Run({"plan", Path("shouted.yaml"), "--config-file", Path("config.yaml")});
  EXPECT_EQ(table.exit_code, 0) << table.out << table.err;  // a warning, as in validate: the plan still runs
  EXPECT_THAT(table.out, HasSubstr("warning: providerid 'Proxmox' of"));
  EXPECT_THAT(table.out, HasSubstr("differs only in case from the provider's ID 'proxmox' (the default --id); Omni "
                                   "IDs are case-sensitive, so no provider would serve this class: write providerid: "
                                   "proxmox"));
  auto json = Run({"--format", "json", "plan", Path("shouted.yaml"), "--config-file", Path("config.yaml")});
  const auto out = ParseJson(json.out);
  ASSERT_TRUE(out.is_object()) << json.out;
  ASSERT_EQ(out["warnings"].size(), 1u) << json.out;
  EXPECT_THAT(out["warnings"][0].get<std::string>(), HasSubstr("differs only in case"));
  // The same class for a provider of that exact ID, and a class for another provider: no warning.
  auto exact =
      Run({"--format", "json", "plan", Path("shouted.yaml"), "--id", "Proxmox", "--config-file", Path("config.yaml")});
  EXPECT_TRUE(ParseJson(exact.out)["warnings"].empty()) << exact.out;
  Write("worker.yaml", kWorkerClass);
  auto other =
      Run({"--format", "json", "plan", Path("worker.yaml"), "--id", "vsphere", "--config-file", Path("config.yaml")});
  EXPECT_TRUE(ParseJson(other.out)["warnings"].empty()) << other.out;
}

}  // namespace
}  // namespace omni_proxmox::cli
