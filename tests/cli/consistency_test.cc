// SPDX-License-Identifier: Apache-2.0
// One CLI, tried as a new user would (issue 18): root flags after the subcommand, the same flag
// names everywhere (old spellings still accepted), examples in every --help, exit code 2 for an
// unreadable --config-file in every command, and messages that explain common mistakes.

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

#include "sim/omni/accounts.h"
#include "support/subprocess.h"
#include "util/clock.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::RunProcess;

class ConsistencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("cli-consistency-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  std::filesystem::path dir_;
};

TEST_F(ConsistencyTest, RootFlagsAreAcceptedAfterTheSubcommand) {
  auto version = RunProcess({OP_BINARY, "version", "--format", "json"});
  EXPECT_EQ(version.exit_code, 0) << version.err;
  EXPECT_EQ(version.out.rfind("{\"version\":\"", 0), 0u) << version.out;
  auto nested = RunProcess({OP_BINARY, "selector", "eval", "--selector", "name == \"a\"", "--storage",
                            "{\"storage\":\"a\"}", "--log-level", "warn", "--format", "json"});
  EXPECT_EQ(nested.exit_code, 0) << nested.err;
  EXPECT_EQ(nested.out, "{\"type\":\"bool\",\"value\":true}\n");
}

TEST_F(ConsistencyTest, EveryHelpShowsExamples) {
  const std::vector<std::vector<std::string>> commands = {
      {"version"},          {"pve-check"}, {"omni-sim"}, {"pve-sim"}, {"gc"},     {"status"}, {"selector", "eval"},
      {"selector", "test"}, {"validate"},  {"run"},      {"demo"},    {"doctor"}, {"plan"}};
  for (const auto& words : commands) {
    std::vector<std::string> argv = {OP_BINARY};
    argv.insert(argv.end(), words.begin(), words.end());
    argv.push_back("--help");
    auto result = RunProcess(argv);
    EXPECT_EQ(result.exit_code, 0) << words.back();
    EXPECT_NE(result.out.find("Example"), std::string::npos) << words.back() << " --help:\n" << result.out;
  }
}

TEST_F(ConsistencyTest, OneNameForOneThingAndTheOldSpellingsStillWork) {
  auto help = RunProcess({OP_BINARY, "pve-check", "--help"});
  EXPECT_NE(help.out.find("--config-file"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("--config "), std::string::npos) << help.out;  // hidden
  auto eval_help = RunProcess({OP_BINARY, "selector", "eval", "--help"});
  EXPECT_NE(eval_help.out.find("--selector"), std::string::npos) << eval_help.out;
  EXPECT_EQ(eval_help.out.find("--expr"), std::string::npos) << eval_help.out;

  auto old_expr =
      RunProcess({OP_BINARY, "selector", "eval", "--expr", "name == \"a\"", "--storage", "{\"storage\":\"b\"}"});
  EXPECT_EQ(old_expr.exit_code, 0) << old_expr.err;
  EXPECT_EQ(old_expr.out, "{\"type\":\"bool\",\"value\":false}\n");
  auto old_config = RunProcess({OP_BINARY, "pve-check", "--config", (dir_ / "missing.yaml").string()});
  EXPECT_EQ(old_config.exit_code, 2) << old_config.err;
}

TEST_F(ConsistencyTest, AnUnreadableConfigFileIsAUsageErrorInEveryCommand) {
  auto key = sim::omni::GenerateInfraProviderKey("proxmox", util::RealClock().Now());
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string key_file = Write("provider.key", key->encoded.Reveal());
  const std::string klass =
      Write("worker.yaml", "cores: 2\nmemory: 4096\ndisk_size: 10\nstorage_selector: name == \"local-lvm\"\n");
  const std::string missing = (dir_ / "missing.yaml").string();
  const std::vector<std::string> omni = {"--omni-api-endpoint",
                                         "http://127.0.0.1:9",
                                         "--omni-service-account-key-file",
                                         key_file,
                                         "--config-file",
                                         missing};
  const std::vector<std::vector<std::string>> commands = {
      {"pve-check", "--config-file", missing},
      {"selector", "test", "--selector", "name == \"x\"", "--config-file", missing},
      {"plan", klass, "--config-file", missing},
      {"doctor"},
      {"status"},
      {"gc"},
  };
  for (auto argv : commands) {
    const std::string name = argv.front();
    if (name == "doctor" || name == "status" || name == "gc") argv.insert(argv.end(), omni.begin(), omni.end());
    argv.insert(argv.begin(), {OP_BINARY, "--log-level", "off"});
    auto result = RunProcess(argv, "", {}, std::chrono::seconds(60));
    EXPECT_EQ(result.exit_code, 2) << name << ": " << result.err << result.out;
    EXPECT_NE(result.err.find("missing.yaml"), std::string::npos) << name << ": " << result.err;
  }
}

TEST_F(ConsistencyTest, ABareStorageNameIsExplainedOnce) {
  auto eval = RunProcess({OP_BINARY, "selector", "eval", "--selector", "local-lvm", "--storage", "{}"});
  EXPECT_EQ(eval.exit_code, 1);
  EXPECT_NE(eval.out.find("a selector is a CEL expression over the storage; to pick this storage by name write "
                          "name == \\\"local-lvm\\\""),
            std::string::npos)
      << eval.out;
  EXPECT_EQ(eval.out.find("did you mean 'total'"), std::string::npos) << eval.out;

  const std::string klass = Write("bad.yaml",
                                  "metadata:\n  namespace: default\n  type: MachineClasses.omni.sidero.dev\n  id: bad\n"
                                  "spec:\n  autoprovision:\n    providerid: proxmox\n    providerdata: |\n"
                                  "      cores: 2\n      storage_selector: type = \"rbd\"\n");
  auto validate = RunProcess({OP_BINARY, "validate", klass});
  EXPECT_EQ(validate.exit_code, 1);
  std::size_t carets = 0;
  for (std::size_t at = validate.out.find('^'); at != std::string::npos; at = validate.out.find('^', at + 1)) ++carets;
  EXPECT_EQ(carets, 1u) << validate.out;
}

TEST_F(ConsistencyTest, EnvValidationSuggestsAnExampleThatPasses) {
  const std::string placeholder = Write("placeholder.env", "OMNI_DOMAIN=omni.your-tailnet.ts.net\n");
  auto first = RunProcess({OP_BINARY, "validate", placeholder});
  EXPECT_EQ(first.exit_code, 1);
  const auto at = first.out.find("e.g. ");
  ASSERT_NE(at, std::string::npos) << first.out;
  std::string example = first.out.substr(at + 5);
  example = example.substr(0, example.find_first_of(" )\n"));
  EXPECT_EQ(example.find("your-"), std::string::npos) << example;
  const std::string suggested = Write("suggested.env", "OMNI_DOMAIN=" + example + "\n");
  auto second = RunProcess({OP_BINARY, "validate", suggested});
  EXPECT_EQ(second.out.find("OMNI_DOMAIN"), std::string::npos) << second.out;  // the domain itself is fine now
}

}  // namespace
}  // namespace omni_proxmox::cli
