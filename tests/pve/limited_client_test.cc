// SPDX-License-Identifier: Apache-2.0
// The limiting, metering decorator around the real HTTP client, against the Proxmox simulator over
// TLS on loopback. Simulated time is a ManualClock only the test advances, so a Proxmox task runs
// until the test lets it finish, and the rate limiter's waits are measured on that clock.

#include "pve/limited_client.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "pve/errors.h"
#include "sim/pve/scenario_builder.h"
#include "sim/pve/simulator.h"
#include "util/clock.h"
#include "util/metrics.h"

namespace omni_proxmox::pve {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

// Two large nodes, so only the limits under test hold work back; creates take 2 simulated seconds.
sim::pve::Scenario Scenario() {
  sim::pve::Scenario scenario;
  scenario.nodes = sim::pve::NumberedNodes(2, 64, 256);
  scenario.storages = {{.id = "local", .content = {"iso", "images"}, .path = "/var/lib/vz"},
                       sim::pve::LocalLvmThinStorage(2000)};
  scenario.task_seconds = {{"qmcreate", 2}};
  return scenario;
}

// Waits (in real time, generously) for `condition`; false when it never held.
template <typename Condition>
bool WaitFor(Condition condition, std::chrono::seconds timeout = 60s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

class LimitedClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sim::pve::SimulatorOptions options;
    options.scenario_yaml = Scenario().Yaml();
    options.tls = true;
    options.clock = &clock_;
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    ClientOptions client_options;
    client_options.base_url = sim_->base_url() + "/api2/json";
    client_options.ca_pem = sim_->ca_certificate_pem();
    client_options.token_id = sim_->default_token_id();
    client_options.token_secret = util::Secret<std::string>(sim_->default_token_secret());
    client_options.request_timeout = 30s;
    client_options.random = std::make_shared<util::Random>(3);
    client_options.sleep = [this](std::chrono::milliseconds d) { clock_.Advance(d); };
    auto http = MakeHttpClient(client_options, clock_);
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = std::move(*http);
  }

  std::unique_ptr<LimitedClient> Limited(LimitOptions options) {
    EXPECT_TRUE(ValidateLimitOptions(options).ok());
    return std::make_unique<LimitedClient>(*http_, std::move(options), clock_, &metrics_);
  }

  static FormFields VmParams(std::int64_t vmid) {
    return {{"name", fmt::format("limited-{}", vmid)},
            {"memory", "1024"},
            {"cores", "1"},
            {"scsi0", "local-lvm:4"},
            {"net0", "virtio,bridge=vmbr0"}};
  }

  // The simulator's own record of qmcreate tasks on `node`: start times (unix seconds).
  std::vector<std::int64_t> CreateStartTimes(const std::string& node) {
    const nlohmann::json state = sim_->StateForTest();
    const nlohmann::json tasks = state["tasks"];
    std::vector<std::int64_t> starts;
    for (const auto& task : tasks) {
      if (task["type"] == "qmcreate" && task["node"] == node) starts.push_back(task["starttime"].get<std::int64_t>());
    }
    std::sort(starts.begin(), starts.end());
    return starts;
  }

  int RunningCreates(const std::string& node) {
    const nlohmann::json state = sim_->StateForTest();
    const nlohmann::json tasks = state["tasks"];
    return static_cast<int>(std::count_if(tasks.begin(), tasks.end(), [&](const nlohmann::json& t) {
      return t["type"] == "qmcreate" && t["node"] == node && t["status"] == "running";
    }));
  }

  util::ManualClock clock_;
  util::MetricsRegistry metrics_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::unique_ptr<Client> http_;
};

