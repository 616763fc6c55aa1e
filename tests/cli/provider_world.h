// SPDX-License-Identifier: Apache-2.0
#pragma once

// A Proxmox simulator and an Omni stand-in for running operator commands (`gc`, `status`) as
// separate processes, with the config.yaml, token secret and provider key they read in a
// per-test directory, plus helpers to plant VMs and ISOs the way the provider would.

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "omni/join_config.h"
#include "provider/ownership/iso_names.h"
#include "provider/ownership/markers.h"
#include "pve/client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/sim_pve_client.h"
#include "support/subprocess.h"

namespace omni_proxmox::cli {

class ProviderWorld : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-world-{}-{}", getpid(), counter_++);
    std::filesystem::create_directories(dir_);
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox"});
    ASSERT_TRUE(standin.ok()) << standin.status();
    standin_ = std::move(*standin);
    sim::pve::SimulatorOptions options;
    options.time_scale = 25;
    options.on_vm_started = [this](const sim::pve::VmBootInfo& boot) {
      (void)standin_->MachineJoined(boot.user_data, boot.smbios_uuid);
    };
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    const std::string config = fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n",
                                           sim_->base_url(), sim_->default_token_id(), Path("secret"));
    for (const auto& [name, content] : {std::pair<std::string, std::string>{"config.yaml", config},
                                        {"secret", sim_->default_token_secret()},
                                        {"key", standin_->provider_key()}}) {
      std::ofstream(dir_ / name) << content;
    }
    auto pve = testing::SimPveClient(*sim_);
    ASSERT_TRUE(pve.ok()) << pve.status();
    pve_ = std::move(*pve);
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // omni-proxmox [--format json] <command> <connection flags> <extra...>
  testing::ProcessResult Run(const std::string& command, std::vector<std::string> extra, bool json = false) {
    std::vector<std::string> argv = {OP_BINARY};
    if (json) argv.insert(argv.end(), {"--format", "json"});
    argv.insert(argv.end(), {command, "--config-file", Path("config.yaml"), "--omni-api-endpoint",
                             standin_->grpc_endpoint(), "--omni-service-account-key-file", Path("key")});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::RunProcess(argv, "", {}, std::chrono::seconds{120});
  }

  // A VM on `node` with `tags` (empty: none), created and waited for.
  void CreateVm(const std::string& node, int vmid, const std::string& name, const std::string& tags) {
    pve::FormFields fields = {{"name", name}, {"memory", "1024"}, {"scsi0", "local-lvm:2"}};
    if (!tags.empty()) fields.emplace_back("tags", tags);
    auto upid = pve_->CreateVm(node, vmid, fields);
    ASSERT_TRUE(upid.ok()) << upid.status();
    ASSERT_TRUE(pve_->WaitTask(*upid, util::RealClock().Monotonic() + std::chrono::seconds{60}).ok());
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
  bool HasVm(int vmid) {
    const nlohmann::json state = sim_->StateForTest();
    for (const auto& vm : state["vms"]) {
      if (vm["vmid"] == vmid) return true;
    }
    return false;
  }
  bool HasVolume(const std::string& volid) {
    const nlohmann::json state = sim_->StateForTest();
    for (const auto& v : state["volumes"]) {
      if (v.value("volid", "") == volid) return true;
    }
    return false;
  }

  // Polls `predicate` (it may run a command) until it holds or `timeout` passes.
  static bool Eventually(const std::function<bool()>& predicate,
                         std::chrono::seconds timeout = std::chrono::seconds{90}) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!predicate()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds{250});
    }
    return true;
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::unique_ptr<pve::Client> pve_;
};

}  // namespace omni_proxmox::cli
