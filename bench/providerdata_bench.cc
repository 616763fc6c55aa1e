// SPDX-License-Identifier: Apache-2.0
// providerdata parsing: what the provider pays per MachineRequest (it parses the class's providerdata
// on every reconcile pass). Figures and the command that produced them: docs/benchmarks.md
// ("providerdata parsing").

#include <string>

#include <benchmark/benchmark.h>

#include "provider/model/providerdata.h"

namespace {

using omni_proxmox::provider::ParseProviderData;

// docs/examples/machineclass-worker.yaml's providerdata.
constexpr const char* kWorker = R"(cores: 4
sockets: 1
memory: 8192
disk_size: 40
network_bridge: vmbr0
storage_selector: type == "rbd" && name == "vm_ssd"
)";

// Most keys in use: extra disks and NICs, PCI and USB mappings, placement and VMID range.
constexpr const char* kFull = R"(cores: 8
sockets: 2
memory: 16384
disk_size: 100
storage_selector: storageType == "lvmthin" && availableSpace > 100u * 1024u * 1024u * 1024u
network_bridge: vmbr0
vlan: 42
cpu_type: host
machine_type: q35
numa: true
disk_ssd: true
disk_discard: true
disk_iothread: true
additional_disks:
  - {size: 50, storage_selector: name == "fast", ssd: true, discard: true, iothread: true}
  - {size: 10}
additional_nics:
  - {bridge: vmbr1, vlan: 7, firewall: true, model: e1000, mtu: 9000}
pci_devices:
  - {mapping: gpu, pcie: true, x_vga: true}
usb_devices:
  - {mapping: dongle, usb3: true}
nodes: [pve1, pve2]
placement: binpack
tags: [omni, talos]
pool: omni
firmware: ovmf
vmid_range: 1000-1999
description: worker VMs
)";

// An unknown key: the error path with its "did you mean" suggestion.
constexpr const char* kTypo = "cores: 2\nmemroy: 4096\ndisk_size: 20\n";

void BM_ParseProviderData(benchmark::State& state, const char* yaml, bool expect_ok) {
  for (auto _ : state) {
    auto result = ParseProviderData(yaml);
    if (result.ok() != expect_ok) state.SkipWithError("unexpected parse result");
    benchmark::DoNotOptimize(result);
  }
}

BENCHMARK_CAPTURE(BM_ParseProviderData, worker_example, kWorker, true);
BENCHMARK_CAPTURE(BM_ParseProviderData, all_keys, kFull, true);
BENCHMARK_CAPTURE(BM_ParseProviderData, unknown_key_error, kTypo, false);

}  // namespace

BENCHMARK_MAIN();
