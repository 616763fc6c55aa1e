// SPDX-License-Identifier: Apache-2.0
// The scale benchmark of issue #9: the real provider binary (`omni-proxmox run`, a separate process
// so its CPU time and memory are its own) against the Proxmox simulator and the Omni stand-in hosted
// here, on a simulated 8-node cluster with fixed task durations.
//
//   provision: the provider is up and idle, then a MachineRequestSet is scaled to --machines;
//              measured from the scale-up until every VM has booted and joined the stand-in.
//   pending:   --pending MachineRequests already exist when the provider starts; measured from
//              process start until every one has joined.
//   cycle:     the provider is up and idle, a set is scaled to --cycle machines and, once every one
//              is PROVISIONED and joined, back to 0; measured until nothing of it is left in
//              Proxmox or Omni. CPU is counted over the whole cycle, requests up and down apart.
//              With --assert-budgets the issue-15 budgets decide the exit code: at most 12 Proxmox
//              requests per VM up and 8 down (task polls included), the way up within 1.25x of its
//              task-duration floor and the way down within 2x; the per-endpoint counts of both ways
//              are printed.
//
// Reported per scenario: wall time against a lower bound computed from the task durations and the
// provider's per-node heavy-task limit, Proxmox requests per VM (with and without task polls),
// signed Omni calls per VM (as the stand-in counted the signatures it accepted), provider CPU
// seconds per VM, peak RSS. Targets are reported as met or missed; the exit code is
// non-zero only when the benchmark itself could not run (1), or with --assert-budgets when an issue-15
// budget of the cycle was missed (3). Output: a table, then one JSON line.
//
//   build/bench/scale_bench [--machines 100] [--pending 1000] [--nodes 8] [--concurrency 32]
//                           [--max-tasks-per-node 4] [--pve-requests-per-second R] [--time-scale 1]
//                           [--cycle 30] [--skip-provision] [--skip-pending] [--skip-cycle] [--binary PATH]
//                           [--assert-budgets]

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/world.h"
#include "omni/specs/omni.pb.h"
#include "sim/omni/standin.h"
#include "sim/pve/scenario_builder.h"
#include "sim/pve/simulator.h"

namespace {

namespace sim = omni_proxmox::sim;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Simulated seconds per task type (the issue's fixed durations). The cloud-init ISO upload and
// config changes are set to zero so the bound depends only on the three named tasks.
constexpr double kDownloadSeconds = 3;
constexpr double kCreateSeconds = 2;
constexpr double kStartSeconds = 1;
// Teardown: a graceful shutdown, then the delete.
constexpr double kShutdownSeconds = 1;
constexpr double kDestroySeconds = 2;

// Targets of issue #9.
constexpr double kMaxWallOverBound = 1.5;
constexpr double kMaxRequestsPerVmExcludingPolls = 10;
constexpr double kMaxCpuSecondsPerVm = 0.002;
constexpr double kMaxPeakRssMib = 40;
// Issue #17: signed Omni calls from scale-up to PROVISIONED, and CPU per VM over a whole up-and-down
// cycle at most a third of the Go provider's 54 ms (measured on the 8-node simulator, 30 machines).
constexpr double kMaxOmniCallsPerVm = 10;
constexpr double kMaxCycleCpuSecondsPerVm = 0.054 / 3;
// Issue #15: Proxmox requests per VM over the cycle, task polls included, and wall time against the
// task-duration floor of each way (measured on the 8-node simulator, 30 machines).
constexpr double kMaxUpRequestsPerVm = 12;
constexpr double kMaxDownRequestsPerVm = 8;
constexpr double kMaxUpWallOverBound = 1.25;
constexpr double kMaxDownWallOverBound = 2.0;

// Providerdata of the benchmark class: small VMs on node-local LVM-thin, spread over the nodes.
constexpr const char* kProviderData = R"(cores: 1
memory: 2048
disk_size: 8
network_bridge: vmbr0
storage_selector: type == "lvmthin"
placement: spread
)";

struct BenchOptions {
  int machines = 100;
  int pending = 1000;
  int cycle = 30;
  int nodes = 8;
  int concurrency = 32;
  int max_tasks_per_node = 4;           // passed only when the provider has the flag
  double pve_requests_per_second = -1;  // passed only when set (>= 0) and the provider has the flag
  double time_scale = 1;
  bool skip_provision = false;
  bool skip_pending = false;
  bool skip_cycle = false;
  bool assert_budgets = false;
  std::string binary = OP_BINARY;
  std::string work_dir;
};

sim::pve::Scenario BenchScenario(int nodes) {
  sim::pve::Scenario scenario;
  scenario.name = "bench";
  scenario.vmid_upper = 100000;
  scenario.nodes = sim::pve::NumberedNodes(nodes, 128, 2048);
  scenario.storages = {sim::pve::LocalDirStorage(1000), sim::pve::LocalLvmThinStorage(100000)};
  scenario.task_seconds = {{"download", kDownloadSeconds},
                           {"qmcreate", kCreateSeconds},
                           {"qmstart", kStartSeconds},
                           {"qmshutdown", kShutdownSeconds},
                           {"qmdestroy", kDestroySeconds},
                           {"imgcopy", 0},
                           {"qmconfig", 0},
                           {"imgdel", 0}};
  return scenario;
}

// The fastest any provider could finish, in simulated seconds: VMs spread evenly, each node
// downloads the Talos ISO once (3 s), then creates its VMs with at most `limit` heavy tasks at
// once (2 s each; 0 = unlimited), then the last one starts (1 s). Start is not a heavy task.
// Creates wait for the ISO because the VM boots from it; the zero-length cloud-init uploads and
// config changes add nothing.
double LowerBoundSeconds(int machines, int nodes, int limit) {
  const int per_node = (machines + nodes - 1) / nodes;
  const int create_rounds = limit > 0 ? (per_node + limit - 1) / limit : 1;
  return kDownloadSeconds + create_rounds * kCreateSeconds + kStartSeconds;
}

// ---- the provider process --------------------------------------------------------------------

struct ProcessSample {
  double cpu_seconds = 0;
  double peak_rss_mib = 0;
};

std::optional<ProcessSample> SampleProcess(pid_t pid) {
  ProcessSample sample;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // The command name may hold spaces: fields are counted from the closing parenthesis.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::vector<std::string> values;
  for (std::string field; fields >> field;) values.push_back(field);
  if (values.size() < 13) return std::nullopt;
  // Fields 14 and 15 of stat(5) (utime, stime) are values[11] and values[12] after the name.
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  sample.cpu_seconds = (std::stod(values[11]) + std::stod(values[12])) / ticks;
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) sample.peak_rss_mib = std::stod(line.substr(6)) / 1024.0;
  }
  return sample;
}

