// SPDX-License-Identifier: Apache-2.0
// docs/proxmox-permissions.md and `doctor` agree with Proxmox: the pveum commands of the document,
// applied as pveum applies them (a small model below: `role add` refuses an existing role, grants
// need the role, user and token to exist), make a simulator scenario whose token passes doctor's
// privilege check; and when a step is skipped, the commands doctor prints, applied the same way
// on top, make it pass.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/pve/simulator.h"
#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

using ::testing::HasSubstr;

constexpr char kTokenSecret[] = "0d9c1f7e-3b2a-4c5d-8e6f-7a8b9c0d1e2f";

// Words of one command line, with '...' and "..." quoting as a shell reads them.
std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (char c : line) {
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else {
        word += c;
      }
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

std::vector<std::string> SplitPrivs(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string p; std::getline(in, p, ',');) out.push_back(p);
  return out;
}

// The users, tokens, roles and ACLs the pveum commands build, as Proxmox keeps them.
class AccessModel {
 public:
  // One line; "A || B" runs B when A fails, as the shell does.
  absl::Status Run(const std::string& line) {
    if (auto bar = line.find(" || "); bar != std::string::npos) {
      if (Run(line.substr(0, bar)).ok()) return absl::OkStatus();
      return Run(line.substr(bar + 4));
    }
    auto words = Words(line);
    if (words.size() < 3 || words[0] != "pveum") return absl::InvalidArgumentError("not a pveum command: " + line);
    std::map<std::string, std::string> options;
    std::vector<std::string> positional;
    for (std::size_t i = 1; i < words.size(); ++i) {
      if (words[i].rfind("--", 0) == 0 && i + 1 < words.size()) {
        options[words[i].substr(2)] = words[i + 1];
        ++i;
      } else {
        positional.push_back(words[i]);
      }
    }
    if (positional.size() < 3) return absl::InvalidArgumentError("too few arguments: " + line);
    const std::string verb = positional[0] + " " + positional[1];
    if (verb == "user add") return UserAdd(positional.at(2));
    if (verb == "role add") return RoleAdd(positional.at(2), options["privs"]);
    if (verb == "role modify") return RoleModify(positional.at(2), options["privs"], options["append"] == "1");
    if (verb == "acl modify") return AclModify(positional.at(2), options);
    if (verb == "user token" && positional.at(2) == "add") return TokenAdd(positional.at(3), positional.at(4));
    return absl::InvalidArgumentError("this model does not know: " + line);
  }

  // A simulator scenario with these roles and ACLs; root@pam's token first (the default token).
  std::string Scenario() const {
    nlohmann::json roles = nlohmann::json::object();
    for (const auto& [name, privs] : roles_) roles[name] = privs;
    nlohmann::json users = nlohmann::json::array();
    users.push_back({{"userid", "root@pam"},
                     {"password", "pve-sim-root"},
                     {"tokens", {{{"name", "omni"}, {"secret", "5f0c3a52-8d1e-4b7a-9c3d-2e6f1a7b9c40"}}}}});
    for (const auto& user : users_) {
      nlohmann::json tokens = nlohmann::json::array();
      for (const auto& token : tokens_) {
        if (token.substr(0, token.find('!')) == user) {
          tokens.push_back({{"name", token.substr(token.find('!') + 1)}, {"secret", kTokenSecret}, {"privsep", true}});
        }
      }
      users.push_back({{"userid", user}, {"password", "unused-password"}, {"tokens", tokens}});
    }
    nlohmann::json acls = nlohmann::json::array();
    for (const auto& [path, ugid, role] : acls_) acls.push_back({{"path", path}, {"ugid", ugid}, {"role", role}});
    // JSON is YAML.
    return nlohmann::json{{"nodes", {{{"name", "pve1"}}}},
                          {"storages", {{{"id", "local"}, {"type", "dir"}, {"content", {"iso", "images"}}}}},
                          {"roles", roles},
                          {"users", users},
                          {"acls", acls}}
        .dump();
  }

 private:
  absl::Status UserAdd(const std::string& user) {
    if (!users_.insert(user).second) return absl::AlreadyExistsError("user '" + user + "' already exists");
    return absl::OkStatus();
  }
  absl::Status RoleAdd(const std::string& role, const std::string& privs) {
    if (roles_.contains(role)) return absl::AlreadyExistsError("role '" + role + "' already exists");
    roles_[role] = SplitPrivs(privs);
    return absl::OkStatus();
  }
  absl::Status RoleModify(const std::string& role, const std::string& privs, bool append) {
    auto it = roles_.find(role);
    if (it == roles_.end()) return absl::NotFoundError("role '" + role + "' does not exist");
    if (!append) it->second.clear();
    for (const auto& p : SplitPrivs(privs)) it->second.push_back(p);
    return absl::OkStatus();
  }
  absl::Status AclModify(const std::string& path, std::map<std::string, std::string>& options) {
    const std::string role = options["roles"];
    if (!roles_.contains(role)) return absl::NotFoundError("role '" + role + "' does not exist");
    std::string ugid;
    if (options.contains("users")) {
      ugid = options["users"];
      if (!users_.contains(ugid)) return absl::NotFoundError("user '" + ugid + "' does not exist");
    } else {
      ugid = options["tokens"];
      if (!tokens_.contains(ugid)) return absl::NotFoundError("token '" + ugid + "' does not exist");
    }
    acls_.push_back({path, ugid, role});
    return absl::OkStatus();
  }
  absl::Status TokenAdd(const std::string& user, const std::string& name) {
    if (!users_.contains(user)) return absl::NotFoundError("user '" + user + "' does not exist");
    tokens_.insert(user + "!" + name);
    return absl::OkStatus();
  }

