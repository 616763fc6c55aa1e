// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

namespace omni_proxmox::provider {

// How a YAML value is named in error messages: "a map", "a list", "empty", or the quoted scalar.
std::string DescribeYamlKind(const YAML::Node& node);

}  // namespace omni_proxmox::provider