// Six creates on one node with a limit of two, whose callers never look at their tasks again
// (as when every worker is busy waiting for a slot): the waiters poll the held tasks themselves,
// so all six run, never more than two at once.
TEST_F(LimitedClientTest, NeverMoreHeavyTasksPerNodeThanTheLimitAndNoDeadlockWhenOwnersNeverPoll) {
  auto client = Limited({.max_tasks_per_node = 2, .requests_per_second = 0, .slot_check_interval = 5ms});
  constexpr int kCreates = 6;
  std::atomic<int> created = 0;
  std::vector<std::jthread> callers;
  for (int i = 0; i < kCreates; ++i) {
    callers.emplace_back([&, vmid = 200 + i] {
      auto upid = client->CreateVm("pve1", vmid, VmParams(vmid));
      EXPECT_TRUE(upid.ok()) << upid.status();
      ++created;
    });
  }
  int most_running = 0;
  int most_in_flight = 0;
  ASSERT_TRUE(WaitFor([&] {
    most_running = std::max(most_running, RunningCreates("pve1"));
    most_in_flight = std::max(most_in_flight, client->TasksInFlight("pve1"));
    if (created == kCreates) return true;
    clock_.Advance(1s);
    return false;
  })) << "creates did not finish: "
      << created << " of " << kCreates;
  callers.clear();
  EXPECT_LE(most_running, 2);
  EXPECT_LE(most_in_flight, 2);

  // Exact, from the simulator's record: task k+2 can only start once task k (2 s) ended.
  const auto starts = CreateStartTimes("pve1");
  ASSERT_EQ(starts.size(), static_cast<std::size_t>(kCreates));
  for (std::size_t k = 0; k + 2 < starts.size(); ++k) {
    EXPECT_GE(starts[k + 2] - starts[k], 2) << "three creates overlapped at task " << k;
  }
  // The other node was never limited by pve1's tasks.
  EXPECT_EQ(client->TasksInFlight("pve2"), 0);
  // The gauge shows the slots still held (the last tasks, unless a waiter already saw one finish).
  EXPECT_THAT(metrics_.RenderText(), HasSubstr(fmt::format("omni_proxmox_pve_tasks_in_flight{{node=\"pve1\"}} {}\n",
                                                           client->TasksInFlight("pve1"))));
}

// The owner's own status poll frees the slot (self-checks are effectively off here).
TEST_F(LimitedClientTest, SlotFreedWhenTheOwnerSeesItsTaskFinish) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  auto first = client->CreateVm("pve1", 300, VmParams(300));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(client->TasksInFlight("pve1"), 1);

  std::atomic<bool> second_done = false;
  std::jthread second([&] {
    EXPECT_TRUE(client->CreateVm("pve1", 301, VmParams(301)).ok());
    second_done = true;
  });
  ASSERT_TRUE(WaitFor([&] { return client->SlotWaiters("pve1") == 1; }));
  auto running = client->GetTaskStatus(*first);
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_TRUE(running->running);
  EXPECT_EQ(client->SlotWaiters("pve1"), 1) << "a running task must keep its slot";

  clock_.Advance(3s);
  auto finished = client->GetTaskStatus(*first);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_FALSE(finished->running);
  ASSERT_TRUE(WaitFor([&] { return second_done.load(); }));
  EXPECT_EQ(client->TasksInFlight("pve1"), 1);
}

