// SPDX-License-Identifier: Apache-2.0
#include "util/text.h"

#include <vector>

#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

TEST(EditDistanceTest, Basics) {
  EXPECT_EQ(EditDistance("", ""), 0u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("disk_size", "disksize"), 1u);
}

TEST(ClosestMatchTest, SuggestsPlausibleTyposOnly) {
  const std::vector<std::string> keys = {"cores", "sockets", "memory", "disk_size", "storage_selector"};
  EXPECT_EQ(ClosestMatch("memroy", keys), "memory");
  EXPECT_EQ(ClosestMatch("storage_selecter", keys), "storage_selector");
  EXPECT_EQ(ClosestMatch("completely_unrelated", keys), std::nullopt);
}

}  // namespace
}  // namespace omni_proxmox::util
