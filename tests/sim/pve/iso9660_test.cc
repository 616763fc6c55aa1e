// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/iso9660.h"

#include "gtest/gtest.h"

#include "sim_test_util.h"

namespace omni_proxmox::sim::pve {
namespace {

TEST(Iso9660Test, ReadsRockRidgeNamesAndContents) {
  std::string iso = testing::MakeCidataIso("user data here", "instance-id: 1\n");
  auto image = ReadIsoImage(iso);
  ASSERT_TRUE(image.ok()) << image.status();
  // ISO 9660 volume IDs are d-characters, so writers store it upper-case.
  EXPECT_TRUE(image->volume_id == "cidata" || image->volume_id == "CIDATA") << image->volume_id;
  EXPECT_EQ(image->files["user-data"], "user data here");
  EXPECT_EQ(image->files["meta-data"], "instance-id: 1\n");
}

TEST(Iso9660Test, RejectsNonIso) {
  EXPECT_FALSE(ReadIsoImage("not an iso").ok());
  EXPECT_FALSE(ReadIsoImage(std::string(64 * 1024, '\0')).ok());
}

TEST(Iso9660Test, RejectsOutOfBoundsRootDirectory) {
  std::string iso = testing::MakeCidataIso("a", "b");
  // Point the root directory extent far beyond the image.
  std::size_t root = 16 * 2048 + 156;
  iso[root + 2] = '\xff';
  iso[root + 3] = '\xff';
  iso[root + 4] = '\x0f';
  EXPECT_FALSE(ReadIsoImage(iso).ok());
}

}  // namespace
}  // namespace omni_proxmox::sim::pve
