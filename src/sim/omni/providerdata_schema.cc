// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/providerdata_schema.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

namespace omni_proxmox::sim::omni {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 64;  // providerdata nests two or three levels; anything deeper is hostile

// A YAML scalar as JSON the way Go's YAML decoders type plain scalars (YAML 1.2 core schema);
// quoted scalars stay strings.
json ScalarToJson(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") return nullptr;
  std::size_t used = 0;
  try {
    if (text.find_first_of(".eE") == std::string::npos) {
      const long long value = std::stoll(text, &used, 10);
      if (used == text.size()) return value;
    } else {
      const double value = std::stod(text, &used);
      if (used == text.size() && std::isfinite(value)) return value;
    }
  } catch (const std::exception&) {
    // not a number: a string
  }
  return text;
}

absl::StatusOr<json> YamlToJson(const YAML::Node& node, int depth) {
  if (depth > kMaxDepth) return absl::InvalidArgumentError("providerdata: nested too deeply");
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& item : node) {
        auto value = YamlToJson(item.second, depth + 1);
        if (!value.ok()) return value.status();
        out[item.first.Scalar()] = *std::move(value);
      }
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) {
        auto value = YamlToJson(item, depth + 1);
        if (!value.ok()) return value.status();
        out.push_back(*std::move(value));
      }
      return out;
    }
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    default:
      return json(nullptr);
  }
}

// Keys in the order they appear in the providerdata (nlohmann's object is sorted), so errors
// come out in document order.
std::vector<std::string> KeysInDocumentOrder(const YAML::Node& node) {
  std::vector<std::string> keys;
  if (!node.IsMap()) return keys;
  for (const auto& item : node) keys.push_back(item.first.Scalar());
  return keys;
}

std::string JsonTypeOf(const json& value) {
  if (value.is_null()) return "null";
  if (value.is_boolean()) return "boolean";
  if (value.is_number_integer()) return "integer";
  if (value.is_number()) return "number";
  if (value.is_string()) return "string";
  if (value.is_array()) return "array";
  return "object";
}

bool HasType(const json& value, const std::string& type) {
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  return JsonTypeOf(value) == type;
}

std::string Number(const json& value) {
  if (value.is_number_integer()) return std::to_string(value.get<long long>());
  return value.dump();
}

std::string EnumText(const json& values) {
  std::vector<std::string> out;
  for (const auto& v : values) out.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  return fmt::format("{}", fmt::join(out, ", "));
}

class Validator {
 public:
  void Check(const json& schema, const json& value, const YAML::Node& yaml, const std::string& path, int depth) {
    if (!schema.is_object() || depth > kMaxDepth) return;
    if (schema.contains("type")) {
      const json& type = schema["type"];
      bool ok = false;
      if (type.is_string()) ok = HasType(value, type.get<std::string>());
      if (type.is_array()) {
        for (const auto& t : type) ok = ok || (t.is_string() && HasType(value, t.get<std::string>()));
      }
      if (!ok) {
        Add(path, fmt::format("must be of type {}, not {}", type.is_string() ? type.get<std::string>() : EnumText(type),
                              JsonTypeOf(value)));
        return;  // the other keywords would only repeat the type error
      }
    }
    if (schema.contains("enum") && schema["enum"].is_array()) {
      bool found = false;
      for (const auto& allowed : schema["enum"]) found = found || allowed == value;
      if (!found) Add(path, fmt::format("must be one of {}", EnumText(schema["enum"])));
    }
    if (value.is_number()) CheckNumber(schema, value, path);
    if (value.is_string()) CheckString(schema, value.get<std::string>(), path);
    if (value.is_array()) CheckArray(schema, value, yaml, path, depth);
    if (value.is_object()) CheckObject(schema, value, yaml, path, depth);
  }

  std::vector<std::string> errors;

 private:
  void Add(const std::string& path, std::string message) {
    errors.push_back(fmt::format("config value \"{}\": {}", path.empty() ? "." : path, std::move(message)));
  }

  void CheckNumber(const json& schema, const json& value, const std::string& path) {
    const double number = value.get<double>();
    if (schema.contains("minimum") && schema["minimum"].is_number() && number < schema["minimum"].get<double>()) {
      Add(path, fmt::format("must be at least {}", Number(schema["minimum"])));
    }
    if (schema.contains("maximum") && schema["maximum"].is_number() && number > schema["maximum"].get<double>()) {
      Add(path, fmt::format("must be at most {}", Number(schema["maximum"])));
    }
  }

