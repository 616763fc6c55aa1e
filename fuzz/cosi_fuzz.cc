// SPDX-License-Identifier: Apache-2.0
// Fuzzes what the Omni client decodes from the network: a COSI Watch stream message
// (cosi.resource.WatchResponse, whose events carry resources) and a bare resource, their conversion
// into omni::Resource (internal::FromProto), and the typed spec decoding (omni::DecodeSpec) of every
// spec the provider reads.
//
// Invariants checked beyond "no crash, no sanitizer report, no hang":
//  - FromProto(ToProto(r)) == r for every converted resource (the client writes back what it read);
//  - DecodeSpec either succeeds or fails with DataLoss naming the resource type.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "cosi/resource.pb.h"
#include "cosi/state.pb.h"
#include "omni/internal/convert.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "provider/machine.pb.h"

namespace {

namespace omni = omni_proxmox::omni;

void Require(bool condition) {
  if (!condition) std::abort();
}

void CheckDecode(const omni::Resource& resource, google::protobuf::Message& spec) {
  const absl::Status status = omni::DecodeSpec(resource, spec);
  if (!status.ok()) {
    Require(status.code() == absl::StatusCode::kDataLoss);
    Require(std::string(status.message()).find(resource.metadata.type) != std::string::npos);
  }
}

void CheckResource(const cosi::resource::Resource& proto) {
  const omni::Resource resource = omni::internal::FromProto(proto);
  const omni::Resource round_trip = omni::internal::FromProto(omni::internal::ToProto(resource));
  // ToProto fills an empty version/phase with the defaults Omni would assume.
  omni::Resource expected = resource;
  if (expected.metadata.version.empty()) expected.metadata.version = std::string(omni::kVersionUndefined);
  if (expected.metadata.phase.empty()) expected.metadata.phase = std::string(omni::kPhaseRunning);
  Require(round_trip == expected);

  specs::MachineRequestSpec request;
  CheckDecode(resource, request);
  specs::MachineRequestStatusSpec request_status;
  CheckDecode(resource, request_status);
  specs::ProviderJoinConfigSpec join_config;
  CheckDecode(resource, join_config);
  specs::ConnectionParamsSpec connection_params;
  CheckDecode(resource, connection_params);
  omni_proxmox::provider::MachineSpec machine;
  CheckDecode(resource, machine);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);

  cosi::resource::WatchResponse watch;
  if (watch.ParseFromString(bytes)) {
    for (const auto& event : watch.event()) {
      if (event.has_resource()) CheckResource(event.resource());
      if (event.has_old()) CheckResource(event.old());
    }
  }
  cosi::resource::Resource resource;
  if (resource.ParseFromString(bytes)) CheckResource(resource);
  return 0;
}
