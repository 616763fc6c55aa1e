// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox demo`: the whole system in one process. A simulated 3-node Proxmox VE
// cluster and an Omni stand-in run on loopback; the real provider (the same reconciler
// `run` uses, over real sockets and signed gRPC) provisions a MachineRequestSet up to six
// machines, which join Omni with their join tokens, and tears them down again.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/world.h"
#include "omni/specs/omni.pb.h"
#include "provider/provider.h"
#include "sim/pve/scenario_builder.h"
#include "util/log.h"
#include "util/random.h"
#include "util/version.h"

namespace omni_proxmox::cli {
namespace {

using Json = nlohmann::json;
using Stage = specs::MachineRequestStatusSpec;
using std::chrono::milliseconds;

// The cluster of the operator document: LVM-thin per node, a shared Ceph RBD pool named vm_ssd, vmbr0.
sim::pve::Scenario DemoScenario() {
  sim::pve::Scenario scenario;
  scenario.name = "demo";
  scenario.vmid_upper = 10000;
  scenario.nodes = sim::pve::NumberedNodes(3, 32, 128);
  scenario.storages = {sim::pve::LocalDirStorage(), sim::pve::LocalLvmThinStorage(1000), sim::pve::CephPoolStorage()};
  scenario.task_seconds = sim::pve::QuickTaskSeconds();
  scenario.task_seconds["qmshutdown"] = 2;
  scenario.task_seconds["download"] = 6;
  return scenario;
}

// docs/examples/machineclass-worker.yaml's providerdata.
constexpr const char* kWorkerProviderData = R"(cores: 4
sockets: 1
memory: 8192
disk_size: 40
network_bridge: vmbr0
storage_selector: type == "rbd" && name == "vm_ssd"
)";

struct DemoOptions {
  bool fast = false;
  int machines = 6;
};

struct Row {
  std::string id;
  int stage = 0;
  std::string status;
  std::string error;
};

const char* StageName(int stage) {
  switch (stage) {
    case Stage::PROVISIONING:
      return "PROVISIONING";
    case Stage::PROVISIONED:
      return "PROVISIONED";
    case Stage::FAILED:
      return "FAILED";
    default:
      return "PENDING";
  }
}

std::string Bar(int done, int total, int width = 30) {
  const int filled = total == 0 ? width : done * width / total;
  return fmt::format("[{}{}] {}/{}", std::string(filled, '#'), std::string(width - filled, '.'), done, total);
}

int RunDemo(const DemoOptions& demo, const CommandContext& ctx) {
  const bool json = ctx.output == OutputFormat::kJson;
  const bool tty = !json && isatty(STDOUT_FILENO);
  const auto started = std::chrono::steady_clock::now();
  const auto say = [&](const std::string& line) {
    if (!json) std::cout << line << "\n" << std::flush;
  };
  const auto fail = [&](const std::string& message) {
    if (json) {
      std::cout << Json{{"error", message}}.dump() << "\n";
    } else {
      std::cerr << "demo failed: " << message << "\n";
    }
    return kExitFindings;
  };

  auto world_started = World::Start({.scenario = DemoScenario(),
                                     .time_scale = demo.fast ? 40.0 : 8.0,
                                     .client_seed = util::Random::SeedFromDevice(),
                                     .omni_tls = true});
  if (!world_started.ok()) return fail(std::string(world_started.status().message()));
  World& world = **world_started;
  say(fmt::format("omni-proxmox {} demo", util::kVersion));
  say(fmt::format("  Proxmox VE simulator: {}/api2/json (3 nodes, local-lvm, shared rbd vm_ssd, vmbr0)",
                  world.sim().base_url()));
  say(fmt::format("  Omni stand-in:        {} (signed gRPC over TLS), Image Factory {}",
                  world.standin().grpc_endpoint(), world.standin().factory_url()));

  // The provider exactly as `run` assembles it (task slots, garbage collection in report mode),
  // with the demo's quicker heartbeat, resync and polls.
  provider::ProviderOptions options = world.ProviderDefaults();
  options.info.name = "Proxmox (demo)";
  options.info.description = "omni-proxmox demo";
  options.fleet.task_poll = milliseconds{demo.fast ? 50 : 200};
  options.steps.shutdown_timeout = std::chrono::seconds{10};
  options.heartbeat_interval = milliseconds{2000};
  options.resync_interval = milliseconds{5000};
  options.gc_interval = milliseconds{5000};
  auto assembled = world.AssembleProvider(options);
  if (!assembled.ok()) return fail(std::string(assembled.status().message()));
  provider::Provider& provider = **assembled;
  provider.Start();

  const auto rows = [&]() {
    std::vector<Row> out;
    for (const auto& [id, spec] : world.RequestStatuses())
      out.push_back({id, spec.stage(), spec.status(), spec.error()});
    return out;
  };
  const auto vms = [&]() { return world.sim().StateForTest()["vms"]; };
  const auto joined_count = [&]() { return static_cast<int>(world.Joined().size()); };

  // Progress: redrawn in place on a terminal, printed on change otherwise.
  std::size_t drawn_lines = 0;
  std::string last_frame;
  const auto draw = [&](const std::string& title, int done, int total) {
    if (json) return;
    std::string frame = fmt::format("{} {}\n", title, Bar(done, total));
    for (const auto& row : rows()) {
      frame += fmt::format("  {:<18} {:<13} {}\n", row.id, StageName(row.stage),
                           row.error.empty() ? row.status : row.status + " (" + row.error.substr(0, 60) + ")");
    }
    if (frame == last_frame) return;
    if (tty && drawn_lines > 0) std::cout << fmt::format("\x1b[{}A\x1b[J", drawn_lines);
    std::cout << frame << std::flush;
    drawn_lines = static_cast<std::size_t>(std::count(frame.begin(), frame.end(), '\n'));
    last_frame = frame;
  };
  const auto wait_until = [&](const std::string& title, const std::function<int()>& done, int total,
                              std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const int d = done();
      draw(title, d, total);
      if (d == total) return true;
      std::this_thread::sleep_for(milliseconds{tty ? 150 : 400});
    }
    return false;
  };

