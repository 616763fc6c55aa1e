// SPDX-License-Identifier: Apache-2.0
#include "pve/config.h"

#include <map>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "pve/errors.h"

namespace omni_proxmox::pve {
namespace {

constexpr char kPem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

// An in-memory file system for tokenSecretFile / caFile.
FileReader Files(std::map<std::string, std::string> files) {
  return [files](const std::string& path) -> absl::StatusOr<std::string> {
    auto it = files.find(path);
    if (it == files.end()) return absl::NotFoundError(fmt::format("cannot open '{}'", path));
    return it->second;
  };
}

std::string ErrorOf(const absl::StatusOr<ClientOptions>& result) {
  EXPECT_FALSE(result.ok());
  if (result.ok()) return "";
  EXPECT_EQ(ClassifyError(result.status()), ErrorKind::kBadParameter);
  return std::string(result.status().message());
}

TEST(ConfigTest, GoProviderReadmeExample) {
  auto options = ParseConfigYaml(R"(
proxmox:
  username: root
  password: 123456
  url: "https://homelab.proxmox:8006/api2/json"
  insecureSkipVerify: true
  realm: "pam"
)");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->base_url, "https://homelab.proxmox:8006/api2/json");
  EXPECT_EQ(options->username, "root@pam");
  EXPECT_EQ(options->password.Reveal(), "123456");
  EXPECT_TRUE(options->insecure_skip_verify);
  EXPECT_TRUE(options->token_id.empty());
}

TEST(ConfigTest, TokenWithOptionalKeys) {
  auto options = ParseConfigYaml(R"(
proxmox:
  url: https://pve.example:8006
  tokenID: root@pam!omni
  tokenSecretFile: secrets/token
  caFile: /etc/pve-ca.pem
  connectTimeout: 5s
  requestTimeout: 2m
  uploadTimeout: 1h
  ticketRenewAfter: 90m
other_module:
  anything: goes
)",
                                 "config.yaml", "/etc/omni",
                                 Files({{"/etc/omni/secrets/token", "5f0c3a52-8d1e\n"}, {"/etc/pve-ca.pem", kPem}}));
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->base_url, "https://pve.example:8006/api2/json");
  EXPECT_EQ(options->token_id, "root@pam!omni");
  EXPECT_EQ(options->token_secret.Reveal(), "5f0c3a52-8d1e");
  EXPECT_EQ(options->ca_file, "/etc/pve-ca.pem");
  EXPECT_EQ(options->connect_timeout, std::chrono::seconds(5));
  EXPECT_EQ(options->request_timeout, std::chrono::minutes(2));
  EXPECT_EQ(options->upload_timeout, std::chrono::hours(1));
  EXPECT_EQ(options->ticket_renew_after, std::chrono::minutes(90));
  EXPECT_FALSE(options->insecure_skip_verify);
}

TEST(ConfigTest, ATooShortTokenNameIsNamedWithTheRule) {
  const std::string message = ErrorOf(
      ParseConfigYaml("proxmox:\n  url: https://h:8006/api2/json\n  tokenID: omni@pve!p\n  tokenSecret: 5f0c-3a52\n"));
  EXPECT_NE(message.find("the token name 'p' is too short"), std::string::npos) << message;
  EXPECT_NE(message.find("e.g. omni@pve!provider"), std::string::npos) << message;
}

TEST(ConfigTest, CombinedTokenString) {
  auto options = ParseConfigYaml("proxmox:\n  url: https://h:8006/api2/json/\n  token: root@pam!omni=5f0c-3a52\n");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->token_id, "root@pam!omni");
  EXPECT_EQ(options->token_secret.Reveal(), "5f0c-3a52");
  auto bad = ParseConfigYaml("proxmox:\n  url: https://h\n  token: nosecret\n");
  EXPECT_NE(ErrorOf(bad).find("proxmox.token"), std::string::npos);
}

TEST(ConfigTest, EmptyValuesAreEmptyAndListsAreErrors) {
  auto options = ParseConfigYaml(
      "proxmox:\n  url: https://h\n  username:\n  password:\n  tokenID: root@pam!omni\n  tokenSecret: s\n");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->token_id, "root@pam!omni");
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: [a, b]\n")).find("proxmox.url: must be a single value"),
            std::string::npos);
}

TEST(ConfigTest, PasswordWinsOverTokenLikeTheGoProvider) {
  auto options = ParseConfigYaml(
      "proxmox:\n  url: https://h\n  username: admin@pve\n  password: pw\n  tokenID: root@pam!omni\n  tokenSecret: "
      "s\n");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->username, "admin@pve");
  EXPECT_TRUE(options->token_id.empty());
}

