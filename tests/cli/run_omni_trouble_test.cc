// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox run` as a separate process when Omni refuses its key, restarts, or is named by an
// OMNI_DOMAIN with a scheme (issue 15 items 1, 2, 7 and 8): what the operator sees in the exit
// code, the log, /readyz and /metrics. The stand-in and the Proxmox simulator run in the test.

#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/omni/access.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/subprocess.h"
#include "util/log.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::ChildProcess;
using omni_proxmox::testing::RunProcess;
using ::testing::HasSubstr;
using Seconds = std::chrono::seconds;

constexpr char kWorkers[] = "cores: 2\nmemory: 4096\ndisk_size: 20\nstorage_selector: type == \"lvmthin\"\n";

// The JSON log lines of a run at `level` ("error", "warning", ...).
std::vector<nlohmann::json> LinesAt(const std::string& log, const std::string& level) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("{")) continue;  // gRPC's own stderr lines
    auto entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (entry.is_object() && entry.value("level", "") == level) out.push_back(entry);
  }
  return out;
}

bool Eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  return predicate();
}

class RunOmniTroubleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-run-trouble-{}-{}", getpid(), counter_++);
    std::filesystem::create_directories(dir_);
    sim::pve::SimulatorOptions options;
    options.time_scale = 25;
    options.on_vm_started = [this](const sim::pve::VmBootInfo& boot) {
      std::lock_guard lock(standin_mutex_);
      if (standin_ != nullptr) (void)standin_->MachineJoined(boot.user_data, boot.smbios_uuid);
    };
    auto sim = sim::pve::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    Write("config.yaml", fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: secret\n",
                                     sim_->base_url(), sim_->default_token_id()));
    Write("secret", sim_->default_token_secret());
  }

  void TearDown() override {
    SetStandIn(nullptr);
    std::filesystem::remove_all(dir_);
  }

  void SetStandIn(std::unique_ptr<sim::omni::StandIn> standin) {
    std::unique_ptr<sim::omni::StandIn> old;
    {
      std::lock_guard lock(standin_mutex_);
      old = std::move(standin_);
      standin_ = std::move(standin);
    }
  }
  sim::omni::StandIn& standin() { return *standin_; }

  void Write(const std::string& name, const std::string& content) { std::ofstream(dir_ / name) << content; }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // `run` with JSON logs, the status server on a free port, and `extra` flags.
  std::unique_ptr<ChildProcess> StartRun(const std::string& endpoint, std::vector<std::string> extra = {},
                                         std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {OP_BINARY,  "--log-format",  "json",
                                     "run",      "--config-file", Path("config.yaml"),
                                     "--listen", "127.0.0.1:0",   "--leader-elect=false"};
    if (!endpoint.empty()) argv.insert(argv.end(), {"--omni-api-endpoint", endpoint});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(argv, env, Path("provider.log"));
  }

  // The status server's port, from the start-up line.
  static int StatusPort(const ChildProcess& provider) {
    int port = 0;
    Eventually(
        [&] {
          std::smatch m;
          const std::string log = provider.Log();
          if (!std::regex_search(log, m, std::regex(R"(/metrics on 127\.0\.0\.1:([0-9]+))"))) return false;
          port = std::stoi(m[1]);
          return true;
        },
        std::chrono::seconds{30});
    return port;
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  std::mutex standin_mutex_;
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
};

// Item 1 and 8: the key of another Omni (a second stand-in with another seed issued it). Both
// Omnis say only "invalid signature"; the stand-in logs which key and which check, the provider
// exits 1 at once with one error line naming the key, the endpoint and the fix.
TEST_F(RunOmniTroubleTest, KeyOfAnotherOmniEndsTheProcessWithOneErrorLine) {
  std::ostringstream standin_log;
  ASSERT_TRUE(util::InitLogging({.format = util::LogFormat::kConsole, .level = "info", .output = &standin_log}).ok());
  auto ours = sim::omni::StandIn::Start({.provider_id = "proxmox", .seed = 1});
  auto other = sim::omni::StandIn::Start({.provider_id = "proxmox", .seed = 2});
  ASSERT_TRUE(ours.ok() && other.ok());
  Write("key", (*other)->provider_key());
  const auto started = std::chrono::steady_clock::now();
  auto provider = StartRun((*ours)->grpc_endpoint(), {"--omni-service-account-key-file", Path("key")});
  const int exit_code = provider->Wait(Seconds{30});
  const auto took = std::chrono::steady_clock::now() - started;
  const std::string log = provider->Log();
  ASSERT_EQ(exit_code, 1) << log;
  EXPECT_LT(took, Seconds{30});
  const auto errors = LinesAt(log, "error");
  ASSERT_EQ(errors.size(), 1u) << log;
  const std::string line = errors[0]["msg"];
  EXPECT_THAT(line, HasSubstr("Omni at " + (*ours)->grpc_endpoint()));
  EXPECT_THAT(line, HasSubstr("'infra-provider:proxmox'"));
  EXPECT_THAT(line, HasSubstr("proxmox@infra-provider.serviceaccount.omni.sidero.dev"));
  EXPECT_THAT(line, HasSubstr("omnictl infraprovider create proxmox"));
  EXPECT_THAT(line, HasSubstr("belongs to another Omni"));
  EXPECT_EQ(log.find((*other)->provider_key()), std::string::npos);  // the key itself never
  ours->reset();                                                     // nothing writes to standin_log from here on
  other->reset();
  (void)util::InitLogging({});
  // The stand-in that refused it says why, at warning level, naming the key.
  EXPECT_THAT(standin_log.str(), HasSubstr("warn"));
  EXPECT_THAT(standin_log.str(), HasSubstr("refused as 'invalid signature': key "));
  EXPECT_THAT(standin_log.str(), HasSubstr("unknown key fingerprint"));
}

