// SPDX-License-Identifier: Apache-2.0
#pragma once

// A Proxmox simulator and an Omni stand-in (support/world_test.h) for running the provider and the
// operator commands (`run`, `gc`, `status`) as separate processes, with the config.yaml, token
// secret and provider key they read in a per-test directory, plus helpers to plant VMs and ISOs
// the way the provider would.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "omni/join_config.h"
#include "provider/ownership/iso_names.h"
#include "provider/ownership/markers.h"
#include "pve/client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/subprocess.h"
#include "support/world_test.h"
#include "util/clock.h"

namespace omni_proxmox::cli {

class ProviderWorld : public testing::WorldTest {
 protected:
  void SetUp() override {
    WorldTest::SetUp();
    if (HasFatalFailure()) return;
    WriteCommandFiles();
    pve_ = &world_->pve();
  }

  // omni-proxmox [--format json] <command> <connection flags> <extra...>
  testing::ProcessResult Run(const std::string& command, std::vector<std::string> extra, bool json = false) {
    std::vector<std::string> argv = {OP_BINARY};
    if (json) argv.insert(argv.end(), {"--format", "json"});
    argv.push_back(command);
    for (const auto& flag : files().ConnectionFlags()) argv.push_back(flag);
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::RunProcess(argv, "", {}, std::chrono::seconds{120});
  }

  // The markers our provider puts on the VM of `request` of this stand-in's Omni
  // ("omni-proxmox;omni-provider.<p>;omni-instance.<i>;omni-request.<r>").
  std::string Markers(const std::string& provider, const std::string& request) const {
    return fmt::format("{};{};{};{}", provider::kManagedTag, provider::ProviderTag(provider),
                       provider::InstanceTag(Instance(provider)), provider::RequestTag(request));
  }
  // What the markers of a VM made before the instance marker existed look like.
  static std::string UnscopedMarkers(const std::string& provider, const std::string& request) {
    return fmt::format("{};{};{}", provider::kManagedTag, provider::ProviderTag(provider),
                       provider::RequestTag(request));
  }
  // The Omni instance of `provider` in this stand-in (omni::InstanceIdOf).
  std::string Instance(const std::string& provider = "proxmox") const {
    return omni::InstanceIdOfJoinToken(standin_->JoinToken(provider));
  }
  // Our ISO name for `file` in this stand-in's scope.
  std::string Scoped(const std::string& file, const std::string& provider = "proxmox") const {
    return provider::ScopedIsoName(file, {.provider_id = provider, .instance = Instance(provider)});
  }
  void UploadIso(const std::string& node, const std::string& file) {
    auto upid = pve_->UploadIso(node, "local", file, std::string(2048, 'x'));
    ASSERT_TRUE(upid.ok()) << upid.status();
    ASSERT_TRUE(pve_->WaitTask(*upid, util::RealClock().Monotonic() + std::chrono::seconds{60}).ok());
  }

  // Polls `predicate` (it may run a command) until it holds or `timeout` passes.
  static bool Eventually(const std::function<bool()>& predicate,
                         std::chrono::seconds timeout = std::chrono::seconds{90}) {
    return testing::Eventually(predicate, timeout, std::chrono::milliseconds{250});
  }

  pve::Client* pve_ = nullptr;  // the world's client of the simulator
};

}  // namespace omni_proxmox::cli
