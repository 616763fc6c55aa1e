// SPDX-License-Identifier: Apache-2.0
#include "util/log.h"

#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace omni_proxmox::util {
namespace {

TEST(ParseLogFormatTest, AcceptsKnownFormatsAndNamesTheFlagOtherwise) {
  LogFormat format = LogFormat::kAuto;
  EXPECT_TRUE(ParseLogFormat("json", format).ok());
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_TRUE(ParseLogFormat("console", format).ok());
  EXPECT_EQ(format, LogFormat::kConsole);
  auto status = ParseLogFormat("xml", format);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--log-format"), std::string_view::npos);
  EXPECT_NE(status.message().find("json"), std::string_view::npos);
}

TEST(InitLoggingTest, RejectsUnknownLevel) {
  auto status = InitLogging({.format = LogFormat::kJson, .level = "loud"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--log-level"), std::string_view::npos);
  EXPECT_TRUE(InitLogging({.format = LogFormat::kJson, .level = "warn"}).ok());
}

TEST(LoggerTest, SameNameSameLogger) { EXPECT_EQ(Logger("pve"), Logger("pve")); }

// Routes every logger into a string for one test, then back to stderr.
class CapturedLogTest : public ::testing::Test {
 protected:
  void Capture(LogFormat format) {
    ASSERT_TRUE(InitLogging({.format = format, .level = "info", .output = &out_}).ok());
  }
  void TearDown() override { ASSERT_TRUE(InitLogging({.format = LogFormat::kConsole, .level = "info"}).ok()); }

  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  // Each line parsed as one JSON object (a parse error fails the test).
  std::vector<nlohmann::json> JsonLines() const {
    std::vector<nlohmann::json> parsed;
    for (const auto& line : Lines()) {
      auto json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      EXPECT_TRUE(json.is_object()) << "not a JSON object: " << line;
      parsed.push_back(json);
    }
    return parsed;
  }

  std::ostringstream out_;
};

TEST_F(CapturedLogTest, JsonLinesCarryTheContextAsFields) {
  auto log = Logger("ctx-test");  // made before InitLogging redirects: it must follow
  Capture(LogFormat::kJson);
  log->info("before");
  {
    LogContext request({{"request_id", "req-\"1\"\n"}, {"step", "reconcile"}});
    log->info("reading");
    {
      LogContext step({{"step", "createVm"}});
      log->warn("creating \"vm\"");
    }
    log->info("after the step");
  }
  log->info("outside");

  const auto lines = JsonLines();
  ASSERT_EQ(lines.size(), 5u) << out_.str();
  EXPECT_FALSE(lines[0].contains("request_id"));
  EXPECT_FALSE(lines[0].contains("step"));
  EXPECT_EQ(lines[1]["request_id"], "req-\"1\"\n");
  EXPECT_EQ(lines[1]["step"], "reconcile");
  EXPECT_EQ(lines[2]["step"], "createVm");
  EXPECT_EQ(lines[2]["request_id"], "req-\"1\"\n");
  EXPECT_EQ(lines[2]["msg"], "creating \"vm\"");
  EXPECT_EQ(lines[2]["level"], "warning");
  EXPECT_EQ(lines[2]["logger"], "ctx-test");
  EXPECT_EQ(lines[3]["step"], "reconcile");
  EXPECT_FALSE(lines[4].contains("request_id"));
}

TEST_F(CapturedLogTest, ContextBelongsToTheThreadThatSetIt) {
  Capture(LogFormat::kJson);
  LogContext request({{"request_id", "mine"}});
  std::thread([] {
    LogContext other({{"request_id", "theirs"}, {"step", "place"}});
    Logger("ctx-test")->info("other thread");
  }).join();
  std::thread([] { Logger("ctx-test")->info("bare thread"); }).join();
  Logger("ctx-test")->info("this thread");
  const auto lines = JsonLines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["request_id"], "theirs");
  EXPECT_FALSE(lines[1].contains("request_id"));
  EXPECT_EQ(lines[2]["request_id"], "mine");
  EXPECT_FALSE(lines[2].contains("step"));
}

TEST_F(CapturedLogTest, ReservedKeysDoNotOverwriteTheLineFields) {
  Capture(LogFormat::kJson);
  LogContext context({{"msg", "sneaky"}, {"level", "none"}});
  Logger("ctx-test")->info("real message");
  const auto lines = JsonLines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["msg"], "real message");
  EXPECT_EQ(lines[0]["level"], "info");
  EXPECT_EQ(lines[0]["ctx_msg"], "sneaky");
  EXPECT_EQ(lines[0]["ctx_level"], "none");
}

TEST_F(CapturedLogTest, ConsoleShowsTheContextCompactly) {
  Capture(LogFormat::kConsole);
  Logger("ctx-test")->info("plain");
  {
    LogContext context({{"request_id", "r1"}, {"step", "startVm"}});
    Logger("ctx-test")->info("started");
  }
  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], ::testing::EndsWith("[ctx-test] plain"));
  EXPECT_THAT(lines[1], ::testing::EndsWith("[ctx-test] [request_id=r1 step=startVm] started"));
}

}  // namespace
}  // namespace omni_proxmox::util
