// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/join_token.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <yaml-cpp/yaml.h>

#include "sim/omni/accounts.h"

namespace omni_proxmox::sim::omni {
namespace {

void AppendGoJsonString(std::string& out, const std::string& s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '<':
      case '>':
      case '&':
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
      continue;
    }
    // U+2028 and U+2029 (E2 80 A8 / E2 80 A9) are escaped by Go for JavaScript safety.
    if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) == 0xA8 || static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
      out += static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
      i += 2;
      continue;
    }
    out += static_cast<char>(c);
  }
  out += '"';
}

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

// The value of the "jointoken" query parameter of a SideroLink API URL.
std::optional<std::string> TokenFromUrl(const std::string& url) {
  auto query = url.find('?');
  if (query == std::string::npos) return std::nullopt;
  std::size_t pos = query + 1;
  while (pos <= url.size()) {
    auto amp = url.find('&', pos);
    std::string pair = url.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    if (pair.rfind("jointoken=", 0) == 0) return PercentDecode(pair.substr(10));
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return std::nullopt;
}

}  // namespace

std::string GoJsonStringMap(const std::map<std::string, std::string>& map) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : map) {  // std::map iterates in byte order, as Go sorts keys
    if (!first) out += ',';
    first = false;
    AppendGoJsonString(out, key);
    out += ':';
    AppendGoJsonString(out, value);
  }
  out += '}';
  return out;
}

absl::StatusOr<JoinTokenClaims> VerifyJoinToken(const std::string& token, const std::string& base_token) {
  JoinTokenClaims claims;
  if (token.rfind("v1:", 0) != 0 && token.rfind("v2:", 0) != 0) {
    if (token.size() == base_token.size() && CRYPTO_memcmp(token.data(), base_token.data(), token.size()) == 0) {
      return claims;
    }
    return absl::PermissionDeniedError("join token: does not match the provider's join token");
  }
  claims.version = token[1] - '0';
  auto json_text = Base64Decode(token.substr(3));
  if (!json_text.ok()) return absl::InvalidArgumentError("join token: the part after 'vN:' is not base64");
  auto json = nlohmann::json::parse(*json_text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("extra_data") || !json["extra_data"].is_object() ||
      !json.contains("signature") || !json["signature"].is_string()) {
    return absl::InvalidArgumentError("join token: expected JSON {\"extra_data\": {...}, \"signature\": \"...\"}");
  }
  for (const auto& [key, value] : json["extra_data"].items()) {
    if (!value.is_string())
      return absl::InvalidArgumentError(fmt::format("join token: extra_data.{} is not a string", key));
    claims.extra_data[key] = value.get<std::string>();
  }
  auto signature = Base64Decode(json["signature"].get<std::string>());
  if (!signature.ok()) return absl::InvalidArgumentError("join token: signature is not base64");

  const std::string message = GoJsonStringMap(claims.extra_data);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), base_token.data(), static_cast<int>(base_token.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &mac_len);
  if (signature->size() != mac_len || CRYPTO_memcmp(signature->data(), mac, mac_len) != 0) {
    return absl::PermissionDeniedError("join token: signature does not match the provider's join token");
  }
  return claims;
}

absl::StatusOr<std::string> ExtractJoinToken(const std::string& user_data) {
  try {
    for (const auto& doc : YAML::LoadAll(user_data)) {
      if (!doc.IsMap() || !doc["kind"] || doc["kind"].as<std::string>() != "SideroLinkConfig") continue;
      if (!doc["apiUrl"]) return absl::InvalidArgumentError("user-data: SideroLinkConfig has no apiUrl");
      auto token = TokenFromUrl(doc["apiUrl"].as<std::string>());
      if (!token) return absl::InvalidArgumentError("user-data: SideroLinkConfig apiUrl has no jointoken parameter");
      return *token;
    }
  } catch (const YAML::Exception&) {
    // Not YAML: fall through to the kernel-argument form.
  }
  const std::string marker = "siderolink.api=";
  auto pos = user_data.find(marker);
  if (pos != std::string::npos) {
    auto end = user_data.find_first_of(" \t\r\n\"'", pos);
    auto token =
        TokenFromUrl(user_data.substr(pos + marker.size(), end == std::string::npos ? end : end - pos - marker.size()));
    if (token) return *token;
  }
  return absl::InvalidArgumentError(
      "user-data: no join token found: expected a SideroLinkConfig document with apiUrl '...?jointoken=...' "
      "or a siderolink.api= kernel argument");
}

}  // namespace omni_proxmox::sim::omni
