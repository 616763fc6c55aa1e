// SPDX-License-Identifier: Apache-2.0
#pragma once

// Renders the exact Proxmox create parameters for one VM from its providerdata, its
// identity and the placement decision. Pure: the same inputs always give the same
// parameters, which is what lets `plan` show what `run` will send.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "provider/model/providerdata.h"
#include "pve/types.h"

namespace omni_proxmox::provider {

struct VmIdentity {
  std::string request_id;  // MachineRequest ID: the VM name and request tag
  std::string provider_id;
  std::string request_set_id;  // MachineRequestSet, for spreading; may be empty
  std::string omni_instance;   // the Omni instance (markers.h Scope); empty only in tools that do not know it
  pve::Vmid vmid = 0;
  std::string smbios_uuid;  // the machine UUID reported to Omni
};

struct DiskPlacement {
  std::string boot_storage;
  std::vector<std::string> additional_storages;  // one per providerdata additional_disks entry
};

struct VmMedia {
  std::string talos_iso_volume;   // e.g. "local:iso/talos-<schematic>-v1.9.0-nocloud-amd64.iso"
  std::string cidata_iso_volume;  // e.g. "local:iso/omni-cidata-<request>.iso"; empty to attach later
};

// Form fields in a stable order, values already in Proxmox's property-string syntax.
using FormParams = std::vector<std::pair<std::string, std::string>>;

// REQUIRES: providerdata validated by ParseProviderData; placement has one storage per
// additional disk.
FormParams RenderCreateParams(const ProviderData& data, const VmIdentity& identity, const DiskPlacement& placement,
                              const VmMedia& media);

// The drive value that attaches the cloud-init ISO, and the slot it goes in.
inline constexpr const char* kCidataSlot = "ide0";
inline constexpr const char* kTalosIsoSlot = "ide2";
std::string CdromValue(const std::string& volume);

// The description placed on every VM: what manages it, then the user's text.
std::string VmDescription(const ProviderData& data, const VmIdentity& identity);

}  // namespace omni_proxmox::provider
