// SPDX-License-Identifier: Apache-2.0
#pragma once

// Chooses a node and storages for one VM. Pure: it sees a snapshot of the cluster plus
// the in-flight reservations and returns a decision with its reasons, or an error that
// says per node why nothing fits.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "provider/model/providerdata.h"
#include "provider/placement/storage_selector.h"
#include "pve/types.h"

namespace omni_proxmox::provider {

// The selectors of one providerdata, compiled once. Immutable, thread-safe.
// A storage as Proxmox lists it for a node, in the form selectors and placement read (content
// sorted: Proxmox shuffles it, and a stable order keeps choices and tables deterministic).
StorageFacts ToStorageFacts(const std::string& node, const pve::NodeStorage& storage);

struct CompiledSelectors {
  StorageSelector boot;
  std::vector<std::optional<StorageSelector>> additional;  // nullopt: same storage as the boot disk
  std::optional<StorageSelector> iso;

  static absl::StatusOr<CompiledSelectors> Compile(const ProviderData& data);
};

struct NodeSnapshot {
  std::string name;
  bool online = false;
  std::uint64_t max_memory_bytes = 0;
  std::uint64_t used_memory_bytes = 0;
  std::vector<StorageFacts> storages;  // GET /nodes/{node}/storage
  std::vector<std::string> bridges;    // empty when unknown (not checked)
};

// A VM that already exists (ours) or is being created right now (a reservation), counted
// against node memory and storage space and for spreading a request set.
struct PlacedVm {
  std::string request_id;
  std::string request_set_id;
  std::string node;
  std::uint64_t memory_bytes = 0;
  // True for a VM being created right now: its memory is not yet in the node's used figure
  // and its disks are not yet in the storages' free space.
  bool reservation = false;
  // Disk space still to be allocated (reservations only): space key -> bytes.
  std::vector<std::pair<std::string, std::uint64_t>> pending_disk_bytes;
};

struct PlacementInput {
  const ProviderData* data = nullptr;
  const CompiledSelectors* selectors = nullptr;
  std::string request_id;
  std::string request_set_id;
  std::vector<NodeSnapshot> nodes;
  std::vector<PlacedVm> vms;  // existing VMs of this provider and in-flight reservations
};

struct PlacementDecision {
  std::string node;
  std::string boot_storage;
  std::vector<std::string> additional_storages;
  std::vector<std::string> reasons;  // why this node and these storages, for `plan`

  // The reservation to record until the VM exists.
  PlacedVm AsReservation(const PlacementInput& input) const;
};

// Errors: FailedPrecondition when a selector matches no usable storage or every node is
// excluded by pinning/offline; ResourceExhausted when candidates exist but none has room.
// Both messages name each node and the reason it was rejected.
absl::StatusOr<PlacementDecision> Place(const PlacementInput& input);

// The storage that holds a node's ISOs (the Talos ISO it boots from and its cloud-init ISO): the
// first by name of the node's enabled, active storages with "iso" content that `iso_selector`
// (when set) matches. FailedPrecondition naming the node and the fix when none qualifies, or when
// the selector cannot be evaluated on a storage.
absl::StatusOr<StorageFacts> ChooseIsoStorage(const std::string& node, const std::vector<StorageFacts>& storages,
                                              const std::optional<StorageSelector>& iso_selector);

// "16 GiB", "512 MiB": for messages.
std::string HumanBytes(std::uint64_t bytes);

}  // namespace omni_proxmox::provider
