// SPDX-License-Identifier: Apache-2.0
#pragma once

// Loads the Proxmox connection settings from config.yaml, in the Go provider's format
// (siderolabs/omni-infra-provider-proxmox internal/pkg/config):
//
//   proxmox:
//     url: https://pve.example:8006/api2/json   # the /api2/json suffix is optional
//     username: root                            # with realm, or as root@pam
//     password: secret
//     realm: pam
//     tokenID: root@pam!omni                    # or an API token (recommended)
//     tokenSecret: 0b7e...
//     token: root@pam!omni=0b7e...              # token ID and secret in one string
//     insecureSkipVerify: false
//
// plus our optional keys:
//     caFile: /etc/omni-proxmox/pve-root-ca.pem # trust this CA bundle instead of the system store
//     tokenSecretFile: /run/secrets/pve-token   # read the token secret from a file
//     passwordFile: /run/secrets/pve-password   # read the password from a file
//     connectTimeout: 10s
//     requestTimeout: 60s
//     uploadTimeout: 10m
//     ticketRenewAfter: 1h                      # ticket renewal age (tickets expire after 2 h)
//
// Like the Go provider, username+password wins over a token when both are set. Keys outside
// `proxmox:` belong to other modules and are ignored here. Errors name the key and the fix.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

#include "pve/client.h"

namespace omni_proxmox::pve {

// Reads a file's content (injected so tests and the parser need no real files).
using FileReader = std::function<absl::StatusOr<std::string>(const std::string& path)>;

// The default FileReader: reads from disk.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Parses the YAML text of config.yaml. `source` names it in errors ("config.yaml"); relative
// tokenSecretFile/passwordFile/caFile paths are resolved against `base_dir` (empty: as given).
absl::StatusOr<ClientOptions> ParseConfigYaml(std::string_view yaml, std::string_view source = "config.yaml",
                                              const std::string& base_dir = "",
                                              const FileReader& read_file = ReadFileToString);

// Reads and parses the file at `path` (relative paths inside it resolve against its directory).
absl::StatusOr<ClientOptions> LoadConfigFile(const std::string& path);

// The Go provider's environment fallback when no config file is given: PROXMOX_URL,
// PROXMOX_USERNAME, PROXMOX_PASSWORD, PROXMOX_REALM, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET,
// PROXMOX_TOKEN, PROXMOX_INSECURE_SKIP_VERIFY, plus PROXMOX_CA_FILE and PROXMOX_TOKEN_SECRET_FILE.
// Values wrapped in matching quotes are unquoted, as the Go provider does.
absl::StatusOr<ClientOptions> ConfigFromEnv(const std::function<std::optional<std::string>(const char*)>& getenv,
                                            const FileReader& read_file = ReadFileToString);

// Normalizes a Proxmox URL to https://host[:port]/api2/json. Errors name `key`.
absl::StatusOr<std::string> NormalizeApiUrl(std::string_view url, std::string_view key = "proxmox.url");

// Parses a duration: "500ms", "10s", "5m", "2h", or a bare number of seconds.
absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text, std::string_view key);

}  // namespace omni_proxmox::pve
