// SPDX-License-Identifier: Apache-2.0
// The leader takeover benchmark of issue 16: two `omni-proxmox run` replicas (separate processes,
// the real binary) with the same key against the Proxmox simulator and the Omni stand-in hosted
// here. Each round finds the leader from the stand-in's lease history, disturbs it, scales the
// MachineRequestSet up by one so there is work, and measures on the host's monotonic clock (the
// clock of both simulators' journals):
//
//   lease:     from the signal to the stand-in applying the lease version that names the standby;
//   reconcile: from the signal to the first mutation the new leader sends for a MachineRequest
//              (its status, its state resource, or any Proxmox call), taken from the journals.
//
// Scenarios (each --rounds times; the disturbed replica is started again as the next standby):
//   kill-remote: SIGKILL, with --leader-local-takeover=false: the standby waits for the lease to
//                expire, as on two hosts (bounded by the lease duration);
//   kill-local:  SIGKILL, both replicas in one pid namespace: the standby sees the holder's process
//                is gone and takes over at once;
//   sigterm:     SIGTERM: the leader releases the lease on its way out.
// Output: a table per scenario (min, median, max), then one JSON line. Exit code non-zero only
// when the benchmark could not run.
//
//   build/bench/takeover_bench [--rounds 3] [--lease-duration 15s] [--renew-deadline 10s]
//                              [--retry-period 2s] [--binary PATH] [--keep-logs]

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/replica_process.h"

namespace {

namespace sim = omni_proxmox::sim;
using omni_proxmox::testing::ReplicaProcess;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSet[] = "workers";
constexpr char kLeaseType[] = "Leases.proxmox.infraprovider.sidero.dev";
constexpr char kStatusType[] = "MachineRequestStatuses.omni.sidero.dev";
constexpr char kStateType[] = "Machine.proxmox.infraprovider.sidero.dev";

constexpr const char* kScenario = R"yaml(
cluster:
  name: takeover
  vmid_range: [100, 100000]
nodes:
  - {name: pve1, cpus: 64, memory_gib: 256, bridges: [vmbr0]}
  - {name: pve2, cpus: 64, memory_gib: 256, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup], size_gib: 200}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 4000}
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
tasks:
  durations: {qmcreate: 0.3, qmstart: 0.2, qmstop: 0.1, qmshutdown: 0.1, qmconfig: 0.05, download: 0.5, imgcopy: 0.1, qmdestroy: 0.2, imgdel: 0.1}
)yaml";
constexpr const char* kWorkerClass =
    "cores: 1\nmemory: 1024\ndisk_size: 5\nnetwork_bridge: vmbr0\nstorage_selector: type == \"lvmthin\"\n";

struct Options {
  int rounds = 3;
  std::string lease_duration = "15s";
  std::string renew_deadline = "10s";
  std::string retry_period = "2s";
  std::string binary = OP_BINARY;
  bool keep_logs = false;
};

struct Round {
  double lease_s = 0;
  double reconcile_s = 0;
};

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

class Bench {
 public:
  explicit Bench(Options options) : options_(std::move(options)) {}

  ~Bench() {
    replicas_.clear();
    sim_.reset();
    standin_.reset();
    if (!options_.keep_logs && !dir_.empty()) std::filesystem::remove_all(dir_);
  }

