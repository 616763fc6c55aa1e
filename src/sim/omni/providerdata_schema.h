// SPDX-License-Identifier: Apache-2.0
#pragma once

// Omni's check of MachineClass / MachineRequestSet providerdata against the JSON schema the
// provider published in its InfraProviderStatus (omni-protocol.md section 8). A small validator
// for the keywords a provider schema uses: type (object, array, string, integer, number,
// boolean), properties, required, additionalProperties (false or a schema), items, enum,
// minimum, maximum, pattern (RE2), minLength, maxLength, minItems, maxItems. Annotations
// (description, deprecated, title, $schema, default) are ignored; any other keyword is ignored
// too, as validators ignore what they do not know. Written for the stand-in only (it shares no
// code with src/provider, which produced the schema).
//
// Pure and thread-compatible.

#include <string>

#include "absl/status/status.h"

namespace omni_proxmox::sim::omni {

// OK, or InvalidArgument with Omni's wording, every violation in document order joined by " - ":
//   config value ".storage_selector": is required - config value ".memory": must be at least 2048 -
//   config value ".": has unknown properties: bogus_field
// An empty schema accepts everything (a provider that published none). A schema that is not
// JSON, or providerdata that is not YAML, is InvalidArgument saying so.
absl::Status ValidateProviderData(const std::string& schema_json, const std::string& providerdata_yaml);

}  // namespace omni_proxmox::sim::omni
