// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::RunProcess;

TEST(CliTest, VersionFlagPrintsVersion) {
  auto result = RunProcess({OP_BINARY, "--version"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out.rfind("omni-proxmox ", 0), 0u) << result.out;
}

TEST(CliTest, HelpListsSubcommands) {
  auto result = RunProcess({OP_BINARY, "--help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find("version"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("--log-format"), std::string::npos) << result.out;
}

TEST(CliTest, UnknownSubcommandExitsTwoWithHint) {
  auto result = RunProcess({OP_BINARY, "versoin"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("unknown command 'versoin'"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("did you mean 'version'"), std::string::npos) << result.err;
}

TEST(CliTest, BadLogLevelIsUsageError) {
  auto result = RunProcess({OP_BINARY, "--log-level", "loud", "version"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--log-level"), std::string::npos) << result.err;
}

TEST(CliTest, JsonFormatForScripts) {
  auto result = RunProcess({OP_BINARY, "--format", "json", "version"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out.rfind("{\"version\":\"", 0), 0u) << result.out;
}

TEST(CliTest, NoCommandPrintsHelpAndExitsTwo) {
  auto result = RunProcess({OP_BINARY});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.out.find("Subcommands"), std::string::npos) << result.out;
}

}  // namespace
}  // namespace omni_proxmox::cli
