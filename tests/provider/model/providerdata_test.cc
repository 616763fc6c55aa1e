// SPDX-License-Identifier: Apache-2.0
#include "provider/model/providerdata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "provider/placement/placement.h"

namespace omni_proxmox::provider {
namespace {

using ::testing::HasSubstr;

constexpr const char* kOperatorExample = R"(cores: 4
sockets: 1
memory: 8192
disk_size: 40
network_bridge: vmbr0
storage_selector: type == "rbd" && name == "vm_ssd"
)";

const Diagnostic* FindError(const ParseResult& r, const std::string& path) {
  for (const auto& d : r.diagnostics) {
    if (d.severity == Diagnostic::Severity::kError && d.path == path) return &d;
  }
  return nullptr;
}

TEST(ProviderDataTest, ParsesTheOperatorDocumentExample) {
  auto r = ParseProviderData(kOperatorExample);
  ASSERT_TRUE(r.ok()) << r.ErrorSummary();
  EXPECT_TRUE(r.diagnostics.empty());
  const auto& d = *r.data;
  EXPECT_EQ(d.cores, 4u);
  EXPECT_EQ(d.sockets, 1u);
  EXPECT_EQ(d.memory_mib, 8192u);
  EXPECT_EQ(d.disk_size_gib, 40u);
  EXPECT_EQ(d.network_bridge, "vmbr0");
  EXPECT_EQ(d.storage_selector, R"(type == "rbd" && name == "vm_ssd")");
}

TEST(ProviderDataTest, AppliesTheGoProviderDefaults) {
  auto r = ParseProviderData("cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"local-lvm\"\n");
  ASSERT_TRUE(r.ok()) << r.ErrorSummary();
  const auto& d = *r.data;
  EXPECT_EQ(d.sockets, 1u);
  EXPECT_EQ(d.network_bridge, "vmbr0");
  EXPECT_EQ(d.vlan, 0u);
  EXPECT_EQ(d.cpu_type, "x86-64-v2-AES");
  EXPECT_EQ(d.placement, Placement::kSpread);
  EXPECT_EQ(d.firmware, Firmware::kSeabios);
  EXPECT_FALSE(d.balloon_mib.has_value());
  EXPECT_FALSE(d.vmid_range.has_value());
}

TEST(ProviderDataTest, ParsesEveryAdvancedField) {
  auto r = ParseProviderData(R"(cores: 8
sockets: 2
memory: 16384
disk_size: 100
storage_selector: type == "lvmthin"
network_bridge: vmbr1
vlan: 20
node: pve2
nodes: [pve1, pve2]
cpu_type: host
machine_type: q35
numa: true
hugepages: "1024"
balloon: 0
disk_ssd: true
disk_discard: true
disk_iothread: true
disk_cache: none
disk_aio: io_uring
additional_disks:
  - size: 200
    storage_selector: type == "rbd"
    ssd: true
  - size: 50
additional_nics:
  - bridge: vmbr2
    vlan: 30
    firewall: true
    mtu: 9000
pci_devices:
  - mapping: gpu0
    pcie: true
    x_vga: true
usb_devices:
  - mapping: zigbee
    usb3: true
placement: binpack
tags: [k8s, prod]
pool: talos
iso_storage_selector: name == "local"
firmware: ovmf
network_firewall: true
vmid_range: 5300-5350
description: worker nodes
)");
  ASSERT_TRUE(r.ok()) << r.ErrorSummary();
  const auto& d = *r.data;
  EXPECT_EQ(d.sockets, 2u);
  EXPECT_EQ(d.vlan, 20u);
  EXPECT_EQ(d.nodes, (std::vector<std::string>{"pve1", "pve2"}));
  EXPECT_EQ(d.machine_type, "q35");
  EXPECT_TRUE(d.numa);
  EXPECT_EQ(d.hugepages, "1024");
  EXPECT_EQ(d.balloon_mib, 0u);
  EXPECT_EQ(d.disk_aio, "io_uring");
  ASSERT_EQ(d.additional_disks.size(), 2u);
  EXPECT_EQ(d.additional_disks[0].size_gib, 200u);
  EXPECT_EQ(d.additional_disks[0].storage_selector, R"(type == "rbd")");
  EXPECT_TRUE(d.additional_disks[0].ssd);
  EXPECT_EQ(d.additional_disks[1].storage_selector, "");
  ASSERT_EQ(d.additional_nics.size(), 1u);
  EXPECT_EQ(d.additional_nics[0].bridge, "vmbr2");
  EXPECT_EQ(d.additional_nics[0].mtu, 9000u);
  EXPECT_EQ(d.additional_nics[0].model, "virtio");
  ASSERT_EQ(d.pci_devices.size(), 1u);
  EXPECT_TRUE(d.pci_devices[0].pcie);
  EXPECT_TRUE(d.pci_devices[0].rombar);
  ASSERT_EQ(d.usb_devices.size(), 1u);
  EXPECT_EQ(d.placement, Placement::kBinpack);
  EXPECT_EQ(d.tags, (std::vector<std::string>{"k8s", "prod"}));
  EXPECT_EQ(d.firmware, Firmware::kOvmf);
  EXPECT_EQ(d.vmid_range, (VmidRange{5300, 5350}));
}

TEST(ProviderDataTest, UnknownKeyGetsDidYouMeanWithPosition) {
  auto r = ParseProviderData("cores: 2\nmemroy: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\n");
  EXPECT_FALSE(r.ok());
  const auto* e = FindError(r, "memroy");
  ASSERT_NE(e, nullptr) << r.ErrorSummary();
  EXPECT_THAT(e->message, HasSubstr("did you mean 'memory'"));
  EXPECT_EQ(e->line, 2);
  EXPECT_EQ(e->column, 1);
  EXPECT_NE(FindError(r, "memory"), nullptr) << "missing required memory must be reported too";
}

TEST(ProviderDataTest, MissingRequiredFieldsNameTheFix) {
  auto r = ParseProviderData("cores: 2\n");
  EXPECT_FALSE(r.ok());
  for (const char* key : {"memory", "disk_size", "storage_selector"}) {
    const auto* e = FindError(r, key);
    ASSERT_NE(e, nullptr) << key;
    EXPECT_THAT(e->message, HasSubstr("is required"));
  }
  EXPECT_THAT(FindError(r, "storage_selector")->message, HasSubstr(R"(name == "local-lvm")"));
}

TEST(ProviderDataTest, WrongTypesAndRangesAreErrors) {
  auto r = ParseProviderData(
      "cores: four\nmemory: 512\ndisk_size: [1]\nstorage_selector: name == \"x\"\nvlan: 5000\nnuma: maybe\n");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(FindError(r, "cores")->message, HasSubstr("must be a whole number, not 'four'"));
  EXPECT_THAT(FindError(r, "memory")->message, HasSubstr("512 is out of range; use a value between 2048"));
  EXPECT_THAT(FindError(r, "disk_size")->message, HasSubstr("not a list"));
  EXPECT_THAT(FindError(r, "vlan")->message, HasSubstr("between 0 and 4094"));
  EXPECT_THAT(FindError(r, "numa")->message, HasSubstr("true or false"));
}

TEST(ProviderDataTest, EnumsListAllowedValuesAndSuggest) {
  auto r = ParseProviderData(
      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\ndisk_cache: writebak\n");
  const auto* e = FindError(r, "disk_cache");
  ASSERT_NE(e, nullptr);
  EXPECT_THAT(e->message, HasSubstr("use one of none, writethrough, writeback"));
  EXPECT_THAT(e->message, HasSubstr("did you mean 'writeback'"));
}

TEST(ProviderDataTest, SelectorThatYieldsStringShowsTheHint) {
  auto r = ParseProviderData("cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: '\"local-lvm\"'\n");
  const auto* e = FindError(r, "storage_selector");
  ASSERT_NE(e, nullptr) << r.ErrorSummary();
  EXPECT_THAT(e->message, HasSubstr("must be a boolean expression"));
  EXPECT_EQ(e->line, 4);
}

TEST(ProviderDataTest, SelectorSyntaxErrorCarriesTheCaret) {
  auto r = ParseProviderData("cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \n");
  // An empty right-hand side is a YAML null; give a broken expression instead.
  r = ParseProviderData("cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == == \"x\"\n");
  const auto* e = FindError(r, "storage_selector");
  ASSERT_NE(e, nullptr);
  EXPECT_THAT(e->message, HasSubstr("ERROR: <input>:1:"));
  EXPECT_THAT(e->message, HasSubstr("^"));
}

TEST(ProviderDataTest, TypeWorksAsSelectorVariable) {
  auto r = ParseProviderData(kOperatorExample);
  ASSERT_TRUE(r.ok()) << r.ErrorSummary();
  auto selectors = CompiledSelectors::Compile(*r.data);
  ASSERT_TRUE(selectors.ok()) << selectors.status();
  const auto storage = [](std::string name, std::string type) {
    pve::NodeStorage s;
    s.storage = std::move(name);
    s.type = std::move(type);
    s.content = {"images"};
    s.enabled = s.active = true;
    return ToStorageFacts("pve1", s);
  };
  // `type == "rbd" && name == "vm_ssd"`: both variables are read from the storage.
  EXPECT_EQ(selectors->boot.Matches(storage("vm_ssd", "rbd")).value_or(false), true);
  EXPECT_EQ(selectors->boot.Matches(storage("vm_ssd", "lvmthin")).value_or(true), false);
  EXPECT_EQ(selectors->boot.Matches(storage("other", "rbd")).value_or(true), false);
}

TEST(ProviderDataTest, CamelCaseAliasesAreAcceptedWithWarning) {
  auto r = ParseProviderData("cpu: 4\nmemory: 8192\ndiskSize: 40\nstorageSelector: name == \"local-lvm\"\n");
  ASSERT_TRUE(r.ok()) << r.ErrorSummary();
  EXPECT_EQ(r.data->cores, 4u);
  EXPECT_EQ(r.data->disk_size_gib, 40u);
  int warnings = 0;
  for (const auto& d : r.diagnostics) {
    if (d.severity == Diagnostic::Severity::kWarning) {
      ++warnings;
      EXPECT_THAT(d.message, HasSubstr("write '"));
    }
  }
  EXPECT_EQ(warnings, 3);
}

TEST(ProviderDataTest, AliasAndCanonicalTogetherIsAnError) {
  auto r = ParseProviderData("cpu: 4\ncores: 2\nmemory: 8192\ndisk_size: 40\nstorage_selector: name == \"x\"\n");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.ErrorSummary(), HasSubstr("given twice"));
}

TEST(ProviderDataTest, PcieNeedsQ35) {
  auto r = ParseProviderData(
      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\npci_devices:\n  - mapping: gpu\n    "
      "pcie: true\n");
  const auto* e = FindError(r, "pci_devices[0].pcie");
  ASSERT_NE(e, nullptr) << r.ErrorSummary();
  EXPECT_THAT(e->message, HasSubstr("add machine_type: q35"));
}

TEST(ProviderDataTest, HugepagesWithBalloonIsRejected) {
  auto r = ParseProviderData(
      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\nhugepages: '2'\nballoon: 2048\n");
  const auto* e = FindError(r, "balloon");
  ASSERT_NE(e, nullptr) << r.ErrorSummary();
  EXPECT_THAT(e->message, HasSubstr("set balloon: 0 or remove hugepages"));
}

TEST(ProviderDataTest, BalloonAboveMemoryIsRejected) {
  auto r = ParseProviderData("cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\nballoon: 8192\n");
  ASSERT_NE(FindError(r, "balloon"), nullptr);
}

TEST(ProviderDataTest, NestedErrorsHaveIndexedPaths) {
  auto r = ParseProviderData(
      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\nadditional_disks:\n  - size: 10\n  - "
      "sise: 10\nadditional_nics:\n  - vlan: 3\n");
  EXPECT_NE(FindError(r, "additional_disks[1].sise"), nullptr) << r.ErrorSummary();
  EXPECT_NE(FindError(r, "additional_disks[1].size"), nullptr) << r.ErrorSummary();
  EXPECT_NE(FindError(r, "additional_nics[0].bridge"), nullptr) << r.ErrorSummary();
}

TEST(ProviderDataTest, BadTagsPoolAndRanges) {
  auto r = ParseProviderData(
      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\ntags: ['ok', '-bad', 'no spaces']\n"
      "pool: 'a b'\nvmid_range: 5350-5300\n");
  EXPECT_NE(FindError(r, "tags[1]"), nullptr) << r.ErrorSummary();
  EXPECT_NE(FindError(r, "tags[2]"), nullptr);
  EXPECT_NE(FindError(r, "pool"), nullptr);
  EXPECT_THAT(FindError(r, "vmid_range")->message, HasSubstr("FIRST must not exceed LAST"));
}

TEST(ProviderDataTest, NodeMustBeAmongNodes) {
  auto r = ParseProviderData(
      "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: name == \"x\"\nnode: pve3\nnodes: [pve1, pve2]\n");
  ASSERT_NE(FindError(r, "node"), nullptr) << r.ErrorSummary();
}

TEST(ProviderDataTest, InvalidYamlAndNonMapsAreErrors) {
  EXPECT_THAT(ParseProviderData("cores: [").ErrorSummary(), HasSubstr("not valid YAML"));
  EXPECT_THAT(ParseProviderData("- a\n- b\n").ErrorSummary(), HasSubstr("must be a map"));
  EXPECT_THAT(ParseProviderData("").ErrorSummary(), HasSubstr("is empty"));
}

TEST(ProviderDataTest, DiagnosticToStringHasPosition) {
  Diagnostic d{Diagnostic::Severity::kError, "memory", 3, 9, "is required"};
  EXPECT_EQ(d.ToString(), "3:9: memory: is required");
  d.line = 0;
  EXPECT_EQ(d.ToString(), "memory: is required");
}

TEST(ProviderDataSchemaTest, IsASupersetOfTheGoProviderSchema) {
  auto schema = nlohmann::json::parse(ProviderDataJsonSchema());
  EXPECT_EQ(schema["type"], "object");
  const auto& props = schema["properties"];
  for (const char* key : {"cores",
                          "sockets",
                          "memory",
                          "disk_size",
                          "storage_selector",
                          "network_bridge",
                          "vlan",
                          "node",
                          "cpu_type",
                          "machine_type",
                          "numa",
                          "hugepages",
                          "balloon",
                          "disk_ssd",
                          "disk_discard",
                          "disk_iothread",
                          "disk_cache",
                          "disk_aio",
                          "additional_disks",
                          "additional_nics",
                          "pci_devices",
                          "nodes",
                          "placement",
                          "tags",
                          "pool",
                          "iso_storage_selector",
                          "firmware",
                          "network_firewall",
                          "vmid_range",
                          "description"}) {
    EXPECT_TRUE(props.contains(key)) << key;
  }
  EXPECT_EQ(props["memory"]["minimum"], 2048);
  EXPECT_EQ(props["disk_size"]["minimum"], 5);
  EXPECT_EQ(props["cores"]["minimum"], 1);
  EXPECT_TRUE(props["cpu"]["deprecated"].get<bool>());
  EXPECT_EQ(props["additional_disks"]["items"]["required"], nlohmann::json::array({"size"}));
  EXPECT_EQ(schema["required"], nlohmann::json::array({"cores", "memory", "disk_size", "storage_selector"}));
}

}  // namespace
}  // namespace omni_proxmox::provider
