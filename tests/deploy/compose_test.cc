// SPDX-License-Identifier: Apache-2.0
// deploy/compose/: the stack parses, has the operator document's layout, passes secrets as files,
// and its proxmox-provider service (command, environment, secrets, healthcheck) is what `run`
// accepts: the test starts the binary exactly as the service would, against the simulators.
// (`docker compose config` is not available here; yaml-cpp reads the file, and ${VAR} and
// ${VAR:-default} are substituted from .env.example as compose would.)

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "cli/provider_world.h"
#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using omni_proxmox::testing::ChildProcess;
using omni_proxmox::testing::RunProcess;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kComposeDir = std::string(OP_SOURCE_DIR) + "/deploy/compose";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// NAME=value lines of an env file (comments and blank lines skipped).
std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> vars;
  std::istringstream lines(ReadFile(path));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.front() == '#') continue;
    const auto eq = line.find('=');
    if (eq != std::string::npos) vars[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return vars;
}

// Compose's interpolation: ${VAR}, ${VAR:-default}; `missing` collects variables without a value
// or a default.
std::string Interpolate(const std::string& text, const std::map<std::string, std::string>& vars,
                        std::set<std::string>* missing = nullptr) {
  static const std::regex kVariable(R"(\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\})");
  std::string out;
  auto begin = std::sregex_iterator(text.begin(), text.end(), kVariable);
  std::size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    out += text.substr(last, m.position() - last);
    const auto found = vars.find(m[1]);
    if (found != vars.end() && !found->second.empty()) {
      out += found->second;
    } else if (m[2].matched) {
      out += m[3].str();
    } else if (missing != nullptr) {
      missing->insert(m[1]);
    }
    last = m.position() + m.length();
  }
  return out + text.substr(last);
}

std::vector<std::string> Strings(const YAML::Node& list) {
  std::vector<std::string> out;
  for (const auto& item : list) out.push_back(item.as<std::string>());
  return out;
}

// The long flags `omni-proxmox run --help` lists.
std::set<std::string> RunFlags() {
  const auto help = RunProcess({OP_BINARY, "run", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.err;
  std::set<std::string> flags;
  static const std::regex kFlag(R"((^|[\s,])(--[a-z][a-z0-9-]*))");
  for (auto it = std::sregex_iterator(help.out.begin(), help.out.end(), kFlag); it != std::sregex_iterator(); ++it) {
    flags.insert((*it)[2]);
  }
  return flags;
}

class ComposeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    compose_ = YAML::LoadFile(kComposeDir + "/compose.yaml");
    env_ = ReadEnvFile(kComposeDir + "/.env.example");
    provider_ = compose_["services"]["proxmox-provider"];
    ASSERT_TRUE(provider_.IsMap());
  }

  YAML::Node compose_;
  YAML::Node provider_;
  std::map<std::string, std::string> env_;
};

TEST_F(ComposeTest, HasTheOperatorDocumentsLayout) {
  const YAML::Node services = compose_["services"];
  for (const char* name : {"omni-tailscale", "omni", "proxmox-provider"}) {
    EXPECT_TRUE(services[name].IsMap()) << name;
  }
  // Omni and the provider share the sidecar's network namespace: the tailnet and HTTPS.
  EXPECT_EQ(services["omni"]["network_mode"].as<std::string>(), "service:omni-tailscale");
  EXPECT_EQ(provider_["network_mode"].as<std::string>(), "service:omni-tailscale");
  EXPECT_THAT(Interpolate(provider_["image"].as<std::string>(), env_), HasSubstr("omni-proxmox"));
  EXPECT_EQ(provider_["restart"].as<std::string>(), "unless-stopped");
}

TEST_F(ComposeTest, EveryVariableComesFromTheEnvExampleOrHasADefault) {
  std::set<std::string> missing;
  Interpolate(ReadFile(kComposeDir + "/compose.yaml"), env_, &missing);
  EXPECT_THAT(missing, IsEmpty());
  // And validate accepts the .env (tests/cli/validate_test.cc checks the findings in detail).
  const auto result =
      RunProcess({OP_BINARY, "validate", kComposeDir + "/.env.example", kComposeDir + "/config.yaml.example"});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
}

TEST_F(ComposeTest, SecretsAreFilesNotEnvironmentOrArguments) {
  // No env_file: the stack's .env also holds the sidecar's TS_AUTHKEY, which the provider must not see.
  EXPECT_FALSE(provider_["env_file"]) << "the provider would get every variable of .env";
  for (const auto& entry : provider_["environment"]) {
    const std::string name = entry.first.as<std::string>();
    for (const char* secret : {"OMNI_INFRA_PROVIDER_KEY", "OMNI_SERVICE_ACCOUNT_KEY", "PROXMOX_TOKEN_SECRET",
                               "PROXMOX_PASSWORD", "PROXMOX_TOKEN", "TS_AUTHKEY"}) {
      EXPECT_NE(name, secret) << "a secret in the provider's environment";
    }
  }
  for (const auto& arg : Strings(provider_["command"])) {
    EXPECT_FALSE(arg.starts_with("--omni-service-account-key=") || arg == "--omni-service-account-key")
        << "the key would be in the process list";
  }
  // Each secret the service mounts is declared as a file the operator makes (secrets/...) or copies
  // from an example here.
  const std::set<std::string> mounted = [&] {
    auto names = Strings(provider_["secrets"]);
    return std::set<std::string>(names.begin(), names.end());
  }();
  EXPECT_EQ(mounted, (std::set<std::string>{"config.yaml", "omni-infra-provider.key", "pve-token-secret"}));
  for (const auto& name : mounted) {
    const YAML::Node secret = compose_["secrets"][name];
    ASSERT_TRUE(secret.IsMap()) << name;
    const std::string file = secret["file"].as<std::string>();
    const bool made_by_operator = file.starts_with("./secrets/");
    const bool from_example = std::filesystem::exists(kComposeDir + "/" + file + ".example");
    EXPECT_TRUE(made_by_operator || from_example) << name << ": " << file;
  }
  // What config.yaml names beside itself is mounted beside it.
  const YAML::Node config = YAML::LoadFile(kComposeDir + "/config.yaml.example");
  EXPECT_TRUE(mounted.contains(config["proxmox"]["tokenSecretFile"].as<std::string>()));
}

