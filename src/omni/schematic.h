// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

#include "omni/management_client.h"

// Image Factory schematics (protocol notes §5.6-5.8): YAML assembly, upload (through Omni, else straight to
// the factory) and boot-asset URLs (through Omni, else the documented URL pattern).
namespace omni_proxmox::omni {

class StateClient;

inline constexpr std::string_view kDefaultImageFactoryUrl = "https://factory.talos.dev";
inline constexpr std::string_view kQemuGuestAgentExtension = "siderolabs/qemu-guest-agent";

struct Overlay {
  std::string name;
  std::string image;
  friend bool operator==(const Overlay&, const Overlay&) = default;
};

// What the MachineRequest asks for.
struct SchematicRequest {
  std::vector<std::string> extensions;
  std::vector<std::string> kernel_args;
  std::vector<std::pair<uint32_t, std::string>> meta_values;
  std::optional<Overlay> overlay;
};

// What the provider adds.
struct SchematicOptions {
  std::vector<std::string> extra_extensions;                        // qemu-guest-agent is always added
  std::vector<std::pair<uint32_t, std::string>> extra_meta_values;  // replace same keys, else appended
  std::optional<Overlay> overlay;                                   // overrides the request's
  // Join kernel args to bake into the image; leave empty when the join config travels as nocloud
  // user-data (always, when tokens carry request IDs).
  std::vector<std::string> connection_kernel_args;
  std::vector<std::string> extra_kernel_args;  // appended after sorting, in this order
};

// Schematic YAML: overlay{image,name}, customization{extraKernelArgs (sorted, then extras), meta[{key,value}],
// systemExtensions.officialExtensions (deduplicated, sorted)}. InvalidArgument for a meta key > 255.
absl::StatusOr<std::string> BuildSchematicYaml(const SchematicRequest& request, const SchematicOptions& options);

// "<factory>/image/<id>/v<version>/<platform>-<arch>[-secureboot].<iso|format>", or the PXE URL on
// "pxe.<factory host>".
absl::StatusOr<std::string> BuildBootAssetUrl(std::string_view factory_base_url, const BootAssetRequest& request);

// POST <factory>/schematics with the YAML; returns the ID from {"id": ...}. A 400 becomes InvalidArgument
// with the factory's explanation.
absl::StatusOr<std::string> PostSchematicToFactory(std::string_view factory_base_url, std::string_view yaml,
                                                   std::chrono::milliseconds timeout);

// FeaturesConfig.image_factory_base_url, or kDefaultImageFactoryUrl if Omni does not say.
absl::StatusOr<std::string> FetchImageFactoryBaseUrl(StateClient& state);

// Schematic and boot-asset resolution with the version fallbacks. Thread-compatible.
class BootAssetResolver {
 public:
  // `management` must outlive the resolver.
  BootAssetResolver(ManagementClient& management, std::string factory_base_url,
                    std::chrono::milliseconds factory_timeout = std::chrono::seconds(10));
  // CreateSchematicFromRaw; on Unimplemented, the factory directly.
  absl::StatusOr<std::string> EnsureSchematic(std::string_view yaml, std::string_view talos_version);
  // GetBootAssetURL; on Unimplemented, the URL pattern (no headers; storage key = SHA-256 of the URL).
  absl::StatusOr<BootAsset> Resolve(const BootAssetRequest& request);

 private:
  ManagementClient& management_;
  std::string factory_base_url_;
  std::chrono::milliseconds factory_timeout_;
  bool schematic_rpc_missing_ = false;
  bool boot_asset_rpc_missing_ = false;
};

}  // namespace omni_proxmox::omni
