// SPDX-License-Identifier: Apache-2.0
#include "util/log.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <ostream>

#include <fmt/format.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "util/escape.h"

namespace omni_proxmox::util {
namespace {

// The LogContext fields of this thread, outer scopes first (keys may repeat).
thread_local LogFields t_context;

bool IsReservedJsonKey(std::string_view key) {
  return key == "ts" || key == "level" || key == "logger" || key == "msg";
}

// Formats one JSON object per line: {"ts":...,"level":...,"logger":...,"msg":...} followed by
// the thread's LogContext fields.
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
    std::string line = fmt::format(R"({{"ts":"{}","level":"{}","logger":"{}","msg":"{}")", ts,
                                   std::string_view(level.data(), level.size()),
                                   JsonEscape(std::string_view(msg.logger_name.data(), msg.logger_name.size())),
                                   JsonEscape(std::string_view(msg.payload.data(), msg.payload.size())));
    for (const auto& [key, value] : LogContext::Current()) {
      line += fmt::format(R"(,"{}{}":"{}")", IsReservedJsonKey(key) ? "ctx_" : "", JsonEscape(key), JsonEscape(value));
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

// The console form of the LogContext fields: "[request_id=r1 step=createVm] ", or nothing.
class ContextFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    const LogFields fields = LogContext::Current();
    if (fields.empty()) return;
    std::string text = "[";
    for (const auto& [key, value] : fields) {
      if (text.size() > 1) text += ' ';
      text += key;
      text += '=';
      text += value;
    }
    text += "] ";
    dest.append(text.data(), text.data() + text.size());
  }

  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<ContextFlag>(); }
};

std::mutex g_mutex;
LogOptions g_options;
// Every logger writes to this one sink; InitLogging swaps what it forwards to (stderr or a test's
// stream), so loggers made before InitLogging follow it.
std::shared_ptr<spdlog::sinks::dist_sink_mt> g_sink;

LogFormat Resolve(LogFormat format, bool to_stderr) {
  if (format != LogFormat::kAuto) return format;
  return to_stderr && isatty(STDERR_FILENO) ? LogFormat::kConsole : LogFormat::kJson;
}

std::unique_ptr<spdlog::formatter> FormatterFor(LogFormat resolved) {
  if (resolved == LogFormat::kJson) return std::make_unique<JsonFormatter>();
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<ContextFlag>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %*%v");
  return formatter;
}

void ApplyOutputLocked() {
  std::shared_ptr<spdlog::sinks::sink> target;
  if (g_options.output != nullptr) {
    target = std::make_shared<spdlog::sinks::ostream_sink_mt>(*g_options.output, /*force_flush=*/true);
  } else {
    target = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  }
  g_sink->set_sinks({target});
  g_sink->set_formatter(FormatterFor(Resolve(g_options.format, g_options.output == nullptr)));
}

std::shared_ptr<spdlog::sinks::dist_sink_mt> SinkLocked() {
  if (!g_sink) {
    g_sink = std::make_shared<spdlog::sinks::dist_sink_mt>();
    ApplyOutputLocked();
  }
  return g_sink;
}

}  // namespace

LogContext::LogContext(std::initializer_list<std::pair<std::string, std::string>> fields)
    : restore_size_(t_context.size()) {
  t_context.insert(t_context.end(), fields.begin(), fields.end());
}

LogContext::~LogContext() { t_context.resize(restore_size_); }

LogFields LogContext::Current() {
  LogFields fields;
  // Not a structured binding: clang 14 (the fuzz build) cannot capture one in the lambda.
  for (const auto& entry : t_context) {
    auto it = std::find_if(fields.begin(), fields.end(), [&](const auto& field) { return field.first == entry.first; });
    if (it == fields.end()) {
      fields.push_back(entry);
    } else {
      it->second = entry.second;
    }
  }
  return fields;
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format) { return FormatterFor(Resolve(format, true)); }

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
  SinkLocked();
  ApplyOutputLocked();
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
