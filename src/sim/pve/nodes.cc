// SPDX-License-Identifier: Apache-2.0
// Node endpoints: GET /nodes, GET /nodes/{node}/status and GET /nodes/{node}/network (the scenario's
// bridges). An offline node keeps showing its capacity for kOfflineStatsExpiry after it went down.

#include <algorithm>

#include "fmt/format.h"

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"

namespace omni_proxmox::sim::pve {
namespace {

using std::chrono::duration_cast;
using std::chrono::seconds;

constexpr auto kOfflineStatsExpiry = std::chrono::minutes(5);

}  // namespace

void Simulator::Impl::AddNodeRoutes(Routes& routes) {
  routes["GET /nodes"] = &Impl::GetNodes;
  routes["GET /nodes/{node}/status"] = &Impl::GetNodeStatus;
  routes["GET /nodes/{node}/network"] = &Impl::GetNodeNetwork;
}

Json Simulator::Impl::NodeEntry(const NodeState& node, const AuthContext& auth) const {
  Json entry = {{"node", node.name},
                {"id", "node/" + node.name},
                {"type", "node"},
                {"status", node.online ? "online" : "offline"},
                {"level", ""},
                {"ssl_fingerprint", "5A:0F:3C:" + DigestHex(EVP_sha1(), node.name).substr(0, 2) + ":9E:11:42"}};
  bool audit = PrivsLocked(auth.authid, "/nodes/" + node.name).count("Sys.Audit") != 0;
  bool recent = node.online || Now() - node.offline_since < kOfflineStatsExpiry;
  if (!audit || !recent) return entry;
  entry["maxcpu"] = node.cpus;
  entry["maxmem"] = node.memory_bytes;
  entry["maxdisk"] = node.rootfs_bytes;
  if (!node.online) {
    entry.erase("level");
    return entry;
  }
  std::int64_t mem = 2 * kGiB;
  int vcpus = 0;
  for (const auto& [vmid, vm] : vms_) {
    if (vm.node != node.name || !vm.running) continue;
    mem += std::stoll(vm.Str("memory").empty() ? "512" : SplitAny(vm.Str("memory"), "=,").back()) * kMiB;
    vcpus += std::stoi(vm.Str("cores").empty() ? "1" : vm.Str("cores"));
  }
  entry["mem"] = std::min(mem, node.memory_bytes);
  entry["cpu"] = std::min(1.0, 0.01 + 0.02 * vcpus / std::max(1, node.cpus));
  entry["disk"] = node.rootfs_bytes / 5;
  entry["uptime"] = duration_cast<seconds>(Now() - node.boot_time).count();
  return entry;
}

Reply Simulator::Impl::GetNodes(Call& call) {
  Json list = Json::array();
  std::vector<std::string> order = node_order_;
  std::shuffle(order.begin(), order.end(), call.rng);
  for (const auto& name : order) list.push_back(NodeEntry(nodes_.at(name), call.auth));
  return Ok(list);
}

Reply Simulator::Impl::GetNodeStatus(Call& call) {
  const NodeState& node = nodes_.at(call.Get("node"));
  Json entry = NodeEntry(node, call.auth);
  std::int64_t used = entry.value("mem", std::int64_t{0});
  return Ok({{"cpu", entry.value("cpu", 0.0)},
             {"memory",
              {{"total", node.memory_bytes},
               {"used", used},
               {"free", node.memory_bytes - used},
               {"available", node.memory_bytes - used}}},
             {"rootfs",
              {{"total", node.rootfs_bytes},
               {"used", node.rootfs_bytes / 5},
               {"avail", node.rootfs_bytes - node.rootfs_bytes / 5},
               {"free", node.rootfs_bytes - node.rootfs_bytes / 5}}},
             {"cpuinfo",
              {{"model", "Simulated CPU @ 3.00GHz"}, {"cpus", node.cpus}, {"cores", node.cpus / 2}, {"sockets", 1}}},
             {"loadavg", {"0.12", "0.08", "0.05"}},
             {"uptime", duration_cast<seconds>(Now() - node.boot_time).count()},
             {"kversion", "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2"},
             {"pveversion", "pve-manager/9.2.11/4d8a2f1c9b7e3a05"},
             {"current-kernel",
              {{"sysname", "Linux"}, {"release", "6.14.8-2-pve"}, {"version", "#1 SMP"}, {"machine", "x86_64"}}},
             {"boot-info", {{"mode", "efi"}, {"secureboot", 0}}}});
}

Reply Simulator::Impl::GetNodeNetwork(Call& call) {
  // The scenario knows only Linux bridges, so every other interface type lists nothing.
  const std::string type = call.Get("type", "any_bridge");
  Json list = Json::array();
  if (type != "bridge" && type != "any_bridge" && type != "any_local_bridge" && type != "include_sdn") {
    return Ok(list);
  }
  const NodeState& node = nodes_.at(call.Get("node"));
  int priority = 3;
  for (const auto& bridge : node.bridges) {
    list.push_back({{"iface", bridge},
                    {"type", "bridge"},
                    {"method", "manual"},
                    {"method6", "manual"},
                    {"families", Json::array({"inet"})},
                    {"active", 1},
                    {"autostart", 1},
                    {"bridge_ports", ""},
                    {"bridge_stp", "off"},
                    {"bridge_fd", "0"},
                    {"priority", priority++}});
  }
  std::shuffle(list.begin(), list.end(), call.rng);
  return Ok(list);
}

}  // namespace omni_proxmox::sim::pve
