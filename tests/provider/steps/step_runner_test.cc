// SPDX-License-Identifier: Apache-2.0
// The step runner against the Omni stand-in (through the watch-fed cache, as in production) and
// the simulator, on simulated time: the real steps take a request from nothing to PROVISIONED and
// back to nothing; scripted steps show how each kind of result reaches the status and the queue.

#include "provider/reconciler/step_runner.h"

#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "omni/join_config.h"
#include "omni/resource_cache.h"
#include "omni/specs.h"
#include "provider/reconciler/request_records.h"
#include "provider/steps/step_world.h"
#include "provider/steps/steps.h"

namespace omni_proxmox::provider::steptest {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Stage = specs::MachineRequestStatusSpec;

// A step that returns what the test scripts, and counts its runs.
class ScriptedStep final : public Step {
 public:
  explicit ScriptedStep(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  StepResult Run(StepContext& ctx) override {
    ++runs;
    ctx.machine->set_node("scripted");
    return next;
  }
  StepResult next = StepResult::Next();
  int runs = 0;

 private:
  std::string name_;
};

class StepRunnerTest : public StepWorld {
 protected:
  void SetUp() override {
    StepWorld::SetUp();
    if (HasFatalFailure()) return;
    cache_ = std::make_unique<omni::ResourceCache>(world_->state());
    const std::string ns(omni::kNamespaceInfraProvider);
    const omni::LabelQuery ours = {omni::LabelTerm::Equal(std::string(omni::kLabelInfraProviderId), "proxmox")};
    ASSERT_TRUE(cache_->Watch(ns, std::string(omni::kTypeMachineRequest), ours).ok());
    ASSERT_TRUE(cache_->Watch(ns, std::string(omni::kTypeMachineRequestStatus), ours).ok());
    ASSERT_TRUE(cache_->Watch(omni::ProviderNamespace("proxmox"), omni::ProviderMachineType("proxmox"), {}).ok());
    ASSERT_TRUE(cache_->Watch(ns, std::string(omni::kTypeConfigPatchRequest), ours).ok());
    ASSERT_TRUE(cache_->WaitForSync(std::chrono::seconds{10}));
    records_ = std::make_unique<RequestRecords>("proxmox", world_->state(), *cache_);
    ASSERT_TRUE(standin_->ApplyMachineClass("worker", kWorkerData).ok());
  }

  void TearDown() override {
    if (cache_) cache_->Stop();  // before the world its watches read from
    StepWorld::TearDown();
  }

  StepRunner MakeRunner(StepList provision, StepList teardown = {}) {
    return StepRunner(RunnerOptions{.provider_id = "proxmox", .retry = {}}, *records_, std::move(provision),
                      std::move(teardown), *fleet_, counters_, clock_, world_->random());
  }

  // Polls `predicate` in real time (the cache follows Omni over the network) until it holds.
  static bool Eventually(const std::function<bool()>& predicate) {
    return omni_proxmox::testing::Eventually(predicate, std::chrono::seconds{10}, milliseconds{5});
  }

  // Scales the set to `count` and returns the request IDs once the cache holds them.
  std::vector<std::string> Scale(int count) {
    EXPECT_TRUE(standin_->ScaleMachineRequestSet("workers", "worker", count).ok());
    std::vector<std::string> ids;
    EXPECT_TRUE(Eventually([&] {
      auto list =
          cache_->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), {}});
      ids.clear();
      if (!list.ok()) return false;
      for (const auto& r : *list) {
        if (!r.tearing_down()) ids.push_back(r.metadata.id);
      }
      return static_cast<int>(ids.size()) == count;
    }));
    return ids;
  }

  // Reconciles `id` until the runner is done with it, advancing simulated time by each requeue.
  // Omni's own controllers (its cleanup finalizer on a status being torn down) and the watch that
  // reports them run in real time, so each pass also gives them a moment.
  Outcome Drive(StepRunner& runner, const std::string& id, int max_passes = 400) {
    Outcome outcome;
    for (int pass = 0; pass < max_passes; ++pass) {
      outcome = runner.Reconcile(id);
      if (outcome.kind == Outcome::Kind::kDone) return outcome;
      clock_.Advance(outcome.kind == Outcome::Kind::kError ? milliseconds{1000}
                                                           : std::max(outcome.after, milliseconds{1}));
      std::this_thread::sleep_for(milliseconds{2});
    }
    return outcome;
  }

  std::optional<Stage> StatusOf(const std::string& id) {
    auto status = records_->Status(id);
    if (!status.ok() || !*status) return std::nullopt;
    Stage spec;
    if (!omni::DecodeSpec(**status, spec).ok()) return std::nullopt;
    return spec;
  }

  std::unique_ptr<omni::ResourceCache> cache_;
  std::unique_ptr<RequestRecords> records_;
};

