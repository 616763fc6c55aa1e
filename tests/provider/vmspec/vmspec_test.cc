// SPDX-License-Identifier: Apache-2.0
#include "provider/vmspec/vmspec.h"

#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "provider/ownership/markers.h"
#include "sim/pve/schema.h"

namespace omni_proxmox::provider {
namespace {

using ::testing::HasSubstr;

ProviderData Parse(const std::string& yaml) {
  auto r = ParseProviderData(yaml);
  EXPECT_TRUE(r.ok()) << r.ErrorSummary();
  return r.data.value_or(ProviderData{});
}

std::map<std::string, std::string> AsMap(const FormParams& params) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : params) {
    EXPECT_TRUE(out.emplace(k, v).second) << "parameter " << k << " rendered twice";
  }
  return out;
}

const VmIdentity kIdentity{.request_id = "workers-a1b2c3",
                           .provider_id = "proxmox",
                           .request_set_id = "workers",
                           .vmid = 5301,
                           .smbios_uuid = "3f0c1a52-9d1e-4c7b-8a51-0e6f7c2d9b10"};

constexpr const char* kFull = R"(cores: 8
sockets: 2
memory: 16384
disk_size: 100
storage_selector: type == "lvmthin"
network_bridge: vmbr1
vlan: 20
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
    ssd: true
    cache: writeback
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
    rombar: false
usb_devices:
  - mapping: zigbee
    usb3: true
tags: [k8s, Prod]
pool: talos
firmware: ovmf
network_firewall: true
description: worker nodes
)";

TEST(VmSpecTest, RendersTheOperatorExampleFieldByField) {
  auto data = Parse(
      "cores: 4\nsockets: 1\nmemory: 8192\ndisk_size: 40\nnetwork_bridge: vmbr0\nstorage_selector: type == \"rbd\" "
      "&& name == \"vm_ssd\"\n");
  auto p = AsMap(RenderCreateParams(
      data, kIdentity, {.boot_storage = "vm_ssd", .additional_storages = {}},
      {.talos_iso_volume = "local:iso/talos.iso", .cidata_iso_volume = "local:iso/omni-cidata-workers-a1b2c3.iso"}));
  EXPECT_EQ(p["vmid"], "5301");
  EXPECT_EQ(p["name"], "workers-a1b2c3");
  EXPECT_EQ(p["cores"], "4");
  EXPECT_EQ(p["sockets"], "1");
  EXPECT_EQ(p["memory"], "8192");
  EXPECT_EQ(p["cpu"], "x86-64-v2-AES");
  EXPECT_EQ(p["scsihw"], "virtio-scsi-single");
  EXPECT_EQ(p["scsi0"], "vm_ssd:40");
  EXPECT_EQ(p["net0"], "virtio,bridge=vmbr0");
  EXPECT_EQ(p["ide2"], "local:iso/talos.iso,media=cdrom");
  EXPECT_EQ(p["ide0"], "local:iso/omni-cidata-workers-a1b2c3.iso,media=cdrom");
  EXPECT_EQ(p["boot"], "order=scsi0;ide2;net0");
  EXPECT_EQ(p["smbios1"], "uuid=3f0c1a52-9d1e-4c7b-8a51-0e6f7c2d9b10");
  EXPECT_EQ(p["tags"], "omni-proxmox;omni-provider.proxmox;omni-request.workers-a1b2c3;omni-set.workers");
  EXPECT_EQ(p["agent"], "enabled=1");
  EXPECT_EQ(p["onboot"], "1");
  EXPECT_FALSE(p.contains("machine"));
  EXPECT_FALSE(p.contains("balloon"));
  EXPECT_FALSE(p.contains("bios"));
  EXPECT_THAT(p["description"], HasSubstr("MachineRequest workers-a1b2c3"));
}