  bool SetUp() {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-takeover-bench-{}", getpid());
    std::filesystem::create_directories(dir_);
    auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox"});
    if (!standin.ok()) return Fail(fmt::format("stand-in: {}", standin.status().ToString()));
    standin_ = std::move(*standin);
    sim::pve::SimulatorOptions sim_options;
    sim_options.scenario_yaml = kScenario;
    sim_options.on_vm_started = [this](const sim::pve::VmBootInfo& boot) {
      (void)standin_->MachineJoined(boot.user_data, boot.smbios_uuid);
    };
    auto simulator = sim::pve::Simulator::Start(sim_options);
    if (!simulator.ok()) return Fail(fmt::format("simulator: {}", simulator.status().ToString()));
    sim_ = std::move(*simulator);
    Write("config.yaml", fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n",
                                     sim_->base_url(), sim_->default_token_id(), (dir_ / "secret").string()));
    Write("secret", sim_->default_token_secret());
    Write("key", standin_->provider_key());
    if (auto s = standin_->ApplyMachineClass(kSet, kWorkerClass); !s.ok()) return Fail(s.ToString());
    return true;
  }

  // One scenario, `rounds` times; false when it could not be measured.
  bool Run(const std::string& scenario, std::vector<Round>& rounds) {
    const bool local = scenario == "kill-local";
    replicas_.clear();
    replicas_.push_back(Start(local));
    replicas_.push_back(Start(local));
    for (int round = 0; round < options_.rounds; ++round) {
      const auto leader_slot = WaitForLeader();
      if (!leader_slot) return Fail(fmt::format("{}: no leader within 60 s", scenario));
      ReplicaProcess& leader = *replicas_[*leader_slot];
      ReplicaProcess& standby = *replicas_[1 - *leader_slot];
      // The standby follows Omni (its /readyz says so) before the leader goes.
      if (!Eventually([&] { return standby.Get("/readyz").body.starts_with("standby"); }, seconds{30})) {
        return Fail(fmt::format("{}: the standby never became ready", scenario));
      }
      const auto before = SteadyClock::now();
      SteadyClock::time_point signalled;
      if (scenario == "sigterm") {
        signalled = SteadyClock::now();
        if (leader.Terminate(seconds{60}) != 0) return Fail(fmt::format("{}: the leader did not exit 0", scenario));
      } else {
        signalled = SteadyClock::now();
        (void)leader.Kill();
      }
      ++machines_;
      if (auto s = standin_->ScaleMachineRequestSet(kSet, kSet, machines_); !s.ok()) return Fail(s.ToString());
      const auto lease = WaitForLeaseHolder(standby.identity(), before, seconds{120});
      const auto reconcile = WaitForFirstReconcile(standby.identity(), before, seconds{120});
      if (!lease || !reconcile) {
        return Fail(fmt::format("{}: the standby did not take over within 120 s:\n{}", scenario, standby.Log()));
      }
      rounds.push_back({.lease_s = Seconds(*lease - signalled), .reconcile_s = Seconds(*reconcile - signalled)});
      fmt::print(stderr, "{} round {}: lease {:.3f} s, first reconcile {:.3f} s\n", scenario, round + 1,
                 rounds.back().lease_s, rounds.back().reconcile_s);
      replicas_[*leader_slot] = Start(local);
    }
    return true;
  }

  const std::string& error() const { return error_; }

 private:
  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  void Write(const std::string& name, const std::string& content) { std::ofstream(dir_ / name) << content; }

  std::unique_ptr<ReplicaProcess> Start(bool local_takeover) {
    ++starts_;
    std::vector<std::string> argv{options_.binary,
                                  "run",
                                  "--config-file",
                                  (dir_ / "config.yaml").string(),
                                  "--omni-api-endpoint",
                                  standin_->grpc_endpoint(),
                                  "--omni-service-account-key-file",
                                  (dir_ / "key").string(),
                                  "--listen",
                                  "127.0.0.1:0",
                                  "--log-format",
                                  "json",
                                  "--leader-lease-duration",
                                  options_.lease_duration,
                                  "--leader-renew-deadline",
                                  options_.renew_deadline,
                                  "--leader-retry-period",
                                  options_.retry_period,
                                  fmt::format("--leader-local-takeover={}", local_takeover ? "true" : "false")};
    auto replica = std::make_unique<ReplicaProcess>(argv, (dir_ / fmt::format("replica-{}.log", starts_)).string());
    (void)replica->WaitStarted(seconds{30});
    return replica;
  }

  template <typename Condition>
  static bool Eventually(Condition condition, seconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      if (condition()) return true;
      std::this_thread::sleep_for(milliseconds{20});
    }
    return condition();
  }

  std::string Holder() const {
    const auto history = standin_->journal().LeaseHistory();
    for (auto it = history.rbegin(); it != history.rend(); ++it) {
      if (it->type == kLeaseType) return it->destroyed ? "" : it->holder;
    }
    return "";
  }

  std::optional<std::size_t> WaitForLeader() const {
    std::optional<std::size_t> slot;
    Eventually(
        [&] {
          const std::string holder = Holder();
          for (std::size_t i = 0; i < replicas_.size(); ++i) {
            if (!holder.empty() && replicas_[i]->identity() == holder &&
                replicas_[i]->Get("/readyz").body.starts_with("ok")) {
              slot = i;
            }
          }
          return slot.has_value();
        },
        seconds{60});
    return slot;
  }

  // When the stand-in applied the first lease version after `after` naming `identity`.
  std::optional<SteadyClock::time_point> WaitForLeaseHolder(const std::string& identity, SteadyClock::time_point after,
                                                            seconds timeout) const {
    std::optional<SteadyClock::time_point> at;
    Eventually(
        [&] {
          for (const auto& record : standin_->journal().LeaseHistory()) {
            if (record.type == kLeaseType && record.at >= after && !record.destroyed && record.holder == identity) {
              at = record.at;
              return true;
            }
          }
          return false;
        },
        timeout);
    return at;
  }

  // The first mutation `identity` sent after `after` that works on a MachineRequest.
  std::optional<SteadyClock::time_point> WaitForFirstReconcile(const std::string& identity,
                                                               SteadyClock::time_point after, seconds timeout) const {
    std::optional<SteadyClock::time_point> first;
    Eventually(
        [&] {
          for (const auto& m : standin_->journal().Mutations()) {
            if (m.replica == identity && m.at >= after && (m.type == kStatusType || m.type == kStateType)) {
              if (!first || m.at < *first) first = m.at;
              break;
            }
          }
          for (const auto& m : sim_->journal().Mutations()) {
            if (m.replica == identity && m.at >= after) {
              if (!first || m.at < *first) first = m.at;
              break;
            }
          }
          return first.has_value();
        },
        timeout);
    return first;
  }

  Options options_;
  std::filesystem::path dir_;
  std::unique_ptr<sim::omni::StandIn> standin_;
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::vector<std::unique_ptr<ReplicaProcess>> replicas_;
  int machines_ = 0;
  int starts_ = 0;
  std::string error_;
};

