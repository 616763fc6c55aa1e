// SPDX-License-Identifier: Apache-2.0
#include "provider/placement/placement.h"

#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "provider/placement/storage_selector.h"

namespace omni_proxmox::provider {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kGiB = 1024ull * 1024 * 1024;

StorageFacts Storage(std::string node, std::string name, std::string type, std::uint64_t avail_gib, bool shared = false,
                     std::vector<std::string> content = {"images", "rootdir"}) {
  StorageFacts s;
  s.node = std::move(node);
  s.name = std::move(name);
  s.type = std::move(type);
  s.avail_bytes = avail_gib * kGiB;
  s.total_bytes = 2 * avail_gib * kGiB;
  s.used_bytes = avail_gib * kGiB;
  s.enabled = true;
  s.active = true;
  s.shared = shared;
  s.content = std::move(content);
  return s;
}

NodeSnapshot Node(std::string name, std::uint64_t mem_gib, std::uint64_t used_gib, bool online = true) {
  NodeSnapshot n;
  n.name = name;
  n.online = online;
  n.max_memory_bytes = mem_gib * kGiB;
  n.used_memory_bytes = used_gib * kGiB;
  n.storages = {Storage(name, "local", "dir", 50, false, {"iso", "vztmpl", "backup"}),
                Storage(name, "local-lvm", "lvmthin", 400), Storage(name, "vm_ssd", "rbd", 2000, true)};
  return n;
}

struct Fixture {
  ProviderData data;
  CompiledSelectors selectors;
};

Fixture Make(const std::string& yaml) {
  auto r = ParseProviderData(yaml);
  EXPECT_TRUE(r.ok()) << r.ErrorSummary();
  auto compiled = CompiledSelectors::Compile(*r.data);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  return {*r.data, *compiled};
}

PlacementInput Input(const Fixture& f, std::vector<NodeSnapshot> nodes, std::string request_id = "workers-aaaaaa") {
  PlacementInput in;
  in.data = &f.data;
  in.selectors = &f.selectors;
  in.request_id = std::move(request_id);
  in.request_set_id = "workers";
  in.nodes = std::move(nodes);
  return in;
}

const char* kRbd = "cores: 4\nmemory: 8192\ndisk_size: 40\nstorage_selector: type == \"rbd\" && name == \"vm_ssd\"\n";

TEST(PlacementTest, OperatorSelectorPicksRbdStorage) {
  auto f = Make(kRbd);
  auto d = Place(Input(f, {Node("pve1", 64, 8), Node("pve2", 64, 8), Node("pve3", 64, 8)}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->boot_storage, "vm_ssd");
  EXPECT_EQ(d->node, "pve1") << "equal nodes: the name breaks the tie, never API order";
}

TEST(PlacementTest, SpreadsASetAcrossNodesUsingReservations) {
  auto f = Make(kRbd);
  std::vector<NodeSnapshot> nodes = {Node("pve1", 64, 8), Node("pve2", 64, 8), Node("pve3", 64, 8)};
  std::vector<PlacedVm> placed;
  std::map<std::string, int> per_node;
  for (int i = 0; i < 6; ++i) {
    auto in = Input(f, nodes, fmt::format("workers-{}", i));
    in.vms = placed;
    auto d = Place(in);
    ASSERT_TRUE(d.ok()) << d.status();
    placed.push_back(d->AsReservation(in));
    ++per_node[d->node];
  }
  EXPECT_EQ(per_node["pve1"], 2);
  EXPECT_EQ(per_node["pve2"], 2);
  EXPECT_EQ(per_node["pve3"], 2);
}

TEST(PlacementTest, SpreadCountsExistingVmsOfTheSameSetOnly) {
  auto f = Make(kRbd);
  auto in = Input(f, {Node("pve1", 64, 8), Node("pve2", 64, 8)});
  in.vms = {{.request_id = "workers-x", .request_set_id = "workers", .node = "pve1", .memory_bytes = 8 * kGiB},
            {.request_id = "cp-1", .request_set_id = "cp", .node = "pve2", .memory_bytes = 8 * kGiB},
            {.request_id = "cp-2", .request_set_id = "cp", .node = "pve2", .memory_bytes = 8 * kGiB}};
  auto d = Place(in);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->node, "pve2");
}

TEST(PlacementTest, BinpackFillsTheFullestNodeThatFits) {
  auto f = Make(std::string(kRbd) + "placement: binpack\n");
  auto d = Place(Input(f, {Node("pve1", 64, 8), Node("pve2", 64, 40), Node("pve3", 64, 60)}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->node, "pve2") << "pve3 has 4 GiB free, too little for 8 GiB";
}

TEST(PlacementTest, OfflineNodesAreSkippedNeverFatal) {
  auto f = Make(kRbd);
  auto d = Place(Input(f, {Node("pve1", 64, 8, false), Node("pve2", 64, 8)}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->node, "pve2");
}

TEST(PlacementTest, PinnedNodeIsHonouredAndItsAbsenceExplained) {
  auto f = Make(std::string(kRbd) + "node: pve3\n");
  auto d = Place(Input(f, {Node("pve1", 64, 8), Node("pve2", 64, 8), Node("pve3", 64, 8)}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->node, "pve3");
  auto offline = Place(Input(f, {Node("pve1", 64, 8), Node("pve3", 64, 8, false)}));
  EXPECT_EQ(offline.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(offline.status().message(), HasSubstr("pinned node 'pve3'"));
  EXPECT_THAT(offline.status().message(), HasSubstr("pve3: offline"));
  auto unknown = Place(Input(f, {Node("pve1", 64, 8)}));
  EXPECT_THAT(unknown.status().message(), HasSubstr("not a member of the Proxmox cluster"));
}

TEST(PlacementTest, AllowedNodesRestrictTheChoice) {
  auto f = Make(std::string(kRbd) + "nodes: [pve2, pve3]\n");
  auto d = Place(Input(f, {Node("pve1", 256, 0), Node("pve2", 64, 8), Node("pve3", 64, 30)}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->node, "pve2");
}

TEST(PlacementTest, FullClusterSaysNoNodeCanFit) {
  auto f = Make("cores: 4\nmemory: 16384\ndisk_size: 40\nstorage_selector: type == \"lvmthin\"\n");
  auto d = Place(Input(f, {Node("pve1", 16, 8), Node("pve2", 32, 20)}));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(d.status().message(), HasSubstr("no node can fit 16 GiB of memory"));
  EXPECT_THAT(d.status().message(), HasSubstr("pve1: 8 GiB of memory free, needs 16 GiB"));
  EXPECT_THAT(d.status().message(), HasSubstr("pve2: 12 GiB of memory free"));
}

TEST(PlacementTest, ReservationsConsumeMemory) {
  auto f = Make(kRbd);
  auto in = Input(f, {Node("pve1", 24, 8)});
  in.vms = {{.request_id = "other",
             .request_set_id = "workers",
             .node = "pve1",
             .memory_bytes = 8 * kGiB,
             .reservation = true,
             .pending_disk_bytes = {}}};
  EXPECT_TRUE(Place(in).ok()) << "16 GiB free minus 8 reserved leaves 8";
  in.vms.push_back(in.vms.front());
  in.vms.back().request_id = "other2";
  EXPECT_EQ(Place(in).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(PlacementTest, UnmatchedSelectorListsTheStoragesSeen) {
  auto f = Make("cores: 4\nmemory: 8192\ndisk_size: 40\nstorage_selector: name == \"fast-nvme\"\n");
  auto d = Place(Input(f, {Node("pve1", 64, 8)}));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(d.status().message(), HasSubstr("no storage matches the selector"));
  EXPECT_THAT(d.status().message(), HasSubstr("local-lvm (lvmthin)"));
  EXPECT_THAT(d.status().message(), HasSubstr("local (dir, no images content)"));
}

TEST(PlacementTest, StorageWithoutImagesContentIsNeverChosen) {
  auto f = Make("cores: 4\nmemory: 8192\ndisk_size: 40\nstorage_selector: name == \"local\"\n");
  auto d = Place(Input(f, {Node("pve1", 64, 8)}));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(d.status().message(), HasSubstr("local (dir, no images content)"));
}

TEST(PlacementTest, DiskSpaceIsCheckedIncludingEarlierDisksOfTheSameVm) {
  auto f = Make(
      "cores: 4\nmemory: 8192\ndisk_size: 300\nstorage_selector: name == \"local-lvm\"\nadditional_disks:\n  - size: "
      "200\n");
  auto d = Place(Input(f, {Node("pve1", 64, 8)}));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(d.status().message(),
              HasSubstr("storage 'local-lvm' has 100 GiB free, the additional_disks[0] needs 200 GiB"));
}

TEST(PlacementTest, AdditionalDiskSelectorsChooseTheirOwnStorage) {
  auto f = Make(
      "cores: 4\nmemory: 8192\ndisk_size: 40\nstorage_selector: type == \"lvmthin\"\nadditional_disks:\n  - size: 100\n"
      "    storage_selector: type == \"rbd\"\n  - size: 10\n");
  auto d = Place(Input(f, {Node("pve1", 64, 8)}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->boot_storage, "local-lvm");
  EXPECT_EQ(d->additional_storages, (std::vector<std::string>{"vm_ssd", "local-lvm"}));
}

TEST(PlacementTest, SharedStorageSpaceIsCountedOnceAcrossNodes) {
  auto f = Make("cores: 1\nmemory: 2048\ndisk_size: 900\nstorage_selector: name == \"vm_ssd\"\n");
  std::vector<NodeSnapshot> nodes = {Node("pve1", 64, 0), Node("pve2", 64, 0)};
  std::vector<PlacedVm> placed;
  int placed_ok = 0;
  for (int i = 0; i < 3; ++i) {
    auto in = Input(f, nodes, fmt::format("r{}", i));
    in.vms = placed;
    auto d = Place(in);
    if (!d.ok()) break;
    placed.push_back(d->AsReservation(in));
    ++placed_ok;
  }
  EXPECT_EQ(placed_ok, 2) << "2000 GiB of shared rbd fits two 900 GiB disks, whichever node they land on";
}

TEST(PlacementTest, MissingBridgeRejectsTheNode) {
  auto f = Make(std::string(kRbd) + "network_bridge: vmbr1\n");
  auto a = Node("pve1", 64, 8);
  a.bridges = {"vmbr0"};
  auto b = Node("pve2", 64, 8);
  b.bridges = {"vmbr0", "vmbr1"};
  auto d = Place(Input(f, {a, b}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->node, "pve2");
  auto none = Place(Input(f, {a}));
  EXPECT_THAT(none.status().message(), HasSubstr("pve1: no bridge vmbr1"));
}

TEST(PlacementTest, ReasonsExplainTheChoice) {
  auto f = Make(kRbd);
  auto d = Place(Input(f, {Node("pve1", 64, 8), Node("pve2", 64, 8, false)}));
  ASSERT_TRUE(d.ok());
  std::string all = fmt::format("{}", fmt::join(d->reasons, "\n"));
  EXPECT_THAT(all, HasSubstr("boot disk on 'vm_ssd'"));
  EXPECT_THAT(all, HasSubstr("rejected pve2: offline"));
}

TEST(HumanBytesTest, Formats) {
  EXPECT_EQ(HumanBytes(16 * kGiB), "16 GiB");
  EXPECT_EQ(HumanBytes(512ull * 1024 * 1024), "512 MiB");
  EXPECT_EQ(HumanBytes(3 * kGiB + kGiB / 2), "3.5 GiB");
}

}  // namespace
}  // namespace omni_proxmox::provider
