// SPDX-License-Identifier: Apache-2.0
#include "omni/specs.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

namespace omni_proxmox::omni {

std::string ProviderNamespace(std::string_view provider_id) { return fmt::format("infra-provider:{}", provider_id); }
std::string ProviderMachineType(std::string_view provider_id) {
  return fmt::format("Machine.{}.infraprovider.sidero.dev", provider_id);
}
std::string ProvisionControllerName(std::string_view provider_id) {
  return fmt::format("{}.ProvisionController", provider_id);
}
std::string HealthControllerName(std::string_view provider_id) {
  return fmt::format("{}.ProviderHealthStatusController", provider_id);
}

absl::Status DecodeSpec(const Resource& resource, google::protobuf::Message& out) {
  if (!out.ParseFromString(resource.proto_spec)) {
    return absl::DataLossError(fmt::format("{} '{}' in namespace '{}': spec does not parse as {}",
                                           resource.metadata.type, resource.metadata.id, resource.metadata.ns,
                                           out.GetDescriptor()->full_name()));
  }
  return absl::OkStatus();
}

namespace {

// Whether `text` reads back as the same string when written as a plain YAML scalar. Anything
// else (numbers kept as strings, YAML 1.1 booleans, punctuation) is written double-quoted, in
// JSON's escaping, which YAML's double-quoted style shares.
bool PlainSafe(std::string_view text) {
  if (text.empty() || !(std::isalpha(static_cast<unsigned char>(text.front())) || text.front() == '_')) return false;
  for (char c : text) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '/')) return false;
  }
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  static constexpr std::string_view kReserved[] = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"};
  return std::find(std::begin(kReserved), std::end(kReserved), lower) == std::end(kReserved);
}

void EmitScalar(const nlohmann::ordered_json& value, std::string& out) {
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    out += PlainSafe(text) ? text : value.dump();
  } else {
    out += value.dump();  // numbers, booleans, null, and empty objects/arrays as {} and []
  }
}

bool IsNested(const nlohmann::ordered_json& value) { return (value.is_object() || value.is_array()) && !value.empty(); }

void EmitBlock(const nlohmann::ordered_json& node, int indent, std::string& out);

// A key or list item's value: scalars on the same line, collections below it.
void EmitValue(const nlohmann::ordered_json& value, int indent, std::string& out) {
  if (!IsNested(value)) {
    out += ' ';
    EmitScalar(value, out);
    out += '\n';
    return;
  }
  out += '\n';
  EmitBlock(value, indent, out);
}

void EmitBlock(const nlohmann::ordered_json& node, int indent, std::string& out) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      out += pad;
      out += PlainSafe(key) ? key : nlohmann::ordered_json(key).dump();
      out += ':';
      EmitValue(value, indent + 2, out);
    }
    return;
  }
  for (const auto& item : node) {
    out += pad;
    out += '-';
    if (item.is_object() && !item.empty()) {
      // "- first: value" with the item's other keys aligned under "first".
      std::string nested;
      EmitBlock(item, indent + 2, nested);
      out += ' ';
      out += nested.substr(static_cast<std::size_t>(indent) + 2);
    } else {
      EmitValue(item, indent + 2, out);
    }
  }
}

std::string JsonToBlockYaml(const nlohmann::ordered_json& document) {
  if (!IsNested(document)) {
    std::string out;
    EmitScalar(document, out);
    return out + "\n";
  }
  std::string out;
  EmitBlock(document, 0, out);
  return out;
}

}  // namespace

void EncodeSpec(const google::protobuf::Message& spec, Resource& resource) {
  resource.proto_spec = spec.SerializeAsString();
  // Readability only (Omni re-renders known types): JSON with proto field names, shown as block
  // YAML. Written directly: a YAML library round trip cost more than the rest of a state write.
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(spec, &json, options).ok()) {
    resource.yaml_spec.clear();
    return;
  }
  auto document = nlohmann::ordered_json::parse(json, nullptr, /*allow_exceptions=*/false);
  resource.yaml_spec = document.is_discarded() ? json : JsonToBlockYaml(document);
}

}  // namespace omni_proxmox::omni