Json Summary(const std::vector<Round>& rounds, double Round::*field) {
  std::vector<double> values;
  for (const auto& r : rounds) values.push_back(r.*field);
  std::sort(values.begin(), values.end());
  if (values.empty()) return Json::object();
  return {{"min", values.front()}, {"median", values[values.size() / 2]}, {"max", values.back()}};
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Leader takeover time of two omni-proxmox run replicas (issue 16)"};
  app.add_option("--rounds", options.rounds, "Disturbances per scenario")->capture_default_str();
  app.add_option("--lease-duration", options.lease_duration, "run --leader-lease-duration")->capture_default_str();
  app.add_option("--renew-deadline", options.renew_deadline, "run --leader-renew-deadline")->capture_default_str();
  app.add_option("--retry-period", options.retry_period, "run --leader-retry-period")->capture_default_str();
  app.add_option("--binary", options.binary, "The omni-proxmox binary")->capture_default_str();
  app.add_flag("--keep-logs", options.keep_logs, "Keep the replicas' logs");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  Bench bench(options);
  if (!bench.SetUp()) {
    fmt::print(stderr, "takeover_bench: {}\n", bench.error());
    return 1;
  }
  Json out = {{"lease_duration", options.lease_duration},
              {"renew_deadline", options.renew_deadline},
              {"retry_period", options.retry_period},
              {"rounds", options.rounds}};
  fmt::print("{:<12} {:>28} {:>28}\n", "scenario", "lease (min/median/max s)", "first reconcile (s)");
  for (const std::string scenario : {"kill-remote", "kill-local", "sigterm"}) {
    std::vector<Round> rounds;
    if (!bench.Run(scenario, rounds)) {
      fmt::print(stderr, "takeover_bench: {}\n", bench.error());
      return 1;
    }
    const Json lease = Summary(rounds, &Round::lease_s);
    const Json reconcile = Summary(rounds, &Round::reconcile_s);
    fmt::print("{:<12} {:>28} {:>28}\n", scenario,
               fmt::format("{:.2f} / {:.2f} / {:.2f}", lease["min"].get<double>(), lease["median"].get<double>(),
                           lease["max"].get<double>()),
               fmt::format("{:.2f} / {:.2f} / {:.2f}", reconcile["min"].get<double>(),
                           reconcile["median"].get<double>(), reconcile["max"].get<double>()));
    out[scenario] = {{"lease_s", lease}, {"first_reconcile_s", reconcile}};
  }
  fmt::print("{}\n", out.dump());
  return 0;
}
