#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace spdlog {
class logger;
}

namespace omni_proxmox::util {

enum class LogFormat { kAuto, kConsole, kJson };

struct LogOptions {
  // kAuto picks kConsole on a terminal and kJson otherwise.
  LogFormat format = LogFormat::kAuto;
  // trace, debug, info, warn, error, critical, off.
  std::string level = "info";
};

// Configures every logger made by Logger(), now and later. Thread-safe. Log lines go to
// stderr so that stdout stays clean for command output (tables, JSON).
absl::Status InitLogging(const LogOptions& options);

// The named logger of a module ("pve", "omni", "provider", ...), created on first use.
std::shared_ptr<spdlog::logger> Logger(std::string_view name);

// Parses "console" / "json" / "auto".
absl::Status ParseLogFormat(std::string_view text, LogFormat& out);

// Escapes `text` for inclusion inside a JSON string literal.
std::string JsonEscape(std::string_view text);

}  // namespace omni_proxmox::util
