// `omni-proxmox omni-sim` as a process: flags, endpoints output, key files, stdin control lines.

#include <filesystem>
#include <fstream>

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
                                     "--keys-dir", (dir_ / "keys").string(), "--stdin"},
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

}  // namespace
}  // namespace omni_proxmox::cli
