// SPDX-License-Identifier: Apache-2.0
#pragma once

// Reads the root directory of an ISO 9660 image (with Rock Ridge names when present), enough to
// read back the user-data and meta-data of a NoCloud "cidata" ISO. Internal to sim/pve; pure.

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace omni_proxmox::sim::pve {

struct IsoImage {
  std::string volume_id;                     // e.g. "cidata" (trailing spaces removed)
  std::map<std::string, std::string> files;  // root-directory file name -> contents
};

// Parses `image`. File names are the Rock Ridge names, or the ISO 9660 names without the ";1"
// version, lower-cased. Errors say which structure was malformed.
absl::StatusOr<IsoImage> ReadIsoImage(const std::string& image);

}  // namespace omni_proxmox::sim::pve
