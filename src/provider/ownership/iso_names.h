// SPDX-License-Identifier: Apache-2.0
#pragma once

// The names of the ISO files the provider puts on Proxmox storage. A name is how garbage
// collection recognises an ISO as ours, so every ISO we make is named here, and each name carries
// whose it is: "<stem>.<provider>.<instance>.iso", the provider ID and the Omni instance
// (markers.h Scope). Names from before the scope existed ("<stem>.iso") and the Go provider's
// cloud-init ISOs ("user-data-<vmid>.iso") are recognised, but carry no proof of whose they are.
// Pure.

#include <string>
#include <string_view>

#include "provider/ownership/markers.h"
#include "pve/types.h"

namespace omni_proxmox::provider {

// "talos-<first 16 of schematic>-v<version>-nocloud-amd64.<provider>.<instance>.iso": the Talos ISO
// a request boots, shared by every request of the scope with that schematic and version on one
// storage.
std::string TalosIsoFileName(const std::string& schematic, std::string version, const Scope& scope);

// `file` ("<stem>.iso") with the scope put before ".iso".
std::string ScopedIsoName(std::string_view file, const Scope& scope);

// The Go provider's cloud-init ISO of a VM: "user-data-<vmid>.iso".
std::string GoCidataIsoFileName(pve::Vmid vmid);

struct IsoName {
  enum class Kind { kOther, kTalos, kCidata, kGoCidata };
  Kind kind = Kind::kOther;
  // For kTalos and kCidata: the scope in the name; both empty for a name from before the scope.
  std::string provider;
  std::string instance;
  pve::Vmid vmid = 0;  // kGoCidata
};

// What a file name says about whose ISO it is.
IsoName ParseIsoName(std::string_view file);
// True when the name carries `scope` (false for names without one).
bool InScope(const IsoName& name, const Scope& scope);

// The stem checks (the part before the scope): "talos-<16 hex>-v<version>-nocloud-amd64.iso" and
// "omni-cidata-<request>-<8 hex>.iso".
bool IsTalosIsoStem(std::string_view file);
bool IsCidataIsoStem(std::string_view file);

}  // namespace omni_proxmox::provider
