// SPDX-License-Identifier: Apache-2.0
#include "omni/schematic.h"

#include <gtest/gtest.h>

namespace omni_proxmox::omni {
namespace {

TEST(SchematicYaml, SortsAndAlwaysAddsGuestAgent) {
  SchematicRequest request;
  request.extensions = {"siderolabs/zfs", "siderolabs/iscsi-tools", "siderolabs/zfs"};
  request.kernel_args = {"net.ifnames=0", "console=ttyS0"};
  request.meta_values = {{10, "ten"}, {12, "twelve"}};
  request.overlay = Overlay{"rpi_generic", "siderolabs/sbc-raspberrypi"};
  SchematicOptions options;
  options.extra_meta_values = {{12, "replaced"}, {0x0a + 1, "eleven"}};
  options.extra_kernel_args = {"zz=last", "aa=after"};
  auto yaml = BuildSchematicYaml(request, options);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  EXPECT_EQ(*yaml,
            "overlay:\n"
            "  image: siderolabs/sbc-raspberrypi\n"
            "  name: rpi_generic\n"
            "customization:\n"
            "  extraKernelArgs:\n"
            "    - console=ttyS0\n"
            "    - net.ifnames=0\n"
            "    - zz=last\n"
            "    - aa=after\n"
            "  meta:\n"
            "    - key: 10\n"
            "      value: ten\n"
            "    - key: 12\n"
            "      value: replaced\n"
            "    - key: 11\n"
            "      value: eleven\n"
            "  systemExtensions:\n"
            "    officialExtensions:\n"
            "      - siderolabs/iscsi-tools\n"
            "      - siderolabs/qemu-guest-agent\n"
            "      - siderolabs/zfs\n");
}

TEST(SchematicYaml, MinimalAndConnectionArgsSorted) {
  SchematicOptions options;
  options.connection_kernel_args = {"talos.events.sink=x", "siderolink.api=y"};
  options.overlay = Overlay{"o", "img"};
  SchematicRequest request;
  request.overlay = Overlay{"ignored", "ignored"};
  auto yaml = BuildSchematicYaml(request, options);
  ASSERT_TRUE(yaml.ok());
  EXPECT_EQ(*yaml,
            "overlay:\n  image: img\n  name: o\ncustomization:\n  extraKernelArgs:\n    - siderolink.api=y\n"
            "    - talos.events.sink=x\n  systemExtensions:\n    officialExtensions:\n"
            "      - siderolabs/qemu-guest-agent\n");
  request.meta_values = {{256, "x"}};
  EXPECT_EQ(BuildSchematicYaml(request, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BootAssetUrl, DocumentedPatterns) {
  BootAssetRequest r;
  r.schematic_id = "abc123";
  r.talos_version = "1.10.4";
  EXPECT_EQ(*BuildBootAssetUrl("https://factory.talos.dev/", r),
            "https://factory.talos.dev/image/abc123/v1.10.4/nocloud-amd64.iso");
  r.talos_version = "v1.10.4";
  r.secure_boot = true;
  EXPECT_EQ(*BuildBootAssetUrl("https://factory.talos.dev", r),
            "https://factory.talos.dev/image/abc123/v1.10.4/nocloud-amd64-secureboot.iso");
  r.secure_boot = false;
  r.kind = BootAssetRequest::Kind::kDisk;
  EXPECT_FALSE(BuildBootAssetUrl("https://f", r).ok());
  r.format = "raw.xz";
  r.platform = "metal";
  EXPECT_EQ(*BuildBootAssetUrl("https://f", r), "https://f/image/abc123/v1.10.4/metal-amd64.raw.xz");
  r.kind = BootAssetRequest::Kind::kPxe;
  EXPECT_EQ(*BuildBootAssetUrl("https://factory.talos.dev", r),
            "https://pxe.factory.talos.dev/pxe/abc123/v1.10.4/metal-amd64");
}

}  // namespace
}  // namespace omni_proxmox::omni
