// SPDX-License-Identifier: Apache-2.0
#pragma once

// The providerdata of a MachineClass: what one VM should look like. A superset of the Go
// provider's schema (same keys, same meaning), parsed and validated before anything is
// created. Pure: no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace omni_proxmox::provider {

enum class Placement { kSpread, kBinpack };
enum class Firmware { kSeabios, kOvmf };

struct AdditionalDisk {
  std::uint32_t size_gib = 0;
  std::string storage_selector;  // empty: the boot disk's storage
  bool ssd = false;
  bool discard = false;
  bool iothread = false;
  std::string cache;  // empty: Proxmox default
  std::string aio;    // empty: Proxmox default
};

struct AdditionalNic {
  std::string bridge;
  std::uint32_t vlan = 0;  // 0: untagged
  bool firewall = false;
  std::string model = "virtio";
  std::uint32_t mtu = 0;  // 0: inherit
};

struct PciDevice {
  std::string mapping;  // a Datacenter -> Resource Mappings -> PCI name
  bool pcie = false;    // needs machine_type q35
  bool x_vga = false;
  bool rombar = true;
  std::string mdev;  // mediated device type (vGPU), optional
};

struct UsbDevice {
  std::string mapping;
  bool usb3 = false;
};

struct VmidRange {
  std::uint32_t first = 0;
  std::uint32_t last = 0;
  friend bool operator==(const VmidRange&, const VmidRange&) = default;
};

struct ProviderData {
  // The Go provider's keys.
  std::uint32_t cores = 0;
  std::uint32_t sockets = 1;
  std::uint64_t memory_mib = 0;
  std::uint32_t disk_size_gib = 0;
  std::string storage_selector;
  std::string network_bridge = "vmbr0";
  std::uint32_t vlan = 0;
  std::string node;
  std::string cpu_type = "x86-64-v2-AES";
  std::string machine_type;  // empty: Proxmox default (i440fx); or "q35"
  bool numa = false;
  std::string hugepages;                     // empty, "2", "1024" or "any"
  std::optional<std::uint64_t> balloon_mib;  // 0 turns the balloon device off
  bool disk_ssd = false;
  bool disk_discard = false;
  bool disk_iothread = false;
  std::string disk_cache;
  std::string disk_aio;
  std::vector<AdditionalDisk> additional_disks;
  std::vector<AdditionalNic> additional_nics;
  std::vector<PciDevice> pci_devices;
  std::vector<UsbDevice> usb_devices;

  // Ours.
  std::vector<std::string> nodes;  // allowed nodes; empty: all online nodes
  Placement placement = Placement::kSpread;
  std::vector<std::string> tags;
  std::string pool;
  std::string iso_storage_selector;  // empty: first enabled ISO-capable storage by name
  Firmware firmware = Firmware::kSeabios;
  bool network_firewall = false;
  std::optional<VmidRange> vmid_range;
  std::string description;
};

// One finding about a providerdata document. `path` is the key path ("additional_disks[1].size"),
// line and column are 1-based positions inside the YAML text (0 when unknown).
struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string path;
  int line = 0;
  int column = 0;
  std::string message;  // says what is wrong and how to fix it

  // "line:column: path: message" (position omitted when unknown).
  std::string ToString() const;
};

struct ParseResult {
  std::optional<ProviderData> data;  // set only when there is no error
  std::vector<Diagnostic> diagnostics;

  bool ok() const { return data.has_value(); }
  // All errors, one per line, for a status message.
  std::string ErrorSummary() const;
};

// Parses and validates a providerdata YAML document. Never throws. Unknown keys are
// errors (with a "did you mean"); the camelCase keys of the Go provider's README
// (cpu, diskSize, storageSelector, networkBridge) are accepted with a warning.
ParseResult ParseProviderData(std::string_view yaml);

// The JSON schema (draft 2020-12) of providerdata, generated from the same field table
// the parser uses, as published in InfraProviderStatus.
std::string ProviderDataJsonSchema();

}  // namespace omni_proxmox::provider
