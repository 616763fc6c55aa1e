// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/iso_cache.h"

#include <gtest/gtest.h>

#include "util/clock.h"

namespace omni_proxmox::provider {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kTtl{30'000};
const std::string kTalos = "local:iso/talos.iso";
const std::string kOther = "local:iso/other.iso";

TEST(IsoPresenceCache, UnknownUntilListed) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), std::nullopt);
}

TEST(IsoPresenceCache, OneListingAnswersForEveryFileOfThatStorage) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  EXPECT_TRUE(cache.Fill("pve1", "local", cache.ListingSeq(), {kTalos}, kTalos));
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), true);
  EXPECT_EQ(cache.Present("pve1", "local", kOther), false);
  // Other nodes and storages are not known from it.
  EXPECT_EQ(cache.Present("pve2", "local", kTalos), std::nullopt);
  EXPECT_EQ(cache.Present("pve1", "nfs", "nfs:iso/talos.iso"), std::nullopt);
}

TEST(IsoPresenceCache, ListingExpiresAfterTtlSoOutOfBandRemovalsAreSeen) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  cache.Fill("pve1", "local", cache.ListingSeq(), {kTalos}, kTalos);
  clock.Advance(kTtl - milliseconds{1});
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), true);
  clock.Advance(milliseconds{1});
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), std::nullopt);
}

TEST(IsoPresenceCache, OurOwnDownloadAndDeleteUpdateTheListing) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  cache.Fill("", "nfs", cache.ListingSeq(), {}, kTalos);
  EXPECT_EQ(cache.Present("", "nfs", kTalos), false);
  cache.Mark("", "nfs", kTalos, true);
  EXPECT_EQ(cache.Present("", "nfs", kTalos), true);
  cache.Mark("", "nfs", kTalos, false);
  EXPECT_EQ(cache.Present("", "nfs", kTalos), false);
}

TEST(IsoPresenceCache, MarkAloneIsKnownButExpiresToo) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  cache.Mark("pve1", "local", kTalos, true);
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), true);
  EXPECT_EQ(cache.Present("pve1", "local", kOther), std::nullopt);
  clock.Advance(kTtl);
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), std::nullopt);
}

TEST(IsoPresenceCache, ListingStartedBeforeADownloadFinishedCannotHideIt) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  const auto seq = cache.ListingSeq();        // a worker starts listing...
  cache.Mark("pve1", "local", kTalos, true);  // ...another's download finishes...
  // ...and the listing, taken before the file existed, arrives.
  EXPECT_TRUE(cache.Fill("pve1", "local", seq, {}, kTalos));
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), true);
  EXPECT_EQ(cache.Present("pve1", "local", kOther), false);
}

TEST(IsoPresenceCache, ListingAfterAMarkWins) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  cache.Mark("pve1", "local", kTalos, true);
  clock.Advance(milliseconds{10});
  // Removed out of band after our download: a later listing is believed.
  EXPECT_FALSE(cache.Fill("pve1", "local", cache.ListingSeq(), {}, kTalos));
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), false);
}

TEST(IsoPresenceCache, InvalidateForgetsAndRefusesListingsStartedBefore) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  cache.Fill("pve1", "local", cache.ListingSeq(), {}, kTalos);
  const auto stale = cache.ListingSeq();
  cache.Invalidate("pve1", "local");
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), std::nullopt);
  // The caller still gets its listing's answer, but it is not stored.
  EXPECT_FALSE(cache.Fill("pve1", "local", stale, {}, kTalos));
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), std::nullopt);
  EXPECT_TRUE(cache.Fill("pve1", "local", cache.ListingSeq(), {kTalos}, kTalos));
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), true);
}

TEST(IsoPresenceCache, InvalidateAllForgetsEveryStorageAndMark) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  cache.Fill("pve1", "local", cache.ListingSeq(), {kTalos}, kTalos);
  cache.Mark("", "nfs", "nfs:iso/talos.iso", true);
  cache.InvalidateAll();
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), std::nullopt);
  EXPECT_EQ(cache.Present("", "nfs", "nfs:iso/talos.iso"), std::nullopt);
}

TEST(IsoPresenceCache, OlderListingDoesNotReplaceANewerOne) {
  util::ManualClock clock;
  IsoPresenceCache cache(clock, kTtl);
  const auto older = cache.ListingSeq();
  cache.Mark("pve1", "local", kOther, true);
  const auto newer = cache.ListingSeq();
  cache.Fill("pve1", "local", newer, {kTalos, kOther}, kTalos);
  cache.Fill("pve1", "local", older, {}, kTalos);
  EXPECT_EQ(cache.Present("pve1", "local", kTalos), true);
  EXPECT_EQ(cache.Present("pve1", "local", kOther), true);
}

}  // namespace
}  // namespace omni_proxmox::provider
