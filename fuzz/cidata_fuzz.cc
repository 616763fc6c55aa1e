// SPDX-License-Identifier: Apache-2.0
// Fuzzes the cloud-init (NoCloud cidata) ISO builder: user-data, meta-data fields and
// network-config are drawn from the input with FuzzedDataProvider, and every image built is read
// back with the simulator's own ISO 9660 reader (the one that checks what a VM would boot with).
//
// Invariants checked beyond "no crash, no sanitizer report, no hang":
//  - BuildCidataIso succeeds exactly when ValidateCidataContent does;
//  - the image has volume id "cidata" and exactly user-data, meta-data and network-config, byte for
//    byte what was put in (network-config falling back to the DHCP default);
//  - building is deterministic (same bytes twice), and so is the file name derived from it.

#include <cstdint>
#include <cstdlib>
#include <string>

#include <fuzzer/FuzzedDataProvider.h>

#include "provider/cloudinit/cidata.h"
#include "sim/pve/iso9660.h"

namespace {

namespace provider = omni_proxmox::provider;

void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  provider::CidataContent content;
  content.instance_id = input.ConsumeRandomLengthString(300);
  content.hostname = input.ConsumeRandomLengthString(300);
  content.network_config = input.ConsumeRandomLengthString(4096);
  content.user_data = input.ConsumeRemainingBytesAsString();

  const bool valid = provider::ValidateCidataContent(content).ok();
  auto iso = provider::BuildCidataIso(content);
  Require(iso.ok() == valid);
  if (!iso.ok()) {
    Require(iso.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }

  auto image = omni_proxmox::sim::pve::ReadIsoImage(*iso);
  Require(image.ok());
  Require(image->volume_id == "cidata");
  Require(image->files.size() == 3);
  Require(image->files["user-data"] == content.user_data);
  Require(image->files["meta-data"] == provider::RenderMetaData(content));
  Require(image->files["network-config"] ==
          (content.network_config.empty() ? provider::DefaultNetworkConfig() : content.network_config));

  auto again = provider::BuildCidataIso(content);
  Require(again.ok() && *again == *iso);
  Require(provider::CidataIsoFileName(content.instance_id, *iso) ==
          provider::CidataIsoFileName(content.instance_id, *again));
  return 0;
}