TEST_F(StepRunnerTest, TheStepsProvisionARequestAndTearItDownCompletely) {
  StepRunner runner = MakeRunner(ProvisionSteps(*services_), TeardownSteps(*services_));
  const std::string id = Scale(1).at(0);
  ASSERT_EQ(Drive(runner, id).kind, Outcome::Kind::kDone);
  auto status = StatusOf(id);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->stage(), Stage::PROVISIONED);
  EXPECT_EQ(status->status(), "Provision Complete");
  EXPECT_FALSE(status->id().empty()) << "the machine UUID Omni links the machine by";
  auto request = records_->Request(id);
  ASSERT_TRUE(request.ok() && *request);
  EXPECT_TRUE((*request)->HasFinalizer("proxmox.ProvisionController"));
  auto state = records_->State(id);
  ASSERT_TRUE(state.ok() && *state);
  // The step of the last state write: the create intent. Nothing after it had to survive a crash
  // (the create and start tasks are found again in Proxmox), so nothing after it was written.
  EXPECT_EQ((*state)->metadata.annotations.at(std::string(omni::kAnnotationStep)), "createVm");
  ASSERT_EQ(Vms().size(), 1u);
  EXPECT_EQ(Vms()[0]["status"], "running");
  EXPECT_EQ(counters_.provisioned.load(), 1);

  // Provisioned: later passes read the cache and stop.
  const auto calls = sim_->StateForTest()["request_count"].dump();
  EXPECT_EQ(runner.Reconcile(id).kind, Outcome::Kind::kDone);
  EXPECT_EQ(sim_->StateForTest()["request_count"].dump(), calls);

  Scale(0);
  ASSERT_TRUE(Eventually([&] {
    auto r = records_->Request(id);
    return r.ok() && *r && (*r)->tearing_down();
  }));
  ASSERT_EQ(Drive(runner, id).kind, Outcome::Kind::kDone);
  EXPECT_TRUE(Vms().empty());
  ASSERT_TRUE(Eventually([&] {
    auto r = records_->Request(id);
    auto s = records_->State(id);
    return r.ok() && !*r && s.ok() && !*s;
  })) << "Omni destroys the request once our finalizer is gone; our state is gone before that";
  EXPECT_EQ(counters_.deprovisioned.load(), 1);
}

TEST_F(StepRunnerTest, EachWaitReportsTheStepAndSavesWhatTheStepChangedFirst) {
  StepList provision;
  auto* first = new ScriptedStep("first");
  auto* second = new ScriptedStep("second");
  provision.emplace_back(first);
  provision.emplace_back(second);
  second->next = StepResult::Wait(milliseconds{1500});
  StepRunner runner = MakeRunner(std::move(provision));
  const std::string id = Scale(1).at(0);
  const Outcome outcome = runner.Reconcile(id);
  ASSERT_EQ(outcome.kind, Outcome::Kind::kRequeueAfter);
  EXPECT_EQ(outcome.after, milliseconds{1500});
  auto status = StatusOf(id);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->stage(), Stage::PROVISIONING);
  EXPECT_EQ(status->status(), "Running Step: \"second\" (2/2)");
  auto state = records_->State(id);
  ASSERT_TRUE(state.ok() && *state);
  MachineSpec machine;
  ASSERT_TRUE(omni::DecodeSpec(**state, machine).ok());
  EXPECT_EQ(machine.node(), "scripted");
  EXPECT_EQ((*state)->metadata.annotations.at(std::string(omni::kAnnotationStep)), "second");
}

