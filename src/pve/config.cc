// SPDX-License-Identifier: Apache-2.0
#include "pve/config.h"

#include <charconv>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "pve/errors.h"
#include "util/duration.h"
#include "util/status_macros.h"
#include "util/text.h"

namespace omni_proxmox::pve {
namespace {

constexpr std::size_t kMaxConfigBytes = 1024 * 1024;
constexpr std::size_t kMaxSecretBytes = 64 * 1024;

// The raw `proxmox:` values before validation; both the YAML and the environment fill it.
struct RawConfig {
  std::string url;
  std::string username;
  std::string password;
  std::string password_file;
  std::string realm;
  std::string token_id;
  std::string token_secret;
  std::string token_secret_file;
  std::string token;
  bool insecure_skip_verify = false;
  std::string ca_file;
  std::optional<std::string> connect_timeout;
  std::optional<std::string> request_timeout;
  std::optional<std::string> upload_timeout;
  std::optional<std::string> ticket_renew_after;
};

absl::Status ConfigError(std::string message) { return MakeError(ErrorKind::kBadParameter, message); }

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) return path;
  return base_dir + "/" + path;
}

bool ValidTokenId(std::string_view id) {
  // USER@REALM!NAME, NAME = [A-Za-z][A-Za-z0-9.\-_]+
  auto at = id.find('@');
  auto bang = id.rfind('!');
  if (at == std::string_view::npos || bang == std::string_view::npos || at == 0 || bang < at + 2) return false;
  std::string_view name = id.substr(bang + 1);
  if (name.size() < 2 || !std::isalpha(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') return false;
  }
  return true;
}

absl::StatusOr<std::string> ReadSecretFile(const FileReader& read_file, const std::string& path, std::string_view key) {
  auto content = read_file(path);
  if (!content.ok()) {
    return ConfigError(fmt::format("{}: cannot read '{}': {}; point it at a readable file holding only the secret", key,
                                   path, std::string(content.status().message())));
  }
  if (content->size() > kMaxSecretBytes) {
    return ConfigError(fmt::format("{}: '{}' is larger than 64 KiB; it must hold only the secret", key, path));
  }
  std::string secret = Trim(*content);
  if (secret.empty()) return ConfigError(fmt::format("{}: '{}' is empty; write the secret into it", key, path));
  return secret;
}

using KeyNamer = std::function<std::string(std::string_view)>;

absl::StatusOr<ClientOptions> Build(const RawConfig& raw, const KeyNamer& key, const std::string& base_dir,
                                    const FileReader& read_file) {
  ClientOptions options;
  if (Trim(raw.url).empty()) {
    return ConfigError(fmt::format("{}: missing; set it to https://pve.example:8006/api2/json", key("url")));
  }
  OP_ASSIGN_OR_RETURN(options.base_url, NormalizeApiUrl(Trim(raw.url), key("url")));

  std::string password = raw.password;
  if (!raw.password_file.empty()) {
    if (!password.empty()) {
      return ConfigError(fmt::format("{} and {}: both set; keep only one", key("password"), key("passwordFile")));
    }
    OP_ASSIGN_OR_RETURN(password, ReadSecretFile(read_file, Resolve(base_dir, raw.password_file), key("passwordFile")));
  }
  std::string token_id = raw.token_id;
  std::string token_secret = raw.token_secret;
  if (!raw.token_secret_file.empty()) {
    if (!token_secret.empty()) {
      return ConfigError(fmt::format("{} and {}: both set; keep only one", key("tokenSecret"), key("tokenSecretFile")));
    }
    OP_ASSIGN_OR_RETURN(token_secret,
                        ReadSecretFile(read_file, Resolve(base_dir, raw.token_secret_file), key("tokenSecretFile")));
  }
  if (!raw.token.empty() && token_id.empty() && token_secret.empty()) {
    // The Go provider's `token` is "USER@REALM!NAME=SECRET". A token ID never contains '=', so
    // the first '=' ends it.
    auto eq = raw.token.find('=');
    if (eq == std::string::npos) {
      return ConfigError(
          fmt::format("{}: expected USER@REALM!TOKENID=SECRET (for example root@pam!omni=<uuid>); or set tokenID and "
                      "tokenSecret",
                      key("token")));
    }
    token_id = raw.token.substr(0, eq);
    token_secret = raw.token.substr(eq + 1);
  }

  if (!raw.username.empty() && !password.empty()) {
    // Go provider precedence: credentials win over a token.
    std::string user = raw.username;
    if (user.find('@') == std::string::npos) {
      if (raw.realm.empty()) {
        return ConfigError(fmt::format(
            "{}: missing, and {} '{}' has no @realm; set realm: pam (or pve), or write the username as {}@pam",
            key("realm"), key("username"), user, user));
      }
      user += "@" + raw.realm;
    } else if (!raw.realm.empty() && user.substr(user.find('@') + 1) != raw.realm) {
      return ConfigError(fmt::format("{} '{}' and {} '{}' disagree; drop realm or the @realm part of the username",
                                     key("username"), user, key("realm"), raw.realm));
    }
    options.username = user;
    options.password = util::Secret<std::string>(password);
  } else if (!raw.username.empty() && token_id.empty()) {
    return ConfigError(
        fmt::format("{}: missing for username '{}'; set password (or passwordFile)", key("password"), raw.username));
  } else if (!password.empty() && token_id.empty()) {
    return ConfigError(
        fmt::format("{}: missing; set it to the user that owns the password, e.g. root@pam", key("username")));
  } else if (!token_id.empty() || !token_secret.empty()) {
    if (token_id.empty()) {
      return ConfigError(fmt::format("{}: missing; set it to USER@REALM!TOKENID (e.g. root@pam!omni)", key("tokenID")));
    }
    if (const auto bang = token_id.find('!');
        bang != std::string::npos && token_id.find('@') < bang && token_id.size() - bang - 1 < 2) {
      return ConfigError(fmt::format(
          "{} '{}': the token name '{}' is too short; Proxmox token names are at least 2 characters, a letter "
          "first (e.g. {}provider)",
          key("tokenID"), token_id, token_id.substr(bang + 1), token_id.substr(0, bang + 1)));
    }
    if (!ValidTokenId(token_id)) {
      return ConfigError(
          fmt::format("{} '{}': expected USER@REALM!TOKENID, e.g. root@pam!omni", key("tokenID"), token_id));
    }
    if (token_secret.empty()) {
      return ConfigError(fmt::format("{}: missing for tokenID '{}'; set tokenSecret or tokenSecretFile",
                                     key("tokenSecret"), token_id));
    }
    options.token_id = token_id;
    options.token_secret = util::Secret<std::string>(token_secret);
  } else {
    return ConfigError(
        fmt::format("{}: no credentials; set tokenID and tokenSecret (recommended) or username and "
                    "password",
                    key("")));
  }

  options.insecure_skip_verify = raw.insecure_skip_verify;
  if (!raw.ca_file.empty()) {
    options.ca_file = Resolve(base_dir, raw.ca_file);
    auto content = read_file(options.ca_file);
    if (!content.ok()) {
      return ConfigError(
          fmt::format("{}: cannot read '{}': {}; point it at the PEM CA bundle (on a PVE node: "
                      "/etc/pve/pve-root-ca.pem)",
                      key("caFile"), options.ca_file, std::string(content.status().message())));
    }
    if (content->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return ConfigError(fmt::format("{}: '{}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)", key("caFile"),
                                     options.ca_file));
    }
  }
  if (raw.connect_timeout) {
    OP_ASSIGN_OR_RETURN(options.connect_timeout, ParseDuration(*raw.connect_timeout, key("connectTimeout")));
  }
  if (raw.request_timeout) {
    OP_ASSIGN_OR_RETURN(options.request_timeout, ParseDuration(*raw.request_timeout, key("requestTimeout")));
  }
  if (raw.upload_timeout) {
    OP_ASSIGN_OR_RETURN(options.upload_timeout, ParseDuration(*raw.upload_timeout, key("uploadTimeout")));
  }
  if (raw.ticket_renew_after) {
    OP_ASSIGN_OR_RETURN(auto renew, ParseDuration(*raw.ticket_renew_after, key("ticketRenewAfter")));
    if (renew < std::chrono::minutes(1) || renew >= std::chrono::minutes(115)) {
      return ConfigError(fmt::format("{}: {} ms is outside 1m..1h55m; tickets expire after 2 h, so renew well before",
                                     key("ticketRenewAfter"), renew.count()));
    }
    options.ticket_renew_after = std::chrono::duration_cast<std::chrono::seconds>(renew);
  }
  return options;
}

bool ParseBoolText(std::string text, bool& out) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text == "true" || text == "1" || text == "t" || text == "yes") {
    out = true;
    return true;
  }
  if (text == "false" || text == "0" || text == "f" || text == "no" || text.empty()) {
    out = false;
    return true;
  }
  return false;
}

