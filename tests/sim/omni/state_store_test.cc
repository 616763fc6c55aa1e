// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/state_store.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace omni_proxmox::sim::omni {
namespace {

using std::chrono::milliseconds;

constexpr char kNs[] = "infra-provider";
constexpr char kType[] = "MachineRequests.omni.sidero.dev";

Resource Make(const std::string& id, Labels labels = {}) {
  Resource r;
  r.ns = kNs;
  r.type = kType;
  r.id = id;
  r.labels = std::move(labels);
  r.proto_spec = "spec-" + id;
  return r;
}

WatchOptions With(void (*set)(WatchOptions&)) {
  WatchOptions options;
  set(options);
  return options;
}

class StateStoreTest : public ::testing::Test {
 protected:
  util::ManualClock clock_;
  StateStore store_{clock_, 0x1234};
};

TEST_F(StateStoreTest, CreateSetsVersionOwnerAndCreatedTime) {
  auto created = store_.Create(Make("a"), "ctrl");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->version, 1u);
  EXPECT_EQ(created->owner, "ctrl");
  EXPECT_EQ(created->created, clock_.Now());
  auto again = store_.Create(Make("a"), "ctrl");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(StateStoreTest, CreateRefusesConflictingMetadataOwner) {
  Resource r = Make("a");
  r.owner = "other";
  EXPECT_EQ(store_.Create(r, "ctrl").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StateStoreTest, GetMissingIsNotFound) {
  EXPECT_EQ(store_.Get(kNs, kType, "nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StateStoreTest, UpdateChecksVersionOwnerAndPhase) {
  auto created = store_.Create(Make("a"), "ctrl");
  ASSERT_TRUE(created.ok());
  Resource stale = *created;
  stale.version = 7;
  EXPECT_EQ(store_.Update(stale, "ctrl").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Update(*created, "intruder").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(store_.Update(*created, "ctrl", Phase::kTearingDown).status().code(), absl::StatusCode::kInvalidArgument);

  clock_.Advance(std::chrono::seconds(5));
  Resource next = *created;
  next.labels["x"] = "y";
  auto updated = store_.Update(next, "ctrl");
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->version, 2u);
  EXPECT_EQ(updated->created, created->created);
  EXPECT_EQ(updated->updated, clock_.Now());
  // The old version is now stale.
  EXPECT_EQ(store_.Update(next, "ctrl").status().code(), absl::StatusCode::kFailedPrecondition);
  // No expected phase = any phase.
  EXPECT_TRUE(store_.Update(*updated, "ctrl", std::nullopt).ok());
}

TEST_F(StateStoreTest, DestroyRefusedWhileFinalizersRemain) {
  Resource r = Make("a");
  r.finalizers = {"omni.Cleanup"};
  ASSERT_TRUE(store_.Create(r, "").ok());
  auto refused = store_.Destroy(kNs, kType, "a", "");
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(refused.message()).find("omni.Cleanup"), std::string::npos);
  EXPECT_EQ(store_.Destroy(kNs, kType, "a", "someone").code(), absl::StatusCode::kPermissionDenied);
  auto cur = store_.Get(kNs, kType, "a");
  cur->finalizers.clear();
  ASSERT_TRUE(store_.Update(*cur, "", std::nullopt).ok());
  EXPECT_TRUE(store_.Destroy(kNs, kType, "a", "").ok());
  EXPECT_EQ(store_.Destroy(kNs, kType, "a", "").code(), absl::StatusCode::kNotFound);
}

TEST_F(StateStoreTest, TeardownSetsPhaseAndReportsDestroyReady) {
  Resource r = Make("a");
  r.finalizers = {"f"};
  ASSERT_TRUE(store_.Create(r, "o").ok());
  EXPECT_EQ(store_.Teardown(kNs, kType, "a", "x").status().code(), absl::StatusCode::kPermissionDenied);
  auto ready = store_.Teardown(kNs, kType, "a", "o");
  ASSERT_TRUE(ready.ok());
  EXPECT_FALSE(*ready);
  auto cur = store_.Get(kNs, kType, "a");
  EXPECT_EQ(cur->phase, Phase::kTearingDown);
  EXPECT_EQ(cur->version, 2u);
  // A second teardown does not bump the version again.
  ASSERT_TRUE(store_.Teardown(kNs, kType, "a", "o").ok());
  EXPECT_EQ(store_.Get(kNs, kType, "a")->version, 2u);
  cur->finalizers.clear();
  ASSERT_TRUE(store_.Update(*cur, "o", std::nullopt).ok());
  EXPECT_TRUE(*store_.Teardown(kNs, kType, "a", "o"));
}

TEST_F(StateStoreTest, ParsePhaseRefusesUnknownSpelling) {
  EXPECT_EQ(*ParsePhase("running"), Phase::kRunning);
  EXPECT_EQ(*ParsePhase("tearingDown"), Phase::kTearingDown);
  EXPECT_FALSE(ParsePhase("").ok());
  EXPECT_FALSE(ParsePhase("Running").ok());
}

TEST_F(StateStoreTest, ListFiltersByLabelQueriesAndIdSortedById) {
  ASSERT_TRUE(store_.Create(Make("c", {{"p", "proxmox"}, {"n", "10"}}), "").ok());
  ASSERT_TRUE(store_.Create(Make("a", {{"p", "proxmox"}, {"n", "9"}}), "").ok());
  ASSERT_TRUE(store_.Create(Make("b", {{"p", "other"}}), "").ok());

  auto ids = [&](const ResourceFilter& f) {
    std::vector<std::string> out;
    const auto listed = store_.List(kNs, kType, f);
    for (const auto& r : *listed) out.push_back(r.id);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids({}), (V{"a", "b", "c"}));
  EXPECT_EQ(ids({{{{{"p", LabelOp::kEqual, {"proxmox"}, false}}}}, ""}), (V{"a", "c"}));
  EXPECT_EQ(ids({{{{{"p", LabelOp::kEqual, {"proxmox"}, true}}}}, ""}), (V{"b"}));
  EXPECT_EQ(ids({{{{{"n", LabelOp::kExists, {}, false}}}}, ""}), (V{"a", "c"}));
  EXPECT_EQ(ids({{{{{"n", LabelOp::kNotExists, {}, false}}}}, ""}), (V{"b"}));
  EXPECT_EQ(ids({{{{{"p", LabelOp::kIn, {"other", "x"}, false}}}}, ""}), (V{"b"}));
  // String comparison: "10" < "9"; numeric comparison: 9 < 10.
  EXPECT_EQ(ids({{{{{"n", LabelOp::kLt, {"9"}, false}}}}, ""}), (V{"c"}));
  EXPECT_EQ(ids({{{{{"n", LabelOp::kLtNumeric, {"10"}, false}}}}, ""}), (V{"a"}));
  EXPECT_EQ(ids({{{{{"n", LabelOp::kLteNumeric, {"10"}, false}}}}, ""}), (V{"a", "c"}));
  EXPECT_EQ(ids({{{{{"n", LabelOp::kLte, {"10"}, false}}}}, ""}), (V{"c"}));
  // Terms AND, queries OR.
  EXPECT_EQ(ids({{{{{"p", LabelOp::kEqual, {"proxmox"}, false}, {"n", LabelOp::kEqual, {"9"}, false}}}}, ""}),
            (V{"a"}));
  EXPECT_EQ(ids({{{{{"n", LabelOp::kEqual, {"9"}, false}}}, {{{"p", LabelOp::kEqual, {"other"}, false}}}}, ""}),
            (V{"a", "b"}));
  EXPECT_EQ(ids({{}, "^[ab]$"}), (V{"a", "b"}));
  EXPECT_EQ(store_.List(kNs, kType, {{}, "("}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StateStoreTest, KindWatchBootstrapsThenStreams) {
  ASSERT_TRUE(store_.Create(Make("b"), "").ok());
  ASSERT_TRUE(store_.Create(Make("a"), "").ok());
  WatchOptions options;
  options.bootstrap_contents = true;
  auto watch = store_.Watch(kNs, kType, options);
  ASSERT_TRUE(watch.ok()) << watch.status();
  auto e1 = (*watch)->Next(milliseconds(0));
  auto e2 = (*watch)->Next(milliseconds(0));
  auto e3 = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(e1.size(), 1u);
  EXPECT_EQ(e1[0].type, EventType::kCreated);
  EXPECT_EQ(e1[0].resource.id, "a");
  EXPECT_EQ(e2[0].resource.id, "b");
  ASSERT_EQ(e3.size(), 1u);
  EXPECT_EQ(e3[0].type, EventType::kBootstrapped);
  EXPECT_EQ(e3[0].resource.id, "");  // a tombstone, not data
  EXPECT_FALSE(e3[0].bookmark.empty());
  EXPECT_TRUE((*watch)->Next(milliseconds(0)).empty());

  // A writer on another thread wakes the watcher.
  std::thread writer([&] { ASSERT_TRUE(store_.Destroy(kNs, kType, "a", "").ok()); });
  auto e4 = (*watch)->Next(milliseconds(5000));
  writer.join();
  ASSERT_EQ(e4.size(), 1u);
  EXPECT_EQ(e4[0].type, EventType::kDestroyed);
  EXPECT_EQ(e4[0].resource.id, "a");
}

TEST_F(StateStoreTest, AggregatedWatchDeliversBatches) {
  ASSERT_TRUE(store_.Create(Make("a"), "").ok());
  WatchOptions options;
  options.bootstrap_contents = true;
  options.aggregated = true;
  auto watch = store_.Watch(kNs, kType, options);
  ASSERT_TRUE(watch.ok());
  auto first = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[1].type, EventType::kBootstrapped);
  ASSERT_TRUE(store_.Create(Make("b"), "").ok());
  ASSERT_TRUE(store_.Create(Make("c"), "").ok());
  auto batch = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].resource.id, "b");
  EXPECT_EQ(batch[1].resource.id, "c");
}

TEST_F(StateStoreTest, LabelFilteredWatchTurnsUpdatesIntoCreateAndDestroy) {
  ASSERT_TRUE(store_.Create(Make("a"), "").ok());
  WatchOptions options;
  options.filter.label_queries = {{{{"p", LabelOp::kEqual, {"me"}, false}}}};
  auto watch = store_.Watch(kNs, kType, options);
  ASSERT_TRUE(watch.ok());
  auto cur = *store_.Get(kNs, kType, "a");
  cur.labels["p"] = "me";
  cur = *store_.Update(cur, "");
  auto e1 = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(e1.size(), 1u);
  EXPECT_EQ(e1[0].type, EventType::kCreated);
  cur.labels["p"] = "you";
  ASSERT_TRUE(store_.Update(cur, "").ok());
  auto e2 = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(e2.size(), 1u);
  EXPECT_EQ(e2[0].type, EventType::kDestroyed);
  ASSERT_TRUE(store_.Create(Make("z"), "").ok());  // does not match: dropped
  EXPECT_TRUE((*watch)->Next(milliseconds(0)).empty());
}

TEST_F(StateStoreTest, BookmarkResumesAfterTheBookmarkedEvent) {
  WatchOptions options;
  options.bootstrap_bookmark = true;
  auto watch = store_.Watch(kNs, kType, options);
  ASSERT_TRUE(watch.ok());
  auto noop = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(noop.size(), 1u);
  EXPECT_EQ(noop[0].type, EventType::kNoop);
  ASSERT_TRUE(store_.Create(Make("a"), "").ok());
  ASSERT_TRUE(store_.Create(Make("b"), "").ok());
  auto ea = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(ea.size(), 1u);
  watch->reset();  // the connection drops after "a" was seen
  ASSERT_TRUE(store_.Create(Make("c"), "").ok());

  WatchOptions resume;
  resume.start_from_bookmark = ea[0].bookmark;
  auto resumed = store_.Watch(kNs, kType, resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)->Next(milliseconds(0))[0].resource.id, "b");
  EXPECT_EQ((*resumed)->Next(milliseconds(0))[0].resource.id, "c");

  // The NOOP bookmark taken before any event resumes from the very first event.
  WatchOptions from_noop;
  from_noop.start_from_bookmark = noop[0].bookmark;
  auto replay = store_.Watch(kNs, kType, from_noop);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ((*replay)->Next(milliseconds(0))[0].resource.id, "a");
}

TEST_F(StateStoreTest, InvalidBookmarkIsFailedPrecondition) {
  ASSERT_TRUE(store_.Create(Make("a"), "").ok());
  WatchOptions options;
  options.start_from_bookmark = std::string("garbage");
  EXPECT_EQ(store_.Watch(kNs, kType, options).status().code(), absl::StatusCode::kFailedPrecondition);

  // A bookmark from another store (another "run" of Omni) is refused too.
  StateStore other(clock_, 0x9999);
  ASSERT_TRUE(other.Create(Make("a"), "").ok());
  auto w = other.Watch(kNs, kType, With([](WatchOptions& o) { o.bootstrap_contents = true; }));
  auto boot = (*w)->Next(milliseconds(0));
  options.start_from_bookmark = (*w)->Next(milliseconds(0))[0].bookmark;
  EXPECT_EQ(store_.Watch(kNs, kType, options).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(StateStoreTest, BookmarkOlderThanTheLogIsFailedPrecondition) {
  StateStore small(clock_, 1, /*log_capacity=*/2);
  auto watch = small.Watch(kNs, kType, With([](WatchOptions& o) { o.bootstrap_bookmark = true; }));
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(small.Create(Make("a"), "").ok());
  auto noop = (*watch)->Next(milliseconds(0));
  auto ea = (*watch)->Next(milliseconds(0));
  ASSERT_TRUE(small.Create(Make("b"), "").ok());
  ASSERT_TRUE(small.Create(Make("c"), "").ok());
  ASSERT_TRUE(small.Create(Make("d"), "").ok());
  WatchOptions resume;
  resume.start_from_bookmark = ea[0].bookmark;
  EXPECT_EQ(small.Watch(kNs, kType, resume).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(StateStoreTest, SlowWatcherGetsErroredOnOverrun) {
  StateStore small(clock_, 1, /*log_capacity=*/2);
  auto watch = small.Watch(kNs, kType, WatchOptions{});
  ASSERT_TRUE(watch.ok());
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(small.Create(Make(id), "").ok());
  auto e = (*watch)->Next(milliseconds(0));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].type, EventType::kErrored);
  EXPECT_NE(e[0].error.find("buffer overrun"), std::string::npos);
}

TEST_F(StateStoreTest, SingleResourceWatchStartsWithCurrentStateOrTombstone) {
  auto missing = store_.Watch(kNs, kType, With([](WatchOptions& o) { o.id = std::string("a"); }));
  ASSERT_TRUE(missing.ok());
  auto first = (*missing)->Next(milliseconds(0));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].type, EventType::kDestroyed);
  EXPECT_EQ(first[0].resource.id, "a");
  ASSERT_TRUE(store_.Create(Make("b"), "").ok());  // other IDs are not delivered
  ASSERT_TRUE(store_.Create(Make("a"), "").ok());
  auto created = (*missing)->Next(milliseconds(0));
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0].type, EventType::kCreated);
  EXPECT_EQ(created[0].resource.id, "a");

  auto existing = store_.Watch(kNs, kType, With([](WatchOptions& o) { o.id = std::string("a"); }));
  auto now = (*existing)->Next(milliseconds(0));
  EXPECT_EQ(now[0].type, EventType::kCreated);
  EXPECT_EQ(now[0].resource.version, 1u);
}

