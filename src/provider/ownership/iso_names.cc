#include "provider/ownership/iso_names.h"

#include <fmt/format.h>

namespace omni_proxmox::provider {

std::string TalosIsoFileName(const std::string& schematic, std::string version) {
  if (!version.empty() && version.front() == 'v') version.erase(version.begin());
  return fmt::format("talos-{}-v{}-nocloud-amd64.iso", schematic.substr(0, 16), version);
}

}  // namespace omni_proxmox::provider
