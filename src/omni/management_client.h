// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

#include "omni/client_options.h"

// management.ManagementService calls a provider makes: CreateSchematicFromRaw (Omni >= 1.8) and
// GetBootAssetURL (newest Omni). Older servers answer Unimplemented; schematic.h has the fallbacks.
namespace omni_proxmox::omni {

struct BootAssetRequest {
  enum class Kind { kPxe = 1, kIso = 2, kDisk = 3 };
  std::string talos_version;  // with or without leading 'v'
  std::string schematic_id;
  Kind kind = Kind::kIso;
  std::string platform = "nocloud";
  std::string architecture = "amd64";
  std::string format;  // disk images only, e.g. "raw.xz", "qcow2"
  bool secure_boot = false;
  bool standalone_url = false;  // credentials in the URL instead of headers
};

struct BootAsset {
  std::string url;
  std::map<std::string, std::string> headers;  // send these when downloading (may hold credentials)
  std::string image_factory_host;
  std::string storage_key;  // stable cache name; the URL may rotate
};

// Thread-safe.
class ManagementClient {
 public:
  virtual ~ManagementClient() = default;
  // Returns the schematic ID chosen by the factory. Empty talos_version means Omni's default.
  virtual absl::StatusOr<std::string> CreateSchematicFromRaw(std::string_view schematic_yaml,
                                                             std::string_view talos_version) = 0;
  virtual absl::StatusOr<BootAsset> GetBootAssetURL(const BootAssetRequest& request) = 0;
};

absl::StatusOr<std::unique_ptr<ManagementClient>> MakeGrpcManagementClient(const ClientOptions& options);

}  // namespace omni_proxmox::omni