  void CheckString(const json& schema, const std::string& text, const std::string& path) {
    if (schema.contains("minLength") && schema["minLength"].is_number_unsigned() &&
        text.size() < schema["minLength"].get<std::size_t>()) {
      Add(path, fmt::format("must be at least {} characters long", schema["minLength"].get<std::size_t>()));
    }
    if (schema.contains("maxLength") && schema["maxLength"].is_number_unsigned() &&
        text.size() > schema["maxLength"].get<std::size_t>()) {
      Add(path, fmt::format("must be at most {} characters long", schema["maxLength"].get<std::size_t>()));
    }
    if (schema.contains("pattern") && schema["pattern"].is_string()) {
      const RE2 re(schema["pattern"].get<std::string>(), RE2::Quiet);
      if (re.ok() && !RE2::PartialMatch(text, re)) {
        Add(path, fmt::format("must match the pattern {}", schema["pattern"].get<std::string>()));
      }
    }
  }

  void CheckArray(const json& schema, const json& value, const YAML::Node& yaml, const std::string& path, int depth) {
    if (schema.contains("minItems") && schema["minItems"].is_number_unsigned() &&
        value.size() < schema["minItems"].get<std::size_t>()) {
      Add(path, fmt::format("must have at least {} items", schema["minItems"].get<std::size_t>()));
    }
    if (schema.contains("maxItems") && schema["maxItems"].is_number_unsigned() &&
        value.size() > schema["maxItems"].get<std::size_t>()) {
      Add(path, fmt::format("must have at most {} items", schema["maxItems"].get<std::size_t>()));
    }
    if (!schema.contains("items")) return;
    for (std::size_t i = 0; i < value.size(); ++i) {
      const YAML::Node item = yaml.IsSequence() && i < yaml.size() ? yaml[i] : YAML::Node();
      Check(schema["items"], value[i], item, fmt::format("{}[{}]", path, i), depth + 1);
    }
  }

  void CheckObject(const json& schema, const json& value, const YAML::Node& yaml, const std::string& path, int depth) {
    if (schema.contains("required") && schema["required"].is_array()) {
      for (const auto& name : schema["required"]) {
        if (name.is_string() && !value.contains(name.get<std::string>())) {
          Add(fmt::format("{}.{}", path, name.get<std::string>()), "is required");
        }
      }
    }
    const json empty = json::object();
    const json& properties =
        schema.contains("properties") && schema["properties"].is_object() ? schema["properties"] : empty;
    std::vector<std::string> unknown;
    for (const auto& key : KeysInDocumentOrder(yaml)) {
      if (!value.contains(key)) continue;
      const YAML::Node child = yaml[key];
      const std::string child_path = fmt::format("{}.{}", path, key);
      if (properties.contains(key)) {
        Check(properties[key], value[key], child, child_path, depth + 1);
      } else if (schema.contains("additionalProperties")) {
        const json& additional = schema["additionalProperties"];
        if (additional.is_boolean() && !additional.get<bool>()) unknown.push_back(key);
        if (additional.is_object()) Check(additional, value[key], child, child_path, depth + 1);
      }
    }
    if (!unknown.empty()) Add(path, fmt::format("has unknown properties: {}", fmt::join(unknown, ", ")));
  }
};

}  // namespace

absl::Status ValidateProviderData(const std::string& schema_json, const std::string& providerdata_yaml) {
  if (schema_json.empty()) return absl::OkStatus();
  const json schema = json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded() || !schema.is_object()) {
    return absl::InvalidArgumentError("the provider's published schema is not a JSON object");
  }
  YAML::Node yaml;
  try {
    yaml = YAML::Load(providerdata_yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("providerdata is not valid YAML: {}", e.what()));
  }
  auto value = YamlToJson(yaml, 0);
  if (!value.ok()) return value.status();
  // Omni treats empty providerdata as an empty object.
  if (value->is_null()) *value = json::object();
  Validator validator;
  validator.Check(schema, *value, yaml, "", 0);
  if (validator.errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format("{}", fmt::join(validator.errors, " - ")));
}

}  // namespace omni_proxmox::sim::omni
