// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox selector test` as a separate process against the TLS simulator, and offline
// with --storages.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/operator_world.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SelectorTestCommand : public OperatorWorld {};

TEST_F(SelectorTestCommand, TableShowsEveryStorageAndThePlacementChoice) {
  auto result = Run({"selector", "test", "--config-file", Path("config.yaml"), "--selector", "\"images\" in content"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("NODE"));
  EXPECT_THAT(result.out, HasSubstr("MATCH"));
  // local holds no images: listed, not matched; both image storages match; the shared Ceph pool
  // has the most free space, so placement picks it on every node.
  EXPECT_THAT(result.out, ::testing::ContainsRegex("pve1 +local +dir +100 GiB +no"));
  EXPECT_THAT(result.out, ::testing::ContainsRegex("pve2 +local-lvm +lvmthin +[0-9.]+ GiB +yes\n"));
  EXPECT_THAT(result.out, ::testing::ContainsRegex("pve3 +vm_ssd +rbd +4000 GiB +yes +<- chosen"));
  EXPECT_THAT(result.out, HasSubstr("A disk would go to: vm_ssd on pve1, vm_ssd on pve2, vm_ssd on pve3"));
}

TEST_F(SelectorTestCommand, JsonNamesTheChosenStoragePerNodeAndOfflineNodes) {
  ASSERT_TRUE(sim_->SetNodeOnline("pve2", false).ok());
  auto result = Run({"--format", "json", "selector", "test", "--config-file", Path("config.yaml"), "--selector",
                     "type == \"lvmthin\""});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const auto out = ParseJson(result.out);
  ASSERT_TRUE(out.is_object()) << result.out;
  EXPECT_EQ(out["chosen"], (nlohmann::json{{"pve1", "local-lvm"}, {"pve3", "local-lvm"}}));
  ASSERT_EQ(out["offline_nodes"].size(), 1u);
  EXPECT_EQ(out["offline_nodes"][0]["node"], "pve2");
  int matched = 0;
  for (const auto& s : out["storages"]) {
    EXPECT_NE(s["node"], "pve2");
    if (s["matched"].get<bool>()) {
      ++matched;
      EXPECT_EQ(s["storage"], "local-lvm");
      EXPECT_TRUE(s["chosen"].get<bool>());
    }
  }
  EXPECT_EQ(matched, 2);
}

TEST_F(SelectorTestCommand, SelectorMatchingNothingIsAFinding) {
  auto result = Run({"selector", "test", "--config-file", Path("config.yaml"), "--selector", "type == \"zfspool\""});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("matches no usable storage"));
  EXPECT_THAT(result.out, Not(HasSubstr("<- chosen")));

  auto json = Run({"--format", "json", "selector", "test", "--config-file", Path("config.yaml"), "--selector",
                   "type == \"zfspool\""});
  EXPECT_EQ(json.exit_code, 1) << json.out << json.err;
  const auto out = ParseJson(json.out);
  EXPECT_TRUE(out["chosen"].empty());
  EXPECT_EQ(out["storages"].size(), 9u);  // three storages on each of three nodes
  for (const auto& s : out["storages"]) EXPECT_FALSE(s["matched"].get<bool>());
}

TEST_F(SelectorTestCommand, MatchingOnlyStoragesWithoutImagesContentIsAFinding) {
  auto result = Run({"selector", "test", "--config-file", Path("config.yaml"), "--selector", "name == \"local\""});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("yes (unusable: no 'images' content)"));
}

TEST_F(SelectorTestCommand, CompileErrorIsAUsageErrorWithTheCaret) {
  auto result = Run({"selector", "test", "--config-file", Path("config.yaml"), "--selector", "type == "});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("does not compile"));
  EXPECT_THAT(result.err, HasSubstr(" | type == \n | ........^"));
}

TEST_F(SelectorTestCommand, OfflineStoragesFileAndNodeFilter) {
  Write("storages.yaml", R"(
- {node: pve1, storage: fast, type: zfspool, content: [images], avail: 107374182400}
- {node: pve1, storage: slow, type: nfs, content: [images, iso], avail: 1099511627776}
- {node: pve2, storage: fast, type: zfspool, content: [images], avail: 1073741824, enabled: 0}
)");
  auto result = Run({"--format", "json", "selector", "test", "--storages", Path("storages.yaml"), "--selector",
                     "type == \"zfspool\""});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  auto out = ParseJson(result.out);
  EXPECT_EQ(out["chosen"], (nlohmann::json{{"pve1", "fast"}}));  // pve2's is disabled
  ASSERT_EQ(out["storages"].size(), 3u);
  EXPECT_EQ(out["storages"][2]["unusable_because"], "disabled");

  auto only_pve2 = Run(
      {"selector", "test", "--storages", Path("storages.yaml"), "--node", "pve2", "--selector", "type == \"zfspool\""});
  EXPECT_EQ(only_pve2.exit_code, 1) << only_pve2.out << only_pve2.err;
  EXPECT_THAT(only_pve2.out, Not(HasSubstr("pve1")));

  auto unknown_node =
      Run({"selector", "test", "--storages", Path("storages.yaml"), "--node", "pve9", "--selector", "true"});
  EXPECT_EQ(unknown_node.exit_code, 2);
  EXPECT_THAT(unknown_node.err, HasSubstr("--node pve9: no such node; nodes: pve1, pve2"));
}

TEST_F(SelectorTestCommand, BadStoragesFileNamesTheEntryAndField) {
  Write("storages.json", R"([{"node": "pve1", "storage": "a", "avail": "lots"}])");
  auto result = Run({"selector", "test", "--storages", Path("storages.json"), "--selector", "true"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("entry 0: storage field 'avail'"));
}

}  // namespace
}  // namespace omni_proxmox::cli
