// SPDX-License-Identifier: Apache-2.0
// The compose .env of the operator document: NAME=value lines read by docker compose and passed
// to the provider. Checks that the provider finds an Omni address and a usable infra provider
// key (decoded, never shown), and that Proxmox settings given as PROXMOX_* variables parse.

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "cli/validate/checks.h"
#include "omni/keys.h"
#include "pve/config.h"
#include "util/text.h"

namespace omni_proxmox::cli::validate {
namespace {

struct EnvEntry {
  std::string name;
  std::string value;
  int line = 0;
  int name_column = 0;
  int value_column = 0;
};

const std::vector<std::string> kKnownNames = {"OMNI_DOMAIN",
                                              "OMNI_ENDPOINT",
                                              "OMNI_INFRA_PROVIDER_KEY",
                                              "OMNI_INFRA_PROVIDER_KEY_FILE",
                                              "OMNI_SERVICE_ACCOUNT_KEY",
                                              "OMNI_CA_FILE",
                                              "SSL_CERT_FILE",
                                              "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                                              "TS_AUTHKEY",
                                              "PROXMOX_URL",
                                              "PROXMOX_USERNAME",
                                              "PROXMOX_PASSWORD",
                                              "PROXMOX_REALM",
                                              "PROXMOX_TOKEN_ID",
                                              "PROXMOX_TOKEN_SECRET",
                                              "PROXMOX_TOKEN",
                                              "PROXMOX_CA_FILE",
                                              "PROXMOX_TOKEN_SECRET_FILE",
                                              "PROXMOX_PASSWORD_FILE",
                                              "PROXMOX_INSECURE_SKIP_VERIFY"};

bool IsName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

std::vector<EnvEntry> ParseEnv(std::string_view text, Sink& sink) {
  std::vector<EnvEntry> entries;
  int number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++number;
    if (line.ends_with('\r')) line.remove_suffix(1);
    std::size_t i = line.find_first_not_of(" \t");
    if (i == std::string_view::npos || line[i] == '#') continue;
    if (line.substr(i).starts_with("export ")) i = std::min(line.find_first_not_of(' ', i + 7), line.size());
    const auto eq = line.find('=', i);
    if (eq == std::string_view::npos) {
      sink.Add(Severity::kError, number, static_cast<int>(i) + 1, "expected NAME=value",
               "write e.g. OMNI_DOMAIN=omni.example.ts.net, or start the line with # to comment it out");
      continue;
    }
    EnvEntry entry;
    entry.name = std::string(line.substr(i, eq - i));
    while (!entry.name.empty() && (entry.name.back() == ' ' || entry.name.back() == '\t')) entry.name.pop_back();
    entry.line = number;
    entry.name_column = static_cast<int>(i) + 1;
    if (!IsName(entry.name)) {
      sink.Add(Severity::kError, number, entry.name_column, fmt::format("'{}' is not a variable name", entry.name),
               "use letters, digits and '_' only, not starting with a digit");
      continue;
    }
    std::string_view raw = line.substr(eq + 1);
    std::size_t value_start = eq + 1;
    if (!raw.empty() && (raw.front() == '"' || raw.front() == '\'')) {
      const char quote = raw.front();
      const auto close = raw.find(quote, 1);
      if (close == std::string_view::npos) {
        sink.Add(Severity::kError, number, static_cast<int>(value_start) + 1,
                 fmt::format("{}: the value's opening {} quote is never closed", entry.name, quote),
                 "close the quote on the same line");
        continue;
      }
      entry.value = std::string(raw.substr(1, close - 1));
      value_start += 1;
    } else {
      // As in docker compose, " #" starts a comment after an unquoted value.
      if (const auto comment = raw.find(" #"); comment != std::string_view::npos) raw = raw.substr(0, comment);
      while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\t')) raw.remove_suffix(1);
      entry.value = std::string(raw);
    }
    entry.value_column = static_cast<int>(value_start) + 1;
    entries.push_back(std::move(entry));
  }
  return entries;
}

bool LooksLikePlaceholder(std::string_view value) {
  return value.starts_with('<') || value == "..." || value.find("your-") != std::string_view::npos ||
         value.find("xxxx") != std::string_view::npos || value == "changeme";
}

// OMNI_INFRA_PROVIDER_KEY_FILE names the key's file where the provider runs, usually a compose
// secret (/run/secrets/...) that is not on the machine validating. Returns the key's text when the
// file can be read here, nullopt when it cannot (a warning, not an error: it may exist only there).
std::optional<std::string> ReadKeyFile(const EnvEntry& entry, const FileInput& file, Sink& sink) {
  std::filesystem::path path(entry.value);
  if (path.is_relative()) path = std::filesystem::path(std::string(file.path)).parent_path() / path;
  auto text = pve::ReadFileToString(path.string());
  if (!text.ok()) {
    sink.Add(Severity::kWarning, entry.line, entry.value_column,
             fmt::format("{}: cannot read '{}' here; the provider fails to start unless it exists where it runs",
                         entry.name, entry.value),
             "in the compose stack it is the secret mounted at /run/secrets/omni-infra-provider.key");
    return std::nullopt;
  }
  std::string key = *std::move(text);
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
  return key;
}

void CheckProviderKey(const std::map<std::string, const EnvEntry*>& vars, const FileInput& file, const Options& options,
                      Sink& sink, Facts& facts) {
  const auto service = vars.find("OMNI_SERVICE_ACCOUNT_KEY");
  const auto infra = vars.find("OMNI_INFRA_PROVIDER_KEY");
  const auto infra_file = vars.find("OMNI_INFRA_PROVIDER_KEY_FILE");
  const EnvEntry* used = nullptr;
  if (service != vars.end() && !service->second->value.empty()) used = service->second;
  if (used == nullptr && infra != vars.end() && !infra->second->value.empty()) used = infra->second;
  if (used != nullptr && service != vars.end() && used == service->second && infra != vars.end() &&
      !infra->second->value.empty()) {
    sink.Add(Severity::kWarning, infra->second->line, infra->second->name_column,
             "OMNI_INFRA_PROVIDER_KEY is ignored: OMNI_SERVICE_ACCOUNT_KEY is set too and wins",
             "keep only one of the two");
  }
  const bool has_file = infra_file != vars.end() && !infra_file->second->value.empty();
  if (used != nullptr && has_file) {
    sink.Add(Severity::kWarning, infra_file->second->line, infra_file->second->name_column,
             fmt::format("OMNI_INFRA_PROVIDER_KEY_FILE is ignored: {} is set too and wins", used->name),
             "keep only one of the two");
  }
  // The file's content stands in for the variable's value, so it gets the same checks.
  EnvEntry from_file;
  if (used == nullptr && has_file) {
    const auto key = ReadKeyFile(*infra_file->second, file, sink);
    if (!key) return;
    from_file = *infra_file->second;
    from_file.value = *key;
    if (from_file.value.empty()) {
      sink.Add(Severity::kError, from_file.line, from_file.value_column,
               fmt::format("OMNI_INFRA_PROVIDER_KEY_FILE: '{}' is empty", infra_file->second->value),
               "paste the key Omni showed when the infra provider was created into it");
      return;
    }
    used = &from_file;
  }
  if (used == nullptr) {
    const EnvEntry* empty = infra != vars.end() ? infra->second : service != vars.end() ? service->second : nullptr;
    sink.Add(Severity::kError, empty ? empty->line : 0, empty ? empty->name_column : 0,
             empty ? fmt::format("{} is empty; the provider cannot sign in to Omni", empty->name)
                   : "no infra provider key; the provider cannot sign in to Omni",
             "create one in Omni under Settings > Infrastructure Providers, or with omnictl infraprovider create "
             "proxmox, and set OMNI_INFRA_PROVIDER_KEY to it");
    return;
  }
  if (LooksLikePlaceholder(used->value)) {
    sink.Add(Severity::kError, used->line, used->value_column, fmt::format("{} still holds a placeholder", used->name),
             "paste the key Omni showed when the infra provider was created");
    return;
  }
  auto key = omni::DecodeServiceAccountKey(used->value);
  if (!key.ok()) {
    sink.Add(Severity::kError, used->line, used->value_column,
             fmt::format("{}: {}", used->name, std::string(key.status().message())), "");
    return;
  }
  auto provider_id = omni::ProviderIdFromKeyName(key->name);
  if (!provider_id.ok()) {
    sink.Add(Severity::kError, used->line, used->value_column,
             fmt::format("{}: {}", used->name, std::string(provider_id.status().message())), "");
    return;
  }
  facts.key_identity = Facts::KeyIdentity{*provider_id, {file.index, used->line, used->value_column}};
  if (!options.provider_id.empty() && options.provider_id != *provider_id) {
    sink.Add(Severity::kError, used->line, used->value_column,
             fmt::format("{} is the key of provider '{}', not of '{}' (--id)", used->name, *provider_id,
                         options.provider_id),
             fmt::format("use the key created for '{}', or check with --id {}", options.provider_id, *provider_id));
  }
}

void CheckOmniAddress(const std::map<std::string, const EnvEntry*>& vars, Sink& sink) {
  const auto domain = vars.find("OMNI_DOMAIN");
  const auto endpoint = vars.find("OMNI_ENDPOINT");
  const bool has_domain = domain != vars.end() && !domain->second->value.empty();
  const bool has_endpoint = endpoint != vars.end() && !endpoint->second->value.empty();
  if (!has_domain && !has_endpoint) {
    sink.Add(Severity::kError, 0, 0, "no OMNI_DOMAIN (or OMNI_ENDPOINT); the provider does not know where Omni is",
             "set OMNI_DOMAIN=omni.tail3f9a2.ts.net (Omni's host name on your tailnet)");
  }
  if (has_domain) {
    const EnvEntry& e = *domain->second;
    if (e.value.find("://") != std::string::npos) {
      sink.Add(Severity::kError, e.line, e.value_column, "OMNI_DOMAIN is a host name, not a URL",
               fmt::format("drop the scheme: OMNI_DOMAIN={}; the provider adds https:// (it accepts "
                           "https://, but compose.yaml builds Omni's own --advertised-api-url from this name)",
                           e.value.substr(e.value.find("://") + 3)));
    } else if (e.value.find('/') != std::string::npos || e.value.find(' ') != std::string::npos) {
      sink.Add(Severity::kError, e.line, e.value_column, fmt::format("OMNI_DOMAIN '{}' is not a host name", e.value),
               "write only the host, e.g. OMNI_DOMAIN=omni.tail3f9a2.ts.net");
    } else if (LooksLikePlaceholder(e.value)) {
      sink.Add(Severity::kError, e.line, e.value_column, "OMNI_DOMAIN still holds a placeholder",
               "write Omni's host name, e.g. omni.tail3f9a2.ts.net (the tailnet name is under DNS in the "
               "Tailscale admin console)");
    }
  }
  if (has_endpoint) {
    const EnvEntry& e = *endpoint->second;
    if (!e.value.starts_with("https://") && !e.value.starts_with("http://")) {
      sink.Add(Severity::kError, e.line, e.value_column, fmt::format("OMNI_ENDPOINT '{}' has no scheme", e.value),
               fmt::format("write OMNI_ENDPOINT=https://{}/", e.value));
    }
  }
}

void CheckProxmoxVariables(const std::map<std::string, const EnvEntry*>& vars, Sink& sink) {
  const bool any = std::any_of(vars.begin(), vars.end(), [](const auto& v) { return v.first.starts_with("PROXMOX_"); });
  if (!any) return;
  const auto getenv = [&vars](const char* name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end() || it->second->value.empty()) return std::nullopt;
    return it->second->value;
  };
  const pve::FileReader reader = [](const std::string&) -> absl::StatusOr<std::string> {
    // Files named here live where the provider runs; the format of the variables is what is checked.
    return std::string("-----BEGIN CERTIFICATE-----\n(stand-in while validating)\n");
  };
  const auto parsed = pve::ConfigFromEnv(getenv, reader);
  if (parsed.ok()) return;
  const std::string message(parsed.status().message());
  int line = 0;
  int column = 0;
  if (const auto at = message.find("PROXMOX_"); at != std::string::npos) {
    std::string name;
    for (std::size_t i = at;
         i < message.size() && (std::isupper(static_cast<unsigned char>(message[i])) || message[i] == '_'); ++i) {
      name.push_back(message[i]);
    }
    if (const auto it = vars.find(name); it != vars.end()) {
      line = it->second->line;
      column = it->second->name_column;
    }
  }
  const auto semicolon = message.find("; ");
  sink.Add(Severity::kError, line, column, message.substr(0, semicolon),
           semicolon == std::string::npos ? "" : message.substr(semicolon + 2));
}

}  // namespace