// What a create step does before it starts: claim the node's slot, or learn that the create would
// wait. The claimed slot is used by the next heavy call on that node from the same thread, and
// goes back when the claim is dropped unused.
TEST_F(LimitedClientTest, ClaimedSlotIsUsedByTheNextHeavyCallOrReturned) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  {
    auto claim = client->TryClaimSlot("pve1", "a");
    ASSERT_TRUE(claim.has_value());
    EXPECT_EQ(client->TasksInFlight("pve1"), 1);
    EXPECT_FALSE(client->TryClaimSlot("pve1", "b").has_value()) << "the only slot is claimed";
    EXPECT_TRUE(client->TryClaimSlot("pve2", "c").has_value()) << "slots are per node";
    EXPECT_EQ(client->TasksInFlight("pve2"), 0) << "the pve2 claim was dropped at once";
  }
  EXPECT_EQ(client->TasksInFlight("pve1"), 0) << "an unused claim returns its slot";
  EXPECT_FALSE(client->TryClaimSlot("pve1", "a").has_value()) << "b asked first and keeps its place";

  std::optional<Upid> first;
  {
    auto claim = client->TryClaimSlot("pve1", "b");
    ASSERT_TRUE(claim.has_value());
    auto created = client->CreateVm("pve1", 310, VmParams(310));  // uses the claim: no wait
    ASSERT_TRUE(created.ok()) << created.status();
    first = *created;
  }
  EXPECT_EQ(client->TasksInFlight("pve1"), 1) << "the slot now follows the task";
  EXPECT_FALSE(client->TryClaimSlot("pve1", "a").has_value());

  // Another thread's claim is not this thread's: a heavy call here waits for a slot, and gets the
  // claimed one when that claim is dropped, whichever thread drops it.
  std::optional<SlotClaim> other_thread_claim;
  clock_.Advance(3s);
  ASSERT_TRUE(client->GetTaskStatus(*first).ok());
  EXPECT_EQ(client->TasksInFlight("pve1"), 0);
  std::jthread([&] { other_thread_claim = client->TryClaimSlot("pve1", "a"); }).join();
  ASSERT_TRUE(other_thread_claim.has_value());
  std::atomic<bool> created = false;
  std::jthread waiter([&] {
    EXPECT_TRUE(client->CreateVm("pve1", 311, VmParams(311)).ok());
    created = true;
  });
  ASSERT_TRUE(WaitFor([&] { return client->SlotWaiters("pve1") == 1; }));
  EXPECT_FALSE(created.load());
  other_thread_claim.reset();
  ASSERT_TRUE(WaitFor([&] { return created.load(); }));
  EXPECT_EQ(client->TasksInFlight("pve1"), 1);

  auto unlimited = Limited({.max_tasks_per_node = 0, .requests_per_second = 0});
  EXPECT_TRUE(unlimited->TryClaimSlot("pve1", "a").has_value());
  EXPECT_EQ(unlimited->TasksInFlight("pve1"), 0);
}

// Refused claimants and blocked heavy calls share one queue per node: slots go first come, first
// served across both, and a claimant is told (by its key) when its turn comes.
TEST_F(LimitedClientTest, ClaimantsAndBlockedCallersShareOneQueue) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  std::mutex mutex;
  std::vector<std::string> told;
  client->SetSlotFreedListener([&](const std::string& waiter) {
    std::lock_guard lock(mutex);
    told.push_back(waiter);
  });
  auto holder = client->CreateVm("pve1", 340, VmParams(340));
  ASSERT_TRUE(holder.ok()) << holder.status();
  EXPECT_FALSE(client->TryClaimSlot("pve1", "first").has_value());
  std::atomic<bool> blocked_done = false;
  std::jthread blocked([&] {
    EXPECT_TRUE(client->CreateVm("pve1", 341, VmParams(341)).ok());
    blocked_done = true;
  });
  ASSERT_TRUE(WaitFor([&] { return client->SlotWaiters("pve1") == 2; }));
  EXPECT_FALSE(client->TryClaimSlot("pve1", "third").has_value());
  EXPECT_EQ(client->SlotWaiters("pve1"), 3);

  clock_.Advance(3s);
  ASSERT_TRUE(client->GetTaskStatus(*holder).ok());  // frees the slot: "first" is first in line
  {
    std::lock_guard lock(mutex);
    ASSERT_FALSE(told.empty());
    EXPECT_EQ(told.front(), "first");
  }
  EXPECT_FALSE(blocked_done.load()) << "the blocked call waits behind the claimant";
  EXPECT_FALSE(client->TryClaimSlot("pve1", "third").has_value()) << "not third's turn";
  std::optional<Upid> second;
  {
    auto claim = client->TryClaimSlot("pve1", "first");
    ASSERT_TRUE(claim.has_value());
    auto created = client->CreateVm("pve1", 342, VmParams(342));
    ASSERT_TRUE(created.ok()) << created.status();
    second = *created;
  }
  clock_.Advance(3s);
  ASSERT_TRUE(client->GetTaskStatus(*second).ok());
  ASSERT_TRUE(WaitFor([&] { return blocked_done.load(); })) << "then the blocked call";
  EXPECT_EQ(client->SlotWaiters("pve1"), 1) << "third still waits";
}

