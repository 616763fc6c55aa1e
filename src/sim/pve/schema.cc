// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/schema.h"

#include <algorithm>
#include <cctype>
#include <mutex>

#include "fmt/format.h"

namespace omni_proxmox::sim::pve {
namespace {

using nlohmann::json;

const std::map<std::string, int>& NumberedFamilies() {
  static const std::map<std::string, int> families = {
      {"scsi", 30},  {"sata", 5},     {"ide", 3},      {"virtio", 15},   {"net", 31}, {"hostpci", 15}, {"usb", 4},
      {"serial", 3}, {"parallel", 2}, {"unused", 255}, {"ipconfig", 31}, {"numa", 7}, {"virtiofs", 9}, {"mp", 255},
  };
  return families;
}

bool MatchesRegex(const std::string& value, const char* pattern, bool icase = false) {
  static std::mutex mutex;
  static std::map<std::string, std::regex> cache;
  std::regex* compiled;
  {
    std::lock_guard lock(mutex);
    std::string key = std::string(icase ? "i:" : "c:") + pattern;
    auto it = cache.find(key);
    if (it == cache.end()) {
      auto flags = std::regex::ECMAScript | (icase ? std::regex::icase : std::regex::ECMAScript);
      it = cache.emplace(key, std::regex(pattern, flags)).first;
    }
    compiled = &it->second;
  }
  return std::regex_match(value, *compiled);
}

std::string Lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Hand-written: these run for every numeric parameter of every request.
bool IsInteger(const std::string& value) {
  std::size_t i = !value.empty() && (value[0] == '+' || value[0] == '-') ? 1 : 0;
  if (i == value.size()) return false;
  for (; i < value.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(value[i]))) return false;
  }
  return true;
}

bool IsNodeName(const std::string& value) {
  if (value.empty() || !std::isalnum(static_cast<unsigned char>(value.front())) ||
      !std::isalnum(static_cast<unsigned char>(value.back()))) {
    return false;
  }
  for (char c : value) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}
bool IsNumber(const std::string& value) { return MatchesRegex(value, R"([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)"); }

std::string FormatNumber(const json& number) {
  if (number.is_number_integer()) return std::to_string(number.get<long long>());
  double value = number.get<double>();
  if (value == static_cast<double>(static_cast<long long>(value))) return std::to_string(static_cast<long long>(value));
  return fmt::format("{}", value);
}

// Perl regex text from the schema to ECMAScript: (?^:...) is a flag-reset group and {,n} an
// abbreviation of {0,n}; both are Perl-only.
std::string PerlToEcma(std::string pattern) {
  for (std::size_t pos; (pos = pattern.find("(?^:")) != std::string::npos;) pattern.replace(pos, 4, "(?:");
  for (std::size_t pos; (pos = pattern.find("{,")) != std::string::npos;) pattern.replace(pos, 2, "{0,");
  return "^" + pattern + "$";
}

void CollectPatterns(const json& node, std::vector<std::string>& out) {
  if (node.is_object()) {
    if (auto it = node.find("pattern"); it != node.end() && it->is_string()) out.push_back(it->get<std::string>());
    for (const auto& [key, value] : node.items()) CollectPatterns(value, out);
  } else if (node.is_array()) {
    for (const auto& value : node) CollectPatterns(value, out);
  }
}

const std::vector<std::string>& CpuModels() {
  static const std::vector<std::string> models = {"486",
                                                  "athlon",
                                                  "Broadwell",
                                                  "Broadwell-IBRS",
                                                  "Broadwell-noTSX",
                                                  "Broadwell-noTSX-IBRS",
                                                  "Cascadelake-Server",
                                                  "Cascadelake-Server-noTSX",
                                                  "Conroe",
                                                  "core2duo",
                                                  "coreduo",
                                                  "Cooperlake",
                                                  "EPYC",
                                                  "EPYC-Genoa",
                                                  "EPYC-IBPB",
                                                  "EPYC-Milan",
                                                  "EPYC-Rome",
                                                  "Haswell",
                                                  "Haswell-IBRS",
                                                  "Haswell-noTSX",
                                                  "Haswell-noTSX-IBRS",
                                                  "host",
                                                  "Icelake-Client",
                                                  "Icelake-Server",
                                                  "IvyBridge",
                                                  "IvyBridge-IBRS",
                                                  "KnightsMill",
                                                  "kvm32",
                                                  "kvm64",
                                                  "max",
                                                  "Nehalem",
                                                  "Nehalem-IBRS",
                                                  "Opteron_G1",
                                                  "Opteron_G2",
                                                  "Opteron_G3",
                                                  "Opteron_G4",
                                                  "Opteron_G5",
                                                  "Penryn",
                                                  "pentium",
                                                  "pentium2",
                                                  "pentium3",
                                                  "phenom",
                                                  "qemu32",
                                                  "qemu64",
                                                  "SandyBridge",
                                                  "SandyBridge-IBRS",
                                                  "SapphireRapids",
                                                  "Skylake-Client",
                                                  "Skylake-Client-IBRS",
                                                  "Skylake-Server",
                                                  "Skylake-Server-IBRS",
                                                  "Westmere",
                                                  "Westmere-IBRS",
                                                  "x86-64-v2",
                                                  "x86-64-v2-AES",
                                                  "x86-64-v3",
                                                  "x86-64-v4"};
  return models;
}