std::string CleanEnv(std::string v) {
  v = Trim(v);
  if (v.size() >= 2 && ((v.front() == '"' && v.back() == '"') || (v.front() == '\'' && v.back() == '\''))) {
    return v.substr(1, v.size() - 2);
  }
  return v;
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot open '{}'", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::DataLossError(fmt::format("error reading '{}'", path));
  return out.str();
}

absl::StatusOr<std::string> NormalizeApiUrl(std::string_view url_in, std::string_view key) {
  std::string url(url_in);
  auto fix = fmt::format("set it to https://pve.example:8006/api2/json");
  std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    return ConfigError(fmt::format("{} '{}': no scheme; {}", key, url, fix));
  }
  std::string scheme = url.substr(0, scheme_end);
  if (scheme != "https" && scheme != "http") {
    return ConfigError(fmt::format("{} '{}': scheme must be https; {}", key, url, fix));
  }
  std::size_t host_start = scheme_end + 3;
  std::size_t path_start = url.find('/', host_start);
  std::string host =
      url.substr(host_start, path_start == std::string::npos ? std::string::npos : path_start - host_start);
  if (host.empty()) return ConfigError(fmt::format("{} '{}': no host; {}", key, url, fix));
  if (url.find_first_of("?#", host_start) != std::string::npos) {
    return ConfigError(fmt::format("{} '{}': must not carry a query or fragment; {}", key, url, fix));
  }
  std::string path = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.empty()) {
    path = "/api2/json";
  } else if (path != "/api2/json") {
    return ConfigError(
        fmt::format("{} '{}': path '{}' is not the JSON API; use https://{}/api2/json", key, url, path, host));
  }
  return scheme + "://" + host + path;
}

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text_in, std::string_view key) {
  const std::string text = Trim(std::string(text_in));
  auto parsed = util::ParseDuration(text, key);
  if (!parsed.ok()) return ConfigError(std::string(parsed.status().message()));
  if (parsed->count() <= 0) return ConfigError(fmt::format("{} '{}': must be positive", key, text));
  return *parsed;
}

