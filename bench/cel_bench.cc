// SPDX-License-Identifier: Apache-2.0
// CEL storage selectors: compile cost, per-entry evaluation, and picking a storage among 10 entries.
// Figures and the command that produced them: docs/benchmarks.md ("CEL").

#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "provider/placement/storage_selector.h"

namespace {

using omni_proxmox::provider::SelectFirst;
using omni_proxmox::provider::StorageFacts;
using omni_proxmox::provider::StorageSelector;

constexpr std::uint64_t kGiB = 1ull << 30;

// Typical selectors: the operator documentation's example and the four measured with cel-go (docs/cel.md §4.1).
const char* const kSelectors[] = {
    R"(type == "rbd" && name == "vm_ssd")",
    R"(name == "local-lvm")",
    R"(storageType == "lvmthin" && availableSpace > 100u * GiB)",
    R"(name.startsWith("ceph") || name in ["local-lvm", "fast"])",
    R"(name.matches("^local-.*$") && node == "pve1")",
};

StorageFacts Entry(std::string name, std::string type, std::uint64_t avail_gib) {
  StorageFacts s;
  s.name = std::move(name);
  s.node = "pve1";
  s.type = std::move(type);
  s.avail_bytes = avail_gib * kGiB;
  s.total_bytes = 2 * avail_gib * kGiB;
  s.used_bytes = avail_gib * kGiB;
  s.enabled = s.active = true;
  s.content = {"images", "rootdir"};
  return s;
}

// Ten entries as one node returns them; the match is the last one, so a pick evaluates all ten.
std::vector<StorageFacts> TenEntries() {
  return {Entry("local", "dir", 50),      Entry("local-lvm", "lvmthin", 200), Entry("backup", "nfs", 900),
          Entry("iso", "cifs", 30),       Entry("fast", "zfspool", 400),      Entry("slow", "lvm", 800),
          Entry("ceph-hdd", "rbd", 5000), Entry("archive", "dir", 2000),      Entry("scratch", "dir", 10),
          Entry("vm_ssd", "rbd", 2048)};
}

void BM_CompileFiveSelectors(benchmark::State& state) {
  for (auto _ : state) {
    for (const char* src : kSelectors) {
      auto selector = StorageSelector::Compile(src);
      benchmark::DoNotOptimize(selector);
    }
  }
  state.SetItemsProcessed(state.iterations() * 5);
}
BENCHMARK(BM_CompileFiveSelectors);

void BM_EvalPerEntry(benchmark::State& state) {
  const auto selector = *StorageSelector::Compile(kSelectors[state.range(0)]);
  const StorageFacts entry = Entry("vm_ssd", "rbd", 2048);
  state.SetLabel(kSelectors[state.range(0)]);
  for (auto _ : state) {
    auto match = selector.Matches(entry);
    benchmark::DoNotOptimize(match);
  }
}
BENCHMARK(BM_EvalPerEntry)->DenseRange(0, 4);

void BM_PickAmongTen(benchmark::State& state) {
  const auto selector = *StorageSelector::Compile(kSelectors[0]);
  const std::vector<StorageFacts> entries = TenEntries();
  for (auto _ : state) {
    auto pick = SelectFirst(selector, entries);
    benchmark::DoNotOptimize(pick);
  }
}
BENCHMARK(BM_PickAmongTen);

// What the Go provider does per entry (compile + evaluate), for comparison with cel-go's ~86-139 us.
void BM_CompileAndEvalPerEntry(benchmark::State& state) {
  const StorageFacts entry = Entry("vm_ssd", "rbd", 2048);
  for (auto _ : state) {
    auto selector = StorageSelector::Compile(kSelectors[0]);
    auto match = selector->Matches(entry);
    benchmark::DoNotOptimize(match);
  }
}
BENCHMARK(BM_CompileAndEvalPerEntry);

}  // namespace

BENCHMARK_MAIN();