// A claimant that stops asking (its request was deleted) loses its place.
TEST_F(LimitedClientTest, AClaimantThatStopsAskingLosesItsPlace) {
  auto client = Limited({.max_tasks_per_node = 1,
                         .requests_per_second = 0,
                         .slot_check_interval = 1h,
                         .claim_abandon_after = std::chrono::seconds{6}});
  auto holder = client->CreateVm("pve1", 350, VmParams(350));
  ASSERT_TRUE(holder.ok()) << holder.status();
  EXPECT_FALSE(client->TryClaimSlot("pve1", "gone").has_value());
  clock_.Advance(7s);
  ASSERT_TRUE(client->GetTaskStatus(*holder).ok());
  EXPECT_TRUE(client->TryClaimSlot("pve1", "newcomer").has_value());
}

// Nobody blocks in a slot wait when every create claims first, so refused claims take over the
// waiters' duty: the node's held tasks are checked, and a finished task nobody polls frees its slot.
TEST_F(LimitedClientTest, RefusedClaimsStillFreeSlotsOfTasksNobodyPolls) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  auto created = client->CreateVm("pve1", 330, VmParams(330));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(client->TryClaimSlot("pve1", "a").has_value()) << "the create is still running";
  EXPECT_EQ(client->TasksInFlight("pve1"), 1);
  clock_.Advance(3s);  // the create ends; its caller never looks at it again
  auto claim = client->TryClaimSlot("pve1", "a");
  EXPECT_TRUE(claim.has_value());
  EXPECT_EQ(client->TasksInFlight("pve1"), 1) << "the finished create's slot went to the claim";
}

// A cloud-init ISO upload is not a heavy task: it neither waits for a slot nor takes one; a big
// upload does both.
TEST_F(LimitedClientTest, OnlyABigUploadTakesATaskSlot) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  auto create = client->CreateVm("pve1", 320, VmParams(320));
  ASSERT_TRUE(create.ok()) << create.status();
  ASSERT_EQ(client->TasksInFlight("pve1"), 1);
  auto small = client->UploadIso("pve1", "local", "cidata-small.iso", std::string(512 * 1024, 'x'));
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(client->TasksInFlight("pve1"), 1);

  std::atomic<bool> big_done = false;
  std::jthread big([&] {
    EXPECT_TRUE(client->UploadIso("pve1", "local", "big.iso", std::string(16 * 1024 * 1024, 'x')).ok());
    big_done = true;
  });
  ASSERT_TRUE(WaitFor([&] { return client->SlotWaiters("pve1") == 1; }));
  EXPECT_FALSE(big_done.load());
  clock_.Advance(3s);
  ASSERT_TRUE(client->GetTaskStatus(*create).ok());
  ASSERT_TRUE(WaitFor([&] { return big_done.load(); }));
  EXPECT_EQ(client->TasksInFlight("pve1"), 1) << "the big upload holds the slot until seen finished";
}

// Callers get slots in the order they asked for them.
TEST_F(LimitedClientTest, SlotsAreGrantedFirstComeFirstServed) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  auto holder = client->CreateVm("pve1", 400, VmParams(400));
  ASSERT_TRUE(holder.ok()) << holder.status();

  std::mutex mutex;
  std::vector<std::int64_t> order;
  std::map<std::int64_t, Upid> upids;
  std::vector<std::jthread> callers;
  // Arrival order 405, 401, 403, 402, 404: each starts once the previous one is queued.
  const std::vector<std::int64_t> arrivals = {405, 401, 403, 402, 404};
  for (std::size_t i = 0; i < arrivals.size(); ++i) {
    const std::int64_t vmid = arrivals[i];
    callers.emplace_back([&, vmid] {
      auto upid = client->CreateVm("pve1", vmid, VmParams(vmid));
      ASSERT_TRUE(upid.ok()) << upid.status();
      std::lock_guard lock(mutex);
      order.push_back(vmid);
      upids.emplace(vmid, *upid);
    });
    ASSERT_TRUE(WaitFor([&] { return client->SlotWaiters("pve1") == static_cast<int>(i) + 1; }));
  }
  Upid running = *holder;
  for (std::size_t granted = 1; granted <= arrivals.size(); ++granted) {
    clock_.Advance(3s);
    ASSERT_TRUE(client->GetTaskStatus(running).ok());
    ASSERT_TRUE(WaitFor([&] {
      std::lock_guard lock(mutex);
      return order.size() == granted;
    }));
    std::lock_guard lock(mutex);
    running = upids.at(order.back());
  }
  callers.clear();
  EXPECT_EQ(order, arrivals);
}

