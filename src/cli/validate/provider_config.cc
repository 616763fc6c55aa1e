// SPDX-License-Identifier: Apache-2.0
// The provider's config.yaml, checked by the parser the provider itself uses
// (pve::ParseConfigYaml). That parser stops at the first problem, so unknown keys are reported
// one by one and removed before parsing again; the first other problem ends the check. Each
// message names its key, which places it in the file.

#include <filesystem>

#include <fmt/format.h>

#include "cli/validate/checks.h"
#include "pve/config.h"

namespace omni_proxmox::cli::validate {
namespace {

constexpr std::string_view kSource = "config.yaml";

// The first "proxmox.<key>" named in a message, or empty.
std::string NamedKey(std::string_view message) {
  constexpr std::string_view kPrefix = "proxmox.";
  const auto at = message.find(kPrefix);
  if (at == std::string_view::npos) return "";
  std::string key;
  for (std::size_t i = at + kPrefix.size(); i < message.size() && std::isalnum(static_cast<unsigned char>(message[i]));
       ++i) {
    key.push_back(message[i]);
  }
  return key;
}

// "what is wrong; how to fix it" -> {what, how}.
std::pair<std::string, std::string> SplitHint(std::string message) {
  const auto semicolon = message.find("; ");
  if (semicolon == std::string::npos) return {std::move(message), ""};
  return {message.substr(0, semicolon), message.substr(semicolon + 2)};
}

// The operator document's example values: "<proxmox-node>", "xxxxxxxx-xxxx-...", "your-password".
bool LooksLikePlaceholder(std::string_view value) {
  const bool angle = value.find('<') != std::string_view::npos && value.find('>') != std::string_view::npos;
  const bool crosses = value.size() >= 4 && value.find_first_not_of("xX-") == std::string_view::npos;
  return angle || crosses || value.find("your-") != std::string_view::npos;
}

}  // namespace

void CheckProviderConfig(const YAML::Node& doc, const FileInput& file, Sink& sink) {
  const YAML::Node proxmox = doc["proxmox"];
  const std::string base_dir = std::filesystem::path(std::string(file.path)).parent_path().string();

  // Files the config refers to may exist only where the provider runs: report them as warnings and go on
  // checking with a stand-in that satisfies the parser (a PEM marker also serves as a non-empty secret).
  std::vector<std::pair<std::string, std::string>> unreadable;  // path, reason
  const pve::FileReader reader = [&unreadable](const std::string& path) -> absl::StatusOr<std::string> {
    auto content = pve::ReadFileToString(path);
    if (content.ok()) return content;
    unreadable.emplace_back(path, std::string(content.status().message()));
    return std::string("-----BEGIN CERTIFICATE-----\n(stand-in while validating)\n-----END CERTIFICATE-----\n");
  };

  YAML::Node working = YAML::Clone(doc);
  constexpr int kMaxRounds = 64;
  for (int round = 0; round < kMaxRounds; ++round) {
    unreadable.clear();
    const auto parsed = pve::ParseConfigYaml(YAML::Dump(working), kSource, base_dir, reader);
    if (parsed.ok()) {
      if (parsed->insecure_skip_verify) {
        sink.Warning(KeyMark(proxmox, "insecureSkipVerify"),
                     "proxmox.insecureSkipVerify: true accepts any certificate Proxmox presents",
                     "set caFile: to Proxmox's CA bundle instead; on a node it is /etc/pve/pve-root-ca.pem");
      }
      break;
    }
    std::string message(parsed.status().message());
    if (message.starts_with(kSource) && message.size() > kSource.size() + 2)
      message = message.substr(kSource.size() + 2);
    const std::string key = NamedKey(message);
    const bool unknown_key = message.find(": unknown key") != std::string::npos;
    YAML::Mark mark = KeyMark(doc, "proxmox");
    if (!key.empty() && proxmox.IsMap() && proxmox[key])
      mark = unknown_key ? KeyMark(proxmox, key) : proxmox[key].Mark();
    auto [what, hint] = SplitHint(message);
    sink.Error(mark, what, hint);
    if (!unknown_key || key.empty()) break;
    working["proxmox"].remove(key);
  }
  if (proxmox.IsMap()) {
    for (const char* key : {"url", "username", "password", "tokenID", "tokenSecret", "token"}) {
      const YAML::Node value = proxmox[key];
      if (value && value.IsScalar() && LooksLikePlaceholder(value.Scalar())) {
        sink.Warning(value.Mark(), fmt::format("proxmox.{}: still holds the example's placeholder", key),
                     "put in the real value before starting the provider");
      }
    }
  }
  for (const auto& [path, reason] : unreadable) {
    YAML::Mark mark = KeyMark(doc, "proxmox");
    std::string key_name = "a file";
    for (const char* key : {"caFile", "tokenSecretFile", "passwordFile"}) {
      const YAML::Node value = proxmox.IsMap() ? proxmox[key] : YAML::Node();
      if (value && value.IsScalar() && (value.Scalar() == path || path.ends_with("/" + value.Scalar()))) {
        mark = value.Mark();
        key_name = fmt::format("proxmox.{}", key);
      }
    }
    sink.Warning(mark,
                 fmt::format("{}: cannot read '{}' here ({}); the provider fails to start unless it exists where "
                             "the provider runs",
                             key_name, path, reason),
                 "relative paths resolve against config.yaml's directory");
  }
}

}  // namespace omni_proxmox::cli::validate
