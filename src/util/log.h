// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace spdlog {
class formatter;
class logger;
}  // namespace spdlog

namespace omni_proxmox::util {

enum class LogFormat { kAuto, kConsole, kJson };

struct LogOptions {
  // kAuto picks kConsole on a terminal and kJson otherwise.
  LogFormat format = LogFormat::kAuto;
  // trace, debug, info, warn, error, critical, off.
  std::string level = "info";
  // Where log lines go instead of stderr (tests capture them); must outlive the loggers' use.
  // kAuto then means kJson.
  std::ostream* output = nullptr;
};

// Key-value fields attached to every log line the current thread writes while the scope lives:
// JSON lines get them as top-level fields ({"ts":..,"msg":..,"request_id":"r1","step":"createVm"}),
// console lines as "[request_id=r1 step=createVm] " before the message. Scopes nest; an inner
// field with the same key hides the outer one until the inner scope ends. Keys that would clash
// with the line's own fields (ts, level, logger, msg) are written as "ctx_<key>".
//
//   util::LogContext request_context({{"request_id", id}, {"step", "reconcile"}});
//   ...
//   util::LogContext step_context({{"step", "createVm"}});
using LogFields = std::vector<std::pair<std::string, std::string>>;

class LogContext {
 public:
  LogContext(std::initializer_list<std::pair<std::string, std::string>> fields);
  ~LogContext();
  LogContext(const LogContext&) = delete;
  LogContext& operator=(const LogContext&) = delete;

  // This thread's fields in effect, outer first, each key once (innermost value).
  static LogFields Current();

 private:
  std::size_t restore_size_;
};

// The formatter InitLogging installs for `format` (kAuto resolves as for stderr).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

// Configures every logger made by Logger(), now and later. Thread-safe. Log lines go to
// stderr so that stdout stays clean for command output (tables, JSON).
absl::Status InitLogging(const LogOptions& options);

// The named logger of a module ("pve", "omni", "provider", ...), created on first use.
std::shared_ptr<spdlog::logger> Logger(std::string_view name);

// Parses "console" / "json" / "auto".
absl::Status ParseLogFormat(std::string_view text, LogFormat& out);

}  // namespace omni_proxmox::util