TEST_F(LimitedClientTest, FailedHeavyCallFreesItsSlotAtOnce) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0});
  auto created = client->CreateVm("pve1", 500, VmParams(500));
  ASSERT_TRUE(created.ok()) << created.status();
  clock_.Advance(3s);
  ASSERT_TRUE(client->GetTaskStatus(*created).ok());
  ASSERT_EQ(client->TasksInFlight("pve1"), 0);

  // Same VMID again: refused by Proxmox; the slot must not leak (a leak would block the next call).
  auto duplicate = client->CreateVm("pve1", 500, VmParams(500));
  ASSERT_FALSE(duplicate.ok());
  EXPECT_EQ(client->TasksInFlight("pve1"), 0);
  auto bad = client->CreateVm("pve1", 501, {{"cores", "lots"}});
  EXPECT_EQ(ClassifyError(bad.status()), ErrorKind::kBadParameter);
  EXPECT_EQ(client->TasksInFlight("pve1"), 0);
  EXPECT_TRUE(client->CreateVm("pve1", 502, VmParams(502)).ok());
  EXPECT_EQ(client->TasksInFlight("pve1"), 1);
}

TEST_F(LimitedClientTest, PollHeldTasksFreesSlotsOfTasksNobodyPolls) {
  auto client = Limited({.max_tasks_per_node = 4, .requests_per_second = 0, .slot_check_interval = 1h});
  ASSERT_TRUE(client->CreateVm("pve1", 550, VmParams(550)).ok());
  ASSERT_TRUE(client->CreateVm("pve2", 551, VmParams(551)).ok());
  client->PollHeldTasks();
  EXPECT_EQ(client->TasksInFlight("pve1"), 1) << "still running";
  clock_.Advance(3s);
  client->PollHeldTasks();
  EXPECT_EQ(client->TasksInFlight("pve1"), 0);
  EXPECT_EQ(client->TasksInFlight("pve2"), 0);
  EXPECT_THAT(metrics_.RenderText(), HasSubstr("omni_proxmox_pve_tasks_in_flight{node=\"pve2\"} 0\n"));
}

TEST_F(LimitedClientTest, WaitTaskFreesTheSlotHoweverItEnds) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  auto created = client->CreateVm("pve1", 600, VmParams(600));
  ASSERT_TRUE(created.ok()) << created.status();
  // A deadline already passed: the wait times out, and the caller is no longer waiting.
  auto timed_out = client->WaitTask(*created, clock_.Monotonic());
  EXPECT_EQ(ClassifyError(timed_out.status()), ErrorKind::kTimeout) << timed_out.status();
  EXPECT_EQ(client->TasksInFlight("pve1"), 0);

  auto second = client->CreateVm("pve1", 601, VmParams(601));
  ASSERT_TRUE(second.ok()) << second.status();
  auto done = client->WaitTask(*second, clock_.Monotonic() + 60s);  // the client's sleep advances the clock
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_TRUE(done->Succeeded());
  EXPECT_EQ(client->TasksInFlight("pve1"), 0);
}

