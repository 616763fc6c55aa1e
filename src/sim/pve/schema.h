// SPDX-License-Identifier: Apache-2.0
#pragma once

// The official PVE API schema (provider-subset.json) as the simulator's source of truth for
// routing and parameter validation. Internal to sim/pve.

#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace omni_proxmox::sim::pve {

// The embedded copy of provider-subset.json (generated at build time).
std::string EmbeddedPveSchema();

// One method entry, e.g. POST /nodes/{node}/qemu.
struct Endpoint {
  std::string method;
  std::string path_template;          // "/nodes/{node}/qemu"
  std::vector<std::string> segments;  // "nodes", "{node}", "qemu"
  const nlohmann::json* definition = nullptr;
  bool allow_token = true;
  bool proxied_to_node = false;  // proxyto: node -> fails with 595 when the node is offline
  std::string Key() const { return method + " " + path_template; }
};

struct RouteMatch {
  const Endpoint* endpoint = nullptr;
  std::map<std::string, std::string> path_params;
  bool path_exists = false;  // some method exists for this path
};

// Parameter errors keyed by parameter name, with PVE's texts.
using ParamErrors = std::map<std::string, std::string>;

// Immutable after Load; thread-safe for concurrent readers.
class Schema {
 public:
  static absl::StatusOr<std::unique_ptr<Schema>> Load(const std::string& json_text);

  RouteMatch Match(const std::string& method, const std::string& path) const;
  const Endpoint* Find(const std::string& method, const std::string& path_template) const;

  // Validates `params` (string values; JSON booleans already mapped to 1/0) against the endpoint,
  // path parameters included. Returns the per-parameter errors (empty = valid).
  ParamErrors Validate(const Endpoint& endpoint, const std::map<std::string, std::string>& params) const;

  // The schema of one parameter (numbered keys like scsi0 resolve to scsi[n]); null if unknown.
  const nlohmann::json* ParamSchema(const Endpoint& endpoint, const std::string& name) const;

  // Checks one value against a parameter schema; returns the error text or nullopt.
  std::optional<std::string> CheckValue(const nlohmann::json& schema, const std::string& value,
                                        const std::string& name) const;

  const std::vector<Endpoint>& endpoints() const { return endpoints_; }

 private:
  std::optional<std::string> CheckPropertyString(const nlohmann::json& format, const std::string& value,
                                                 const std::string& name) const;
  std::optional<std::string> CheckNamedFormat(const std::string& format, const std::string& value) const;
  const std::regex* Pattern(const std::string& perl_pattern) const;

  nlohmann::json document_;
  std::vector<Endpoint> endpoints_;
  std::map<std::string, std::unique_ptr<std::regex>> patterns_;  // filled in Load
};

// Splits a property string ("virtio,bridge=vmbr0") into key/value pairs, applying the format's
// default_key, alias and keyAlias rules. Unknown keys are kept so the caller can report them.
struct PropertyPair {
  std::string key;
  std::string value;
};
std::vector<PropertyPair> SplitPropertyString(const std::string& value);

// Maximum index of a numbered parameter family ("scsi" -> 30), or -1 if not numbered.
int MaxIndexOf(const std::string& family);

}  // namespace omni_proxmox::sim::pve
