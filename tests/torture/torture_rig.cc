// SPDX-License-Identifier: Apache-2.0
#include "torture/torture_rig.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "omni/specs/omni.pb.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "support/fencing_check.h"
#include "support/replica_process.h"
#include "support/sim_pve_client.h"
#include "support/subprocess.h"

namespace omni_proxmox::torture {
namespace {

using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Stage = specs::MachineRequestStatusSpec;

constexpr char kProviderId[] = "proxmox";
constexpr char kSet[] = "workers";
constexpr char kInfraNs[] = "infra-provider";
constexpr char kRequestType[] = "MachineRequests.omni.sidero.dev";
constexpr char kStatusType[] = "MachineRequestStatuses.omni.sidero.dev";
constexpr char kStateNs[] = "infra-provider:proxmox";
constexpr char kStateType[] = "Machine.proxmox.infraprovider.sidero.dev";
constexpr char kLeaseType[] = "Leases.proxmox.infraprovider.sidero.dev";

// Four nodes with room for 30 small machines each; local ISO storage (one Talos ISO per node)
// and thin LVM for the disks, so leftovers are per node.
constexpr const char* kScenarioHead = R"yaml(
cluster:
  name: torture
  vmid_range: [100, 100000]
nodes:
  - {name: pve1, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve2, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve3, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve4, cpus: 64, memory_gib: 128, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup], size_gib: 200}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 2000}
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
)yaml";
// Seconds. The simulated clock runs at real speed (time_scale 1) so that volume and task times
// compare with the provider's clock, as the garbage collector's grace period does.
constexpr const char* kTaskDurations =
    "tasks:\n  durations: {qmcreate: 0.12, qmstart: 0.08, qmstop: 0.08, qmshutdown: 0.08, qmconfig: 0.02, download: "
    "0.4, imgcopy: 0.04, qmdestroy: 0.12, imgdel: 0.04}\n";
// The soak's slow tasks: downloads, creates and destroys take seconds of real time.
constexpr const char* kSlowTaskDurations =
    "tasks:\n  durations: {qmcreate: 1, qmstart: 0.4, qmstop: 0.2, qmshutdown: 0.4, qmconfig: 0.04, download: 3, "
    "imgcopy: 0.08, qmdestroy: 1, imgdel: 0.2}\n";

constexpr const char* kWorkerClass =
    "cores: 1\nmemory: 2048\ndisk_size: 5\nnetwork_bridge: vmbr0\nstorage_selector: type == \"lvmthin\"\n";

const std::vector<std::string> kNodes = {"pve1", "pve2", "pve3", "pve4"};