TEST_F(LimitedClientTest, CloseWakesWaitersWithATransientError) {
  auto client = Limited({.max_tasks_per_node = 1, .requests_per_second = 0, .slot_check_interval = 1h});
  ASSERT_TRUE(client->CreateVm("pve1", 700, VmParams(700)).ok());
  absl::Status waiter_status;
  std::jthread waiter([&] { waiter_status = client->CreateVm("pve1", 701, VmParams(701)).status(); });
  ASSERT_TRUE(WaitFor([&] { return client->SlotWaiters("pve1") == 1; }));
  client->Close();
  waiter.join();
  EXPECT_EQ(ClassifyError(waiter_status), ErrorKind::kTransient);
  EXPECT_THAT(std::string(waiter_status.message()), HasSubstr("shutting down"));
  EXPECT_EQ(RunningCreates("pve1"), 1) << "the refused create must not reach Proxmox";
}

// 25 calls in a row at 10/s with a burst of 5: the last one goes out 2 s after the first.
TEST_F(LimitedClientTest, RateLimitPacesSequentialCallsOnTheClock) {
  std::chrono::milliseconds slept{0};
  auto client = Limited(
      {.max_tasks_per_node = 0, .requests_per_second = 10, .burst = 5, .sleep = [&](std::chrono::milliseconds d) {
         slept += d;
         clock_.Advance(d);
       }});
  const auto start = clock_.Monotonic();
  for (int i = 0; i < 25; ++i) ASSERT_TRUE(client->Version().ok());
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Monotonic() - start);
  // Each wait is rounded up to a whole millisecond.
  EXPECT_GE(elapsed, 2000ms);
  EXPECT_LE(elapsed, 2020ms);
  EXPECT_EQ(slept, elapsed);
  const std::string text = metrics_.RenderText();
  const std::regex waited(R"(omni_proxmox_pve_rate_limited_seconds_total\{limit="requests_per_second"\} ([0-9.e+-]+))");
  std::smatch match;
  ASSERT_TRUE(std::regex_search(text, match, waited)) << text;
  EXPECT_NEAR(std::stod(match[1]), 2.0, 0.001);

  // After an idle second the bucket holds 10 tokens again (burst capped at 5).
  clock_.Advance(10s);
  slept = 0ms;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Version().ok());
  EXPECT_EQ(slept, 0ms);
  ASSERT_TRUE(client->Version().ok());
  EXPECT_EQ(slept, 100ms);
}

// Concurrent callers at one instant queue behind each other: the k-th beyond the burst waits k/rate.
TEST_F(LimitedClientTest, RateLimitQueuesConcurrentCallersAtTheRate) {
  std::mutex mutex;
  std::vector<std::chrono::milliseconds> waits;
  auto client = Limited(
      {.max_tasks_per_node = 0, .requests_per_second = 10, .burst = 2, .sleep = [&](std::chrono::milliseconds d) {
         std::lock_guard lock(mutex);
         waits.push_back(d);  // the clock stands still: every reservation is at one instant
       }});
  {
    std::vector<std::jthread> callers;
    for (int i = 0; i < 12; ++i) callers.emplace_back([&] { EXPECT_TRUE(client->Version().ok()); });
  }
  std::sort(waits.begin(), waits.end());
  std::vector<std::chrono::milliseconds> expected;
  for (int k = 1; k <= 10; ++k) expected.push_back(std::chrono::milliseconds{k * 100});
  EXPECT_EQ(waits, expected);
}

// Checks the text exposition format 0.0.4 line by line: HELP and TYPE once per family, before its
// samples; sample names belong to the family; label values quoted with only valid escapes.
void ExpectValidExposition(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*))");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*)\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN))");
  std::set<std::string> helped, typed;
  std::string family;
  std::istringstream lines(text);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      EXPECT_TRUE(helped.insert(m[1]).second) << "HELP twice for " << m[1];
      family = m[1];
    } else if (std::regex_match(line, m, kType)) {
      EXPECT_TRUE(typed.insert(m[1]).second) << "TYPE twice for " << m[1];
      EXPECT_EQ(m[1], family) << "TYPE without its HELP: " << line;
    } else if (std::regex_match(line, m, kSample)) {
      ++samples;
      const std::string name = m[1];
      const bool in_family =
          name == family || name == family + "_bucket" || name == family + "_sum" || name == family + "_count";
      EXPECT_TRUE(in_family) << "sample outside its family " << family << ": " << line;
    } else {
      ADD_FAILURE() << "not exposition format: " << line;
    }
  }
  EXPECT_GT(samples, 0);
}

