// SPDX-License-Identifier: Apache-2.0
// The simulator's mutation journal (sim/pve/journal.h): every non-GET API request, by arrival,
// with the replica it named, its path and the status it got, also served as GET /_sim/journal.

#include "sim/pve/journal.h"

#include <gtest/gtest.h>

#include "sim/pve/simulator.h"
#include "sim_test_util.h"
#include "util/clock.h"

namespace omni_proxmox::sim::pve {
namespace {

using testing::SimClient;

TEST(PveJournalTest, RecordsMutationsWithTheReplicaAndTheAnswerButNotReads) {
  util::ManualClock cluster_clock;
  auto sim = Simulator::Start({.clock = &cluster_clock});
  ASSERT_TRUE(sim.ok()) << sim.status();
  SimClient client(**sim, testing::TokenHeader(**sim));
  const auto started = util::RealClock().Monotonic();
  const httplib::Headers a = {{"X-Omni-Proxmox-Replica", "host-a_1_aaaaaaaa"}};
  const httplib::Headers b = {{"X-Omni-Proxmox-Replica", "host-b_2_bbbbbbbb"}};
  ASSERT_EQ(client.Get("/cluster/resources?type=vm", a).status, 200);
  ASSERT_EQ(client.PostJson("/nodes/pve1/qemu", {{"vmid", 150}, {"name", "a"}, {"memory", 2048}}, a).status, 200);
  // Refused by validation: still a mutation that was sent.
  EXPECT_EQ(client.PostJson("/nodes/pve1/qemu", {{"name", "no-vmid"}}, b).status, 400);
  ASSERT_EQ(client.Delete("/nodes/pve1/qemu/999", {}).status, 500);  // no replica header: "" in the journal
  // The simulator's own controls are not Proxmox API calls.
  ASSERT_EQ(client.PostForm("/_sim/node/pve2/offline", "").status, 200);

  const auto records = (*sim)->journal().Mutations();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].replica, "host-a_1_aaaaaaaa");
  EXPECT_EQ(records[0].method, "POST");
  EXPECT_EQ(records[0].path, "/nodes/pve1/qemu");
  EXPECT_EQ(records[0].status, 200);
  EXPECT_EQ(records[1].replica, "host-b_2_bbbbbbbb");
  EXPECT_EQ(records[1].status, 400);
  EXPECT_EQ(records[2].replica, "");
  EXPECT_EQ(records[2].method, "DELETE");
  EXPECT_EQ(records[2].path, "/nodes/pve1/qemu/999");
  // Stamped on the host's monotonic clock, not the (manual) cluster clock.
  EXPECT_GE(records[0].at, started);
  EXPECT_LE(records[0].at, records[1].at);
  EXPECT_LE(records[1].at, records[2].at);
  EXPECT_LE(records[2].at, util::RealClock().Monotonic());

  const auto served = client.Get("/_sim/journal");
  ASSERT_EQ(served.status, 200);
  const auto body = served.data();
  EXPECT_EQ(body["clock"], "monotonic");
  EXPECT_EQ(body["dropped"], 0);
  ASSERT_EQ(body["mutations"].size(), 3u);
  EXPECT_EQ(body["mutations"][0]["replica"], "host-a_1_aaaaaaaa");
  EXPECT_EQ(body["mutations"][0]["path"], "/nodes/pve1/qemu");
  EXPECT_EQ(body["mutations"][0]["monotonic_ns"].get<std::int64_t>(),
            std::chrono::duration_cast<std::chrono::nanoseconds>(records[0].at.time_since_epoch()).count());
}

TEST(PveJournalTest, KeepsArrivalOrderAndTheNewestRecords) {
  util::ManualClock clock;
  Journal journal(clock, /*capacity=*/2);
  const auto first = journal.Stamp();
  clock.Advance(std::chrono::seconds{1});
  const auto second = journal.Stamp();
  clock.Advance(std::chrono::seconds{1});
  const auto third = journal.Stamp();
  // Answered in another order than they arrived (a slow create, a delayed fault).
  journal.Record(third, "DELETE", "/api2/json/nodes/pve1/qemu/3", "r", 200);
  journal.Record(first, "POST", "/api2/json/nodes/pve1/qemu", "r", 200);
  journal.Record(second, "PUT", "/api2/json/nodes/pve1/qemu/2/config", "r", 0);
  journal.Record(second, "GET", "/api2/json/nodes", "r", 200);  // a read: not kept
  const auto kept = journal.Mutations();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].method, "PUT");
  EXPECT_EQ(kept[0].status, 0);
  EXPECT_EQ(kept[1].method, "DELETE");
  EXPECT_EQ(journal.dropped(), 1u);
}

}  // namespace
}  // namespace omni_proxmox::sim::pve