absl::StatusOr<ClientOptions> ParseConfigYaml(std::string_view yaml, std::string_view source,
                                              const std::string& base_dir, const FileReader& read_file) {
  if (yaml.size() > kMaxConfigBytes) {
    return ConfigError(fmt::format("{}: larger than 1 MiB; is this the right file?", source));
  }
  static const std::vector<std::string> kKeys = {
      "url",     "username",       "password",       "passwordFile",    "realm",
      "tokenID", "token",          "tokenSecret",    "tokenSecretFile", "insecureSkipVerify",
      "caFile",  "connectTimeout", "requestTimeout", "uploadTimeout",   "ticketRenewAfter"};
  RawConfig raw;
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsDefined() || root.IsNull()) {
      return ConfigError(fmt::format("{}: empty; it needs a 'proxmox:' section with url and credentials", source));
    }
    if (!root.IsMap()) return ConfigError(fmt::format("{}: top level must be a mapping with a 'proxmox:' key", source));
    YAML::Node px = root["proxmox"];
    if (!px.IsDefined() || px.IsNull()) {
      return ConfigError(fmt::format(
          "{}: proxmox: missing; add a 'proxmox:' section with url and tokenID/tokenSecret (or username/password)",
          source));
    }
    if (!px.IsMap()) return ConfigError(fmt::format("{}: proxmox: must be a mapping of keys such as url", source));
    for (const auto& entry : px) {
      std::string name = entry.first.as<std::string>();
      bool known = false;
      for (const auto& k : kKeys) known = known || k == name;
      if (!known) {
        auto hint = util::ClosestMatch(name, kKeys);
        return ConfigError(fmt::format("{}: proxmox.{}: unknown key{}", source, name,
                                       hint ? fmt::format("; did you mean '{}'?", *hint) : std::string()));
      }
      // A key with no value ("password:") is empty, as in the Go provider's decoder.
      if (!entry.second.IsScalar() && !entry.second.IsNull()) {
        return ConfigError(fmt::format("{}: proxmox.{}: must be a single value", source, name));
      }
      std::string value = entry.second.IsNull() ? std::string() : entry.second.Scalar();
      if (name == "url")
        raw.url = value;
      else if (name == "username")
        raw.username = value;
      else if (name == "password")
        raw.password = value;
      else if (name == "passwordFile")
        raw.password_file = value;
      else if (name == "realm")
        raw.realm = value;
      else if (name == "tokenID")
        raw.token_id = value;
      else if (name == "token")
        raw.token = value;
      else if (name == "tokenSecret")
        raw.token_secret = value;
      else if (name == "tokenSecretFile")
        raw.token_secret_file = value;
      else if (name == "caFile")
        raw.ca_file = value;
      else if (name == "connectTimeout")
        raw.connect_timeout = value;
      else if (name == "requestTimeout")
        raw.request_timeout = value;
      else if (name == "uploadTimeout")
        raw.upload_timeout = value;
      else if (name == "ticketRenewAfter")
        raw.ticket_renew_after = value;
      else if (name == "insecureSkipVerify") {
        if (!ParseBoolText(value, raw.insecure_skip_verify)) {
          return ConfigError(fmt::format("{}: proxmox.insecureSkipVerify '{}': must be true or false", source, value));
        }
      }
    }
  } catch (const YAML::Exception& e) {
    return ConfigError(
        fmt::format("{}: invalid YAML at line {}, column {}: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  auto yaml_key = [](std::string_view name) {
    return name.empty() ? std::string("proxmox") : fmt::format("proxmox.{}", name);
  };
  auto built = Build(raw, yaml_key, base_dir, read_file);
  if (!built.ok()) {
    return MakeError(ErrorKind::kBadParameter, fmt::format("{}: {}", source, std::string(built.status().message())));
  }
  return built;
}

absl::StatusOr<ClientOptions> LoadConfigFile(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return ConfigError(fmt::format("config file '{}': {}; pass the path of the provider's config.yaml", path,
                                   std::string(text.status().message())));
  }
  std::string dir;
  auto slash = path.rfind('/');
  if (slash != std::string::npos) dir = path.substr(0, slash == 0 ? 1 : slash);
  return ParseConfigYaml(*text, path, dir);
}