TEST(VmSpecTest, RendersEveryAdvancedOption) {
  auto data = Parse(kFull);
  auto p = AsMap(RenderCreateParams(data, kIdentity,
                                    {.boot_storage = "local-lvm", .additional_storages = {"ceph", "local-lvm"}},
                                    {.talos_iso_volume = "local:iso/talos.iso", .cidata_iso_volume = ""}));
  EXPECT_EQ(p["machine"], "q35");
  EXPECT_EQ(p["numa"], "1");
  EXPECT_EQ(p["hugepages"], "1024");
  EXPECT_EQ(p["balloon"], "0");
  EXPECT_EQ(p["bios"], "ovmf");
  EXPECT_EQ(p["efidisk0"], "local-lvm:1,efitype=4m,pre-enrolled-keys=0");
  EXPECT_EQ(p["scsi0"], "local-lvm:100,ssd=1,discard=on,iothread=1,cache=none,aio=io_uring");
  EXPECT_EQ(p["scsi1"], "ceph:200,ssd=1,cache=writeback");
  EXPECT_EQ(p["scsi2"], "local-lvm:50");
  EXPECT_EQ(p["net0"], "virtio,bridge=vmbr1,firewall=1,tag=20");
  EXPECT_EQ(p["net1"], "virtio,bridge=vmbr2,firewall=1,tag=30,mtu=9000");
  EXPECT_EQ(p["hostpci0"], "mapping=gpu0,pcie=1,x-vga=1,rombar=0");
  EXPECT_EQ(p["usb0"], "mapping=zigbee,usb3=1");
  EXPECT_EQ(p["pool"], "talos");
  EXPECT_THAT(p["tags"], HasSubstr(";k8s;prod"));
  EXPECT_FALSE(p.contains("ide0")) << "no cidata volume given";
  EXPECT_THAT(p["description"], HasSubstr("worker nodes"));
}

TEST(VmSpecTest, RenderedParametersValidateAgainstTheOfficialSchema) {
  auto schema = sim::pve::Schema::Load(sim::pve::EmbeddedPveSchema());
  ASSERT_TRUE(schema.ok()) << schema.status();
  const auto* create = (*schema)->Find("POST", "/nodes/{node}/qemu");
  ASSERT_NE(create, nullptr);
  for (const char* yaml : {kFull, "cores: 1\nmemory: 2048\ndisk_size: 5\nstorage_selector: name == \"x\"\n"}) {
    auto params = AsMap(RenderCreateParams(Parse(yaml), kIdentity,
                                           {.boot_storage = "local-lvm", .additional_storages = {"ceph", "local-lvm"}},
                                           {.talos_iso_volume = "local:iso/talos-v1.9.0-nocloud-amd64.iso",
                                            .cidata_iso_volume = "local:iso/omni-cidata-workers-a1b2c3.iso"}));
    params["node"] = "pve1";
    auto errors = (*schema)->Validate(*create, params);
    for (const auto& [param, error] : errors)
      ADD_FAILURE() << param << ": " << error << " (value " << params[param] << ")";
  }
  // The validator is strict, so the check above can fail: a wrong option or name is caught.
  std::map<std::string, std::string> broken = {
      {"node", "pve1"}, {"vmid", "5301"}, {"scsi0", "local-lvm:40,ssd=maybe"}, {"name", "bad_name"}};
  auto errors = (*schema)->Validate(*create, broken);
  EXPECT_TRUE(errors.contains("scsi0"));
  EXPECT_TRUE(errors.contains("name"));
}

TEST(VmSpecTest, IsDeterministic) {
  auto data = Parse(kFull);
  const DiskPlacement placement{.boot_storage = "local-lvm", .additional_storages = {"a", "b"}};
  const VmMedia media{.talos_iso_volume = "local:iso/t.iso", .cidata_iso_volume = ""};
  EXPECT_EQ(RenderCreateParams(data, kIdentity, placement, media),
            RenderCreateParams(data, kIdentity, placement, media));
}

TEST(OwnershipTest, TagsRoundTripAndAreLowercased) {
  Ownership o;
  ASSERT_TRUE(ParseOwnership("omni-proxmox;omni-provider.proxmox;omni-request.workers-a1b2c3;omni-set.workers", o));
  EXPECT_EQ(o.provider_id, "proxmox");
  EXPECT_EQ(o.request_id, "workers-a1b2c3");
  EXPECT_EQ(o.request_set_id, "workers");
  EXPECT_EQ(RequestTag("Workers_X"), "omni-request.workers_x");
  EXPECT_EQ(ProviderTag("My Provider"), "omni-provider.my_provider");
}