// Item 1: the service account destroyed while running. Omni keeps the open watches alive, so the
// watch still delivers a new request; every call after it is refused.
TEST_F(RunOmniTroubleTest, DestroyedServiceAccountWhileRunningIsLoud) {
  auto started = sim::omni::StandIn::Start({.provider_id = "proxmox"});
  ASSERT_TRUE(started.ok()) << started.status();
  SetStandIn(std::move(*started));
  ASSERT_TRUE(standin().ApplyMachineClass("workers", kWorkers).ok());
  Write("key", standin().provider_key());
  auto provider = StartRun(standin().grpc_endpoint(),
                           {"--omni-service-account-key-file", Path("key"), "--heartbeat-interval", "1s"});
  const int port = StatusPort(*provider);
  ASSERT_NE(port, 0) << provider->Log();
  httplib::Client status("127.0.0.1", port);
  status.set_read_timeout(10, 0);
  ASSERT_TRUE(Eventually(
      [&] {
        auto ready = status.Get("/readyz");
        return ready && ready->status == 200;
      },
      Seconds{60}))
      << provider->Log();

  ASSERT_TRUE(standin().DestroyServiceAccount("infra-provider:proxmox").ok());
  std::string readyz;
  EXPECT_TRUE(Eventually(
      [&] {
        auto ready = status.Get("/readyz");
        if (!ready || ready->status != 503) return false;
        readyz = ready->body;
        return true;
      },
      Seconds{15}))
      << provider->Log();
  EXPECT_THAT(readyz, HasSubstr("invalid signature"));
  EXPECT_THAT(readyz, HasSubstr("does not accept the key 'infra-provider:proxmox'"));
  std::string metrics;
  EXPECT_TRUE(Eventually(
      [&] {
        auto reply = status.Get("/metrics");
        if (!reply || reply->status != 200) return false;
        metrics = reply->body;
        std::smatch m;
        return std::regex_search(metrics, m, std::regex(R"(\nomni_proxmox_omni_auth_failures_total ([0-9]+))")) &&
               std::stoi(m[1]) >= 2;
      },
      Seconds{15}))
      << metrics;

  // A new request arrives over the watch that is still open; reading it is refused, loudly.
  ASSERT_TRUE(standin().ScaleMachineRequestSet("workers", "workers", 1).ok());
  EXPECT_TRUE(Eventually(
      [&] {
        for (const auto& line : LinesAt(provider->Log(), "error")) {
          const std::string msg = line["msg"];
          if (msg.starts_with("request workers-") && msg.find("invalid signature") != std::string::npos) return true;
        }
        return false;
      },
      Seconds{30}))
      << provider->Log();
  int heartbeat_errors = 0;
  for (const auto& line : LinesAt(provider->Log(), "error")) {
    const std::string msg = line["msg"];
    if (msg.starts_with("heartbeat to Omni failed: ") && msg.find("invalid signature") != std::string::npos) {
      ++heartbeat_errors;
    }
  }
  EXPECT_GE(heartbeat_errors, 2) << provider->Log();  // every failed heartbeat, not just the first
  // It keeps running: the operator may give it a new key and restart it when ready.
  provider->Signal(SIGTERM);
  EXPECT_EQ(provider->Wait(Seconds{30}), 0) << provider->Log();
}