class ProviderProcess {
 public:
  ProviderProcess(const std::vector<std::string>& argv, const std::string& log_path) {
    pid_ = fork();
    if (pid_ == 0) {
      std::FILE* log = std::fopen(log_path.c_str(), "w");
      if (log != nullptr) {
        dup2(fileno(log), STDOUT_FILENO);
        dup2(fileno(log), STDERR_FILENO);
      }
      std::vector<char*> args;
      for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~ProviderProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  ProviderProcess(const ProviderProcess&) = delete;
  ProviderProcess& operator=(const ProviderProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (exited_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) exited_ = true;
    return !exited_;
  }
  // SIGTERM, then the exit code and the whole run's rusage (SIGKILL after `timeout`).
  std::pair<int, rusage> Stop(std::chrono::seconds timeout) {
    rusage usage{};
    if (exited_) return {-1, usage};
    kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + timeout;
    int status = 0;
    while (wait4(pid_, &status, WNOHANG, &usage) == 0) {
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        wait4(pid_, &status, 0, &usage);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    exited_ = true;
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, usage};
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

bool ProviderHasFlag(const std::string& binary, const std::string& flag) {
  const std::string command = fmt::format("'{}' run --help 2>&1", binary);
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return false;
  std::string help;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) help.append(buffer, n);
  pclose(pipe);
  return help.find(flag) != std::string::npos;
}

// ---- one scenario -------------------------------------------------------------------------------

struct RequestCounts {
  std::uint64_t polls = 0;  // GET .../tasks/{upid}/status and /log
  std::uint64_t others = 0;
};

RequestCounts CountRequests(const sim::pve::Simulator& simulator) {
  const Json state = simulator.StateForTest();
  const Json requests = state.value("requests", Json::object());
  RequestCounts counts;
  for (const auto& [endpoint, count] : requests.items()) {
    const auto n = count.get<std::uint64_t>();
    if (endpoint.find("/tasks/{upid}") != std::string::npos) {
      counts.polls += n;
    } else {
      counts.others += n;
    }
  }
  return counts;
}

// Requests so far by endpoint ("GET /cluster/resources"), as the simulator counted them.
std::map<std::string, std::uint64_t> RequestsByEndpoint(const sim::pve::Simulator& simulator) {
  std::map<std::string, std::uint64_t> counts;
  const Json requests = simulator.StateForTest().value("requests", Json::object());
  for (const auto& [endpoint, count] : requests.items()) counts[endpoint] = count.get<std::uint64_t>();
  return counts;
}

struct Result {
  std::string name;
  int machines = 0;
  double wall_seconds = 0;
  double bound_seconds = 0;
  double requests_per_vm = 0;        // excluding task polls
  double requests_per_vm_polls = 0;  // including them
  double cpu_seconds_per_vm = 0;
  double cpu_seconds_total = 0;  // whole process life, from rusage
  double peak_rss_mib = 0;
  double idle_rss_mib = 0;  // provision: VmHWM of the connected, idle provider before the scale-up
  double omni_calls_per_vm = 0;
  std::map<std::string, std::uint64_t> requests_by_endpoint;
  std::map<std::string, std::uint64_t> omni_calls_by_method;
  // cycle only: the way down
  double down_wall_seconds = 0;
  double down_bound_seconds = 0;
  double down_requests_per_vm_polls = 0;
  double down_omni_calls_per_vm = 0;
  std::map<std::string, std::uint64_t> up_requests_by_endpoint;  // from the scale-up to PROVISIONED
  std::map<std::string, std::uint64_t> down_requests_by_endpoint;
};

std::uint64_t Total(const std::map<std::string, std::uint64_t>& counts) {
  std::uint64_t total = 0;
  for (const auto& [key, n] : counts) total += n;
  return total;
}

std::map<std::string, std::uint64_t> Minus(std::map<std::string, std::uint64_t> after,
                                           const std::map<std::string, std::uint64_t>& before) {
  for (const auto& [key, n] : before) after[key] -= n;
  std::erase_if(after, [](const auto& entry) { return entry.second == 0; });
  return after;
}

// The simulators of one scenario, with the benchmark's MachineClass and the files the provider reads.
struct Environment {
  std::unique_ptr<omni_proxmox::cli::World> world;
  omni_proxmox::cli::CommandFiles files;

  static Environment Start(const BenchOptions& options, const std::filesystem::path& dir) {
    Environment env;
    auto world =
        omni_proxmox::cli::World::Start({.scenario = BenchScenario(options.nodes), .time_scale = options.time_scale});
    if (!world.ok()) throw std::runtime_error(std::string(world.status().message()));
    env.world = std::move(*world);
    auto files = env.world->WriteCommandFiles(dir);
    if (!files.ok()) throw std::runtime_error(std::string(files.status().message()));
    env.files = *files;
    auto applied = env.standin().ApplyMachineClass("bench", kProviderData);
    if (!applied.ok()) throw std::runtime_error(std::string(applied.message()));
    return env;
  }

  sim::omni::StandIn& standin() { return world->standin(); }
  sim::pve::Simulator& simulator() { return world->sim(); }
};

std::vector<std::string> ProviderArgv(const BenchOptions& options, const Environment& env,
                                      std::vector<std::string>& flags_used) {
  std::vector<std::string> argv = {options.binary, "run"};
  for (const auto& flag : env.files.ConnectionFlags()) argv.push_back(flag);
  argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
  flags_used = {"--concurrency", std::to_string(options.concurrency)};
  if (options.max_tasks_per_node >= 0) {
    flags_used.push_back("--max-tasks-per-node");
    flags_used.push_back(std::to_string(options.max_tasks_per_node));
  }
  if (options.pve_requests_per_second >= 0) {
    flags_used.push_back("--pve-requests-per-second");
    flags_used.push_back(fmt::format("{}", options.pve_requests_per_second));
  }
  argv.insert(argv.end(), flags_used.begin(), flags_used.end());
  return argv;
}

// The error of the first MachineRequest the provider marked FAILED, if any: a benchmark that can
// no longer finish should say why at once, not at its timeout.
std::optional<std::string> FirstFailure(Environment& env) {
  for (const auto& [id, status] : env.world->RequestStatuses()) {
    if (status.stage() == specs::MachineRequestStatusSpec::FAILED) {
      return fmt::format("MachineRequest {} failed: {}", id, status.error());
    }
  }
  return std::nullopt;
}

// MachineRequestStatuses at stage PROVISIONED.
std::size_t Provisioned(Environment& env) {
  auto statuses = env.standin().state().List("infra-provider", "MachineRequestStatuses.omni.sidero.dev");
  if (!statuses.ok()) return 0;
  std::size_t n = 0;
  for (const auto& resource : *statuses) {
    specs::MachineRequestStatusSpec status;
    if (status.ParseFromString(resource.proto_spec) && status.stage() == specs::MachineRequestStatusSpec::PROVISIONED) {
      ++n;
    }
  }
  return n;
}

// Waits until `count` machines joined; prints progress on stderr every 10 s. False on timeout,
// when the provider exits, or when a request failed (the reason is then in `failure`).
bool WaitForJoined(Environment& env, ProviderProcess& provider, std::size_t count, std::chrono::seconds timeout,
                   std::string& failure) {
  const auto started = Clock::now();
  auto next_report = started + std::chrono::seconds{10};
  while (Clock::now() - started < timeout) {
    const std::size_t joined = env.standin().JoinedMachines().size();
    if (joined >= count) return true;
    if (!provider.running()) return false;
    if (Clock::now() > next_report) {
      if (auto failed = FirstFailure(env)) {
        failure = *failed;
        return false;
      }
      std::cerr << fmt::format("  ... {}/{} joined after {:.0f} s\n", joined, count,
                               std::chrono::duration<double>(Clock::now() - started).count());
      next_report += std::chrono::seconds{10};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return false;
}

Result RunScenario(const std::string& name, int machines, bool pending_before_start, const BenchOptions& options,
                   int limit_for_bound, std::vector<std::string>& flags_used) {
  const std::filesystem::path dir = std::filesystem::path(options.work_dir) / name;
  auto env = Environment::Start(options, dir);
  const auto argv = ProviderArgv(options, env, flags_used);
  const std::string log_path = (dir / "provider.log").string();
  const auto timeout = std::chrono::seconds{
      static_cast<int>(60 + 20 * LowerBoundSeconds(machines, options.nodes, limit_for_bound) / options.time_scale)};

  Result result;
  result.name = name;
  result.machines = machines;
  result.bound_seconds = LowerBoundSeconds(machines, options.nodes, limit_for_bound) / options.time_scale;

  if (pending_before_start) {
    // Requests Omni admitted while an earlier run of the provider had published its status.
    if (auto published = env.standin().PublishProviderStatusForTest("proxmox"); !published.ok()) {
      throw std::runtime_error(std::string(published.message()));
    }
    auto scaled = env.standin().ScaleMachineRequestSet("bench", "bench", machines);
    if (!scaled.ok()) throw std::runtime_error(std::string(scaled.message()));
  }
  const RequestCounts before_start = CountRequests(env.simulator());
  const auto process_started = Clock::now();
  ProviderProcess provider(argv, log_path);
  if (!env.standin().WaitFor(
          [&] {
            return (env.standin().ProviderConnected("proxmox") && env.standin().ProviderStatusPublished("proxmox")) ||
                   !provider.running();
          },
          std::chrono::seconds{60}) ||
      !provider.running()) {
    throw std::runtime_error(fmt::format("{}: the provider did not connect; see {}", name, log_path));
  }

  Clock::time_point measured_from = process_started;
  RequestCounts baseline = before_start;
  ProcessSample cpu_baseline;
  auto omni_baseline = env.standin().SignedCalls();
  if (pending_before_start) omni_baseline.clear();  // the start-up is part of this scenario
  if (!pending_before_start) {
    // Idle provider: measure only the scale-up, not the start-up.
    baseline = CountRequests(env.simulator());
    if (auto sample = SampleProcess(provider.pid())) cpu_baseline = *sample;
    result.idle_rss_mib = cpu_baseline.peak_rss_mib;
    measured_from = Clock::now();
    auto scaled = env.standin().ScaleMachineRequestSet("bench", "bench", machines);
    if (!scaled.ok()) throw std::runtime_error(std::string(scaled.message()));
  }
  if (std::string failure; !WaitForJoined(env, provider, static_cast<std::size_t>(machines), timeout, failure)) {
    throw std::runtime_error(fmt::format("{}: {} of {} machines joined ({}); see {}", name,
                                         env.standin().JoinedMachines().size(), machines,
                                         failure.empty() ? "timeout or provider exit" : failure, log_path));
  }
  result.wall_seconds = std::chrono::duration<double>(Clock::now() - measured_from).count();
  const auto sample = SampleProcess(provider.pid());
  const RequestCounts after = CountRequests(env.simulator());
  const Json requests = env.simulator().StateForTest().value("requests", Json::object());
  for (const auto& [endpoint, count] : requests.items()) result.requests_by_endpoint[endpoint] = count;
  result.omni_calls_by_method = Minus(env.standin().SignedCalls(), omni_baseline);
  result.omni_calls_per_vm = static_cast<double>(Total(result.omni_calls_by_method)) / machines;

  const auto [exit_code, usage] = provider.Stop(std::chrono::seconds{30});
  if (exit_code != 0) std::cerr << fmt::format("{}: the provider exited with {} on SIGTERM\n", name, exit_code);
  const double others = static_cast<double>(after.others - baseline.others);
  const double polls = static_cast<double>(after.polls - baseline.polls);
  result.requests_per_vm = others / machines;
  result.requests_per_vm_polls = (others + polls) / machines;
  if (sample) {
    result.cpu_seconds_per_vm = (sample->cpu_seconds - cpu_baseline.cpu_seconds) / machines;
    result.peak_rss_mib = sample->peak_rss_mib;
  }
  result.cpu_seconds_total = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                             (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  result.peak_rss_mib = std::max(result.peak_rss_mib, usage.ru_maxrss / 1024.0);
  return result;
}

// The fastest teardown: every VM shut down at once (not a heavy task), then the deletes with at
// most `limit` per node at once.
double DownBoundSeconds(int machines, int nodes, int limit) {
  const int per_node = (machines + nodes - 1) / nodes;
  const int delete_rounds = limit > 0 ? (per_node + limit - 1) / limit : 1;
  return kShutdownSeconds + delete_rounds * kDestroySeconds;
}

// Our VMs left in the simulator (none of the cycle's may remain).
std::size_t VmsLeft(Environment& env) {
  const Json state = env.simulator().StateForTest();
  return state.value("vms", Json::array()).size();
}

std::size_t RequestsLeft(Environment& env) {
  return static_cast<std::size_t>(std::max(env.world->MachineRequestCount(), 0));
}

// Up and down again with an idle provider: the issue-17 CPU figure (per VM over the whole cycle)
// and the issue-15 request budgets (up and down apart).
Result RunCycle(int machines, const BenchOptions& options, int limit_for_bound, std::vector<std::string>& flags_used) {
  const std::filesystem::path dir = std::filesystem::path(options.work_dir) / "cycle";
  auto env = Environment::Start(options, dir);
  const auto argv = ProviderArgv(options, env, flags_used);
  const std::string log_path = (dir / "provider.log").string();
  const double up_bound = LowerBoundSeconds(machines, options.nodes, limit_for_bound) / options.time_scale;
  const double down_bound = DownBoundSeconds(machines, options.nodes, limit_for_bound) / options.time_scale;
  const auto timeout = std::chrono::seconds{static_cast<int>(60 + 20 * (up_bound + down_bound))};
  Result result;
  result.name = "cycle";
  result.machines = machines;
  result.bound_seconds = up_bound;
  result.down_bound_seconds = down_bound;

  ProviderProcess provider(argv, log_path);
  if (!env.standin().WaitFor(
          [&] {
            return (env.standin().ProviderConnected("proxmox") && env.standin().ProviderStatusPublished("proxmox")) ||
                   !provider.running();
          },
          std::chrono::seconds{60}) ||
      !provider.running()) {
    throw std::runtime_error(fmt::format("cycle: the provider did not connect; see {}", log_path));
  }
  const RequestCounts idle = CountRequests(env.simulator());
  const auto idle_by_endpoint = RequestsByEndpoint(env.simulator());
  const auto omni_idle = env.standin().SignedCalls();
  ProcessSample cpu_idle;
  if (auto sample = SampleProcess(provider.pid())) cpu_idle = *sample;
  result.idle_rss_mib = cpu_idle.peak_rss_mib;

  auto started = Clock::now();
  if (auto s = env.standin().ScaleMachineRequestSet("bench", "bench", machines); !s.ok()) {
    throw std::runtime_error(std::string(s.message()));
  }
  if (std::string failure; !WaitForJoined(env, provider, static_cast<std::size_t>(machines), timeout, failure)) {
    throw std::runtime_error(fmt::format("cycle: {} of {} machines joined ({}); see {}",
                                         env.standin().JoinedMachines().size(), machines,
                                         failure.empty() ? "timeout or provider exit" : failure, log_path));
  }
  result.wall_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  // The way up ends when every request is PROVISIONED (the last task polls come after the boot),
  // and the way down starts from there.
  while (Provisioned(env) < static_cast<std::size_t>(machines)) {
    if (Clock::now() - started > timeout || !provider.running()) {
      throw std::runtime_error(
          fmt::format("cycle: {} of {} requests PROVISIONED; see {}", Provisioned(env), machines, log_path));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  const RequestCounts up = CountRequests(env.simulator());
  const auto up_by_endpoint = RequestsByEndpoint(env.simulator());
  const auto omni_up = env.standin().SignedCalls();

  started = Clock::now();
  if (auto s = env.standin().ScaleMachineRequestSet("bench", "bench", 0); !s.ok()) {
    throw std::runtime_error(std::string(s.message()));
  }
  while (VmsLeft(env) > 0 || RequestsLeft(env) > 0) {
    if (Clock::now() - started > timeout || !provider.running()) {
      throw std::runtime_error(fmt::format("cycle: {} VMs and {} MachineRequests left after the scale-down; see {}",
                                           VmsLeft(env), RequestsLeft(env), log_path));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  result.down_wall_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const auto sample = SampleProcess(provider.pid());
  const RequestCounts down = CountRequests(env.simulator());
  const auto omni_down = env.standin().SignedCalls();
  result.requests_by_endpoint = RequestsByEndpoint(env.simulator());
  result.up_requests_by_endpoint = Minus(up_by_endpoint, idle_by_endpoint);
  result.down_requests_by_endpoint = Minus(result.requests_by_endpoint, up_by_endpoint);
  provider.Stop(std::chrono::seconds{30});

  const auto per_vm = [machines](double n) { return n / machines; };
  result.requests_per_vm = per_vm(static_cast<double>(up.others - idle.others));
  result.requests_per_vm_polls = per_vm(static_cast<double>(up.others + up.polls - idle.others - idle.polls));
  result.down_requests_per_vm_polls = per_vm(static_cast<double>(down.others + down.polls - up.others - up.polls));
  result.omni_calls_by_method = Minus(omni_down, omni_idle);
  result.omni_calls_per_vm = per_vm(static_cast<double>(Total(Minus(omni_up, omni_idle))));
  result.down_omni_calls_per_vm = per_vm(static_cast<double>(Total(Minus(omni_down, omni_up))));
  if (sample) {
    result.cpu_seconds_per_vm = (sample->cpu_seconds - cpu_idle.cpu_seconds) / machines;
    result.peak_rss_mib = sample->peak_rss_mib;
  }
  return result;
}

std::string Verdict(bool met) { return met ? "met" : "MISSED"; }

// The issue-15 budgets of a cycle, with one line per budget.
struct CycleBudgets {
  bool met = true;
  std::string text;
};

CycleBudgets CheckBudgets(const Result& r) {
  CycleBudgets budgets;
  const auto line = [&](const std::string& what, double value, double limit, const std::string& unit) {
    const bool ok = value <= limit;
    budgets.met = budgets.met && ok;
    budgets.text +=
        fmt::format("  issue 15: {:<34} {:>6.2f}{} (at most {}{}) {}\n", what, value, unit, limit, unit, Verdict(ok));
  };
  line("requests per VM up, polls included", r.requests_per_vm_polls, kMaxUpRequestsPerVm, "");
  line("requests per VM down, polls included", r.down_requests_per_vm_polls, kMaxDownRequestsPerVm, "");
  line(fmt::format("wall up / floor {:.1f} s", r.bound_seconds), r.wall_seconds / r.bound_seconds, kMaxUpWallOverBound,
       "x");
  line(fmt::format("wall down / floor {:.1f} s", r.down_bound_seconds), r.down_wall_seconds / r.down_bound_seconds,
       kMaxDownWallOverBound, "x");
  return budgets;
}

// The cycle's Proxmox requests by endpoint, up and down, per VM.
std::string EndpointTable(const Result& r) {
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> rows;
  for (const auto& [endpoint, n] : r.up_requests_by_endpoint) rows[endpoint].first = n;
  for (const auto& [endpoint, n] : r.down_requests_by_endpoint) rows[endpoint].second = n;
  std::string text = fmt::format("  {:<58} {:>6} {:>7} {:>6} {:>7}\n", "endpoint", "up", "up/VM", "down", "down/VM");
  const double vms = r.machines;
  for (const auto& [endpoint, n] : rows) {
    text += fmt::format("  {:<58} {:>6} {:>7.2f} {:>6} {:>7.2f}\n", endpoint, n.first, n.first / vms, n.second,
                        n.second / vms);
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions options;
  CLI::App app("omni-proxmox scale benchmark (issue #9): the provider process against simulated Proxmox and Omni");
  app.add_option("--machines", options.machines, "VMs in the provisioning scenario")->capture_default_str();
  app.add_option("--pending", options.pending, "MachineRequests pending at start-up")->capture_default_str();
  app.add_option("--cycle", options.cycle, "VMs in the up-and-down cycle")->capture_default_str();
  app.add_option("--nodes", options.nodes, "Simulated Proxmox nodes")->capture_default_str();
  app.add_option("--concurrency", options.concurrency, "The provider's --concurrency")->capture_default_str();
  app.add_option("--max-tasks-per-node", options.max_tasks_per_node,
                 "The provider's --max-tasks-per-node when it has the flag (0 = unlimited)")
      ->capture_default_str();
  app.add_option("--pve-requests-per-second", options.pve_requests_per_second,
                 "The provider's --pve-requests-per-second (0 = unlimited); default: the provider's own default");
  app.add_option("--time-scale", options.time_scale, "Simulated clock speed (the bound is divided by it)")
      ->capture_default_str();
  app.add_flag("--skip-provision", options.skip_provision, "Skip the provisioning scenario");
  app.add_flag("--skip-pending", options.skip_pending, "Skip the pending-requests scenario");
  app.add_flag("--skip-cycle", options.skip_cycle, "Skip the up-and-down cycle");
  app.add_option("--binary", options.binary, "The omni-proxmox binary")->capture_default_str();
  app.add_flag("--assert-budgets", options.assert_budgets,
               "Print the cycle's requests by endpoint and exit 3 when an issue-15 budget is missed (requests per VM "
               "up/down with polls, wall time against the floor)");
  CLI11_PARSE(app, argc, argv);
  // The simulators' per-request and per-machine info lines would bury the table.
  spdlog::set_level(spdlog::level::warn);
  if (options.machines < 1 || options.pending < 1 || options.cycle < 1 || options.nodes < 1 ||
      options.time_scale <= 0) {
    std::cerr << "scale_bench: --machines, --pending, --cycle and --nodes must be at least 1 and --time-scale "
                 "positive\n";
    return 2;
  }

  char dir_template[] = "/tmp/op-scale-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("scale_bench: mkdtemp");
    return 1;
  }
  options.work_dir = dir_template;

  // The per-node limit exists only in providers with the flag; without it the bound assumes
  // unlimited per-node parallelism (which only lowers the bound).
  const bool has_limit_flag = ProviderHasFlag(options.binary, "--max-tasks-per-node");
  if (!has_limit_flag) options.max_tasks_per_node = -1;
  if (!ProviderHasFlag(options.binary, "--pve-requests-per-second")) options.pve_requests_per_second = -1;
  const int limit_for_bound = has_limit_flag ? options.max_tasks_per_node : 0;

  std::vector<Result> results;
  std::vector<std::string> flags_used;
  int exit_code = 0;
  try {
    if (!options.skip_provision) {
      std::cerr << fmt::format("provision: {} machines on {} nodes\n", options.machines, options.nodes);
      results.push_back(RunScenario("provision", options.machines, /*pending_before_start=*/false, options,
                                    limit_for_bound, flags_used));
    }
    if (!options.skip_pending) {
      std::cerr << fmt::format("pending: {} MachineRequests before start-up\n", options.pending);
      results.push_back(
          RunScenario("pending", options.pending, /*pending_before_start=*/true, options, limit_for_bound, flags_used));
    }
    if (!options.skip_cycle) {
      std::cerr << fmt::format("cycle: {} machines up and down on {} nodes\n", options.cycle, options.nodes);
      results.push_back(RunCycle(options.cycle, options, limit_for_bound, flags_used));
    }
  } catch (const std::exception& error) {
    std::cerr << "scale_bench: " << error.what() << "\n";
    exit_code = 1;
  }

  std::string flags_text;
  for (const auto& flag : flags_used) flags_text += (flags_text.empty() ? "" : " ") + flag;
  std::cout << fmt::format(
      "scale_bench: {} nodes, tasks download {} s / create {} s / start {} s, time scale {}, provider flags: {}\n",
      options.nodes, kDownloadSeconds, kCreateSeconds, kStartSeconds, options.time_scale, flags_text);
  std::cout << fmt::format("lower bound: {}\n", has_limit_flag
                                                    ? fmt::format("{} heavy tasks per node", options.max_tasks_per_node)
                                                    : "unlimited per-node parallelism (the provider has no "
                                                      "--max-tasks-per-node flag)");
  std::cout << fmt::format("{:<10} {:>5} {:>8} {:>8} {:>6} {:>9} {:>9} {:>8} {:>10} {:>9}  {}\n", "scenario", "VMs",
                           "wall s", "bound s", "ratio", "req/VM", "+polls", "Omni/VM", "CPU ms/VM", "RSS MiB",
                           "targets");
  Json json_results = Json::array();
  bool budgets_missed = false;
  for (const auto& r : results) {
    const double ratio = r.wall_seconds / r.bound_seconds;
    const bool wall_ok = ratio <= kMaxWallOverBound;
    const bool requests_ok = r.requests_per_vm <= kMaxRequestsPerVmExcludingPolls;
    const bool cpu_ok = r.cpu_seconds_per_vm <= kMaxCpuSecondsPerVm;
    const bool rss_ok = r.peak_rss_mib <= kMaxPeakRssMib;
    const bool omni_ok = r.omni_calls_per_vm <= kMaxOmniCallsPerVm;
    std::cout << fmt::format(
        "{:<10} {:>5} {:>8.1f} {:>8.1f} {:>6.2f} {:>9.1f} {:>9.1f} {:>8.1f} {:>10.2f} {:>9.1f}  wall {}, requests {}, "
        "Omni calls {}, CPU {}, RSS {}\n",
        r.name, r.machines, r.wall_seconds, r.bound_seconds, ratio, r.requests_per_vm, r.requests_per_vm_polls,
        r.omni_calls_per_vm, r.cpu_seconds_per_vm * 1000, r.peak_rss_mib, Verdict(wall_ok), Verdict(requests_ok),
        Verdict(omni_ok), Verdict(cpu_ok), Verdict(rss_ok));
    if (r.name == "cycle") {
      std::cout << fmt::format(
          "{:<10} {:>5} {:>8.1f} {:>8.1f} {:>6.2f} {:>9} {:>9.1f} {:>8.1f}  (the way down; CPU above is the whole "
          "cycle: {} the cycle target of {} ms/VM)\n",
          "  down", r.machines, r.down_wall_seconds, r.down_bound_seconds, r.down_wall_seconds / r.down_bound_seconds,
          "", r.down_requests_per_vm_polls, r.down_omni_calls_per_vm,
          Verdict(r.cpu_seconds_per_vm <= kMaxCycleCpuSecondsPerVm), kMaxCycleCpuSecondsPerVm * 1000);
      const CycleBudgets budgets = CheckBudgets(r);
      std::cout << budgets.text;
      if (options.assert_budgets) {
        std::cout << EndpointTable(r);
        if (!budgets.met) budgets_missed = true;
      }
    }
    json_results.push_back(
        {{"scenario", r.name},
         {"machines", r.machines},
         {"wall_seconds", r.wall_seconds},
         {"lower_bound_seconds", r.bound_seconds},
         {"wall_over_bound", ratio},
         {"requests_per_vm", r.requests_per_vm},
         {"requests_per_vm_with_polls", r.requests_per_vm_polls},
         {"cpu_seconds_per_vm", r.cpu_seconds_per_vm},
         {"cpu_seconds_process_total", r.cpu_seconds_total},
         {"peak_rss_mib", r.peak_rss_mib},
         {"idle_rss_mib", r.idle_rss_mib},
         {"omni_signed_calls_per_vm", r.omni_calls_per_vm},
         {"requests_by_endpoint", r.requests_by_endpoint},
         {"omni_signed_calls_by_method", r.omni_calls_by_method},
         {"targets",
          {{"wall", wall_ok}, {"requests", requests_ok}, {"omni_calls", omni_ok}, {"cpu", cpu_ok}, {"rss", rss_ok}}}});
    if (r.name == "cycle") {
      json_results.back()["down"] = {{"wall_seconds", r.down_wall_seconds},
                                     {"lower_bound_seconds", r.down_bound_seconds},
                                     {"requests_per_vm_with_polls", r.down_requests_per_vm_polls},
                                     {"omni_signed_calls_per_vm", r.down_omni_calls_per_vm},
                                     {"requests_by_endpoint", r.down_requests_by_endpoint}};
      json_results.back()["up_requests_by_endpoint"] = r.up_requests_by_endpoint;
      json_results.back()["targets"]["cycle_cpu"] = r.cpu_seconds_per_vm <= kMaxCycleCpuSecondsPerVm;
      json_results.back()["targets"]["issue15_budgets"] = CheckBudgets(r).met;
    }
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::cout << Json{{"benchmark", "scale"},
                    {"nodes", options.nodes},
                    {"time_scale", options.time_scale},
                    {"provider_flags", flags_text},
                    {"bound_max_tasks_per_node", limit_for_bound},
                    {"load_average_1m", load[0]},
                    {"results", json_results}}
                   .dump()
            << "\n";
  if (exit_code == 0 && options.assert_budgets && budgets_missed) {
    std::cerr << "scale_bench: an issue-15 budget of the cycle was missed\n";
    exit_code = 3;
  }
  if (exit_code == 0 || exit_code == 3)
    std::filesystem::remove_all(options.work_dir);
  else
    std::cerr << "scale_bench: logs kept in " << options.work_dir << "\n";
  return exit_code;
}