TEST(OwnershipTest, ForeignAndPartialMarkersAreNotOurs) {
  Ownership o;
  EXPECT_FALSE(ParseOwnership("", o));
  EXPECT_FALSE(ParseOwnership("k8s;prod", o));
  EXPECT_FALSE(ParseOwnership("omni-proxmox", o)) << "no provider tag";
  EXPECT_FALSE(ParseOwnership("omni-provider.proxmox;omni-request.x", o)) << "no managed tag";
}

TEST(OwnershipTest, IsOwnedByNeedsProviderRequestAndName) {
  const Scope ours{.provider_id = "proxmox", .instance = "0a1b2c3d4e5f"};
  const std::string tags = "omni-proxmox;omni-provider.proxmox;omni-instance.0a1b2c3d4e5f;omni-request.workers-a1b2c3";
  EXPECT_TRUE(IsOwnedBy(tags, "workers-a1b2c3", ours, "workers-a1b2c3"));
  EXPECT_TRUE(IsOwnedBy("OMNI-PROXMOX,omni-provider.proxmox omni-instance.0A1B2C3D4E5F omni-request.workers-a1b2c3",
                        "workers-a1b2c3", ours, "workers-a1b2c3"))
      << "any separator, any case";
  EXPECT_FALSE(
      IsOwnedBy(tags, "workers-a1b2c3", {.provider_id = "other", .instance = ours.instance}, "workers-a1b2c3"));
  EXPECT_FALSE(IsOwnedBy(tags, "workers-zzzzzz", ours, "workers-a1b2c3")) << "name must match";
  EXPECT_FALSE(IsOwnedBy(tags, "workers-a1b2c3", ours, "workers-zzzzzz"));
}

TEST(OwnershipTest, AnotherOmnisVmIsNeverOursEvenUnderTheSameProviderId) {
  const Scope ours{.provider_id = "proxmox", .instance = "0a1b2c3d4e5f"};
  const std::string theirs =
      "omni-proxmox;omni-provider.proxmox;omni-instance.ffffeeeedddd;omni-request.workers-a1b2c3";
  EXPECT_FALSE(IsOwnedBy(theirs, "workers-a1b2c3", ours, "workers-a1b2c3"));
  Ownership o;
  ASSERT_TRUE(ParseOwnership(theirs, o));
  EXPECT_EQ(o.instance, "ffffeeeedddd");
  EXPECT_EQ(MatchScope(o, ours), ScopeMatch::kOtherInstance);
  EXPECT_EQ(MatchScope(o, {.provider_id = "proxmox", .instance = "ffffeeeedddd"}), ScopeMatch::kOurs);
  EXPECT_EQ(MatchScope(o, {.provider_id = "lab", .instance = "ffffeeeedddd"}), ScopeMatch::kNotOurs);
}

TEST(OwnershipTest, AVmFromBeforeTheInstanceMarkerCountsForItsRequestButIsUnscoped) {
  // Request IDs carry a random suffix: a request of this Omni with this ID is this VM's request.
  const std::string old = "omni-proxmox;omni-provider.proxmox;omni-request.workers-a1b2c3";
  const Scope ours{.provider_id = "proxmox", .instance = "0a1b2c3d4e5f"};
  EXPECT_TRUE(IsOwnedBy(old, "workers-a1b2c3", ours, "workers-a1b2c3"));
  Ownership o;
  ASSERT_TRUE(ParseOwnership(old, o));
  EXPECT_EQ(MatchScope(o, ours), ScopeMatch::kUnscoped);
}

TEST(OwnershipTest, VmNamesAreDnsSafe) {
  EXPECT_EQ(VmNameFor("workers-a1b2c3"), "workers-a1b2c3");
  EXPECT_EQ(VmNameFor("-my_req-"), "my-req");
  EXPECT_EQ(VmNameFor("___"), "omni-machine");
}

}  // namespace
}  // namespace omni_proxmox::provider