TEST_F(StepRunnerTest, TransientErrorsBackOffByTheRetryPolicyAndShowInTheStatus) {
  StepList provision;
  auto* step = new ScriptedStep("flaky");
  provision.emplace_back(step);
  step->next = StepResult::Retry("Proxmox said 503");
  StepRunner runner = MakeRunner(std::move(provision));
  const std::string id = Scale(1).at(0);
  const RetryPolicy policy;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const Outcome outcome = runner.Reconcile(id);
    ASSERT_EQ(outcome.kind, Outcome::Kind::kRequeueAfter);
    const auto ceiling = std::min(policy.transient_base * (1 << attempt), policy.transient_max);
    EXPECT_GE(outcome.after, ceiling / 2) << "attempt " << attempt;
    EXPECT_LE(outcome.after, ceiling) << "attempt " << attempt;
  }
  auto status = StatusOf(id);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->stage(), Stage::PROVISIONING);
  EXPECT_EQ(status->error(), "Proxmox said 503");
  // Progress resets the schedule.
  step->next = StepResult::Wait(milliseconds{10});
  ASSERT_EQ(runner.Reconcile(id).kind, Outcome::Kind::kRequeueAfter);
  step->next = StepResult::Retry("again");
  const Outcome after_progress = runner.Reconcile(id);
  EXPECT_LE(after_progress.after, policy.transient_base);
}

TEST_F(StepRunnerTest, AFailureSaysWhichStepFailedAndIsRetriedSlowly) {
  StepList provision;
  provision.emplace_back(new ScriptedStep("place"));
  auto* step = new ScriptedStep("createVm");
  provision.emplace_back(step);
  step->next = StepResult::Failed("no free VMID in 100-101; widen vmid_range or free VMIDs");
  StepRunner runner = MakeRunner(std::move(provision));
  const std::string id = Scale(1).at(0);
  const Outcome outcome = runner.Reconcile(id);
  ASSERT_EQ(outcome.kind, Outcome::Kind::kRequeueAfter);
  EXPECT_GE(outcome.after, RetryPolicy{}.failed_base / 2);
  auto status = StatusOf(id);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->stage(), Stage::FAILED);
  EXPECT_EQ(status->status(), "Failed in step \"createVm\" (2/2)");
  EXPECT_THAT(status->error(), HasSubstr("no free VMID"));
  EXPECT_EQ(counters_.failures.load(), 1);
}

TEST_F(StepRunnerTest, ATerminalFailureIsNotRetriedUntilTheRequestChanges) {
  StepList provision;
  auto* step = new ScriptedStep("schematic");
  provision.emplace_back(step);
  step->next = StepResult::Terminal("schematic: unknown extension 'siderolabs/nope'");
  StepRunner runner = MakeRunner(std::move(provision));
  const std::string id = Scale(1).at(0);
  EXPECT_EQ(runner.Reconcile(id).kind, Outcome::Kind::kDone);
  EXPECT_EQ(step->runs, 1);
  EXPECT_EQ(StatusOf(id)->stage(), Stage::FAILED);
  // A resync queues it again: nothing runs, nothing is written.
  EXPECT_EQ(runner.Reconcile(id).kind, Outcome::Kind::kDone);
  EXPECT_EQ(step->runs, 1);
}

TEST_F(StepRunnerTest, InvalidProviderdataFailsOnceWithTheFieldsAndCreatesNothing) {
  // Omni refuses such a class against the published schema; a request admitted under an older
  // schema still reaches the provider.
  EXPECT_FALSE(standin_->ApplyMachineClass("worker", "cores: 0\nmemory: 2048\ndisk_size: 10\n").ok());
  ASSERT_TRUE(standin_->PlantMachineRequest("old-1", "cores: 0\nmemory: 2048\ndisk_size: 10\n").ok());
  StepRunner runner = MakeRunner(ProvisionSteps(*services_), TeardownSteps(*services_));
  const std::string id = "old-1";
  ASSERT_TRUE(Eventually([&] {
    auto got = cache_->Get({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), id});
    return got.ok() && got->has_value();
  }));
  EXPECT_EQ(runner.Reconcile(id).kind, Outcome::Kind::kDone);
  auto status = StatusOf(id);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->stage(), Stage::FAILED);
  EXPECT_EQ(status->status(), "Invalid providerdata");
  EXPECT_THAT(status->error(), HasSubstr("cores"));
  EXPECT_THAT(status->error(), HasSubstr("storage_selector"));
  EXPECT_EQ(runner.Reconcile(id).kind, Outcome::Kind::kDone);
  EXPECT_TRUE(Vms().empty());
  EXPECT_EQ(sim_->RequestCount("GET /nodes"), 0u);
}

}  // namespace
}  // namespace omni_proxmox::provider::steptest
