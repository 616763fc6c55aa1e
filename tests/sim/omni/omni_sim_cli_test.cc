// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox omni-sim` as a process: flags, endpoints output, key files, stdin control lines.

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gtest/gtest.h"

#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

class OmniSimCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("omnisim-cli-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "pd.yaml") << "cores: 2\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(OmniSimCliTest, StdinControlLinesDriveTheStandIn) {
  const std::string input = "class small " + (dir_ / "pd.yaml").string() +
                            "\nscale workers small 2\n# a comment\nscale workers nope 1\nfly away\n";
  auto result = testing::RunProcess({OP_BINARY, "--log-level", "warn", "omni-sim", "--provider-id", "proxmox",
                                     "--keys-dir", (dir_ / "keys").string(), "--stdin", "--lenient"},
                                    input);
  EXPECT_EQ(result.exit_code, 1) << result.err;  // two control lines failed
  EXPECT_NE(result.out.find("grpc endpoint   http://127.0.0.1:"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("ok\nok\nerror: machine class 'nope' does not exist"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("error: unknown control 'fly'"), std::string::npos) << result.out;
  EXPECT_TRUE(std::filesystem::exists(dir_ / "keys" / "admin.key"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "keys" / "proxmox.key"));
}

TEST_F(OmniSimCliTest, JsonOutputNamesEveryEndpoint) {
  auto result = testing::RunProcess(
      {OP_BINARY, "--format", "json", "--log-level", "warn", "omni-sim", "--stdin", "--control-port", "-1"},
      "# no controls\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("\"grpc_endpoint\":\"http://127.0.0.1:"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("\"factory_url\":\"http://127.0.0.1:"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("\"control_url\":\"\""), std::string::npos) << result.out;
}

TEST_F(OmniSimCliTest, BadProviderIdIsAUsageError) {
  auto result = testing::RunProcess({OP_BINARY, "--log-level", "warn", "omni-sim", "--provider-id", "a b", "--stdin"},
                                    "# no controls\n");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("provider_id 'a b'"), std::string::npos) << result.err;
}

TEST_F(OmniSimCliTest, ASecondOmniSimOnABusyPortExitsOneWithAddressInUse) {
  testing::ChildProcess first({OP_BINARY, "--format", "json", "--log-level", "warn", "omni-sim", "--control-port", "-1",
                               "--keys-dir", (dir_ / "keys").string()},
                              {}, (dir_ / "first.log").string());
  std::string log;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (log.find("\"grpc_endpoint\"") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling the child's output: no clock to inject
    log = first.Log();
  }
  const std::string marker = "\"grpc_endpoint\":\"http://127.0.0.1:";
  const auto at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  const auto start = at + marker.size();
  const std::string port = log.substr(start, log.find('"', start) - start);

  auto second = testing::RunProcess(
      {OP_BINARY, "--log-level", "warn", "omni-sim", "--listen", "127.0.0.1:" + port, "--stdin"}, "# none\n");
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_NE(second.err.find("address already in use"), std::string::npos) << second.err;
  // The old spellings --bind and --grpc-port still work, and meet the same refusal.
  auto old_flags = testing::RunProcess(
      {OP_BINARY, "--log-level", "warn", "omni-sim", "--bind", "127.0.0.1", "--grpc-port", port, "--stdin"}, "");
  EXPECT_EQ(old_flags.exit_code, 1) << old_flags.err;

  first.Signal(SIGINT);
  EXPECT_EQ(first.Wait(std::chrono::seconds(30)), 0) << first.Log();
}

TEST_F(OmniSimCliTest, ListeningBeyondLoopbackWarnsThatTheControlEndpointIsOpen) {
  // A bad provider ID stops it before anything listens: the warning comes first.
  auto result = testing::RunProcess(
      {OP_BINARY, "--log-level", "warn", "omni-sim", "--listen", "0.0.0.0:0", "--provider-id", "a b", "--stdin"}, "");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("warning: listening on 0.0.0.0 beyond loopback; the control endpoint has no "
                            "authentication"),
            std::string::npos)
      << result.err;
}

TEST_F(OmniSimCliTest, TheOldBindSpellingBeyondLoopbackWarnsToo) {
  auto result = testing::RunProcess(
      {OP_BINARY, "--log-level", "warn", "omni-sim", "--bind", "0.0.0.0", "--provider-id", "a b", "--stdin"}, "");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("warning: listening on 0.0.0.0 beyond loopback"), std::string::npos) << result.err;
  // Loopback, in either spelling, is quiet.
  for (const char* flag : {"--bind", "--listen"}) {
    const std::string value = std::string(flag) == "--bind" ? "127.0.0.1" : "127.0.0.1:0";
    auto quiet = testing::RunProcess(
        {OP_BINARY, "--log-level", "warn", "omni-sim", flag, value, "--provider-id", "a b", "--stdin"}, "");
    EXPECT_EQ(quiet.exit_code, 2) << flag;
    EXPECT_EQ(quiet.err.find("beyond loopback"), std::string::npos) << flag << ": " << quiet.err;
  }
}

TEST_F(OmniSimCliTest, ListenIsCheckedAndNotMixedWithTheOldSpellings) {
  auto bad = testing::RunProcess({OP_BINARY, "omni-sim", "--listen", "nonsense", "--stdin"}, "");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--listen 'nonsense' must be HOST:PORT"), std::string::npos) << bad.err;
  auto mixed =
      testing::RunProcess({OP_BINARY, "omni-sim", "--listen", "127.0.0.1:0", "--grpc-port", "1", "--stdin"}, "");
  EXPECT_EQ(mixed.exit_code, 2);
}

TEST_F(OmniSimCliTest, WithoutLenientARequestSetWaitsForTheProvidersStatus) {
  const std::string input = "class small " + (dir_ / "pd.yaml").string() + "\nscale workers small 1\n";
  auto result = testing::RunProcess({OP_BINARY, "--log-level", "warn", "omni-sim", "--stdin"}, input);
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_NE(result.out.find("ok\nerror: failed to get provider \"proxmox\""), std::string::npos) << result.out;
}

}  // namespace
}  // namespace omni_proxmox::cli