bool LooksLikeEnvFile(std::string_view text) {
  bool any = false;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] == '#') continue;
    line.remove_prefix(first);
    if (line.starts_with("export ")) line.remove_prefix(7);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || !IsName(line.substr(0, eq))) return false;
    any = true;
  }
  return any;
}

void CheckEnvFile(const FileInput& file, const Options& options, Sink& sink, Facts& facts) {
  const std::vector<EnvEntry> entries = ParseEnv(file.text, sink);
  std::map<std::string, const EnvEntry*> vars;
  for (const auto& entry : entries) {
    if (auto [it, inserted] = vars.emplace(entry.name, &entry); !inserted) {
      sink.Add(Severity::kWarning, entry.line, entry.name_column,
               fmt::format("{} is set again (first on line {}); the last one wins", entry.name, it->second->line),
               "keep one");
      it->second = &entry;
    }
    const bool ours =
        entry.name.starts_with("OMNI_") || entry.name.starts_with("PROXMOX_") || entry.name.starts_with("TS_");
    if (ours && std::find(kKnownNames.begin(), kKnownNames.end(), entry.name) == kKnownNames.end()) {
      if (auto match = util::ClosestMatch(entry.name, kKnownNames)) {
        sink.Add(Severity::kWarning, entry.line, entry.name_column,
                 fmt::format("{} is not a variable the provider reads", entry.name),
                 fmt::format("did you mean {}?", *match));
      }
    }
  }
  CheckOmniAddress(vars, sink);
  CheckProviderKey(vars, file, options, sink, facts);
  if (const auto ts = vars.find("TS_AUTHKEY"); ts != vars.end() && !ts->second->value.starts_with("tskey-")) {
    sink.Add(Severity::kWarning, ts->second->line, ts->second->value_column,
             "TS_AUTHKEY does not look like a Tailscale auth key",
             "Tailscale auth keys start with tskey-auth-, OAuth client secrets with tskey-client-");
  }
  CheckProxmoxVariables(vars, sink);
}

}  // namespace omni_proxmox::cli::validate