TEST_F(StateStoreTest, TailEventsReplaysRecentHistory) {
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(store_.Create(Make(id), "").ok());
  auto watch = store_.Watch(kNs, kType, With([](WatchOptions& o) { o.tail_events = 2; }));
  ASSERT_TRUE(watch.ok());
  EXPECT_EQ((*watch)->Next(milliseconds(0))[0].resource.id, "b");
  EXPECT_EQ((*watch)->Next(milliseconds(0))[0].resource.id, "c");
}

TEST_F(StateStoreTest, ContradictoryWatchOptionsAreRefused) {
  WatchOptions both;
  both.bootstrap_contents = true;
  both.tail_events = 1;
  EXPECT_EQ(store_.Watch(kNs, kType, both).status().code(), absl::StatusCode::kInvalidArgument);
  WatchOptions single;
  single.id = "a";
  single.bootstrap_contents = true;
  EXPECT_EQ(store_.Watch(kNs, kType, single).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StateStoreTest, CancelWakesABlockedWatcher) {
  auto watch = store_.Watch(kNs, kType, WatchOptions{});
  ASSERT_TRUE(watch.ok());
  std::thread canceller([&] { (*watch)->Cancel(); });
  auto events = (*watch)->Next(milliseconds(60000));
  canceller.join();
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE((*watch)->cancelled());
}

TEST_F(StateStoreTest, WaitUntilSeesChangesFromAnotherThread) {
  std::thread writer([&] { ASSERT_TRUE(store_.Create(Make("a"), "").ok()); });
  EXPECT_TRUE(store_.WaitUntil([&] { return store_.Get(kNs, kType, "a").ok(); }, milliseconds(10000)));
  writer.join();
  EXPECT_FALSE(store_.WaitUntil([&] { return store_.Get(kNs, kType, "zzz").ok(); }, milliseconds(1)));
}

TEST_F(StateStoreTest, ModifySkipsWriteWhenUnchanged) {
  ASSERT_TRUE(store_.Create(Make("a"), "").ok());
  auto same = store_.Modify(kNs, kType, "a", [](Resource&) { return false; });
  EXPECT_EQ(same->version, 1u);
  auto changed = store_.Modify(kNs, kType, "a", [](Resource& r) {
    r.finalizers.push_back("x");
    return true;
  });
  EXPECT_EQ(changed->version, 2u);
  EXPECT_TRUE(changed->HasFinalizer("x"));
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
