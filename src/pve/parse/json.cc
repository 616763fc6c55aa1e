// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/json.h"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "pve/errors.h"

namespace omni_proxmox::pve::parse {
namespace {

struct TooDeep {};

std::optional<std::int64_t> IntFromText(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  std::int64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonBounded(std::string_view body, std::string_view what) {
  if (body.size() > kMaxBodyBytes) {
    return MakeError(ErrorKind::kOther, fmt::format("{}: response body of {} bytes exceeds the {} byte limit", what,
                                                    body.size(), kMaxBodyBytes));
  }
  try {
    auto limit = [](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
      if ((event == nlohmann::json::parse_event_t::object_start ||
           event == nlohmann::json::parse_event_t::array_start) &&
          depth > kMaxJsonDepth) {
        throw TooDeep{};
      }
      return true;
    };
    return nlohmann::json::parse(body.begin(), body.end(), limit);
  } catch (const TooDeep&) {
    return MakeError(ErrorKind::kOther, fmt::format("{}: response nests deeper than {} levels", what, kMaxJsonDepth));
  } catch (const nlohmann::json::exception& e) {
    return MakeError(ErrorKind::kOther, fmt::format("{}: response is not valid JSON: {}", what, e.what()));
  }
}

absl::StatusOr<nlohmann::json> ParseEnvelope(std::string_view body, std::string_view what) {
  auto parsed = ParseJsonBounded(body, what);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) {
    return MakeError(ErrorKind::kOther, fmt::format("{}: response is not a JSON object with a 'data' member", what));
  }
  auto it = parsed->find("data");
  if (it == parsed->end()) return nlohmann::json(nullptr);
  return std::move(*it);
}

std::optional<std::int64_t> GetInt(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (!std::isfinite(d) || d > 9.2e18 || d < -9.2e18) return std::nullopt;
    return static_cast<std::int64_t>(d);
  }
  if (it->is_boolean()) return it->get<bool>() ? 1 : 0;
  if (it->is_string()) return IntFromText(it->get_ref<const std::string&>());
  return std::nullopt;
}

std::optional<double> GetDouble(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_number()) return it->get<double>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    double value = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
    return value;
  }
  return std::nullopt;
}

std::optional<bool> GetBool(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_boolean()) return it->get<bool>();
  if (auto i = GetInt(object, key)) return *i != 0;
  return std::nullopt;
}

std::string ScalarText(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return std::to_string(value.get<std::int64_t>());
  if (value.is_boolean()) return value.get<bool>() ? "1" : "0";
  if (value.is_null()) return "";
  return value.dump();
}

std::string GetString(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end()) return "";
  return ScalarText(*it);
}

}  // namespace omni_proxmox::pve::parse
