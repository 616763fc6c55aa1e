// SPDX-License-Identifier: Apache-2.0
#include "provider/fleet/ledger.h"

#include <map>
#include <thread>

#include "absl/status/statusor.h"
#include <gtest/gtest.h>

#include "util/clock.h"

namespace omni_proxmox::provider {
namespace {

using Placed = absl::StatusOr<std::pair<PlacementDecision, PlacedVm>>;

PlacedVm Reservation(const std::string& request, const std::string& node) {
  return {.request_id = request, .request_set_id = "set", .node = node, .memory_bytes = 1, .reservation = true};
}

// Places `request` on `node` and returns the request IDs the ledger handed to placement.
std::vector<std::string> PlaceOn(Ledger& ledger, const std::string& request, const std::string& node,
                                 std::uint64_t snapshot_seq) {
  std::vector<std::string> seen;
  auto placed = ledger.PlaceAndReserve(request, snapshot_seq, [&](const std::vector<PlacedVm>& reserved) -> Placed {
    for (const auto& r : reserved) seen.push_back(r.request_id);
    PlacementDecision decision;
    decision.node = node;
    return std::make_pair(decision, Reservation(request, node));
  });
  EXPECT_TRUE(placed.ok());
  std::sort(seen.begin(), seen.end());
  return seen;
}

TEST(Ledger, ReservationReleasedAfterTheListingStillCountsForPlacementsUsingThatListing) {
  util::ManualClock clock;
  Ledger ledger(clock);
  PlaceOn(ledger, "a", "pve1", ledger.ReleaseSeq());
  const std::uint64_t listed_before_release = ledger.ReleaseSeq();
  ledger.Release("a");  // provisioned: its VM exists, but the cached listing predates it
  EXPECT_EQ(PlaceOn(ledger, "b", "pve2", listed_before_release), std::vector<std::string>{"a"});
  // A listing fetched after the release shows the VM itself: the reservation is not counted twice.
  EXPECT_EQ(PlaceOn(ledger, "c", "pve3", ledger.ReleaseSeq()), std::vector<std::string>{"b"});
}

TEST(Ledger, OwnReservationIsNeverCountedAgainstItself) {
  util::ManualClock clock;
  Ledger ledger(clock);
  PlaceOn(ledger, "a", "pve1", 0);
  ledger.Release("a");
  EXPECT_TRUE(PlaceOn(ledger, "a", "pve1", 0).empty());
}

TEST(Ledger, ReleasedReservationsAreForgottenAfterTheHorizon) {
  util::ManualClock clock;
  Ledger ledger(clock);
  PlaceOn(ledger, "a", "pve1", 0);
  ledger.Release("a");
  ledger.Release("never-placed");  // releasing what was never reserved keeps nothing
  EXPECT_EQ(ledger.RecentlyReleasedForTest(), 1u);
  clock.Advance(std::chrono::seconds{61});
  EXPECT_TRUE(PlaceOn(ledger, "b", "pve1", 0).empty());
  EXPECT_EQ(ledger.RecentlyReleasedForTest(), 0u);
}

TEST(Ledger, ConcurrentPlacementsFromOneStaleListingSpreadEvenly) {
  util::ManualClock clock;
  Ledger ledger(clock);
  const std::uint64_t listing_seq = ledger.ReleaseSeq();
  const std::vector<std::string> nodes = {"pve1", "pve2", "pve3", "pve4"};
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&, w] {
      for (int i = 0; i < 10; ++i) {
        const std::string request = "r" + std::to_string(w) + "-" + std::to_string(i);
        // Least-loaded node among the reservations the ledger shows, like Place's spread.
        auto placed =
            ledger.PlaceAndReserve(request, listing_seq, [&](const std::vector<PlacedVm>& reserved) -> Placed {
              std::map<std::string, int> load;
              for (const auto& n : nodes) load[n] = 0;
              for (const auto& r : reserved) ++load[r.node];
              std::string best = nodes.front();
              for (const auto& [n, count] : load) {
                if (count < load[best]) best = n;
              }
              PlacementDecision decision;
              decision.node = best;
              return std::make_pair(decision, Reservation(request, best));
            });
        ASSERT_TRUE(placed.ok());
        if (i % 3 == 0) ledger.Release(request);  // some finish while others still place
      }
    });
  }
  for (auto& t : workers) t.join();
  // Every placement, finished or not, is still visible to a placement using the old listing.
  std::map<std::string, int> load;
  auto placed = ledger.PlaceAndReserve("probe", listing_seq, [&](const std::vector<PlacedVm>& reserved) -> Placed {
    for (const auto& r : reserved) ++load[r.node];
    PlacementDecision decision;
    decision.node = "pve1";
    return std::make_pair(decision, Reservation("probe", "pve1"));
  });
  ASSERT_TRUE(placed.ok());
  int total = 0;
  for (const auto& n : nodes) {
    EXPECT_EQ(load[n], 20) << n;
    total += load[n];
  }
  EXPECT_EQ(total, 80);
}

}  // namespace
}  // namespace omni_proxmox::provider
