#include "util/log.h"

#include <unistd.h>

#include <cstdio>
#include <mutex>

#include <fmt/format.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace omni_proxmox::util {
namespace {

// Formats one JSON object per line: {"ts":...,"level":...,"logger":...,"msg":...}.
// A message may carry structured fields as trailing " key=value" pairs only by
// convention; they stay inside "msg" so nothing is dropped.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(msg.time);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(msg.time - seconds).count();
    const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[96];
    std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(micros));
    const auto level = spdlog::level::to_string_view(msg.level);
    const std::string line = fmt::format(R"({{"ts":"{}","level":"{}","logger":"{}","msg":"{}"}})"
                                         "\n",
                                         ts, std::string_view(level.data(), level.size()),
                                         JsonEscape(std::string_view(msg.logger_name.data(), msg.logger_name.size())),
                                         JsonEscape(std::string_view(msg.payload.data(), msg.payload.size())));
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

std::mutex g_mutex;
LogOptions g_options;
std::shared_ptr<spdlog::sinks::stderr_color_sink_mt> g_sink;

void ApplyFormat(const std::shared_ptr<spdlog::sinks::stderr_color_sink_mt>& sink, LogFormat format) {
  if (format == LogFormat::kJson) {
    sink->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v"));
  }
}

LogFormat Resolve(LogFormat format) {
  if (format != LogFormat::kAuto) return format;
  return isatty(STDERR_FILENO) ? LogFormat::kConsole : LogFormat::kJson;
}

std::shared_ptr<spdlog::sinks::stderr_color_sink_mt> SinkLocked() {
  if (!g_sink) {
    g_sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    ApplyFormat(g_sink, Resolve(g_options.format));
  }
  return g_sink;
}

}  // namespace

std::string JsonEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

absl::Status ParseLogFormat(std::string_view text, LogFormat& out) {
  if (text == "auto") {
    out = LogFormat::kAuto;
  } else if (text == "console" || text == "text") {
    out = LogFormat::kConsole;
  } else if (text == "json") {
    out = LogFormat::kJson;
  } else {
    return absl::InvalidArgumentError(
        fmt::format("--log-format: unknown format '{}'; use one of auto, console, json", text));
  }
  return absl::OkStatus();
}

absl::Status InitLogging(const LogOptions& options) {
  const auto level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    return absl::InvalidArgumentError(fmt::format(
        "--log-level: unknown level '{}'; use one of trace, debug, info, warn, error, critical, off", options.level));
  }
  std::lock_guard lock(g_mutex);
  g_options = options;
  auto sink = SinkLocked();
  ApplyFormat(sink, Resolve(options.format));
  spdlog::set_level(level);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& logger) { logger->set_level(level); });
  return absl::OkStatus();
}

std::shared_ptr<spdlog::logger> Logger(std::string_view name) {
  std::string key(name);
  if (auto existing = spdlog::get(key)) return existing;
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(key)) return existing;
  auto logger = std::make_shared<spdlog::logger>(key, SinkLocked());
  logger->set_level(spdlog::level::from_str(g_options.level));
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace omni_proxmox::util