std::string Str(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

std::vector<std::string> SplitTags(const std::string& tags) {
  std::vector<std::string> out;
  std::string current;
  for (char c : tags) {
    if (c == ';' || c == ',' || c == ' ') {
      if (!current.empty()) out.push_back(current);
      current.clear();
    } else {
      current += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  if (!current.empty()) out.push_back(current);
  return out;
}

// A VM that carries (or, while its create task holds the lock, is named for) one of our requests.
struct OurVm {
  int vmid = 0;
  std::string node;
  std::string name;
  std::string request;  // from the omni-request.<id> tag; the name while the create lock hides the tags
  std::string lock;
  std::string status;
  Json config;
};

std::vector<OurVm> OurVms(const Json& state) {
  std::vector<OurVm> out;
  for (const auto& vm : state["vms"]) {
    const Json& config = vm["config"];
    OurVm our{.vmid = vm["vmid"].get<int>(),
              .node = vm["node"].get<std::string>(),
              .name = config.contains("name") ? Str(config["name"]) : "",
              .request = "",
              .lock = vm["lock"].is_string() ? vm["lock"].get<std::string>() : "",
              .status = vm["status"].get<std::string>(),
              .config = config};
    bool ours = false;
    if (config.contains("tags")) {
      for (const auto& tag : SplitTags(Str(config["tags"]))) {
        if (tag == fmt::format("omni-provider.{}", kProviderId)) ours = true;
        if (tag.starts_with("omni-request.")) our.request = tag.substr(std::string("omni-request.").size());
      }
    }
    if (!ours && our.lock == "create" && our.name.starts_with(std::string(kSet) + "-")) {
      ours = true;
      our.request = our.name;
    }
    if (ours) out.push_back(std::move(our));
  }
  return out;
}

std::string DescribeVms(const std::vector<OurVm>& vms) {
  std::string out;
  for (const auto& vm : vms) {
    out += fmt::format("  vm {} on {}: name={} request={} status={} lock={}\n", vm.vmid, vm.node, vm.name, vm.request,
                       vm.status, vm.lock.empty() ? "-" : vm.lock);
  }
  return out.empty() ? "  (none)\n" : out;
}

struct RequestView {
  bool tearing_down = false;
  std::vector<std::string> finalizers;
};

std::string Tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  for (std::size_t n = 0; n <= lines && pos != std::string::npos && pos > 0; ++n) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

class Rig {
 public:
  Rig(Workload workload, std::uint64_t seed, Figures& figures)
      : workload_(std::move(workload)), seed_(seed), rng_(seed), figures_(figures) {}

  ~Rig() {
    checker_.request_stop();
    if (checker_.joinable()) checker_.join();
    replicas_.clear();
    sim_.reset();
    standin_.reset();
    if (keep_dir_) {
      fmt::print(stderr, "torture: logs kept in {}\n", dir_.string());
    } else if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  std::optional<std::string> Run() {
    const auto started = SteadyClock::now();
    if (auto failed = SetUp()) return failed;
    checker_ = std::jthread([this](std::stop_token stop) { CheckerLoop(stop); });
    replicas_.resize(static_cast<std::size_t>(std::max(workload_.replicas, 1)));
    for (std::size_t slot = 0; slot < replicas_.size(); ++slot) StartProvider(slot);
    // Omni admits the request set only once the provider has published its status.
    if (!standin_->WaitFor([&] { return standin_->ProviderStatusPublished(kProviderId); }, std::chrono::seconds{60})) {
      return Fail("the provider did not publish its InfraProviderStatus within 60 s");
    }

    const int phases = workload_.cycles * 2;
    // Stand-in restarts: the first during the first scale-up, the second during the last
    // scale-down, any further ones in between.
    std::set<int> restart_phases;
    for (int k = 0; k < workload_.standin_restarts && k < phases; ++k) {
      restart_phases.insert(k == 0 ? 0 : k == 1 ? phases - 1 : k - 1);
    }
    int current = 0;
    for (int cycle = 1; cycle <= workload_.cycles; ++cycle) {
      for (int half = 0; half < 2; ++half) {
        const int phase = (cycle - 1) * 2 + half;
        const int target = half == 0 ? workload_.machines : 0;
        // Kills spread evenly over the phases; the first phases get the remainder.
        const int kills = workload_.kills / phases + (phase < workload_.kills % phases ? 1 : 0);
        const int pauses = workload_.pauses / phases + (phase < workload_.pauses % phases ? 1 : 0);
        const bool restart_standin = restart_phases.contains(phase);
        if (auto failed = RunPhase(cycle, current, target, kills, pauses, restart_standin)) return Fail(*failed);
        current = target;
        if (phase == 0 && workload_.plant_duplicate_vm) return Fail(PlantDuplicateVm());
      }
    }
    if (auto failed = FinalChecks()) return Fail(*failed);
    figures_.total_seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
    return std::nullopt;
  }

 private:
  std::optional<std::string> SetUp() {
    figures_.seed = seed_;
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-torture-{}-{}-{}", workload_.name, getpid(), seed_);
    std::filesystem::create_directories(dir_);

    auto standin = sim::omni::StandIn::Start({.provider_id = kProviderId, .seed = seed_});
    if (!standin.ok()) return fmt::format("stand-in: {}", std::string(standin.status().message()));
    standin_ = std::move(*standin);

    sim::pve::SimulatorOptions options;
    options.scenario_yaml = std::string(kScenarioHead) + (workload_.faults ? kSlowTaskDurations : kTaskDurations);
    options.time_scale = 1;
    options.seed = seed_;
    options.on_vm_started = [this](const sim::pve::VmBootInfo& boot) {
      (void)standin_->MachineJoined(boot.user_data, boot.smbios_uuid);
    };
    auto sim = sim::pve::Simulator::Start(options);
    if (!sim.ok()) return fmt::format("simulator: {}", std::string(sim.status().message()));
    sim_ = std::move(*sim);

    Write("config.yaml", fmt::format("proxmox:\n  url: {}/api2/json\n  tokenID: \"{}\"\n  tokenSecretFile: {}\n",
                                     sim_->base_url(), sim_->default_token_id(), (dir_ / "secret").string()));
    Write("secret", sim_->default_token_secret());
    Write("key", standin_->provider_key());
    if (auto s = standin_->ApplyMachineClass(kSet, kWorkerClass); !s.ok()) {
      return fmt::format("machine class: {}", std::string(s.message()));
    }
    InstallFaults();
    return std::nullopt;
  }

  // In the torture the replies of the calls a kill aims at are held back briefly after the call
  // took effect, so a kill lands between the effect and the provider learning of it. The soak
  // replaces them with its 10 % faults (first matching pattern wins in the simulator).
  void InstallFaults() {
    sim::pve::FaultSpec held;
    held.status_code = 0;
    held.latency = milliseconds{150};
    held.after_effect = true;
    if (!workload_.faults) {
      for (const char* pattern : {"POST /nodes/*/qemu", "POST /nodes/*/storage/*/upload",
                                  "POST /nodes/*/storage/*/download-url", "DELETE /nodes/*/qemu/*"}) {
        sim_->SetFault(pattern, held);
      }
      return;
    }
    auto fault = [](int status, std::string message, bool drop, bool after_effect) {
      sim::pve::FaultSpec spec;
      spec.error_rate = 0.10;
      spec.status_code = status;
      spec.message = std::move(message);
      spec.drop_connection = drop;
      spec.after_effect = after_effect;
      return spec;
    };
    // A create or delete that went through but whose answer was lost.
    sim_->SetFault("POST /nodes/*/qemu", fault(500, "proxy timeout", false, true));
    sim_->SetFault("DELETE /nodes/*/qemu/*", fault(0, "", true, true));
    sim_->SetFault("POST /nodes/*/storage/*/upload", fault(0, "", true, true));
    // Lock timeouts where Proxmox takes the VM's config lock.
    sim_->SetFault("POST /nodes/*/qemu/*/status/*",
                   fault(500, "can't lock file '/var/lock/qemu-server/lock.conf' - got timeout", false, false));
    sim_->SetFault("DELETE /nodes/*/storage/*/content/*",
                   fault(500, "can't lock file '/var/lock/pve-manager/pve-storage-local' - got timeout", false, false));
    // Dropped connections on the listings every pass depends on.
    sim_->SetFault("GET /cluster/resources*", fault(0, "", true, false));
    // Everything else: transient 5xx.
    sim_->SetFault("*", fault(503, "Service Unavailable", false, false));
  }

  void Write(const std::string& name, const std::string& content) {
    std::ofstream out(dir_ / name);
    out << content;
  }

  // OP_TORTURE_BINARY tortures another build of the provider (e.g. a release binary).
  static std::string ProviderBinary() {
    const char* other = std::getenv("OP_TORTURE_BINARY");
    return other != nullptr && *other != '\0' ? other : OP_BINARY;
  }

  std::vector<std::string> ProviderArgs() const {
    std::vector<std::string> args = {ProviderBinary(),
                                     "run",
                                     "--config-file",
                                     (dir_ / "config.yaml").string(),
                                     "--omni-api-endpoint",
                                     standin_->grpc_endpoint(),
                                     "--omni-service-account-key-file",
                                     (dir_ / "key").string(),
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--concurrency",
                                     "8"};
    if (workload_.replicas > 1) {
      args.insert(args.end(), {"--leader-lease-duration", workload_.leader_lease_duration, "--leader-renew-deadline",
                               workload_.leader_renew_deadline, "--leader-retry-period", workload_.leader_retry_period,
                               fmt::format("--leader-local-takeover={}", workload_.leader_local_takeover)});
    }
    if (!workload_.gc_mode.empty()) {
      args.insert(args.end(), {"--gc-mode", workload_.gc_mode});
      if (!workload_.gc_grace.empty()) args.insert(args.end(), {"--gc-grace-period", workload_.gc_grace});
      if (!workload_.gc_interval.empty()) args.insert(args.end(), {"--gc-interval", workload_.gc_interval});
    }
    return args;
  }

  void StartProvider(std::size_t slot) {
    ++figures_.provider_starts;
    const std::string log = (dir_ / fmt::format("provider-{}.log", figures_.provider_starts)).string();
    replicas_[slot] = std::make_unique<testing::ReplicaProcess>(ProviderArgs(), log);
  }

  // The slot of the replica the lease names now, or -1.
  int LeaderSlot() {
    const auto history = testing::LeaseVersions(standin_->journal(), kLeaseType);
    if (history.empty() || history.back().holder.empty()) return -1;
    for (std::size_t slot = 0; slot < replicas_.size(); ++slot) {
      if (replicas_[slot]->WaitStarted(milliseconds{0}) && replicas_[slot]->identity() == history.back().holder) {
        return static_cast<int>(slot);
      }
    }
    return -1;
  }

  // The replica a disturbance hits: either, at random (with one replica, that one).
  std::size_t PickSlot() { return static_cast<std::size_t>(UniformInt(0, static_cast<int>(replicas_.size()) - 1)); }

  // Stops a replica for 0.5 s to lease duration + 3 s: it sometimes wakes still the holder (or able
  // to renew), sometimes after the lease moved; then it must not send a single mutation.
  void PauseProvider() {
    const std::size_t slot = PickSlot();
    auto& replica = *replicas_[slot];
    const bool leader = LeaderSlot() == static_cast<int>(slot);
    const auto stopped = replica.Pause();
    const int lease_ms = LeaseMilliseconds();
    std::this_thread::sleep_for(milliseconds{UniformInt(500, lease_ms + 3000)});
    const auto resumed = replica.Resume();
    if (replica.WaitStarted(milliseconds{0})) {
      not_running_.push_back({.replica = replica.identity(), .from = stopped, .until = resumed});
    }
    ++figures_.pauses;
    if (leader) ++figures_.pauses_of_leader;
    MarkDisturbance();
  }

  int LeaseMilliseconds() const {
    const std::string& text = workload_.leader_lease_duration;
    return text.ends_with("ms") ? std::atoi(text.c_str()) : static_cast<int>(std::atof(text.c_str()) * 1000);
  }

  void KillProvider(const std::string& moment, std::size_t slot) {
    auto& replica = *replicas_[slot];
    if (LeaderSlot() == static_cast<int>(slot)) ++figures_.kills_of_leader;
    const auto killed = replica.Kill();
    // A process killed before it named itself never sent a mutation.
    if (replica.WaitStarted(milliseconds{0})) {
      not_running_.push_back({.replica = replica.identity(), .from = killed, .until = {}});
    }
    ++figures_.kills;
    ++figures_.kills_by_moment[moment];
    // What the dead process left for its successor.
    const auto requests = Requests();
    const auto statuses = Statuses();
    const Json state = sim_->StateForTest();
    std::set<std::string> with_vm;
    for (const auto& vm : OurVms(state)) with_vm.insert(vm.request);
    bool mid_work = false;
    for (const auto& [id, view] : requests) {
      const bool provisioned = statuses.contains(id) && statuses.at(id).stage() == Stage::PROVISIONED;
      if (view.tearing_down || !provisioned) mid_work = true;
      if (view.tearing_down) {
        ++figures_.inherited_teardowns;
      } else if (with_vm.contains(id) && (!statuses.contains(id) || statuses.at(id).stage() != Stage::PROVISIONED)) {
        ++figures_.inherited_creates;
      }
    }
    if (mid_work) ++figures_.kills_mid_work;
    MarkDisturbance();
  }

  void MarkDisturbance() { last_disturbance_ns_ = SteadyClock::now().time_since_epoch().count(); }
  SteadyClock::time_point LastDisturbance() const {
    return SteadyClock::time_point(SteadyClock::duration(last_disturbance_ns_.load()));
  }

  std::map<std::string, RequestView> Requests() const {
    std::map<std::string, RequestView> out;
    auto listed = standin_->state().List(kInfraNs, kRequestType);
    if (!listed.ok()) return out;
    for (const auto& r : *listed) {
      out[r.id] = {.tearing_down = r.phase == sim::omni::Phase::kTearingDown, .finalizers = r.finalizers};
    }
    return out;
  }

  std::map<std::string, Stage> Statuses() const {
    std::map<std::string, Stage> out;
    auto listed = standin_->state().List(kInfraNs, kStatusType);
    if (!listed.ok()) return out;
    for (const auto& r : *listed) {
      Stage spec;
      if (spec.ParseFromString(r.proto_spec)) out[r.id] = spec;
    }
    return out;
  }

  int ProviderStates() const {
    auto listed = standin_->state().List(kStateNs, kStateType);
    return listed.ok() ? static_cast<int>(listed->size()) : 0;
  }

  // --- the checker ------------------------------------------------------------------------------

  void CheckerLoop(std::stop_token stop) {
    while (!stop.stop_requested()) {
      Sample();
      std::this_thread::sleep_for(milliseconds{150});
    }
  }

  // Requests are listed before and after the Proxmox snapshot: a VM whose request is in neither
  // list outlived its request (the request was destroyed, so its finalizer was removed, before the
  // VM was gone). Request IDs are random, so a request created meanwhile shows in the second list.
  void Sample() {
    const auto before = Requests();
    const Json state = sim_->StateForTest();
    const auto after = Requests();
    const auto statuses = Statuses();
    const auto vms = OurVms(state);
    std::map<std::string, std::vector<const OurVm*>> per_request;
    for (const auto& vm : vms) per_request[vm.request].push_back(&vm);

    std::lock_guard lock(mutex_);
    ++figures_.samples;
    for (const auto& [id, view] : before) requests_seen_.insert(id);
    for (const auto& [id, view] : after) requests_seen_.insert(id);
    for (const auto& [id, spec] : statuses) {
      if (spec.stage() == Stage::PROVISIONED) requests_provisioned_.insert(id);
    }
    for (const auto& [request, list] : per_request) {
      figures_.max_vms_per_request = std::max(figures_.max_vms_per_request, static_cast<int>(list.size()));
      if (list.size() > 1 && violation_.empty()) {
        std::vector<OurVm> copies;
        for (const auto* vm : list) copies.push_back(*vm);
        violation_ = fmt::format("invariant 'at most one VM per request' broken: {} VMs carry request {}:\n{}",
                                 list.size(), request, DescribeVms(copies));
      }
      if (!before.contains(request) && !after.contains(request) && violation_.empty()) {
        std::vector<OurVm> copies;
        for (const auto* vm : list) copies.push_back(*vm);
        violation_ = fmt::format(
            "invariant 'no VM without a MachineRequest' broken: request {} was destroyed while its VM existed:\n{}",
            request, DescribeVms(copies));
      }
    }
    // Created VMs, counted from the simulator's own task list.
    int created = 0;
    for (const auto& task : state["tasks"]) {
      if (task["type"] == "qmcreate" && task.value("exitstatus", "") == "OK") ++created;
    }
    figures_.vms_created = created;
    if (state["requests"].contains("POST /nodes/{node}/qemu")) {
      figures_.vm_create_calls = state["requests"]["POST /nodes/{node}/qemu"].get<int>();
    }
  }

  std::string Violation() {
    std::lock_guard lock(mutex_);
    return violation_;
  }

  // --- phases -----------------------------------------------------------------------------------

  std::optional<std::string> RunPhase(int cycle, int from, int target, int kills, int pauses, bool restart_standin) {
    PhaseFigures phase;
    phase.what = fmt::format("cycle {}: {} -> {}", cycle, from, target);
    const bool up = target > from;
    fmt::print(stderr, "torture[{}]: {} ({} kills{}{}{})\n", workload_.name, phase.what, kills,
               pauses > 0 ? fmt::format(", {} pauses", pauses) : "", workload_.faults ? ", faults" : "",
               restart_standin ? ", stand-in restart" : "");
    const auto started = SteadyClock::now();
    MarkDisturbance();
    if (auto s = standin_->ScaleMachineRequestSet(kSet, kSet, target); !s.ok()) {
      return fmt::format("scaling to {}: {}", target, std::string(s.message()));
    }

    std::atomic<bool> disturbing{true};
    std::jthread disturbances;
    if (workload_.faults || restart_standin) {
      disturbances = std::jthread([this, restart_standin, &disturbing](std::stop_token stop) {
        Disturb(stop, restart_standin);
        disturbing = false;
      });
    } else {
      disturbing = false;
    }

    // Kills and pauses in a random order, each aimed at a moment.
    std::vector<bool> kill_events(static_cast<std::size_t>(kills), true);
    kill_events.resize(static_cast<std::size_t>(kills + pauses), false);
    std::shuffle(kill_events.begin(), kill_events.end(), rng_);
    for (const bool kill : kill_events) {
      if (!Violation().empty()) break;
      const std::string moment = WaitForKillMoment(up);
      if (kill) {
        const std::size_t slot = PickSlot();
        KillProvider(moment, slot);
        std::this_thread::sleep_for(milliseconds{UniformInt(0, 800)});
        StartProvider(slot);
        ++phase.kills;
      } else {
        PauseProvider();
        ++phase.pauses;
      }
    }
    if (disturbances.joinable()) disturbances.join();

    // Convergence: generous deadline from the last disturbance; the checker keeps sampling.
    while (true) {
      if (auto v = Violation(); !v.empty()) return v + Evidence();
      if (ProviderExitedOnItsOwn()) return "the provider exited on its own\n" + Evidence();
      std::string missing = target > 0 ? MissingForUp(target) : MissingForDown();
      if (missing.empty()) break;
      if (SteadyClock::now() - LastDisturbance() > workload_.convergence_deadline) {
        return fmt::format("{} did not converge within {} s of the last disturbance: {}\n", phase.what,
                           workload_.convergence_deadline.count(), missing) +
               Evidence();
      }
      std::this_thread::sleep_for(milliseconds{250});
    }
    const auto now = SteadyClock::now();
    phase.seconds_to_converge = std::chrono::duration<double>(now - started).count();
    phase.seconds_after_disturbance = std::chrono::duration<double>(now - LastDisturbance()).count();
    figures_.phases.push_back(phase);
    fmt::print(stderr, "torture[{}]: {} converged in {:.1f} s ({:.1f} s after the last disturbance)\n", workload_.name,
               phase.what, phase.seconds_to_converge, phase.seconds_after_disturbance);
    return LeftoverChecks(target);
  }

  int UniformInt(int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng_); }

  // Returns the name of the moment the kill aims at once it has come (or after a fallback delay).
  std::string WaitForKillMoment(bool up) {
    struct Moment {
      const char* name;
      const char* endpoint;  // the simulator's request counter that signals it; nullptr = timed
    };
    static const std::vector<Moment> kUp = {{"timed", nullptr},
                                            {"mid-create", "POST /nodes/{node}/qemu"},
                                            {"mid-create", "POST /nodes/{node}/qemu"},
                                            {"mid-upload", "POST /nodes/{node}/storage/{storage}/upload"},
                                            {"mid-download", "POST /nodes/{node}/storage/{storage}/download-url"},
                                            {"mid-start", "POST /nodes/{node}/qemu/{vmid}/status/start"}};
    static const std::vector<Moment> kDown = {
        {"timed", nullptr},
        {"mid-teardown", "DELETE /nodes/{node}/qemu/{vmid}"},
        {"mid-teardown", "DELETE /nodes/{node}/qemu/{vmid}"},
        {"mid-shutdown", "POST /nodes/{node}/qemu/{vmid}/status/shutdown"},
        {"mid-iso-delete", "DELETE /nodes/{node}/storage/{storage}/content/{volume}"}};
    const auto& moments = up ? kUp : kDown;
    const Moment& moment = moments[static_cast<std::size_t>(UniformInt(0, static_cast<int>(moments.size()) - 1))];
    if (moment.endpoint == nullptr) {
      std::this_thread::sleep_for(milliseconds{UniformInt(300, 4000)});
      return moment.name;
    }
    const std::uint64_t baseline = sim_->RequestCount(moment.endpoint);
    const auto fallback = SteadyClock::now() + seconds{UniformInt(4, 10)};
    while (SteadyClock::now() < fallback) {
      if (sim_->RequestCount(moment.endpoint) > baseline) return moment.name;
      std::this_thread::sleep_for(milliseconds{2});
    }
    return "timed";  // the aimed-at call did not come (e.g. no download once the ISO is there)
  }

  // The soak's disturbances during one phase: node outages (595 while offline), failing tasks and
  // at most one stand-in restart. Runs beside the kills.
  void Disturb(std::stop_token stop, bool restart_standin) {
    const auto pause = [&](int low_ms, int high_ms) {
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lock(m);
      cv.wait_for(lock, stop, milliseconds{UniformInt(low_ms, high_ms)}, [] { return false; });
      return !stop.stop_requested();
    };
    if (workload_.faults) {
      static const char* kFailing[] = {"qmstart", "qmcreate", "qmdestroy", "download", "imgdel"};
      for (const char* type : kFailing) {
        sim_->FailNextTask(type, "", fmt::format("simulated {} failure", type));
        ++figures_.tasks_failed_on_purpose;
      }
    }
    for (int i = 0; i < (workload_.faults ? workload_.node_outages_per_phase : 0); ++i) {
      if (!pause(500, 4000)) return;
      const std::string node = kNodes[static_cast<std::size_t>(UniformInt(0, static_cast<int>(kNodes.size()) - 1))];
      (void)sim_->SetNodeOnline(node, false);
      ++figures_.node_outages;
      MarkDisturbance();
      pause(2000, 6000);
      (void)sim_->SetNodeOnline(node, true);
      MarkDisturbance();
    }
    if (restart_standin) {
      if (!pause(1000, 5000)) return;
      ++figures_.standin_restarts;
      if (figures_.standin_restarts % 2 == 1) {
        // Watch resume: the same process stops serving for a while; bookmarks stay valid.
        standin_->StopServing();
        pause(1000, 3000);
        (void)standin_->ResumeServing();
      } else {
        // A new Omni process: bookmarks invalid, ephemeral state gone; the provider must resync.
        (void)standin_->RestartAsNewProcess();
      }
      MarkDisturbance();
    }
  }

  // Creates a VM with the markers of a live request through the Proxmox API, then waits for the
  // checker to notice.
  std::string PlantDuplicateVm() {
    const auto vms = OurVms(sim_->StateForTest());
    if (vms.empty()) return "self-test: no VM to duplicate";
    const OurVm& original = vms.front();
    auto pve = testing::SimPveClient(*sim_);
    if (!pve.ok()) return fmt::format("self-test: {}", std::string(pve.status().message()));
    const std::string tags =
        fmt::format("omni-proxmox;omni-provider.{};omni-request.{};omni-set.{}", kProviderId, original.request, kSet);
    auto upid = (*pve)->CreateVm(original.node, 99999, {{"name", original.name}, {"memory", "2048"}, {"tags", tags}});
    if (!upid.ok()) return fmt::format("self-test: planting failed: {}", std::string(upid.status().message()));
    const auto deadline = SteadyClock::now() + seconds{30};
    while (SteadyClock::now() < deadline) {
      if (auto v = Violation(); !v.empty()) return v;
      std::this_thread::sleep_for(milliseconds{100});
    }
    return "self-test: the checker did not notice the planted duplicate";
  }

  bool ProviderExitedOnItsOwn() const {
    return std::any_of(replicas_.begin(), replicas_.end(), [](const auto& r) { return r->exited_on_its_own(); });
  }

  std::string MissingForUp(int target) {
    const auto requests = Requests();
    const auto statuses = Statuses();
    const auto vms = OurVms(sim_->StateForTest());
    {
      // The convergence check is a sample too: a status it sees PROVISIONED may be gone before
      // the checker's next pass once the next scale-down starts.
      std::lock_guard lock(mutex_);
      for (const auto& [id, spec] : statuses) {
        if (spec.stage() == Stage::PROVISIONED) requests_provisioned_.insert(id);
      }
    }
    int running = 0;
    std::vector<std::string> problems;
    for (const auto& [id, view] : requests) {
      if (view.tearing_down) {
        problems.push_back(fmt::format("request {} still tearing down", id));
        continue;
      }
      ++running;
      if (!statuses.contains(id) || statuses.at(id).stage() != Stage::PROVISIONED) {
        problems.push_back(fmt::format(
            "request {} not PROVISIONED ({})", id,
            statuses.contains(id) ? fmt::format("stage {} '{}' error '{}'", static_cast<int>(statuses.at(id).stage()),
                                                statuses.at(id).status(), statuses.at(id).error())
                                  : "no status"));
      }
    }
    if (running != target) problems.push_back(fmt::format("{} live requests, want {}", running, target));
    if (static_cast<int>(vms.size()) != target) problems.push_back(fmt::format("{} VMs, want {}", vms.size(), target));
    for (const auto& vm : vms) {
      if (vm.status != "running" || !vm.lock.empty()) {
        problems.push_back(fmt::format("vm {} {} lock={}", vm.vmid, vm.status, vm.lock));
      }
    }
    return problems.empty()
               ? ""
               : fmt::format("{}", fmt::join(problems.begin(),
                                             problems.begin() + std::min<std::size_t>(problems.size(), 8), "; "));
  }

  std::string MissingForDown() {
    const auto requests = Requests();
    const auto statuses = Statuses();
    const auto vms = OurVms(sim_->StateForTest());
    std::vector<std::string> problems;
    for (const auto& [id, view] : requests) {
      problems.push_back(fmt::format("request {} still exists ({}, finalizers: {})", id,
                                     view.tearing_down ? "tearing down" : "running", fmt::join(view.finalizers, ",")));
    }
    if (!statuses.empty()) problems.push_back(fmt::format("{} MachineRequestStatuses left", statuses.size()));
    if (const int states = ProviderStates(); states != 0) {
      problems.push_back(fmt::format("{} provider state resources left", states));
    }
    if (!vms.empty()) problems.push_back(fmt::format("{} VMs left", vms.size()));
    return problems.empty()
               ? ""
               : fmt::format("{}", fmt::join(problems.begin(),
                                             problems.begin() + std::min<std::size_t>(problems.size(), 8), "; "));
  }

  // Disks not attached to a live VM and cloud-init ISOs no live VM uses. A short grace lets
  // in-flight deletes finish; the first violation found after it is reported with the volume list.
  std::optional<std::string> LeftoverChecks(int target) {
    // With the garbage collector deleting, a cloud-init ISO teardown had to leave on an unreachable
    // node is collected a few cycles later.
    const auto deadline = SteadyClock::now() + (workload_.gc_mode == "delete" ? seconds{90} : seconds{20});
    std::string problem;
    while (true) {
      problem.clear();
      const Json state = sim_->StateForTest();
      std::map<int, std::string> configs;  // vmid -> config text
      for (const auto& vm : state["vms"]) configs[vm["vmid"].get<int>()] = vm["config"].dump();
      std::vector<std::string> leftovers;
      for (const auto& volume : state["volumes"]) {
        const std::string volid = volume["volid"].get<std::string>();
        const std::string content = volume["content"].is_string() ? volume["content"].get<std::string>() : "";
        if (content == "images") {
          const int vmid = volume["vmid"].is_number() ? volume["vmid"].get<int>() : 0;
          auto it = configs.find(vmid);
          if (it == configs.end() || it->second.find(volid) == std::string::npos) {
            leftovers.push_back(fmt::format("disk {} on {} (vm {} {})", volid, Str(volume["node"]), vmid,
                                            it == configs.end() ? "gone" : "does not use it"));
          }
        } else if (volid.find("omni-cidata") != std::string::npos) {
          const bool used = std::any_of(configs.begin(), configs.end(),
                                        [&](const auto& c) { return c.second.find(volid) != std::string::npos; });
          if (!used)
            leftovers.push_back(fmt::format("cloud-init ISO {} on {} used by no VM", volid, Str(volume["node"])));
        }
      }
      if (!leftovers.empty()) {
        problem = fmt::format("invariant 'no disk or ISO left behind' broken after scaling to {}:\n  {}\n", target,
                              fmt::join(leftovers, "\n  "));
      }
      if (problem.empty() || SteadyClock::now() > deadline) break;
      std::this_thread::sleep_for(milliseconds{500});
    }
    if (problem.empty()) return std::nullopt;
    return problem + Evidence();
  }

  std::optional<std::string> FinalChecks() {
    // Talos ISOs are shared between requests; with the garbage collector in delete mode none may
    // stay, else exactly one per node's ISO storage.
    const auto deadline = SteadyClock::now() + (workload_.gc_mode == "delete" ? seconds{120} : seconds{0});
    while (true) {
      figures_.talos_isos.clear();
      const Json state = sim_->StateForTest();
      for (const auto& volume : state["volumes"]) {
        const std::string volid = volume["volid"].get<std::string>();
        if (volid.find(":iso/talos-") != std::string::npos) {
          figures_.talos_isos.push_back(fmt::format("{} on {}", volid, Str(volume["node"])));
        }
      }
      figures_.talos_isos_left = static_cast<int>(figures_.talos_isos.size());
      if (workload_.gc_mode != "delete" || figures_.talos_isos.empty() || SteadyClock::now() > deadline) break;
      std::this_thread::sleep_for(milliseconds{500});
    }
    {
      std::lock_guard lock(mutex_);
      figures_.requests_seen = static_cast<int>(requests_seen_.size());
      figures_.requests_provisioned = static_cast<int>(requests_provisioned_.size());
    }
    if (workload_.gc_mode == "delete" && !figures_.talos_isos.empty()) {
      return fmt::format("invariant 'no ISO left behind' broken: the garbage collector left {}\n",
                         fmt::join(figures_.talos_isos, ", "));
    }
    if (workload_.gc_mode != "delete" && figures_.talos_isos_left > static_cast<int>(kNodes.size())) {
      return fmt::format("more Talos ISOs than nodes: {}\n", fmt::join(figures_.talos_isos, ", "));
    }
    return FencingChecks();
  }

  // No mutation from a replica while another held the lease, from both simulators' journals.
  std::optional<std::string> FencingChecks() {
    const auto report =
        testing::CheckFencing(testing::LeaseVersions(standin_->journal(), kLeaseType),
                              testing::ReplicaMutations(standin_->journal(), sim_->journal()), not_running_);
    figures_.lease_holder_changes = report.holder_changes;
    figures_.mutations_checked = report.checked;
    figures_.judged_at_stop = report.judged_at_stop;
    figures_.fencing_violations = static_cast<int>(report.violations.size());
    if (standin_->journal().dropped() + sim_->journal().dropped() > 0) {
      return "the simulators' journals dropped records: the fencing check cannot be made\n";
    }
    if (report.checked == 0) return "the journals hold no mutation from any replica: does the provider name itself?\n";
    if (report.violations.empty()) return std::nullopt;
    const auto shown = std::min<std::size_t>(report.violations.size(), 10);
    return fmt::format(
               "invariant 'no mutation from a replica while another holds the lease' broken {} times:\n  {}\n",
               report.violations.size(),
               fmt::join(report.violations.begin(), report.violations.begin() + static_cast<long>(shown), "\n  ")) +
           Evidence();
  }

  std::string Evidence() {
    std::string out = "--- VMs of ours:\n" + DescribeVms(OurVms(sim_->StateForTest()));
    out += "--- MachineRequests and statuses:\n";
    const auto statuses = Statuses();
    for (const auto& [id, view] : Requests()) {
      out += fmt::format("  {} {} finalizers=[{}]", id, view.tearing_down ? "tearingDown" : "running",
                         fmt::join(view.finalizers, ","));
      if (statuses.contains(id)) {
        const auto& s = statuses.at(id);
        out += fmt::format(" stage={} status='{}' error='{}'", static_cast<int>(s.stage()), s.status(), s.error());
      }
      out += "\n";
    }
    out += fmt::format("--- seed {} (rerun with OP_TORTURE_SEED={}); logs in {}\n", seed_, seed_, dir_.string());
    for (const auto& replica : replicas_) {
      if (!replica) continue;
      out += fmt::format("--- replica {} (tail):\n", replica->identity().empty() ? "?" : replica->identity());
      out += Tail(replica->Log(), replicas_.size() > 1 ? 25 : 40);
    }
    return out;
  }

  std::string Fail(std::string message) {
    keep_dir_ = workload_.keep_logs_on_failure;
    std::lock_guard lock(mutex_);
    figures_.requests_seen = static_cast<int>(requests_seen_.size());
    figures_.requests_provisioned = static_cast<int>(requests_provisioned_.size());
    return message;
  }

  const Workload workload_;
  const std::uint64_t seed_;
  std::mt19937_64 rng_;
  Figures& figures_;
  std::filesystem::path dir_;
  bool keep_dir_ = false;
  std::unique_ptr<sim::omni::StandIn> standin_;  // outlives the simulator, whose boot hook calls it
  std::unique_ptr<sim::pve::Simulator> sim_;
  std::vector<std::unique_ptr<testing::ReplicaProcess>> replicas_;
  std::vector<testing::NotRunning> not_running_;  // kills and pauses, for the fencing check
  std::atomic<SteadyClock::rep> last_disturbance_ns_{0};

  std::mutex mutex_;
  std::string violation_;
  std::set<std::string> requests_seen_;
  std::set<std::string> requests_provisioned_;
  std::jthread checker_;  // last: stopped first
};

}  // namespace

std::uint64_t SeedFromEnvironment() {
  if (const char* text = std::getenv("OP_TORTURE_SEED"); text != nullptr && *text != '\0') {
    return std::strtoull(text, nullptr, 10);
  }
  return std::random_device{}() % 1'000'000'000ull;
}

void ApplyEnvironmentOverrides(Workload& workload) {
  const auto read = [](const char* name, int& into) {
    if (const char* text = std::getenv(name); text != nullptr && *text != '\0') into = std::atoi(text);
  };
  read("OP_TORTURE_MACHINES", workload.machines);
  read("OP_TORTURE_CYCLES", workload.cycles);
  read("OP_TORTURE_KILLS", workload.kills);
  read("OP_TORTURE_PAUSES", workload.pauses);
}

std::optional<std::string> RunWorkload(const Workload& workload, std::uint64_t seed, Figures& figures) {
  Rig rig(workload, seed, figures);
  return rig.Run();
}

std::string FormatFigures(const Workload& workload, const Figures& f) {
  std::string out = fmt::format(
      "torture[{}]: seed {} | {} machines x {} cycles | kills {} ({}; {} while work was in flight) | provider starts "
      "{} | VMs created {} "
      "(create calls {}) | inherited mid-create {}, mid-teardown {} | max VMs per request {} | requests {} "
      "(PROVISIONED {}) | node outages {} | stand-in restarts {} | failed tasks injected {} | Talos ISOs left {} | "
      "checker samples {} | total {:.1f} s\n"
      "  replicas {} | kills of the leader {} | pauses {} (of the leader {}) | lease holder changes {} | mutations "
      "checked against the lease {} ({} arrived while their sender was stopped or dead) | fencing violations {}\n",
      workload.name, f.seed, workload.machines, workload.cycles, f.kills, fmt::join(f.kills_by_moment, ", "),
      f.kills_mid_work, f.provider_starts, f.vms_created, f.vm_create_calls, f.inherited_creates, f.inherited_teardowns,
      f.max_vms_per_request, f.requests_seen, f.requests_provisioned, f.node_outages, f.standin_restarts,
      f.tasks_failed_on_purpose, f.talos_isos_left, f.samples, f.total_seconds, std::max(workload.replicas, 1),
      f.kills_of_leader, f.pauses, f.pauses_of_leader, f.lease_holder_changes, f.mutations_checked, f.judged_at_stop,
      f.fencing_violations);
  for (const auto& p : f.phases) {
    out += fmt::format(
        "  {}: {} kills, {} pauses, converged {:.1f} s after the scale command, {:.1f} s after the last "
        "disturbance\n",
        p.what, p.kills, p.pauses, p.seconds_to_converge, p.seconds_after_disturbance);
  }
  return out;
}

}  // namespace omni_proxmox::torture