TEST_F(ComposeTest, CommandFlagsAreRunFlags) {
  const std::set<std::string> flags = RunFlags();
  ASSERT_TRUE(flags.contains("--config-file")) << "run --help parsed wrongly";
  const auto command = Strings(provider_["command"]);
  ASSERT_FALSE(command.empty());
  for (const auto& arg : command) {
    if (!arg.starts_with("--")) continue;
    EXPECT_TRUE(flags.contains(arg.substr(0, arg.find('=')))) << arg << " is not a flag of run";
  }
}

// The service as compose would start it, against the simulators: the command and environment
// interpolated from .env.example, /run/secrets/ holding the three secrets, the healthcheck run as
// the container would. OMNI_DOMAIN names Omni on the tailnet; OMNI_ENDPOINT, which wins over it,
// points at the stand-in, and the listen port is a free one.
class ComposeServiceTest : public ProviderWorld {};

TEST_F(ComposeServiceTest, ProviderServiceRunsWithTheStacksSettings) {
  const YAML::Node compose = YAML::LoadFile(kComposeDir + "/compose.yaml");
  const auto env_example = ReadEnvFile(kComposeDir + "/.env.example");
  const YAML::Node service = compose["services"]["proxmox-provider"];
  const std::string secrets = Path("run-secrets");
  std::filesystem::create_directories(secrets);
  const auto in_container = [&](std::string value) {
    value = Interpolate(value, env_example);
    const std::string prefix = "/run/secrets/";
    if (value.starts_with(prefix)) value = secrets + "/" + value.substr(prefix.size());
    const auto eq = value.find("=/run/secrets/");
    if (eq != std::string::npos) value = value.substr(0, eq + 1) + secrets + "/" + value.substr(eq + 14);
    return value;
  };

  // config.yaml.example with the simulator's URL and token ID; its tokenSecretFile stays as it is.
  YAML::Node config = YAML::LoadFile(kComposeDir + "/config.yaml.example");
  config["proxmox"]["url"] = sim_->base_url() + "/api2/json";
  config["proxmox"]["tokenID"] = sim_->default_token_id();
  std::ofstream(secrets + "/config.yaml") << YAML::Dump(config);
  std::ofstream(secrets + "/pve-token-secret") << sim_->default_token_secret();
  std::ofstream(secrets + "/omni-infra-provider.key") << standin_->provider_key();

  std::vector<std::string> argv = {OP_BINARY};
  for (const auto& arg : Strings(service["command"])) argv.push_back(in_container(arg));
  std::vector<std::string> env;
  for (const auto& entry : service["environment"]) {
    const std::string name = entry.first.as<std::string>();
    if (name == "OMNI_PROXMOX_LISTEN") continue;
    env.push_back(name + "=" + in_container(entry.second.as<std::string>()));
  }
  env.push_back("OMNI_ENDPOINT=" + standin_->grpc_endpoint());
  env.push_back("OMNI_PROXMOX_LISTEN=127.0.0.1:0");
  ChildProcess provider(argv, env, Path("provider.log"));
  ASSERT_TRUE(standin_->WaitFor([&] { return standin_->ProviderConnected("proxmox"); }, std::chrono::seconds{60}))
      << provider.Log();

  std::smatch port;
  const std::string log = provider.Log();
  ASSERT_TRUE(std::regex_search(log, port, std::regex(R"(/metrics on 127\.0\.0\.1:([0-9]+))"))) << log;
  std::vector<std::string> probe = Strings(service["healthcheck"]["test"]);
  ASSERT_EQ(probe.front(), "CMD");
  ASSERT_EQ(probe.at(1), "omni-proxmox");
  probe.erase(probe.begin(), probe.begin() + 2);
  probe.insert(probe.begin(), OP_BINARY);
  const auto health = RunProcess(probe, "", {"OMNI_PROXMOX_LISTEN=127.0.0.1:" + port[1].str()});
  EXPECT_EQ(health.exit_code, 0) << health.out << health.err;

  provider.Signal(SIGTERM);
  EXPECT_EQ(provider.Wait(std::chrono::seconds{30}), 0) << provider.Log();
  EXPECT_EQ(provider.Log().find(standin_->provider_key()), std::string::npos);
  EXPECT_EQ(provider.Log().find(sim_->default_token_secret()), std::string::npos);
}

}  // namespace
}  // namespace omni_proxmox::cli