TEST_F(LimitedClientTest, MetricsCountCallsByTemplatedEndpointAndResult) {
  auto client = Limited({.max_tasks_per_node = 4, .requests_per_second = 0});
  ASSERT_TRUE(client->Version().ok());
  auto created = client->CreateVm("pve2", 812345, VmParams(812345));
  ASSERT_TRUE(created.ok()) << created.status();
  clock_.Advance(3s);
  ASSERT_TRUE(client->GetTaskStatus(*created).ok());
  ASSERT_TRUE(client->StartVm("pve2", 812345).ok());
  EXPECT_FALSE(client->GetVmStatus("pve2", 999999).ok());
  // Calls the base class does not require are forwarded too, not answered Unimplemented.
  auto networks = client->NodeNetworks("pve2");
  ASSERT_TRUE(networks.ok()) << networks.status();
  EXPECT_TRUE(std::any_of(networks->begin(), networks->end(), [](const auto& n) { return n.iface == "vmbr0"; }));
  EXPECT_TRUE(client->HardwareMappings("pci").ok());
  EXPECT_FALSE(client->CreateVm("pve2", 812345, VmParams(812345)).ok());

  const std::string text = metrics_.RenderText();
  ExpectValidExposition(text);
  EXPECT_THAT(text,
              HasSubstr("omni_proxmox_pve_requests_total{endpoint=\"/version\",method=\"GET\",result=\"ok\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("omni_proxmox_pve_requests_total{endpoint=\"/nodes/{node}/qemu\",method=\"POST\",result=\"ok\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("omni_proxmox_pve_requests_total{endpoint=\"/nodes/{node}/qemu/{vmid}/status/start\","
                              "method=\"POST\",result=\"ok\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("omni_proxmox_pve_requests_total{endpoint=\"/nodes/{node}/qemu/{vmid}/status/current\","
                              "method=\"GET\",result=\"" +
                              std::string(ErrorKindName(ErrorKind::kNotFound)) + "\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("omni_proxmox_pve_requests_total{endpoint=\"/nodes/{node}/qemu\",method=\"POST\",result=\"" +
                        std::string(ErrorKindName(ErrorKind::kAlreadyExists)) + "\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("omni_proxmox_pve_request_duration_seconds_count{endpoint=\"/nodes/{node}/qemu\","
                              "method=\"POST\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE omni_proxmox_pve_request_duration_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("omni_proxmox_pve_requests_total{endpoint=\"/nodes/{node}/network\",method=\"GET\","
                              "result=\"ok\"} 1\n"));
  // Bounded cardinality: no node name, VMID or UPID ever appears in an endpoint label.
  std::smatch m;
  const std::regex endpoint_label(R"(endpoint="([^"]*)\")");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), endpoint_label); it != std::sregex_iterator(); ++it) {
    const std::string endpoint = (*it)[1];
    EXPECT_THAT(endpoint, Not(HasSubstr("pve2")));
    EXPECT_THAT(endpoint, Not(HasSubstr("812345")));
    EXPECT_THAT(endpoint, Not(HasSubstr("UPID")));
  }
}

TEST(LimitOptionsTest, BadValuesNameTheFlag) {
  EXPECT_TRUE(ValidateLimitOptions({}).ok());
  auto tasks = ValidateLimitOptions({.max_tasks_per_node = -1});
  EXPECT_EQ(tasks.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tasks.message()), HasSubstr("--max-tasks-per-node"));
  auto rate = ValidateLimitOptions({.requests_per_second = -2});
  EXPECT_THAT(std::string(rate.message()), HasSubstr("--pve-requests-per-second"));
  EXPECT_THAT(std::string(rate.message()), HasSubstr("0 for no limit"));
}

}  // namespace
}  // namespace omni_proxmox::pve