  // As Omni, the stand-in admits request sets only for a provider that has published its status.
  if (!world.standin().WaitFor([&] { return world.standin().ProviderStatusPublished("proxmox"); },
                               std::chrono::seconds{20})) {
    return fail("the provider did not publish its InfraProviderStatus within 20 s");
  }
  if (auto s = world.standin().ApplyMachineClass("worker", kWorkerProviderData); !s.ok()) {
    return fail(std::string(s.message()));
  }
  say("\nMachineClass 'worker': 4 cores, 8 GiB, 40 GiB on storage_selector: type == \"rbd\" && name == \"vm_ssd\"");
  say(fmt::format("Scaling MachineRequestSet 'workers' to {}...", demo.machines));
  if (auto s = world.standin().ScaleMachineRequestSet("workers", "worker", demo.machines); !s.ok()) {
    return fail(std::string(s.message()));
  }
  const auto provisioned = [&]() {
    int n = 0;
    for (const auto& row : rows()) n += row.stage == Stage::PROVISIONED;
    return n;
  };
  const bool up = wait_until("provisioning", provisioned, demo.machines, std::chrono::seconds{50}) &&
                  wait_until("joining     ", joined_count, demo.machines, std::chrono::seconds{20});
  const int machines_provisioned = provisioned();
  const int machines_joined = joined_count();

  if (!json) {
    std::cout << "\nProxmox VMs made by the provider:\n";
    std::cout << fmt::format("  {:<6} {:<18} {:<6} {:<8} {:<28} {}\n", "VMID", "NAME", "NODE", "STATUS", "DISK",
                             "SMBIOS UUID");
    for (const auto& vm : vms()) {
      const Json& c = vm["config"];
      const auto text = [&](const char* key) {
        return c.contains(key) ? (c[key].is_string() ? c[key].get<std::string>() : c[key].dump()) : std::string();
      };
      std::string disk = text("scsi0");
      disk = disk.substr(0, disk.find(','));
      std::cout << fmt::format("  {:<6} {:<18} {:<6} {:<8} {:<28} {}\n", vm["vmid"].get<int>(), text("name"),
                               vm["node"].get<std::string>(), vm["status"].get<std::string>(), disk,
                               text("smbios1").substr(5));
    }
    std::cout << "\nScaling 'workers' to 0...\n";
  }
  (void)world.standin().ScaleMachineRequestSet("workers", "worker", 0);
  const bool down = wait_until(
      "tearing down", [&] { return demo.machines - world.MachineRequestCount(); }, demo.machines,
      std::chrono::seconds{50});
  const int vms_remaining = static_cast<int>(vms().size());
  provider.Stop();
  const double duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const bool ok =
      up && down && machines_provisioned == demo.machines && machines_joined == demo.machines && vms_remaining == 0;
  const auto& stats = provider.counters();
  if (json) {
    std::cout << Json{{"machines_requested", demo.machines},
                      {"machines_provisioned", machines_provisioned},
                      {"machines_joined", machines_joined},
                      {"vms_created", stats.vms_created.load()},
                      {"vms_deleted", stats.vms_deleted.load()},
                      {"vms_remaining", vms_remaining},
                      {"duration_s", std::round(duration_s * 10) / 10},
                      {"ok", ok}}
                     .dump()
              << "\n";
  } else {
    std::cout << "\nSummary\n";
    std::cout << fmt::format("  {:<28} {}\n", "machines requested", demo.machines);
    std::cout << fmt::format("  {:<28} {}\n", "machines provisioned", machines_provisioned);
    std::cout << fmt::format("  {:<28} {}\n", "machines joined Omni", machines_joined);
    std::cout << fmt::format("  {:<28} {}\n", "VMs created / deleted",
                             fmt::format("{} / {}", stats.vms_created.load(), stats.vms_deleted.load()));
    std::cout << fmt::format("  {:<28} {}\n", "VMs remaining after scale-0", vms_remaining);
    std::cout << fmt::format("  {:<28} {:.1f} s\n", "duration", duration_s);
    std::cout << (ok ? "  result                       OK\n" : "  result                       FAILED\n");
  }
  return ok ? kExitOk : kExitFindings;
}

}  // namespace

void RegisterDemoCommand(CLI::App& root, CommandContext& ctx) {
  auto demo = std::make_shared<DemoOptions>();
  auto* cmd = root.add_subcommand("demo",
                                  "Run the whole system in one process: a simulated Proxmox cluster, an Omni "
                                  "stand-in and the provider, scaling a set up to 6 machines and back to 0");
  cmd->footer("Examples:\n  omni-proxmox demo\n  omni-proxmox demo --fast\n  omni-proxmox --format json demo --fast");
  cmd->add_flag("--fast", demo->fast, "Shorten the simulated task times");
  cmd->add_option("--machines", demo->machines, "How many machines to provision")
      ->check(CLI::Range(1, 50))
      ->capture_default_str();
  cmd->callback([demo, &ctx] {
    // The demo's own components log to stderr only when asked; the progress display is the output.
    if (ctx.log.level == "info") (void)util::InitLogging({.format = ctx.log.format, .level = "warn"});
    ctx.exit_code = RunDemo(*demo, ctx);
  });
}

}  // namespace omni_proxmox::cli