  struct Acl {
    std::string path, ugid, role;
  };
  std::set<std::string> users_;
  std::set<std::string> tokens_;
  std::map<std::string, std::vector<std::string>> roles_;
  std::vector<Acl> acls_;
};

// Every `pveum ...` line of the document's fenced shell blocks, in order.
std::vector<std::string> DocumentedCommands() {
  std::ifstream in(std::string(OP_SOURCE_DIR) + "/docs/proxmox-permissions.md");
  std::vector<std::string> out;
  bool in_shell = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) {
      in_shell = !in_shell && line == "```sh";
      continue;
    }
    if (in_shell && line.rfind("pveum ", 0) == 0) out.push_back(line);
  }
  return out;
}

class PermissionsDocTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("op-perms-{}-{}", getpid(), counter_++);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // `doctor --format json` for omni@pve!provider against a simulator of `model`'s scenario: the
  // "proxmox privileges" check.
  nlohmann::json PrivilegeCheck(const AccessModel& model) {
    sim::pve::SimulatorOptions options;
    options.scenario_yaml = model.Scenario();
    auto sim = sim::pve::Simulator::Start(options);
    EXPECT_TRUE(sim.ok()) << sim.status();
    if (!sim.ok()) return {};
    std::ofstream(dir_ / "secret") << kTokenSecret;
    std::ofstream(dir_ / "config.yaml") << fmt::format(
        "proxmox:\n  url: {}/api2/json\n  tokenID: \"omni@pve!provider\"\n  tokenSecretFile: {}\n", (*sim)->base_url(),
        (dir_ / "secret").string());
    auto result = testing::RunProcess({OP_BINARY, "--log-level", "error", "--format", "json", "doctor", "--config-file",
                                       (dir_ / "config.yaml").string()},
                                      "", {}, std::chrono::seconds{60});
    const auto out = nlohmann::json::parse(result.out, nullptr, false);
    EXPECT_TRUE(out.is_object()) << result.out << result.err;
    if (!out.is_object()) return {};
    for (const auto& c : out["checks"]) {
      if (c["check"] == "proxmox privileges") return c;
    }
    ADD_FAILURE() << "no privilege check in " << result.out;
    return {};
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
};

TEST_F(PermissionsDocTest, TheDocumentsCommandsGrantWhatDoctorChecks) {
  const auto commands = DocumentedCommands();
  ASSERT_GE(commands.size(), 10u) << "the document's pveum blocks were not found";
  AccessModel model;
  for (const auto& line : commands) ASSERT_TRUE(model.Run(line).ok()) << line << ": " << model.Run(line);
  const auto check = PrivilegeCheck(model);
  EXPECT_EQ(check["status"], "pass") << check.dump(1);
}

TEST_F(PermissionsDocTest, DoctorsCommandsFixASkippedStep) {
  // The operator left Datastore.AllocateTemplate out of the storage role and skipped granting the
  // SDN role to the token.
  AccessModel model;
  for (auto line : DocumentedCommands()) {
    if (line.find("--roles OmniProxmoxLocalnetwork --tokens") != std::string::npos) continue;
    if (auto at = line.find("Datastore.AllocateTemplate,"); at != std::string::npos) line.erase(at, 27);
    ASSERT_TRUE(model.Run(line).ok()) << line;
  }
  const auto failing = PrivilegeCheck(model);
  ASSERT_EQ(failing["status"], "fail") << failing.dump(1);
  EXPECT_THAT(failing["detail"].get<std::string>(), HasSubstr("Datastore.AllocateTemplate on /storage"));
  EXPECT_THAT(failing["detail"].get<std::string>(), HasSubstr("SDN.Use on /sdn/zones/localnetwork"));
  // The fix: one pveum command a line, after the sentence that introduces them.
  std::vector<std::string> fix;
  std::stringstream lines(failing["fix"].get<std::string>());
  for (std::string line; std::getline(lines, line);) {
    const auto start = line.find("pveum ");
    if (start != std::string::npos) fix.push_back(line.substr(start));
  }
  ASSERT_FALSE(fix.empty()) << failing.dump(1);
  // The storage role exists already (the document made it): the fix appends to it.
  for (const auto& line : fix) EXPECT_TRUE(model.Run(line).ok()) << line << ": " << model.Run(line);
  const auto fixed = PrivilegeCheck(model);
  EXPECT_EQ(fixed["status"], "pass") << fixed.dump(1) << "\nafter:\n" << fmt::format("{}", fmt::join(fix, "\n"));
}

}  // namespace
}  // namespace omni_proxmox::cli