TEST(ConfigTest, ErrorsNameTheKeyAndTheFix) {
  EXPECT_EQ(ErrorOf(ParseConfigYaml("proxmox:\n  tokenID: root@pam!omni\n  tokenSecret: s\n")),
            "config.yaml: proxmox.url: missing; set it to https://pve.example:8006/api2/json");
  EXPECT_NE(
      ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n")).find("no credentials; set tokenID and tokenSecret"),
      std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  username: root\n  password: x\n"))
                .find("proxmox.realm: missing"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  username: root@pam\n  realm: pve\n  password: x\n"))
                .find("disagree"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  tokenID: root@pam!omni\n"))
                .find("proxmox.tokenSecret: missing for tokenID 'root@pam!omni'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  tokenID: omni\n  tokenSecret: s\n"))
                .find("expected USER@REALM!TOKENID"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  username: root@pam\n")).find("proxmox.password"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  tokenId: root@pam!omni\n"))
                .find("proxmox.tokenId: unknown key; did you mean 'tokenID'?"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: [a\n")).find("invalid YAML at line"), std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("")).find("empty"), std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("other: 1\n")).find("proxmox: missing"), std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  tokenID: root@pam!omni\n  tokenSecret: s\n"
                                    "  insecureSkipVerify: maybe\n"))
                .find("proxmox.insecureSkipVerify 'maybe'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  tokenID: root@pam!omni\n  tokenSecret: s\n"
                                    "  requestTimeout: soon\n"))
                .find("proxmox.requestTimeout 'soon'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml("proxmox:\n  url: https://h\n  tokenID: root@pam!omni\n  tokenSecret: s\n"
                                    "  ticketRenewAfter: 3h\n"))
                .find("tickets expire after 2 h"),
            std::string::npos);
}

TEST(ConfigTest, SecretFilesAndCaFileErrors) {
  const char* base = "proxmox:\n  url: https://h\n  tokenID: root@pam!omni\n";
  EXPECT_NE(ErrorOf(ParseConfigYaml(std::string(base) + "  tokenSecretFile: /nope\n", "c.yaml", "", Files({})))
                .find("proxmox.tokenSecretFile: cannot read '/nope'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml(std::string(base) + "  tokenSecretFile: /empty\n", "c.yaml", "",
                                    Files({{"/empty", "\n"}})))
                .find("is empty"),
            std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml(std::string(base) + "  tokenSecret: a\n  tokenSecretFile: /s\n", "c.yaml", "",
                                    Files({{"/s", "b"}})))
                .find("both set"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(ParseConfigYaml(std::string(base) + "  tokenSecret: a\n  caFile: /ca.pem\n", "c.yaml", "", Files({})))
          .find("proxmox.caFile: cannot read '/ca.pem'"),
      std::string::npos);
  EXPECT_NE(ErrorOf(ParseConfigYaml(std::string(base) + "  tokenSecret: a\n  caFile: /ca.pem\n", "c.yaml", "",
                                    Files({{"/ca.pem", "garbage"}})))
                .find("no PEM certificate"),
            std::string::npos);
}

TEST(ConfigTest, SecretsNeverAppearInErrors) {
  auto result = ParseConfigYaml("proxmox:\n  url: ftp://h\n  tokenID: root@pam!omni\n  tokenSecret: TOPSECRET\n");
  std::string message = ErrorOf(result);
  EXPECT_NE(message.find("scheme must be https"), std::string::npos) << message;
  EXPECT_EQ(message.find("TOPSECRET"), std::string::npos);
  auto pw = ParseConfigYaml("proxmox:\n  url: https://h\n  username: root\n  password: TOPSECRET\n");
  EXPECT_EQ(ErrorOf(pw).find("TOPSECRET"), std::string::npos);
}

TEST(ConfigTest, NormalizeApiUrl) {
  EXPECT_EQ(NormalizeApiUrl("https://pve:8006").value(), "https://pve:8006/api2/json");
  EXPECT_EQ(NormalizeApiUrl("https://pve:8006/").value(), "https://pve:8006/api2/json");
  EXPECT_EQ(NormalizeApiUrl("https://pve:8006/api2/json").value(), "https://pve:8006/api2/json");
  EXPECT_EQ(NormalizeApiUrl("https://pve:8006/api2/json/").value(), "https://pve:8006/api2/json");
  EXPECT_EQ(NormalizeApiUrl("http://127.0.0.1:1234").value(), "http://127.0.0.1:1234/api2/json");
  EXPECT_FALSE(NormalizeApiUrl("pve:8006").ok());
  EXPECT_FALSE(NormalizeApiUrl("https://").ok());
  EXPECT_FALSE(NormalizeApiUrl("https://pve/api2/extjs").ok());
  EXPECT_FALSE(NormalizeApiUrl("https://pve/api2/json?x=1").ok());
}

TEST(ConfigTest, ParseDuration) {
  EXPECT_EQ(ParseDuration("500ms", "k").value(), std::chrono::milliseconds(500));
  EXPECT_EQ(ParseDuration("30", "k").value(), std::chrono::seconds(30));
  EXPECT_EQ(ParseDuration("2h", "k").value(), std::chrono::hours(2));
  EXPECT_FALSE(ParseDuration("0s", "k").ok());
  EXPECT_FALSE(ParseDuration("-1s", "k").ok());
  EXPECT_FALSE(ParseDuration("5d", "k").ok());
  EXPECT_FALSE(ParseDuration("", "k").ok());
}

TEST(ConfigTest, EnvironmentFallback) {
  std::map<std::string, std::string> env = {{"PROXMOX_URL", "\"https://pve:8006/api2/json\""},
                                            {"PROXMOX_TOKEN_ID", "root@pam!omni"},
                                            {"PROXMOX_TOKEN_SECRET", "'s3cret'"},
                                            {"PROXMOX_INSECURE_SKIP_VERIFY", "true"}};
  auto getenv = [&](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  auto options = ConfigFromEnv(getenv);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->token_secret.Reveal(), "s3cret");
  EXPECT_TRUE(options->insecure_skip_verify);
  env.erase("PROXMOX_URL");
  auto missing = ConfigFromEnv(getenv);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("PROXMOX_URL: missing"), std::string::npos)
      << missing.status();
}

}  // namespace
}  // namespace omni_proxmox::pve
