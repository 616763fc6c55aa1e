// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox validate` as operators run it: the built binary on real files in a per-test
// directory. The individual checks are covered by validate_test.cc.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::RunProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kTestdata = std::string(OP_SOURCE_DIR) + "/tests/cli/testdata/validate/";
const std::string kExamples = std::string(OP_SOURCE_DIR) + "/docs/examples/";

class TempDir {
 public:
  TempDir() {
    std::string pattern = std::filesystem::temp_directory_path() / "validate-command-test-XXXXXX";
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& content) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << content;
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ValidateCommandTest, CleanFilesExitZeroWithAnOkLinePerFile) {
  auto result = RunProcess({OP_BINARY, "validate", kExamples + "cluster-template.yaml",
                            kExamples + "machineclass-control-plane.yaml", kExamples + "machineclass-worker.yaml"});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("cluster-template.yaml: ok (cluster-template)\n"));
  EXPECT_THAT(result.out, HasSubstr("machineclass-worker.yaml: ok (machine-class)\n"));
  EXPECT_THAT(result.out, HasSubstr("3 files checked: 0 errors, 0 warnings\n"));
}

TEST(ValidateCommandTest, WarningsAloneExitZeroAndErrorsExitOne) {
  auto warnings_only = RunProcess({OP_BINARY, "validate", kTestdata + "operator-machineclass.yaml"});
  EXPECT_EQ(warnings_only.exit_code, 0) << warnings_only.out << warnings_only.err;
  EXPECT_THAT(warnings_only.out, HasSubstr("operator-machineclass.yaml:7:17: warning: providerid 'Proxmox'"));

  TempDir dir;
  const std::string file = dir.Write("worker.yaml",
                                     "metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: w}\n"
                                     "spec:\n"
                                     "  autoprovision:\n"
                                     "    providerid: proxmox\n"
                                     "    providerdata: |\n"
                                     "      cores: 4\n"
                                     "      memory: 1024\n"
                                     "      disk_size: 40\n"
                                     "      storage_selector: name == \"local-lvm\"\n");
  auto errors = RunProcess({OP_BINARY, "validate", file});
  EXPECT_EQ(errors.exit_code, 1) << errors.out << errors.err;
  EXPECT_THAT(errors.out, HasSubstr(file + ":7:15: error: providerdata.memory: 1024 is out of range"));
  EXPECT_THAT(errors.out, HasSubstr("1 file checked: 1 error, 0 warnings"));
}

TEST(ValidateCommandTest, UnreadableFileOrMissingArgumentsExitTwo) {
  TempDir dir;
  auto missing = RunProcess({OP_BINARY, "validate", dir.path() + "/nope.yaml", kExamples + "machineclass-worker.yaml"});
  EXPECT_EQ(missing.exit_code, 2) << missing.out << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("nope.yaml: cannot open it"));
  EXPECT_THAT(missing.out, HasSubstr("machineclass-worker.yaml: ok"));  // the readable ones are still checked

  auto directory = RunProcess({OP_BINARY, "validate", dir.path()});
  EXPECT_EQ(directory.exit_code, 2) << directory.out << directory.err;
  EXPECT_THAT(directory.err, HasSubstr("is a directory"));

  EXPECT_EQ(RunProcess({OP_BINARY, "validate"}).exit_code, 2);
}

TEST(ValidateCommandTest, FixPrintsAMultiDocumentTemplateThatValidates) {
  TempDir dir;
  auto fixed = RunProcess({OP_BINARY, "validate", "--fix", kTestdata + "operator-cluster-template.yaml"});
  EXPECT_EQ(fixed.exit_code, 1) << fixed.out << fixed.err;  // the input still has its errors
  EXPECT_THAT(fixed.err, HasSubstr("field controlPlane not found in type models.Cluster"));
  EXPECT_THAT(fixed.out, StartsWith("# "));
  EXPECT_THAT(fixed.out, HasSubstr("\n---\nkind: ControlPlane\n"));
  EXPECT_THAT(fixed.out, Not(HasSubstr("error")));

  const std::string template_file = dir.Write("cluster.yaml", fixed.out);
  const std::string control_plane =
      dir.Write("control-plane.yaml",
                "metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: control-plane}\n"
                "spec:\n"
                "  autoprovision:\n"
                "    providerid: Proxmox\n"
                "    providerdata: |\n"
                "      cores: 4\n"
                "      memory: 8192\n"
                "      disk_size: 40\n"
                "      storage_selector: type == \"lvmthin\"\n");
  auto again = RunProcess({OP_BINARY, "validate", "--provider-id", "Proxmox", template_file, control_plane,
                           kTestdata + "operator-machineclass.yaml"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("3 files checked: 0 errors, 0 warnings"));

  auto nothing = RunProcess({OP_BINARY, "validate", "--fix", kExamples + "cluster-template.yaml"});
  EXPECT_EQ(nothing.exit_code, 0);
  EXPECT_EQ(nothing.out, "");
  EXPECT_THAT(nothing.err, HasSubstr("no single-document cluster template to rewrite"));
}

TEST(ValidateCommandTest, JsonOutputForScripts) {
  TempDir dir;
  const std::string env =
      dir.Write(".env", "OMNI_DOMAIN=https://omni.example.ts.net\nOMNI_INFRA_PROVIDER_KEY=bm9wZQ==\n");
  auto result = RunProcess({OP_BINARY, "--format", "json", "validate", kTestdata + "operator-config.yaml", env,
                            kTestdata + "operator-cluster-template.yaml"});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  const auto json = nlohmann::json::parse(result.out);
  EXPECT_EQ(json["errors"], 4);
  ASSERT_EQ(json["files"].size(), 3u);
  EXPECT_EQ(json["files"][0]["kind"], "provider-config");
  EXPECT_EQ(json["files"][1]["kind"], "env");
  EXPECT_EQ(json["files"][1]["path"], env);
  const auto& first = json["files"][1]["findings"][0];
  EXPECT_EQ(first["line"], 1);
  EXPECT_EQ(first["column"], 13);
  EXPECT_EQ(first["severity"], "error");
  EXPECT_EQ(first["message"], "OMNI_DOMAIN is a host name, not a URL");
  EXPECT_THAT(first["hint"].get<std::string>(), HasSubstr("drop the scheme"));
  // `run` takes https:// as meant; in a compose .env it still breaks Omni's own flags.
  EXPECT_THAT(first["hint"].get<std::string>(), HasSubstr("compose.yaml builds Omni's own --advertised-api-url"));
  EXPECT_TRUE(json["files"][2]["fixed"].is_string());
  EXPECT_THAT(result.out, Not(HasSubstr("bm9wZQ")));  // the key never appears
}

TEST(ValidateCommandTest, HelpShowsExamples) {
  auto result = RunProcess({OP_BINARY, "validate", "--help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(result.out, HasSubstr("Examples:"));
  EXPECT_THAT(result.out, HasSubstr("omni-proxmox validate --fix cluster.yaml"));
  EXPECT_THAT(result.out, HasSubstr("--id"));
  EXPECT_THAT(result.out, Not(HasSubstr("--provider-id")));  // the old spelling works, hidden
}

}  // namespace
}  // namespace omni_proxmox::cli
