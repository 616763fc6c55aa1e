// SPDX-License-Identifier: Apache-2.0
#include "support/world_test.h"

#include <unistd.h>

#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "util/clock.h"

namespace omni_proxmox::testing {

bool Eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(every);
  }
  return true;
}

provider::ProviderOptions QuickProviderOptions(const cli::World& world) {
  provider::ProviderOptions options = world.ProviderDefaults();
  options.info.description = "omni-proxmox under test";
  options.info.version = "test";
  options.fleet.task_poll = std::chrono::milliseconds{100};
  options.steps.shutdown_timeout = std::chrono::seconds{5};
  options.heartbeat_interval = std::chrono::milliseconds{1000};
  return options;
}

cli::WorldOptions WorldTest::MakeWorldOptions() const { return {.time_scale = 25}; }

void WorldTest::SetUp() {
  // A directory of this test case's own: ctest runs test cases as parallel processes.
  std::string pattern = (std::filesystem::temp_directory_path() / "op-world-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr) << "mkdtemp " << pattern;
  dir_ = pattern;
  auto world = cli::World::Start(MakeWorldOptions());
  ASSERT_TRUE(world.ok()) << world.status();
  world_ = std::move(*world);
  sim_ = &world_->sim();
  if (world_->omni_started()) standin_ = &world_->standin();
}

void WorldTest::TearDown() {
  world_.reset();
  sim_ = nullptr;
  standin_ = nullptr;
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

const cli::CommandFiles& WorldTest::WriteCommandFiles() {
  auto files = world_->WriteCommandFiles(dir_);
  EXPECT_TRUE(files.ok()) << files.status();
  if (files.ok()) files_ = *files;
  return files_;
}

std::string WorldTest::Path(const std::string& name) const { return (dir_ / name).string(); }

void WorldTest::Write(const std::string& name, const std::string& content) const {
  std::ofstream(dir_ / name) << content;
}

nlohmann::json WorldTest::Vms() const { return sim_->StateForTest()["vms"]; }

bool WorldTest::HasVm(int vmid) const {
  const nlohmann::json vms = Vms();  // the loop below must not outlive it
  for (const auto& vm : vms) {
    if (vm["vmid"] == vmid) return true;
  }
  return false;
}

bool WorldTest::HasVolume(const std::string& volid) const {
  const nlohmann::json state = sim_->StateForTest();
  for (const auto& volume : state["volumes"]) {
    if (volume.value("volid", "") == volid) return true;
  }
  return false;
}

void WorldTest::CreateVm(const std::string& node, int vmid, const std::string& name, const std::string& tags) {
  pve::FormFields fields = {{"name", name}, {"memory", "1024"}, {"scsi0", "local-lvm:2"}};
  if (!tags.empty()) fields.emplace_back("tags", tags);
  auto upid = world_->pve().CreateVm(node, vmid, fields);
  ASSERT_TRUE(upid.ok()) << upid.status();
  ASSERT_TRUE(world_->pve().WaitTask(*upid, util::RealClock().Monotonic() + std::chrono::seconds{60}).ok());
}

}  // namespace omni_proxmox::testing
