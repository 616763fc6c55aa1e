// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cosi/resource.pb.h"
#include "omni/resource.h"
#include "omni/state_client.h"

// Conversions between omni::Resource and the wire messages. Private to src/omni.
namespace omni_proxmox::omni::internal {

Resource FromProto(const cosi::resource::Resource& proto);
// Always fills metadata and spec (Omni rejects a resource without either).
cosi::resource::Resource ToProto(const Resource& resource);
void ToProto(const LabelQuery& query, cosi::resource::LabelQuery& out);

}  // namespace omni_proxmox::omni::internal