// Item 2: Omni restarts (a new stand-in process on the same port and state directory, so keys
// and resources persist). A new MachineRequest is picked up within 15 s of Omni answering again,
// though the watches failed for longer than the backoff cap.
TEST_F(RunOmniTroubleTest, NewWorkAfterAnOmniRestartIsPickedUpWithin15s) {
  const std::string state_dir = Path("omni-state");
  auto first = sim::omni::StandIn::Start({.provider_id = "proxmox", .state_dir = state_dir, .seed = 7});
  ASSERT_TRUE(first.ok()) << first.status();
  const int grpc_port = (*first)->grpc_port();
  SetStandIn(std::move(*first));
  ASSERT_TRUE(standin().ApplyMachineClass("workers", kWorkers).ok());
  Write("key", standin().provider_key());
  const std::string endpoint = standin().grpc_endpoint();
  auto provider = StartRun(endpoint, {"--omni-service-account-key-file", Path("key"), "--heartbeat-interval", "2s"});
  ASSERT_TRUE(standin().WaitFor([&] { return standin().ProviderConnected("proxmox"); }, Seconds{30}))
      << provider->Log();
  ASSERT_TRUE(standin().PlantMachineRequest("before", kWorkers).ok());
  ASSERT_TRUE(standin().WaitFor(
      [&] {
        auto r = standin().state().Get(sim::omni::kInfraProviderNs, sim::omni::kMachineRequestType, "before");
        return r.ok() && !r->finalizers.empty();
      },
      Seconds{30}))
      << provider->Log();

  SetStandIn(nullptr);                       // Omni goes away; its state is saved
  std::this_thread::sleep_for(Seconds{14});  // past the cap: an uncapped backoff would be 8-16 s by now
  auto second =
      sim::omni::StandIn::Start({.provider_id = "proxmox", .grpc_port = grpc_port, .state_dir = state_dir, .seed = 7});
  ASSERT_TRUE(second.ok()) << second.status();
  SetStandIn(std::move(*second));
  const auto answering = std::chrono::steady_clock::now();
  ASSERT_TRUE(standin().PlantMachineRequest("after", kWorkers).ok());
  ASSERT_TRUE(standin().WaitFor(
      [&] {
        auto r = standin().state().Get(sim::omni::kInfraProviderNs, sim::omni::kMachineRequestType, "after");
        return r.ok() && !r->finalizers.empty();
      },
      Seconds{20}))
      << provider->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - answering, Seconds{15}) << provider->Log();
  // No watch ever planned to wait longer than the cap.
  const std::string log = provider->Log();
  const std::regex reconnect(R"(reconnecting in ([0-9]+) ms)");
  int reconnects = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), reconnect); it != std::sregex_iterator(); ++it) {
    ++reconnects;
    EXPECT_LE(std::stoi((*it)[1]), 10'000) << it->str();
  }
  EXPECT_GT(reconnects, 0) << log;
  provider->Signal(SIGTERM);
  EXPECT_EQ(provider->Wait(Seconds{30}), 0) << provider->Log();
}

// Item 7: OMNI_DOMAIN with https:// is taken as meant; another scheme is a usage error.
TEST_F(RunOmniTroubleTest, OmniDomainWithHttpsIsAcceptedAndOtherSchemesRefused) {
  auto started = sim::omni::StandIn::Start({.provider_id = "proxmox", .tls = true});
  ASSERT_TRUE(started.ok()) << started.status();
  SetStandIn(std::move(*started));
  const std::string host_port = fmt::format("127.0.0.1:{}", standin().grpc_port());
  Write("key", standin().provider_key());
  auto provider = StartRun("", {"--omni-service-account-key-file", Path("key"), "--insecure-skip-verify"},
                           {"OMNI_ENDPOINT=", "OMNI_DOMAIN=https://" + host_port});
  EXPECT_TRUE(standin().WaitFor([&] { return standin().ProviderConnected("proxmox"); }, Seconds{30}))
      << provider->Log();
  EXPECT_THAT(provider->Log(), HasSubstr("against https://" + host_port));
  provider->Signal(SIGTERM);
  EXPECT_EQ(provider->Wait(Seconds{30}), 0) << provider->Log();

  for (const std::string& domain : {"http://" + host_port, "grpc://" + host_port}) {
    auto refused = RunProcess(
        {OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-service-account-key-file", Path("key")}, "",
        {"OMNI_ENDPOINT=", "OMNI_DOMAIN=" + domain});
    EXPECT_EQ(refused.exit_code, 2) << domain << ": " << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("OMNI_DOMAIN '" + domain + "': a host name is expected"));
    EXPECT_THAT(refused.err, HasSubstr("OMNI_DOMAIN=" + host_port));
  }
  // The URL doubled by hand is refused too, not looked up as the host "https".
  auto doubled = RunProcess({OP_BINARY, "run", "--config-file", Path("config.yaml"), "--omni-service-account-key-file",
                             Path("key"), "--omni-api-endpoint", "https://https://" + host_port + "/"});
  EXPECT_EQ(doubled.exit_code, 2) << doubled.err;
  EXPECT_THAT(doubled.err, HasSubstr("a second scheme follows the first"));
}

}  // namespace
}  // namespace omni_proxmox::cli
