// SPDX-License-Identifier: Apache-2.0
#pragma once

// Builds the NoCloud "cidata" ISO that carries the Omni join config to a Talos VM (issue #7).
// Proxmox cannot take cloud-init snippets through its API, so, like the Go provider, we build the
// ISO ourselves, upload it to ISO storage and attach it as a CD-ROM. Everything here is pure: the
// image is produced in memory, and the same input always gives the same bytes, so a re-upload
// after a restart is idempotent and the file name (which embeds a content hash) is stable.
//
// Thread-safe: BuildCidataIso may be called from several reconciler workers at once.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace omni_proxmox::provider {

struct CidataContent {
  std::string user_data;       // the Omni join config (multi-document YAML), verbatim
  std::string instance_id;     // meta-data instance-id (use the MachineRequest ID)
  std::string hostname;        // meta-data local-hostname; may be empty (then omitted)
  std::string network_config;  // network-config v2 YAML; empty = a DHCP-on-all-NICs default
};

// Limits that keep a bad caller from producing an image Proxmox or Talos would choke on.
inline constexpr std::size_t kMaxCidataUserDataBytes = 16u << 20;  // Talos caps machine config far below
inline constexpr std::size_t kMaxCidataInstanceIdBytes = 255;

// The meta-data file: `instance-id`, then `local-hostname` and `hostname` when a hostname is set
// (the same keys the Go provider writes). Values that YAML would not read back as the same string
// are single-quoted.
std::string RenderMetaData(const CidataContent& content);

// A network-config v2 document that runs DHCPv4 on every Ethernet NIC. Talos does the same by
// default; writing it explicitly keeps other NoCloud consumers from guessing.
std::string DefaultNetworkConfig();

// Checks the fields of `content`. Errors name the field and say how to fix it: user_data must be
// non-empty and at most kMaxCidataUserDataBytes; instance_id must be non-empty printable ASCII of
// at most kMaxCidataInstanceIdBytes; hostname, when set, must be an RFC 1123 host name.
absl::Status ValidateCidataContent(const CidataContent& content);

// Builds an ISO 9660 image (Rock Ridge + Joliet, volume id "cidata") holding user-data, meta-data
// and network-config, entirely in memory with libisofs. All timestamps, owners and modes are fixed,
// so the output is byte-identical for identical input.
// Errors: InvalidArgument from ValidateCidataContent; Internal when libisofs fails.
absl::StatusOr<std::string> BuildCidataIso(const CidataContent& content);

// A stable file name for the ISO on Proxmox storage:
// "omni-cidata-<sanitized request id>-<first 8 hex digits of sha256(iso_bytes)>.iso".
// Sanitizing keeps [A-Za-z0-9_-], maps everything else to '-', and truncates the id to 64 bytes so
// the volume name stays within what Proxmox accepts for ISO file names.
std::string CidataIsoFileName(std::string_view request_id, const std::string& iso_bytes);

}  // namespace omni_proxmox::provider
