#pragma once

// The names of the ISO files the provider puts on Proxmox storage. A name is how garbage
// collection recognises an ISO as ours, so every ISO we make is named here. Pure.

#include <string>

namespace omni_proxmox::provider {

// "talos-<first 16 of schematic>-v<version>-nocloud-amd64.iso": the Talos ISO a request boots.
// Shared by every request with the same schematic and version on one storage.
std::string TalosIsoFileName(const std::string& schematic, std::string version);

}  // namespace omni_proxmox::provider
