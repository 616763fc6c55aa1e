#include "util/log.h"

#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

TEST(JsonEscapeTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonEscape(R"(say "hi" \ bye)"), R"(say \"hi\" \\ bye)");
  EXPECT_EQ(JsonEscape("a\nb\tc\x01"), "a\\nb\\tc\\u0001");
  EXPECT_EQ(JsonEscape("grüße"), "grüße");
}

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

}  // namespace
}  // namespace omni_proxmox::util
