// SPDX-License-Identifier: Apache-2.0
// The checks behind `omni-proxmox validate`, called directly: each kind of finding, where it
// points, and the cross-checks between files. tests/cli/validate_command_test.cc runs the binary.

#include "cli/validate/validate.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "omni/keys.h"
#include "util/clock.h"

namespace omni_proxmox::cli::validate {

// Found by gMock through argument-dependent lookup, so it lives next to Finding.
void PrintTo(const Finding& f, std::ostream* os) {
  *os << f.line << ":" << f.column << ": " << (f.severity == Severity::kError ? "error" : "warning") << ": "
      << f.message << " (" << f.hint << ")";
}

namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(OP_SOURCE_DIR) + "/" + relative);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

InputFile Source(const std::string& relative) { return {relative, ReadSource(relative)}; }

constexpr const char* kTestdata = "tests/cli/testdata/validate/";

// A directory of its own per test, removed afterwards (ctest runs test processes in parallel).
class TempDir {
 public:
  TempDir() {
    std::string pattern = std::filesystem::temp_directory_path() / "validate-test-XXXXXX";
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

std::vector<Finding> Errors(const FileReport& file) {
  std::vector<Finding> out;
  for (const auto& f : file.findings) {
    if (f.severity == Severity::kError) out.push_back(f);
  }
  return out;
}

std::string Dump(const Report& report) { return FormatText(report); }

auto At(int line, int column) { return AllOf(Field(&Finding::line, line), Field(&Finding::column, column)); }

auto ErrorAt(int line, int column, const std::string& text) {
  return AllOf(At(line, column), Field(&Finding::severity, Severity::kError),
               Field(&Finding::message, HasSubstr(text)));
}

auto WarningAt(int line, int column, const std::string& text) {
  return AllOf(At(line, column), Field(&Finding::severity, Severity::kWarning),
               Field(&Finding::message, HasSubstr(text)));
}

std::string InfraProviderKey(const std::string& provider_id) {
  auto key = omni::GenerateInfraProviderKey(provider_id, std::chrono::hours(24), util::RealClock());
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? key->encoded.Reveal() : "";
}

TEST(ValidateTest, ExamplesUnderDocsAreCleanTogether) {
  const Report report =
      Validate({Source("docs/examples/machineclass-control-plane.yaml"),
                Source("docs/examples/machineclass-worker.yaml"), Source("docs/examples/cluster-template.yaml")},
               {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  EXPECT_EQ(report.warnings(), 0) << Dump(report);
  ASSERT_EQ(report.files.size(), 3u);
  EXPECT_EQ(report.files[0].kind, "machine-class");
  EXPECT_EQ(report.files[2].kind, "cluster-template");
  EXPECT_TRUE(report.files[2].fixed_template.empty());
}

TEST(ValidateTest, OperatorDocumentMachineClassIsValidButItsCapitalisedProviderIdIsFlagged) {
  const Report report = Validate({Source(std::string(kTestdata) + "operator-machineclass.yaml")}, {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  // providerid: Proxmox differs in case from the provider's default ID.
  EXPECT_THAT(report.files[0].findings, Contains(WarningAt(7, 17, "providerid 'Proxmox'")));

  const Report checked = Validate({Source(std::string(kTestdata) + "operator-machineclass.yaml")}, {"proxmox"});
  EXPECT_THAT(checked.files[0].findings, Contains(ErrorAt(7, 17, "differs only in case")));
  EXPECT_EQ(Validate({Source(std::string(kTestdata) + "operator-machineclass.yaml")}, {"Proxmox"}).warnings(), 0);
}

TEST(ValidateTest, OperatorDocumentConfigHasNoErrorsButPlaceholderWarnings) {
  const Report report = Validate({Source(std::string(kTestdata) + "operator-config.yaml")}, {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  EXPECT_EQ(report.files[0].kind, "provider-config");
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(WarningAt(2, 8, "proxmox.url: still holds the example's placeholder")));
  EXPECT_THAT(findings, Contains(WarningAt(3, 3, "insecureSkipVerify")));
  EXPECT_THAT(findings, Contains(WarningAt(7, 16, "proxmox.tokenSecret: still holds")));
}

TEST(ValidateTest, ProviderDataFindingsPointAtTheLineAndColumnInsideTheBlockScalar) {
  const std::string text =
      "metadata:\n"
      "  namespace: default\n"
      "  type: MachineClasses.omni.sidero.dev\n"
      "  id: worker\n"
      "spec:\n"
      "  autoprovision:\n"
      "    providerid: proxmox\n"
      "    providerdata: |\n"
      "        cores: 4\n"
      "        memory: 8192\n"
      "        disk_size: lots\n"
      "        storage_selector: type == \"rbd\" && nmae == \"vm_ssd\"\n"
      "        netwrok_bridge: vmbr0\n";
  const Report report = Validate({{"worker.yaml", text}}, {});
  const auto& findings = report.files[0].findings;
  // Indented by 8 under `providerdata: |`: the provider's line 3 column 12 is the file's line 11 column 20.
  EXPECT_THAT(findings, Contains(ErrorAt(11, 20, "providerdata.disk_size: must be a whole number")));
  EXPECT_THAT(findings, Contains(ErrorAt(13, 9, "providerdata.netwrok_bridge: unknown key")));
  // The selector error points at `nmae` itself: value column 27 plus 17 characters into the expression.
  EXPECT_THAT(findings, Contains(ErrorAt(12, 44,
                                         "providerdata.storage_selector: is not a valid selector: "
                                         "undeclared reference to 'nmae'")));
  const std::string out = FormatText(report);
  EXPECT_THAT(out, HasSubstr("worker.yaml:12:44: error: providerdata.storage_selector: is not a valid selector"));
  EXPECT_THAT(out, HasSubstr("(did you mean 'network_bridge'?)"));
  EXPECT_THAT(out, HasSubstr("did you mean 'name'?"));
  // The CEL source line and caret follow, indented.
  EXPECT_THAT(out, HasSubstr("\n     | type == \"rbd\" && nmae == \"vm_ssd\"\n     | .................^\n"));
  EXPECT_EQ(report.errors(), 3) << out;
}

TEST(ValidateTest, QuotedSelectorColumnCountsTheQuote) {
  const std::string text =
      "metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: w}\n"
      "spec:\n"
      "  autoprovision:\n"
      "    providerid: proxmox\n"
      "    providerdata: |-\n"
      "      cores: 2\n"
      "      memory: 4096\n"
      "      disk_size: 20\n"
      "      storage_selector: 'name = \"local-lvm\"'\n";
  const Report report = Validate({{"w.yaml", text}}, {});
  // Value starts at column 25 with its quote; the CEL error is at expression column 6.
  EXPECT_THAT(report.files[0].findings, Contains(ErrorAt(9, 31, "providerdata.storage_selector")));
  EXPECT_EQ(report.errors(), 1) << Dump(report);
}

TEST(ValidateTest, ProviderDataInAQuotedStringIsReportedAtTheValueWithItsInnerPosition) {
  const std::string text =
      "metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: w}\n"
      "spec:\n"
      "  autoprovision:\n"
      "    providerid: proxmox\n"
      "    providerdata: \"cores: 2\\nmemory: 4096\\ndisk_size: 20\\nstorage_selector: name == 'x'\\ncolor: red\"\n";
  const Report report = Validate({{"w.yaml", text}}, {});
  ASSERT_EQ(report.errors(), 1) << Dump(report);
  const std::vector<Finding> errors = Errors(report.files[0]);
  const Finding& f = errors.front();
  EXPECT_EQ(f.line, 5);
  EXPECT_EQ(f.column, 19);
  EXPECT_THAT(f.message, HasSubstr("providerdata.color: unknown key"));
  EXPECT_THAT(f.message, HasSubstr("at line 5, column 1 of the providerdata text"));
}

TEST(ValidateTest, MachineClassStructureIsChecked) {
  const std::string text =
      "metadata:\n"
      "  namespace: omni\n"
      "  type: MachineClasses.omni.sidero.dev\n"
      "spec:\n"
      "  autoprovision:\n"
      "    providerdata:\n"
      "      cores: 2\n"
      "    kernelargs: console=ttyS0\n"
      "    metavalues:\n"
      "      - key: 300\n"
      "        value: x\n"
      "      - value: y\n"
      "    providerdatta: x\n";
  const Report report = Validate({{"mc.yaml", text}}, {});
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(ErrorAt(2, 3, "metadata.id: missing")));
  EXPECT_THAT(findings, Contains(ErrorAt(2, 14, "metadata.namespace")));
  EXPECT_THAT(findings, Contains(ErrorAt(5, 3, "spec.autoprovision.providerid: missing")));
  EXPECT_THAT(findings, Contains(ErrorAt(7, 7, "providerdata: must be a string holding YAML, not a map")));
  EXPECT_THAT(findings, Contains(ErrorAt(8, 17, "kernelargs: must be a list of strings")));
  EXPECT_THAT(findings, Contains(ErrorAt(10, 14, "metavalues[0].key: '300' is not a Talos META key")));
  EXPECT_THAT(findings, Contains(ErrorAt(12, 9, "metavalues[1].key: missing")));
  EXPECT_THAT(findings, Contains(AllOf(ErrorAt(13, 5, "spec.autoprovision.providerdatta: unknown key"),
                                       Field(&Finding::hint, "did you mean 'providerdata'?"))));
}

TEST(ValidateTest, KernelArgsAndMetaValuesInTheirExpectedShapeAreAccepted) {
  const std::string text =
      "metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: gpu}\n"
      "spec:\n"
      "  autoprovision:\n"
      "    providerid: proxmox\n"
      "    kernelargs: [console=ttyS0, talos.dashboard.disabled=1]\n"
      "    metavalues:\n"
      "      - {key: 10, value: \"zone-a\"}\n"
      "    providerdata: |\n"
      "      cores: 8\n"
      "      memory: 16384\n"
      "      disk_size: 100\n"
      "      storage_selector: name == \"local-lvm\"\n";
  const Report report = Validate({{"gpu.yaml", text}}, {});
  EXPECT_THAT(report.files[0].findings, IsEmpty()) << Dump(report);
}

TEST(ValidateTest, ReadmeFormIsFlaggedAndItsConfigCheckedInPlace) {
  const Report report = Validate({Source(std::string(kTestdata) + "machineclass-readme-form.yaml")}, {});
  const auto& findings = report.files[0].findings;
  EXPECT_EQ(report.files[0].kind, "machine-class");
  EXPECT_THAT(findings, Contains(WarningAt(2, 1, "omnictl does not accept")));
  // The Go README's camelCase keys are accepted with a warning, at their own lines.
  EXPECT_THAT(findings, Contains(WarningAt(9, 5, "providerdata.cpu: 'cpu' is the Go provider README's spelling")));
  EXPECT_THAT(findings, Contains(WarningAt(11, 5, "diskSize")));
  // Its selector is not CEL over our variables: pointed at `storage`, the first character of the expression.
  EXPECT_THAT(findings, Contains(ErrorAt(12, 23, "providerdata.storage_selector: is not a valid selector")));
  EXPECT_EQ(report.errors(), 1) << Dump(report);
}

TEST(ValidateTest, SingleDocumentTemplateIsExplainedAndItsFixValidates) {
  const std::string path = std::string(kTestdata) + "operator-cluster-template.yaml";
  const Report report = Validate({Source(path)}, {});
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(ErrorAt(14, 1,
                                         "Omni rejects the single-document form with \"field controlPlane not found in "
                                         "type models.Cluster\"")));
  EXPECT_THAT(findings, Contains(ErrorAt(17, 1, "field workers not found in type models.Cluster")));
  EXPECT_THAT(findings, Contains(Field(&Finding::hint, HasSubstr("--fix"))));
  EXPECT_EQ(report.errors(), 2) << Dump(report);
  // Machine classes named inside the nested form are still cross-checked.
  EXPECT_THAT(findings, Contains(WarningAt(15, 17, "machine class 'control-plane' is not defined")));

  const std::string fixed = report.files[0].fixed_template;
  EXPECT_THAT(fixed, HasSubstr("kind: ControlPlane\nmachineClass:\n  name: control-plane\n  size: 3\n"));
  EXPECT_THAT(fixed, HasSubstr("kind: Workers\nmachineClass:\n  name: worker-standard\n  size: 3\n"));
  EXPECT_THAT(fixed, HasSubstr("name: none"));
  const std::string control_plane_class =
      "metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: control-plane}\n"
      "spec:\n"
      "  autoprovision:\n"
      "    providerid: Proxmox\n"
      "    providerdata: |\n"
      "      cores: 4\n"
      "      memory: 8192\n"
      "      disk_size: 40\n"
      "      storage_selector: type == \"lvmthin\"\n";
  const Report again = Validate({{"fixed.yaml", fixed},
                                 {"cp.yaml", control_plane_class},
                                 Source(std::string(kTestdata) + "operator-machineclass.yaml")},
                                {"Proxmox"});
  EXPECT_EQ(again.errors(), 0) << Dump(again) << fixed;
  EXPECT_EQ(again.warnings(), 0) << Dump(again);
  EXPECT_TRUE(again.files[0].fixed_template.empty());
}

TEST(ValidateTest, FixAddsTheTalosVersionPrefixOmniRequires) {
  const std::string text =
      "kind: Cluster\nname: c\nkubernetes: {version: 1.31.0}\ntalos: {version: 1.9.0}\n"
      "controlPlane: {machineClass: cp, count: 1}\n";
  const Report report = Validate({{"c.yaml", text}}, {});
  EXPECT_THAT(report.files[0].findings, Contains(ErrorAt(4, 18, "lacks the v prefix")));
  EXPECT_THAT(report.files[0].fixed_template, HasSubstr("version: v1.9.0"));
  EXPECT_THAT(report.files[0].fixed_template, HasSubstr("version: 1.31.0"));  // Kubernetes takes both forms
}

TEST(ValidateTest, MissingMachineClassNamesTheClassAndTheFilesGiven) {
  const std::string text =
      "kind: Cluster\nname: c\nkubernetes:\n  version: v1.31.0\ntalos:\n  version: v1.9.0\n---\n"
      "kind: ControlPlane\nmachineClass:\n  name: control-plane\n  size: 3\n---\n"
      "kind: Workers\nmachineClass:\n  name: workr\n  size: 2\n";
  const Report report = Validate({{"cluster.yaml", text},
                                  Source("docs/examples/machineclass-worker.yaml"),
                                  Source("docs/examples/machineclass-control-plane.yaml")},
                                 {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  ASSERT_EQ(report.warnings(), 1) << Dump(report);
  const Finding& f = report.files[0].findings.front();
  EXPECT_EQ(f.line, 15);
  EXPECT_EQ(f.column, 9);
  EXPECT_THAT(f.message, HasSubstr("machine class 'workr' is not defined in the given files"));
  EXPECT_THAT(f.message, HasSubstr("they define control-plane, worker"));
  EXPECT_THAT(f.hint, HasSubstr("did you mean 'worker'?"));
  EXPECT_THAT(f.hint, HasSubstr("given: cluster.yaml, docs/examples/machineclass-worker.yaml, "
                                "docs/examples/machineclass-control-plane.yaml"));
}

TEST(ValidateTest, VersionsMustLookLikeKubernetesAndTalosVersions) {
  const auto check = [](const std::string& kubernetes, const std::string& talos) {
    const std::string text = "kind: Cluster\nname: c\nkubernetes:\n  version: " + kubernetes +
                             "\ntalos:\n  version: " + talos +
                             "\n---\nkind: ControlPlane\nmachines: [a]\n---\nkind: Machine\nname: a\n";
    return Validate({{"c.yaml", text}}, {});
  };
  EXPECT_EQ(check("v1.30.1", "v1.8.3").errors(), 0) << Dump(check("v1.30.1", "v1.8.3"));
  EXPECT_EQ(check("1.30.1", "v1.8.3").errors(), 0);
  EXPECT_EQ(check("v1.31.0-beta.0", "v1.9.0-alpha.1").errors(), 0);

  const Report short_kubernetes = check("1.30", "v1.8.3");
  ASSERT_EQ(short_kubernetes.errors(), 1);
  EXPECT_THAT(short_kubernetes.files[0].findings,
              Contains(AllOf(ErrorAt(4, 12, "kubernetes.version: '1.30' is not a Kubernetes version"),
                             Field(&Finding::hint, "write the full version, e.g. v1.30.1 or 1.30.1"))));
  EXPECT_THAT(check("v1.30.1", "1.8.3").files[0].findings,
              Contains(AllOf(ErrorAt(6, 12, "talos.version: '1.8.3' lacks the v prefix"),
                             Field(&Finding::hint, "write v1.8.3"))));
  EXPECT_THAT(check("v1.30.1", "latest").files[0].findings,
              Contains(ErrorAt(6, 12, "talos.version: 'latest' is not a Talos version")));
}

TEST(ValidateTest, TemplateStructureFollowsOmnisRules) {
  const std::string text =
      "kind: Cluster\n"                         // 1
      "name: bad name\n"                        // 2
      "kubernetes: {version: v1.31.0}\n"        // 3
      "talos: {version: v1.9.0}\n"              // 4
      "feature: {diskEncryption: true}\n"       // 5
      "---\n"                                   // 6
      "kind: ControlPlane\n"                    // 7
      "machineClass: {name: cp, size: 2}\n"     // 8
      "---\n"                                   // 9
      "kind: ControlPlane\n"                    // 10
      "machines: [m1]\n"                        // 11
      "---\n"                                   // 12
      "kind: Workers\n"                         // 13
      "name: control-planes\n"                  // 14
      "machines: [m2]\n"                        // 15
      "machineClass: {name: cp, size: lots}\n"  // 16
      "---\n"                                   // 17
      "kind: Workers\n"                         // 18
      "machineClass: {name: cp, size: 1}\n"     // 19
      "---\n"                                   // 20
      "kind: Workers\n"                         // 21
      "machineClass: {name: cp, size: 1}\n"     // 22
      "patches:\n"                              // 23
      "  - inline: {machine: {}}\n"             // 24
      "---\n"                                   // 25
      "kind: Machine\n"                         // 26
      "name: m9\n";                             // 27
  const Report report = Validate({{"c.yaml", text}}, {});
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(ErrorAt(2, 7, "name: 'bad name' is not a valid cluster name")));
  EXPECT_THAT(findings, Contains(AllOf(ErrorAt(5, 1, "field feature not found in type models.Cluster"),
                                       Field(&Finding::hint, "did you mean 'features'?"))));
  EXPECT_THAT(findings, Contains(WarningAt(8, 32, "2 control plane machines")));
  EXPECT_THAT(findings, Contains(ErrorAt(10, 1, "exactly one kind: ControlPlane")));
  EXPECT_THAT(findings, Contains(ErrorAt(14, 7, "'control-planes' is reserved")));
  EXPECT_THAT(findings, Contains(ErrorAt(15, 1, "both machines and machineClass")));
  EXPECT_THAT(findings, Contains(ErrorAt(16, 32, "machineClass.size: 'lots' is not a machine count")));
  EXPECT_THAT(findings, Contains(ErrorAt(21, 1, "a second kind: Workers named 'workers' (the first is on line 18)")));
  EXPECT_THAT(findings, Contains(ErrorAt(24, 5, "an inline patch needs a name")));
  EXPECT_THAT(findings, Contains(ErrorAt(27, 7, "machine 'm9' is not listed")));
}

TEST(ValidateTest, PatchFilesAreLookedUpNextToTheTemplate) {
  TempDir dir;
  std::filesystem::create_directory(dir.path() + "/patches");
  dir.Write("patches/cni.yaml", "cluster: {network: {cni: {name: none}}}\n");
  const std::string text =
      "kind: Cluster\nname: c\nkubernetes: {version: v1.31.0}\ntalos: {version: v1.9.0}\npatches:\n"
      "  - file: patches/cni.yaml\n  - file: patches/missing.yaml\n---\nkind: ControlPlane\nmachines: [a]\n";
  const std::string path = dir.Write("cluster.yaml", text);
  const Report report = Validate({{path, text}}, {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  ASSERT_EQ(report.warnings(), 1) << Dump(report);
  EXPECT_THAT(report.files[0].findings, Contains(WarningAt(7, 11, "'patches/missing.yaml' not found")));
}

TEST(ValidateTest, ProviderConfigReportsEveryUnknownKeyAndThenTheFirstOtherProblem) {
  const std::string text =
      "proxmox:\n"
      "  url: pve1.example:8006\n"
      "  tokenId: omni@pve!provider\n"
      "  tokenSecrett: 0b7e\n";
  const Report report = Validate({{"config.yaml", text}}, {});
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(AllOf(ErrorAt(3, 3, "proxmox.tokenId: unknown key"),
                                       Field(&Finding::hint, "did you mean 'tokenID'?"))));
  EXPECT_THAT(findings, Contains(AllOf(ErrorAt(4, 3, "proxmox.tokenSecrett: unknown key"),
                                       Field(&Finding::hint, "did you mean 'tokenSecret'?"))));
  EXPECT_THAT(findings, Contains(ErrorAt(2, 8, "proxmox.url 'pve1.example:8006': no scheme")));
  EXPECT_EQ(report.errors(), 3) << Dump(report);
}

TEST(ValidateTest, ProviderConfigWithoutCredentialsAndWithAnUnreadableCaFile) {
  TempDir dir;
  const std::string text = "proxmox:\n  url: https://pve1.example:8006\n  caFile: pve-root-ca.pem\n";
  const std::string path = dir.Write("config.yaml", text);
  Report report = Validate({{path, text}}, {});
  EXPECT_THAT(report.files[0].findings, Contains(ErrorAt(1, 1, "proxmox: no credentials")));
  EXPECT_EQ(report.errors(), 1) << Dump(report);

  const std::string with_token = text + "  tokenID: omni@pve!provider\n  tokenSecret: 5f0c3a52\n";
  report = Validate({{path, with_token}}, {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  EXPECT_THAT(report.files[0].findings,
              Contains(WarningAt(3, 11, "proxmox.caFile: cannot read '" + dir.path() + "/pve-root-ca.pem' here")));
  EXPECT_THAT(Dump(report), Not(HasSubstr("5f0c3a52")));

  dir.Write("pve-root-ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  report = Validate({{path, with_token}}, {});
  EXPECT_THAT(report.files[0].findings, IsEmpty()) << Dump(report);
}

TEST(ValidateTest, EnvFileChecksAddressAndKeyWithoutShowingTheKey) {
  const std::string bad_key = "eyJuYW1lIjoiaW5mcmEtcHJvdmlkZXI6cHJveG1veCJ9Cg";  // valid JSON, no pgp_key
  const std::string text =
      "# provider\n"
      "OMNI_DOMAIN=https://omni.example.ts.net\n"
      "OMNI_INFRA_PROVIDER_KEY=" +
      bad_key +
      "\n"
      "TS_AUTHKEY=abc\n"
      "OMNI_INFRA_PROVIDR_KEY=x\n"
      "not a variable\n";
  const Report report = Validate({{"docker/.env", text}}, {});
  ASSERT_EQ(report.files[0].kind, "env");
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(AllOf(ErrorAt(2, 13, "OMNI_DOMAIN is a host name, not a URL"),
                                       Field(&Finding::hint, HasSubstr("OMNI_DOMAIN=omni.example.ts.net")))));
  EXPECT_THAT(findings, Contains(ErrorAt(3, 25, "OMNI_INFRA_PROVIDER_KEY: service account key")));
  EXPECT_THAT(findings, Contains(WarningAt(4, 12, "TS_AUTHKEY does not look like a Tailscale auth key")));
  EXPECT_THAT(findings, Contains(AllOf(WarningAt(5, 1, "OMNI_INFRA_PROVIDR_KEY is not a variable"),
                                       Field(&Finding::hint, "did you mean OMNI_INFRA_PROVIDER_KEY?"))));
  EXPECT_THAT(findings, Contains(ErrorAt(6, 1, "expected NAME=value")));
  EXPECT_THAT(FormatText(report) + FormatJson(report), Not(HasSubstr(bad_key)));
}

TEST(ValidateTest, EnvFileSyntaxFollowsDockerCompose) {
  const std::string key = InfraProviderKey("proxmox");
  const std::string text =
      "export OMNI_DOMAIN=\"omni.example.ts.net\"\n"
      "OMNI_INFRA_PROVIDER_KEY='" +
      key +
      "'\n"
      "TS_AUTHKEY=tskey-auth-abc # the sidecar's\n"
      "TS_AUTHKEY=tskey-auth-def\n"
      "NOTE=\"unterminated\n"
      "export \n";
  const Report report = Validate({{"prod.env", text}}, {});
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(WarningAt(4, 1, "TS_AUTHKEY is set again (first on line 3)")));
  EXPECT_THAT(findings, Contains(ErrorAt(5, 6, "NOTE: the value's opening \" quote is never closed")));
  EXPECT_THAT(findings, Contains(ErrorAt(6, 8, "expected NAME=value")));
  EXPECT_EQ(report.errors(), 2) << Dump(report);
  EXPECT_EQ(report.warnings(), 1) << Dump(report);
}

TEST(ValidateTest, EnvFileMissingEverythingSaysWhatToSet) {
  const Report report = Validate({{".env", "OTHER=1\n"}}, {});
  EXPECT_THAT(report.files[0].findings, Contains(ErrorAt(0, 0, "no OMNI_DOMAIN (or OMNI_ENDPOINT)")));
  EXPECT_THAT(report.files[0].findings, Contains(ErrorAt(0, 0, "no infra provider key")));
  EXPECT_EQ(report.errors(), 2) << Dump(report);
}

TEST(ValidateTest, KeyIdentityInEnvIsTheProviderIdMachineClassesAreCheckedAgainst) {
  const std::string key = InfraProviderKey("proxmox");
  const std::string env = "OMNI_DOMAIN=omni.example.ts.net\nexport OMNI_INFRA_PROVIDER_KEY=\"" + key + "\"\n";
  Report report = Validate({{"stack.env", env}, Source(std::string(kTestdata) + "operator-machineclass.yaml")}, {});
  EXPECT_THAT(report.files[0].findings, IsEmpty()) << Dump(report);
  // The operator document's providerid: Proxmox would never be served by this key's provider.
  EXPECT_THAT(report.files[1].findings, Contains(AllOf(ErrorAt(7, 17,
                                                               "differs only in case from the provider's ID "
                                                               "'proxmox' (the key in stack.env)"),
                                                       Field(&Finding::hint, "write providerid: proxmox"))));
  EXPECT_THAT(FormatText(report) + FormatJson(report), Not(HasSubstr(key.substr(0, 40))));

  report = Validate({{"stack.env", env}}, {"pve-east"});
  EXPECT_THAT(report.files[0].findings,
              Contains(ErrorAt(2, 33, "is the key of provider 'proxmox', not of 'pve-east' (--id)")));

  const std::string user_key =
      omni::EncodeServiceAccountKey(omni::ServiceAccountKey{"automation", util::Secret<std::string>("x")}).Reveal();
  report = Validate({{".env", "OMNI_DOMAIN=omni.example.ts.net\nOMNI_SERVICE_ACCOUNT_KEY=" + user_key + "\n"}}, {});
  EXPECT_EQ(report.errors(), 1) << Dump(report);
  EXPECT_THAT(report.files[0].findings, Contains(ErrorAt(2, 26, "OMNI_SERVICE_ACCOUNT_KEY: ")));
}

TEST(ValidateTest, KeyFileInEnvIsReadWhenPresentAndOtherwiseOnlyAWarning) {
  TempDir dir;
  const std::string key = InfraProviderKey("proxmox");
  dir.Write("provider.key", key + "\n");
  // Relative to the .env's directory; the key's identity is checked like an inline key's.
  const std::string env_path =
      dir.Write(".env", "OMNI_DOMAIN=omni.example.ts.net\nOMNI_INFRA_PROVIDER_KEY_FILE=provider.key\n");
  std::ifstream in(env_path);
  std::stringstream text;
  text << in.rdbuf();
  Report report = Validate({{env_path, text.str()}}, {"pve-east"});
  EXPECT_THAT(report.files[0].findings,
              Contains(ErrorAt(2, 30, "is the key of provider 'proxmox', not of 'pve-east' (--id)")));
  EXPECT_THAT(FormatText(report), Not(HasSubstr(key.substr(0, 40))));
  EXPECT_THAT(Validate({{env_path, text.str()}}, {"proxmox"}).files[0].findings, IsEmpty());

  // A compose secret exists only inside the container: a warning, not an error.
  report = Validate(
      {{".env",
        "OMNI_DOMAIN=omni.example.ts.net\nOMNI_INFRA_PROVIDER_KEY_FILE=/run/secrets/omni-infra-provider.key\n"}},
      {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  EXPECT_THAT(
      report.files[0].findings,
      Contains(WarningAt(2, 30, "OMNI_INFRA_PROVIDER_KEY_FILE: cannot read '/run/secrets/omni-infra-provider.key'")));

  dir.Write("empty.key", "\n");
  report = Validate(
      {{dir.path() + "/.env", "OMNI_DOMAIN=omni.example.ts.net\nOMNI_INFRA_PROVIDER_KEY_FILE=empty.key\n"}}, {});
  EXPECT_THAT(report.files[0].findings, Contains(ErrorAt(2, 30, "OMNI_INFRA_PROVIDER_KEY_FILE: 'empty.key' is empty")));

  // An inline key wins over the file, which is then flagged as ignored.
  report = Validate({{".env", "OMNI_DOMAIN=omni.example.ts.net\nOMNI_INFRA_PROVIDER_KEY=" + key +
                                  "\nOMNI_INFRA_PROVIDER_KEY_FILE=/run/secrets/k\n"}},
                    {});
  EXPECT_THAT(report.files[0].findings,
              Contains(WarningAt(3, 1, "OMNI_INFRA_PROVIDER_KEY_FILE is ignored: OMNI_INFRA_PROVIDER_KEY is set")));
}

// The compose stack's examples (deploy/compose/) are what operators copy: validate accepts them,
// with warnings only for what exists only where the provider runs or must be filled in.
TEST(ValidateTest, ComposeExamplesHaveNoErrors) {
  const Report report =
      Validate({Source("deploy/compose/.env.example"), Source("deploy/compose/config.yaml.example")}, {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  ASSERT_EQ(report.files.size(), 2u);
  EXPECT_EQ(report.files[0].kind, "env");
  EXPECT_EQ(report.files[1].kind, "provider-config");
  for (const auto& file : report.files) {
    for (const auto& finding : file.findings) {
      const bool expected = finding.message.find("cannot read") != std::string::npos ||
                            finding.message.find("still holds the example's placeholder") != std::string::npos;
      EXPECT_TRUE(expected) << file.path << ": " << finding.message;
    }
  }
}

TEST(ValidateTest, ProxmoxVariablesInEnvAreParsedLikeTheProviderDoes) {
  const std::string key = InfraProviderKey("proxmox");
  const std::string env = "OMNI_ENDPOINT=https://omni.example/\nOMNI_INFRA_PROVIDER_KEY=" + key +
                          "\nPROXMOX_URL=https://pve:8006\nPROXMOX_TOKEN_ID=omni\nPROXMOX_TOKEN_SECRET=s\n";
  const Report report = Validate({{".env", env}}, {});
  ASSERT_EQ(report.errors(), 1) << Dump(report);
  EXPECT_THAT(report.files[0].findings,
              Contains(ErrorAt(4, 1, "PROXMOX_TOKEN_ID 'omni': expected USER@REALM!TOKENID")));
}

TEST(ValidateTest, UnknownDocumentsSayWhichKindsAreUnderstood) {
  const std::string text =
      "apiVersion: apps/v1\nkind: Deployment\n---\nmetadata: {type: Clusters.omni.sidero.dev, id: x}\n---\n"
      "kind: Workerz\n---\n- a\n";
  const Report report = Validate({{"misc.yaml", text}}, {});
  const auto& findings = report.files[0].findings;
  EXPECT_THAT(findings, Contains(AllOf(ErrorAt(2, 7, "kind: 'Deployment' is not a kind validate understands"),
                                       Field(&Finding::hint, HasSubstr("validate understands MachineClasses")))));
  EXPECT_THAT(findings, Contains(ErrorAt(4, 18, "metadata.type: 'Clusters.omni.sidero.dev'")));
  EXPECT_THAT(findings, Contains(AllOf(ErrorAt(6, 7, "'Workerz'"), Field(&Finding::hint, "did you mean 'Workers'?"))));
  EXPECT_THAT(findings, Contains(ErrorAt(8, 1, "this document is a list")));
  EXPECT_EQ(report.files[0].kind, "unknown");

  const Report broken = Validate({{"broken.yaml", "metadata:\n  id: [a\n"}}, {});
  EXPECT_THAT(broken.files[0].findings, Contains(Field(&Finding::message, HasSubstr("not valid YAML"))));
  EXPECT_GT(broken.files[0].findings.front().line, 0);
}

TEST(ValidateTest, EachDocumentOfAFileIsCheckedAndMixingATemplateWithOthersIsAnError) {
  const std::string classes = ReadSource("docs/examples/machineclass-worker.yaml") + "---\n" +
                              ReadSource("docs/examples/machineclass-control-plane.yaml");
  Report report = Validate({{"classes.yaml", classes}}, {});
  EXPECT_EQ(report.errors(), 0) << Dump(report);
  EXPECT_EQ(report.files[0].kind, "machine-class");

  const std::string broken_second = classes + "---\n" +
                                    "metadata: {namespace: default, type: "
                                    "MachineClasses.omni.sidero.dev, id: x}\nspec: {autoprovision: {providerid: "
                                    "proxmox, providerdata: 'cores: 0'}}\n";
  report = Validate({{"classes.yaml", broken_second}}, {});
  EXPECT_GE(report.errors(), 1) << Dump(report);
  EXPECT_THAT(report.files[0].findings, Contains(Field(&Finding::message, HasSubstr("providerdata.cores"))));

  report = Validate({{"all.yaml", classes + "---\n" + ReadSource("docs/examples/cluster-template.yaml")}}, {});
  EXPECT_EQ(report.files[0].kind, "machine-class+cluster-template");
  EXPECT_THAT(report.files[0].findings, Contains(Field(&Finding::message, HasSubstr("mixes cluster template"))));
}

TEST(ValidateTest, JsonReportHasTheDocumentedShape) {
  const Report report = Validate({Source(std::string(kTestdata) + "operator-cluster-template.yaml"),
                                  Source("docs/examples/machineclass-worker.yaml")},
                                 {});
  const auto json = nlohmann::json::parse(FormatJson(report));
  EXPECT_EQ(json["errors"], 2);
  EXPECT_EQ(json["warnings"], 2);
  ASSERT_EQ(json["files"].size(), 2u);
  const auto& file = json["files"][0];
  EXPECT_EQ(file["path"], std::string(kTestdata) + "operator-cluster-template.yaml");
  EXPECT_EQ(file["kind"], "cluster-template");
  EXPECT_TRUE(file["fixed"].is_string());
  const auto& finding = file["findings"][0];
  for (const char* key : {"line", "column", "severity", "message", "hint"}) EXPECT_TRUE(finding.contains(key)) << key;
  EXPECT_EQ(json["files"][1]["findings"].size(), 0u);
  EXPECT_FALSE(json["files"][1].contains("fixed"));
}

TEST(ValidateTest, TextReportListsFindingsThenCleanFilesThenASummary) {
  const Report report =
      Validate({{"a.env", "OMNI_DOMAIN=omni.example\n"}, Source("docs/examples/machineclass-worker.yaml")}, {});
  EXPECT_EQ(FormatText(report),
            "a.env: error: no infra provider key; the provider cannot sign in to Omni (create one in Omni under "
            "Settings > Infrastructure Providers, or with omnictl infraprovider create proxmox, and set "
            "OMNI_INFRA_PROVIDER_KEY to it)\n"
            "docs/examples/machineclass-worker.yaml: ok (machine-class)\n"
            "2 files checked: 1 error, 0 warnings\n");
}

}  // namespace
}  // namespace omni_proxmox::cli::validate
