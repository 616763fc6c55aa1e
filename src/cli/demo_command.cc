// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox demo`: the whole system in one process. A simulated 3-node Proxmox VE
// cluster and an Omni stand-in run on loopback; the real provider (the same reconciler
// `run` uses, over real sockets and signed gRPC) provisions a MachineRequestSet up to six
// machines, which join Omni with their join tokens, and tears them down again.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "omni/keys.h"
#include "omni/management_client.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "provider/model/providerdata.h"
#include "provider/provider.h"
#include "pve/client.h"
#include "sim/omni/standin.h"
#include "sim/pve/simulator.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/version.h"

namespace omni_proxmox::cli {
namespace {

using Json = nlohmann::json;
using Stage = specs::MachineRequestStatusSpec;
using std::chrono::milliseconds;

// The cluster of the operator document: LVM-thin per node, a shared Ceph RBD pool named vm_ssd, vmbr0.
constexpr const char* kDemoScenario = R"yaml(
cluster:
  name: demo
  vmid_range: [100, 10000]
nodes:
  - {name: pve1, cpus: 32, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve2, cpus: 32, memory_gib: 128, bridges: [vmbr0]}
  - {name: pve3, cpus: 32, memory_gib: 128, bridges: [vmbr0]}
storages:
  - {id: local, type: dir, content: [iso, vztmpl, backup], size_gib: 100}
  - {id: local-lvm, type: lvmthin, content: [images, rootdir], size_gib: 1000}
  - {id: vm_ssd, type: rbd, content: [images], shared: true, size_gib: 4000}
users:
  - userid: root@pam
    password: pve-sim-root
    tokens:
      - {name: omni, secret: 5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40, privsep: false}
tasks:
  durations: {qmcreate: 2, qmstart: 1, qmstop: 1, qmshutdown: 2, qmconfig: 0.5, download: 6, imgcopy: 1, qmdestroy: 2, imgdel: 0.5}
)yaml";

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

  // TLS, as every real Omni serves its API (it refuses to start without); the provider trusts the
  // stand-in's self-signed CA.
  auto standin = sim::omni::StandIn::Start({.provider_id = "proxmox", .tls = true});
  if (!standin.ok()) return fail(std::string(standin.status().message()));
  std::mutex joined_mutex;
  std::set<std::string> joined;
  sim::pve::SimulatorOptions sim_options;
  sim_options.scenario_yaml = kDemoScenario;
  sim_options.time_scale = demo.fast ? 40 : 8;
  sim_options.on_vm_started = [&](const sim::pve::VmBootInfo& boot) {
    if ((*standin)->MachineJoined(boot.user_data, boot.smbios_uuid).ok()) {
      std::lock_guard lock(joined_mutex);
      joined.insert(boot.smbios_uuid);
    }
  };
  auto sim = sim::pve::Simulator::Start(sim_options);
  if (!sim.ok()) return fail(std::string(sim.status().message()));
  say(fmt::format("omni-proxmox {} demo", util::kVersion));
  say(fmt::format("  Proxmox VE simulator: {}/api2/json (3 nodes, local-lvm, shared rbd vm_ssd, vmbr0)",
                  (*sim)->base_url()));
  say(fmt::format("  Omni stand-in:        {} (signed gRPC over TLS), Image Factory {}", (*standin)->grpc_endpoint(),
                  (*standin)->factory_url()));

  pve::ClientOptions pve_options;
  pve_options.base_url = (*sim)->base_url() + "/api2/json";
  pve_options.token_id = (*sim)->default_token_id();
  pve_options.token_secret = util::Secret<std::string>((*sim)->default_token_secret());
  auto pve = pve::MakeHttpClient(pve_options, util::RealClock());
  if (!pve.ok()) return fail(std::string(pve.status().message()));
  auto key = omni::DecodeServiceAccountKey((*standin)->provider_key());
  if (!key.ok()) return fail(std::string(key.status().message()));
  util::Random random(util::Random::SeedFromDevice());
  omni::ClientOptions omni_options;
  omni_options.endpoint = (*standin)->grpc_endpoint();
  omni_options.tls_root_certs_pem = (*standin)->tls_ca_pem();
  omni_options.key = *key;
  omni_options.provider_id = "proxmox";
  omni_options.random = &random;
  auto state = omni::MakeGrpcStateClient(omni_options);
  if (!state.ok()) return fail(std::string(state.status().message()));
  auto management = omni::MakeGrpcManagementClient(omni_options);
  if (!management.ok()) return fail(std::string(management.status().message()));

  // The provider exactly as `run` assembles it (task slots, garbage collection in report mode),
  // with the demo's quicker heartbeat, resync and polls.
  provider::ProviderOptions options;
  options.info = {.id = "proxmox",
                  .name = "Proxmox (demo)",
                  .description = "omni-proxmox demo",
                  .icon = "",
                  .schema = provider::ProviderDataJsonSchema(),
                  .version = util::kVersion};
  options.image_factory_url = (*standin)->factory_url();
  options.fleet.task_poll = milliseconds{demo.fast ? 50 : 200};
  options.steps.shutdown_timeout = std::chrono::seconds{10};
  options.heartbeat_interval = milliseconds{2000};
  options.resync_interval = milliseconds{5000};
  options.gc_interval = milliseconds{5000};
  util::MetricsRegistry metrics;
  auto provider =
      provider::Provider::Assemble(options, **pve, **state, **management, metrics, util::RealClock(), random);
  if (!provider.ok()) return fail(std::string(provider.status().message()));
  (*provider)->Start();

  const auto rows = [&]() {
    std::vector<Row> out;
    auto list =
        (*state)->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequestStatus), {}});
    if (!list.ok()) return out;
    for (const auto& r : *list) {
      Stage spec;
      if (!omni::DecodeSpec(r, spec).ok()) continue;
      out.push_back({r.metadata.id, spec.stage(), spec.status(), spec.error()});
    }
    return out;
  };
  const auto requests = [&]() {
    auto list =
        (*state)->List({std::string(omni::kNamespaceInfraProvider), std::string(omni::kTypeMachineRequest), {}});
    return list.ok() ? static_cast<int>(list->size()) : -1;
  };
  const auto vms = [&]() { return (*sim)->StateForTest()["vms"]; };
  const auto joined_count = [&]() {
    std::lock_guard lock(joined_mutex);
    return static_cast<int>(joined.size());
  };

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
  if (!(*standin)->WaitFor([&] { return (*standin)->ProviderStatusPublished("proxmox"); }, std::chrono::seconds{20})) {
    return fail("the provider did not publish its InfraProviderStatus within 20 s");
  }
  if (auto s = (*standin)->ApplyMachineClass("worker", kWorkerProviderData); !s.ok()) {
    return fail(std::string(s.message()));
  }
  say("\nMachineClass 'worker': 4 cores, 8 GiB, 40 GiB on storage_selector: type == \"rbd\" && name == \"vm_ssd\"");
  say(fmt::format("Scaling MachineRequestSet 'workers' to {}...", demo.machines));
  if (auto s = (*standin)->ScaleMachineRequestSet("workers", "worker", demo.machines); !s.ok()) {
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
  (void)(*standin)->ScaleMachineRequestSet("workers", "worker", 0);
  const bool down = wait_until(
      "tearing down", [&] { return demo.machines - requests(); }, demo.machines, std::chrono::seconds{50});
  const int vms_remaining = static_cast<int>(vms().size());
  (*provider)->Stop();
  const double duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const bool ok =
      up && down && machines_provisioned == demo.machines && machines_joined == demo.machines && vms_remaining == 0;
  const auto& stats = (*provider)->counters();
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