bool IsDriveName(const std::string& name) {
  for (const char* family : {"scsi", "sata", "ide", "virtio", "efidisk", "tpmstate"}) {
    std::string prefix = family;
    if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size() && IsInteger(name.substr(prefix.size()))) {
      int index = std::stoi(name.substr(prefix.size()));
      int max = prefix == "efidisk" || prefix == "tpmstate" ? 0 : MaxIndexOf(prefix);
      return index >= 0 && index <= max;
    }
  }
  return false;
}

}  // namespace

int MaxIndexOf(const std::string& family) {
  auto it = NumberedFamilies().find(family);
  return it == NumberedFamilies().end() ? -1 : it->second;
}

std::vector<PropertyPair> SplitPropertyString(const std::string& value) {
  std::vector<PropertyPair> pairs;
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t comma = value.find(',', start);
    std::string part = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) {
      std::size_t eq = part.find('=');
      if (eq == std::string::npos) {
        pairs.push_back({"", part});
      } else {
        pairs.push_back({part.substr(0, eq), part.substr(eq + 1)});
      }
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return pairs;
}

absl::StatusOr<std::unique_ptr<Schema>> Schema::Load(const std::string& json_text) {
  auto schema = std::unique_ptr<Schema>(new Schema());
  try {
    schema->document_ = json::parse(json_text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(fmt::format("pve schema: not valid JSON: {}", e.what()));
  }
  const json* endpoints = &schema->document_;
  if (auto it = schema->document_.find("endpoints"); it != schema->document_.end()) endpoints = &*it;
  if (!endpoints->is_object()) {
    return absl::InvalidArgumentError("pve schema: expected an object with 'endpoints' (provider-subset.json)");
  }
  for (const auto& [path, methods] : endpoints->items()) {
    for (const auto& [method, definition] : methods.items()) {
      Endpoint endpoint;
      endpoint.method = method;
      endpoint.path_template = path;
      for (std::size_t start = 1; start <= path.size();) {
        std::size_t slash = path.find('/', start);
        endpoint.segments.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
      }
      endpoint.definition = &definition;
      endpoint.allow_token = definition.value("allowtoken", 1) != 0;
      endpoint.proxied_to_node = definition.value("proxyto", std::string()) == "node";
      schema->endpoints_.push_back(std::move(endpoint));
    }
  }
  std::vector<std::string> patterns;
  CollectPatterns(*endpoints, patterns);
  for (const auto& pattern : patterns) {
    if (schema->patterns_.count(pattern) != 0) continue;
    try {
      schema->patterns_[pattern] = std::make_unique<std::regex>(PerlToEcma(pattern), std::regex::ECMAScript);
    } catch (const std::regex_error&) {
      schema->patterns_[pattern] = nullptr;  // a Perl-only construct: not checked
    }
  }
  return schema;
}

const std::regex* Schema::Pattern(const std::string& perl_pattern) const {
  auto it = patterns_.find(perl_pattern);
  return it == patterns_.end() ? nullptr : it->second.get();
}

RouteMatch Schema::Match(const std::string& method, const std::string& path) const {
  RouteMatch match;
  std::vector<std::string> parts;
  for (std::size_t start = 1; start <= path.size();) {
    std::size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  while (!parts.empty() && parts.back().empty()) parts.pop_back();
  for (const auto& endpoint : endpoints_) {
    const auto& segments = endpoint.segments;
    std::map<std::string, std::string> params;
    bool ok = true;
    std::size_t i = 0;
    for (; i < segments.size() && ok; ++i) {
      const auto& segment = segments[i];
      if (i >= parts.size()) {
        ok = false;
        break;
      }
      if (segment.size() > 2 && segment.front() == '{') {
        std::string name = segment.substr(1, segment.size() - 2);
        if (name == "volume") {
          // The content router uses fragmentDelimiter '': the volume takes the rest of the path.
          std::string rest = parts[i];
          for (std::size_t j = i + 1; j < parts.size(); ++j) rest += "/" + parts[j];
          params[name] = rest;
          i = parts.size();
          break;
        }
        params[name] = parts[i];
      } else if (segment != parts[i]) {
        ok = false;
      }
    }
    if (!ok || (i != parts.size() && !params.count("volume")) ||
        (params.count("volume") == 0 && segments.size() != parts.size())) {
      continue;
    }
    match.path_exists = true;
    if (endpoint.method == method) {
      match.endpoint = &endpoint;
      match.path_params = std::move(params);
      return match;
    }
  }
  return match;
}

const Endpoint* Schema::Find(const std::string& method, const std::string& path_template) const {
  for (const auto& endpoint : endpoints_) {
    if (endpoint.method == method && endpoint.path_template == path_template) return &endpoint;
  }
  return nullptr;
}

const json* Schema::ParamSchema(const Endpoint& endpoint, const std::string& name) const {
  const json& properties = (*endpoint.definition)["parameters"]["properties"];
  if (auto it = properties.find(name); it != properties.end()) return &*it;
  std::size_t digits = name.size();
  while (digits > 0 && std::isdigit(static_cast<unsigned char>(name[digits - 1]))) --digits;
  if (digits == name.size() || digits == 0) return nullptr;
  std::string family = name.substr(0, digits);
  std::string index_text = name.substr(digits);
  if (index_text.size() > 1 && index_text[0] == '0') return nullptr;
  int index = std::stoi(index_text.substr(0, 6));
  if (index > MaxIndexOf(family)) return nullptr;
  if (auto it = properties.find(family + "[n]"); it != properties.end()) return &*it;
  return nullptr;
}

ParamErrors Schema::Validate(const Endpoint& endpoint, const std::map<std::string, std::string>& params) const {
  ParamErrors errors;
  const json& parameters = (*endpoint.definition)["parameters"];
  static const json kNoProperties = json::object();
  // A reference on both branches: a ternary with a temporary would copy the whole schema.
  const json& properties = parameters.contains("properties") ? parameters["properties"] : kNoProperties;
  for (const auto& [name, value] : params) {
    const json* schema = ParamSchema(endpoint, name);
    if (schema == nullptr) {
      errors[name] = "property is not defined in schema and the schema does not allow additional properties";
      continue;
    }
    if (auto error = CheckValue(*schema, value, name)) errors[name] = *error;
  }
  for (const auto& [name, schema] : properties.items()) {
    if (name.find("[n]") != std::string::npos) continue;
    bool optional = schema.value("optional", 0) != 0;
    if (!optional && params.count(name) == 0 && errors.count(name) == 0) {
      errors[name] = "property is missing and it is not optional";
    }
    if (auto requires_it = schema.find("requires"); requires_it != schema.end() && params.count(name) != 0) {
      std::string other = requires_it->get<std::string>();
      if (params.count(other) == 0) errors[other] = fmt::format("parameter '{}' is required by '{}'", other, name);
    }
  }
  return errors;
}

std::optional<std::string> Schema::CheckValue(const json& schema, const std::string& value,
                                              const std::string& name) const {
  std::string type = schema.value("type", std::string("string"));
  if (type == "boolean") {
    if (value != "1" && value != "0") return fmt::format("type check ('boolean') failed - got '{}'", value);
    return std::nullopt;
  }
  if (type == "integer" || type == "number") {
    if (type == "integer" ? !IsInteger(value) : !IsNumber(value)) {
      return fmt::format("type check ('{}') failed - got '{}'", type, value);
    }
    double number = std::stod(value);
    if (auto it = schema.find("minimum"); it != schema.end() && it->is_number() && number < it->get<double>()) {
      return fmt::format("value must have a minimum value of {}", FormatNumber(*it));
    }
    if (auto it = schema.find("maximum"); it != schema.end() && it->is_number() && number > it->get<double>()) {
      return fmt::format("value must have a maximum value of {}", FormatNumber(*it));
    }
  }
  if (auto it = schema.find("enum"); it != schema.end() && it->is_array()) {
    bool found = false;
    std::string joined;
    for (const auto& option : *it) {
      std::string text = option.is_string() ? option.get<std::string>() : option.dump();
      if (text == value) found = true;
      joined += (joined.empty() ? "" : ", ") + text;
    }
    if (!found) return fmt::format("value '{}' does not have a value in the enumeration '{}'", value, joined);
  }
  if (auto it = schema.find("maxLength"); it != schema.end() && value.size() > it->get<std::size_t>()) {
    return fmt::format("value may only be {} characters long", it->get<std::size_t>());
  }
  if (auto it = schema.find("minLength"); it != schema.end() && value.size() < it->get<std::size_t>()) {
    return fmt::format("value must be at least {} characters long", it->get<std::size_t>());
  }
  if (auto it = schema.find("pattern"); it != schema.end() && it->is_string()) {
    if (const std::regex* re = Pattern(it->get<std::string>()); re != nullptr && !std::regex_match(value, *re)) {
      return "value does not match the regex pattern";
    }
  }
  if (auto it = schema.find("format"); it != schema.end()) {
    if (it->is_object()) return CheckPropertyString(*it, value, name);
    if (it->is_string()) {
      if (auto error = CheckNamedFormat(it->get<std::string>(), value)) return "invalid format - " + *error + "\n";
    }
  }
  return std::nullopt;
}

std::optional<std::string> Schema::CheckPropertyString(const json& format, const std::string& value,
                                                       const std::string& name) const {
  std::string default_key;
  for (const auto& [key, sub] : format.items()) {
    if (sub.value("default_key", 0) != 0) default_key = key;
  }
  std::vector<std::string> errors;
  std::map<std::string, std::string> seen;
  for (auto [key, sub_value] : SplitPropertyString(value)) {
    if (key.empty()) {
      if (default_key.empty() || seen.count(default_key) != 0) {
        errors.push_back(fmt::format("{}: value without key, but schema does not define a default key", name));
        continue;
      }
      key = default_key;
    }
    auto sub_it = format.find(key);
    if (sub_it == format.end()) {
      errors.push_back(
          fmt::format("{}.{}: property is not defined in schema and the schema does not allow additional "
                      "properties",
                      name, key));
      continue;
    }
    const json* sub = &*sub_it;
    if (auto alias = sub->find("alias"); alias != sub->end()) {
      if (auto key_alias = sub->find("keyAlias"); key_alias != sub->end()) {
        // "virtio=MAC": the key is the value of keyAlias, the value goes to alias.
        seen[key_alias->get<std::string>()] = key;
      }
      key = alias->get<std::string>();
      sub = &format[key];
    }
    if (seen.count(key) != 0) {
      errors.push_back(fmt::format("{}.{}: duplicate key in comma-separated list property", name, key));
      continue;
    }
    seen[key] = sub_value;
    std::string checked = sub_value;
    if (sub->value("type", std::string()) == "boolean") {
      std::string lower = Lower(sub_value);
      if (lower == "on" || lower == "yes" || lower == "true" || lower == "1") {
        checked = "1";
      } else if (lower == "off" || lower == "no" || lower == "false" || lower == "0") {
        checked = "0";
      }
    }
    if (auto error = CheckValue(*sub, checked, name + "." + key)) {
      std::string text = *error;
      if (!text.empty() && text.back() == '\n') text.pop_back();
      errors.push_back(fmt::format("{}.{}: {}", name, key, text));
    }
  }
  for (const auto& [key, sub] : format.items()) {
    if (sub.contains("alias")) continue;
    if (sub.value("optional", 0) == 0 && seen.count(key) == 0 && !sub.contains("default")) {
      errors.push_back(fmt::format("{}.{}: property is missing and it is not optional", name, key));
    }
  }
  if (errors.empty()) return std::nullopt;
  std::string message = "invalid format - format error";
  for (const auto& error : errors) message += "\n" + error;
  return message + "\n";
}

// The named formats whose check is longer than a line, for Schema::CheckNamedFormat.
namespace {

std::optional<std::string> CheckTagList(const std::string& value) {
  std::size_t start = 0;
  bool any = false;
  while (start < value.size()) {
    std::size_t end = value.find_first_of(",; \t", start);
    std::string tag = value.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!tag.empty()) {
      any = true;
      if (!MatchesRegex(tag, R"([a-z0-9_][a-z0-9_\-\+\.]*)", true)) return "invalid characters in tag";
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (!any && !value.empty()) return "invalid characters in tag";
  return std::nullopt;
}

std::optional<std::string> CheckContentList(const std::string& value) {
  static const std::vector<std::string> kinds = {"images", "rootdir",  "iso",    "vztmpl",
                                                 "backup", "snippets", "import", "none"};
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t end = value.find_first_of(",;", start);
    std::string kind = value.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
      return fmt::format("invalid content type '{}'", kind);
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<std::string> CheckConfigIdList(const std::string& value) {
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t end = value.find_first_of(",; ", start);
    std::string id = value.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!MatchesRegex(id, R"([a-z][a-z_\-]*\d*)")) return fmt::format("invalid configuration ID '{}'", id);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<std::string> CheckBoot(const std::string& value) {
  for (const auto& [key, sub_value] : SplitPropertyString(value)) {
    if (key == "order") {
      std::size_t start = 0;
      while (start <= sub_value.size()) {
        std::size_t end = sub_value.find(';', start);
        std::string device = sub_value.substr(start, end == std::string::npos ? std::string::npos : end - start);
        bool ok = IsDriveName(device) || MatchesRegex(device, R"((net\d+|hostpci\d+|usb\d+))");
        if (!ok) return fmt::format("format error\nboot.order: invalid boot device '{}'", device);
        if (end == std::string::npos) break;
        start = end + 1;
      }
    } else if (key == "legacy" || key.empty()) {
      if (!MatchesRegex(sub_value, "[acdn]{1,4}"))
        return "format error\nboot.legacy: value does not match the regex pattern";
    } else {
      return fmt::format(
          "format error\nboot.{}: property is not defined in schema and the schema does not allow "
          "additional properties",
          key);
    }
  }
  return std::nullopt;
}

std::optional<std::string> CheckSmbios1(const std::string& value) {
  static const std::vector<std::string> keys = {"base64", "family", "manufacturer", "product",
                                                "serial", "sku",    "uuid",         "version"};
  for (const auto& [key, sub_value] : SplitPropertyString(value)) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return fmt::format(
          "format error\nsmbios1.{}: property is not defined in schema and the schema does not allow "
          "additional properties",
          key.empty() ? sub_value : key);
    }
    if (key == "uuid" && !MatchesRegex(sub_value, "[a-fA-F0-9]{8}(-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}")) {
      return "format error\nsmbios1.uuid: value does not match the regex pattern";
    }
    if (key == "base64" && sub_value != "0" && sub_value != "1") {
      return fmt::format("format error\nsmbios1.base64: type check ('boolean') failed - got '{}'", sub_value);
    }
  }
  return std::nullopt;
}

std::optional<std::string> CheckHostpci(const std::string& value) {
  static const std::vector<std::string> keys = {"host",  "device-id", "driver",       "legacy-igd", "mapping",
                                                "mdev",  "pcie",      "rombar",       "romfile",    "sub-device-id",
                                                "x-vga", "vendor-id", "sub-vendor-id"};
  bool has_host = false, has_mapping = false;
  for (auto [key, sub_value] : SplitPropertyString(value)) {
    if (key.empty()) key = "host";
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return fmt::format(
          "format error\nhostpci.{}: property is not defined in schema and the schema does not allow "
          "additional properties",
          key);
    }
    if (key == "host") {
      has_host = true;
      if (!MatchesRegex(
              sub_value,
              R"(((?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?)(;((?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?))*)",
              true)) {
        return "format error\nhostpci.host: value does not match the regex pattern";
      }
    }
    if (key == "mapping") {
      has_mapping = true;
      if (!MatchesRegex(sub_value, R"([a-z][a-z0-9_-]+)", true)) {
        return "format error\nhostpci.mapping: value does not look like a valid mapping ID";
      }
    }
    if ((key == "pcie" || key == "x-vga" || key == "rombar" || key == "legacy-igd") && sub_value != "0" &&
        sub_value != "1") {
      return fmt::format("format error\nhostpci.{}: type check ('boolean') failed - got '{}'", key, sub_value);
    }
  }
  if (has_host == has_mapping) return "either 'host' or 'mapping' must be set.";
  return std::nullopt;
}

std::optional<std::string> CheckCpu(const std::string& value) {
  static const std::vector<std::string> keys = {"cputype",      "flags", "guest-phys-bits", "hidden",
                                                "hv-vendor-id", "level", "phys-bits",       "reported-model"};
  for (auto [key, sub_value] : SplitPropertyString(value)) {
    if (key.empty()) key = "cputype";
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return fmt::format(
          "format error\ncpu.{}: property is not defined in schema and the schema does not allow "
          "additional properties",
          key);
    }
    if (key == "cputype" && sub_value.rfind("custom-", 0) != 0 &&
        std::find(CpuModels().begin(), CpuModels().end(), sub_value) == CpuModels().end()) {
      return fmt::format("Built-in cputype '{}' is not defined (missing 'custom-' prefix?)", sub_value);
    }
    if (key == "flags" && !MatchesRegex(sub_value, R"([+-][a-zA-Z0-9\-_\.]+(;[+-][a-zA-Z0-9\-_\.]+)*)")) {
      return "format error\ncpu.flags: value does not match the regex pattern";
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> Schema::CheckNamedFormat(const std::string& format, const std::string& value) const {
  if (format == "pve-vmid") {
    bool ok = value.size() >= 3 && value.size() <= 9 && value[0] != '0' && IsInteger(value) &&
              std::isdigit(static_cast<unsigned char>(value[0]));
    if (!ok) return "value does not look like a valid VM ID";
  } else if (format == "pve-node") {
    if (!IsNodeName(value)) return "value does not look like a valid node name";
  } else if (format == "dns-name") {
    if (!MatchesRegex(value,
                      R"(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?))")) {
      return "value does not look like a valid DNS name";
    }
  } else if (format == "pve-storage-id") {
    if (!MatchesRegex(value, R"([a-z][a-z0-9\-_.]*[a-z0-9])", true)) {
      return fmt::format("storage ID '{}' contains illegal characters", value);
    }
  } else if (format == "pve-realm") {
    if (!MatchesRegex(value, R"([A-Za-z][A-Za-z0-9\.\-_]+)")) return "value does not look like a valid realm name";
  } else if (format == "pve-poolid") {
    if (!MatchesRegex(value, R"([A-Za-z0-9_\-\.]+(/[A-Za-z0-9_\-\.]+){0,2})")) {
      return "value does not look like a valid pool name";
    }
  } else if (format == "pve-tag-list") {
    return CheckTagList(value);
  } else if (format == "pve-storage-content" || format == "pve-storage-content-list") {
    return CheckContentList(value);
  } else if (format == "pve-volume-id") {
    if (!MatchesRegex(value, R"([^:\s]+:\S+)")) return fmt::format("unable to parse volume ID '{}'", value);
  } else if (format == "pve-configid-list") {
    return CheckConfigIdList(value);
  } else if (format == "pve-qm-boot") {
    return CheckBoot(value);
  } else if (format == "pve-qm-smbios1") {
    return CheckSmbios1(value);
  } else if (format == "pve-qm-hostpci") {
    return CheckHostpci(value);
  } else if (format == "pve-vm-cpu-conf") {
    return CheckCpu(value);
  } else if (format == "pve-qm-ide") {
    // cdrom: a volume ID, "none" or "cdrom", optionally with drive options.
    auto pairs = SplitPropertyString(value);
    if (pairs.empty()) return "format error\ncdrom.file: property is missing and it is not optional";
  } else if (format == "mac-addr") {
    if (!MatchesRegex(value, "[0-9a-f]{2}(:[0-9a-f]{2}){5}", true))
      return "value does not look like a valid MAC address";
    if ((std::stoi(value.substr(0, 2), nullptr, 16) & 1) != 0) return "value is a multicast MAC address";
  } else if (format == "disk-size") {
    if (!MatchesRegex(value, R"(\d+(\.\d+)?[KMGT]?)")) return "value does not look like a valid disk size";
  } else if (format == "pve-bridge-id") {
    if (!MatchesRegex(value, R"([-_.\w\d]+)")) return "value does not look like a valid bridge name";
  }
  return std::nullopt;
}

}  // namespace omni_proxmox::sim::pve