absl::StatusOr<ClientOptions> ConfigFromEnv(const std::function<std::optional<std::string>(const char*)>& getenv,
                                            const FileReader& read_file) {
  auto get = [&](const char* name) { return CleanEnv(getenv(name).value_or("")); };
  RawConfig raw;
  raw.url = get("PROXMOX_URL");
  raw.username = get("PROXMOX_USERNAME");
  raw.password = get("PROXMOX_PASSWORD");
  raw.realm = get("PROXMOX_REALM");
  raw.token_id = get("PROXMOX_TOKEN_ID");
  raw.token_secret = get("PROXMOX_TOKEN_SECRET");
  raw.token_secret_file = get("PROXMOX_TOKEN_SECRET_FILE");
  raw.password_file = get("PROXMOX_PASSWORD_FILE");
  raw.token = get("PROXMOX_TOKEN");
  raw.ca_file = get("PROXMOX_CA_FILE");
  std::string insecure = get("PROXMOX_INSECURE_SKIP_VERIFY");
  if (!ParseBoolText(insecure, raw.insecure_skip_verify)) {
    return ConfigError(fmt::format("PROXMOX_INSECURE_SKIP_VERIFY '{}': must be true or false", insecure));
  }
  // Errors name the variables rather than the YAML keys.
  auto env_key = [](std::string_view name) -> std::string {
    static const std::pair<std::string_view, std::string_view> kNames[] = {
        {"url", "PROXMOX_URL"},
        {"username", "PROXMOX_USERNAME"},
        {"password", "PROXMOX_PASSWORD"},
        {"passwordFile", "PROXMOX_PASSWORD_FILE"},
        {"realm", "PROXMOX_REALM"},
        {"tokenID", "PROXMOX_TOKEN_ID"},
        {"tokenSecret", "PROXMOX_TOKEN_SECRET"},
        {"tokenSecretFile", "PROXMOX_TOKEN_SECRET_FILE"},
        {"token", "PROXMOX_TOKEN"},
        {"caFile", "PROXMOX_CA_FILE"},
        {"", "PROXMOX_*"},
    };
    for (const auto& [key, env] : kNames) {
      if (key == name) return std::string(env);
    }
    return std::string(name);
  };
  return Build(raw, env_key, "", read_file);
}

}  // namespace omni_proxmox::pve
