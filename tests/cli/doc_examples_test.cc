// SPDX-License-Identifier: Apache-2.0
// Every fenced shell block (```sh, bash, shell, console) of README.md and docs/*.md either runs here,
// as written, or is on the skip list below with the reason it cannot. The blocks of one document run
// in order in one bash session (later blocks use the files and variables of earlier ones), in a
// fresh directory where `docs/` is the source tree's, with `omni-proxmox` being the binary under
// test. Three things differ from an operator's shell, on purpose:
// - the fixed ports of the examples (8006, 8098, 8099, 9489) become free ports chosen at run time,
//   so runs of the suite side by side do not collide;
// - a line that starts a server (`omni-proxmox pve-sim`, `omni-sim` without --stdin, `run`) runs in
//   the background until the document is done, and the next line waits until it is ready (its
//   ready line, or /readyz for `run`), where an operator would wait or open another terminal;
// - `curl` fails on an HTTP error (--fail-with-body), so an example that gets a 4xx fails the test
//   instead of printing an error nobody reads.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/subprocess.h"

namespace omni_proxmox::cli {
namespace {

namespace fs = std::filesystem;

struct Block {
  std::string file;  // relative to the source tree, e.g. "docs/omni-sim.md"
  int index = 0;     // 1-based among the file's shell blocks
  int line = 0;      // where its fence opens
  std::string text;
  std::string Key() const { return fmt::format("{}#{}", file, index); }
};

// Blocks that cannot run here, each with the reason.
const std::map<std::string, std::string>& SkipList() {
  static const std::map<std::string, std::string> skips = {
      {"README.md#1", "make demo / make test install packages and build the tree; make test runs this test"},
      {"docs/omni-sim.md#7", "configures and builds the tree (the suite has built these targets already)"},
      {"docs/omni-sim.md#8", "configures and builds the tree, then runs ctest (the suite runs interop_test)"},
      {"docs/operator-guide.md#1",
       "validates the operator's own config.yaml, .env, machine classes and cluster template; validate on such "
       "files is tested in validate_command_test"},
      {"docs/operator-guide.md#2",
       "plans against the operator's Proxmox (config.yaml); plan is tested against the simulator in "
       "plan_command_test"},
      {"docs/operator-guide.md#3",
       "doctor against the operator's Omni (acme.omni.siderolabs.io) and Proxmox; tested in doctor_command_test"},
      {"docs/operator-guide.md#4",
       "status against the operator's Omni and Proxmox; tested in status_command_test and cluster_status_test"},
      {"docs/operator-guide.md#5", "gc against the operator's Omni and Proxmox; tested in gc_command_test"},
      {"docs/operator-guide.md#6", "builds the container image with podman or Docker (make image-test checks it)"},
      {"docs/operator-guide.md#7",
       "docker compose with the operator's secrets, sudo chown and a container runtime (make image-test)"},
      {"docs/operator-guide.md#8", "installs a systemd service as root (make package-test checks the package)"},
      {"docs/operator-guide.md#9", "builds and installs the Debian package as root (make package-test)"},
      {"docs/proxmox-permissions.md#1",
       "pveum exists only on a Proxmox node; permissions_doc_test applies these commands to the simulator's access "
       "model and runs doctor against it"},
      {"docs/proxmox-permissions.md#2", "pveum, as above (permissions_doc_test)"},
      {"docs/proxmox-permissions.md#3",
       "doctor with the operator's config.yaml and provider.key; permissions_doc_test runs doctor's privilege check"},
  };
  return skips;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<Block> ShellBlocks(const fs::path& root, const std::string& file) {
  static const std::set<std::string> kShellTags = {"sh", "bash", "shell", "console"};
  std::vector<Block> blocks;
  std::stringstream in(ReadText(root / file));
  std::optional<Block> open;
  bool in_other = false;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.rfind("```", 0) == 0) {
      if (open) {
        blocks.push_back(*open);
        open.reset();
      } else if (in_other) {
        in_other = false;
      } else if (kShellTags.contains(line.substr(3))) {
        open = Block{file, static_cast<int>(blocks.size()) + 1, number, ""};
      } else {
        in_other = true;
      }
      continue;
    }
    if (open) open->text += line + "\n";
  }
  return blocks;
}

std::vector<Block> AllShellBlocks(const fs::path& root) {
  std::vector<std::string> files = {"README.md"};
  for (const auto& entry : fs::directory_iterator(root / "docs")) {
    if (entry.path().extension() == ".md") files.push_back("docs/" + entry.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<Block> all;
  for (const auto& file : files) {
    for (auto& block : ShellBlocks(root, file)) all.push_back(std::move(block));
  }
  return all;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  (void)bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t size = sizeof addr;
  (void)getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// `text` with each of the examples' fixed ports, where it stands as a port (after ':' or a space,
// not followed by a digit), replaced by its free stand-in.
std::string WithPorts(std::string text, const std::map<std::string, int>& ports) {
  for (const auto& [fixed, port] : ports) {
    const std::regex as_port("([: ])" + fixed + "(?![0-9])");
    // "$1" then a marker: "$1" followed by the port's digits would read as a group number.
    text = std::regex_replace(text, as_port, "$1\x01");
    for (auto at = text.find('\x01'); at != std::string::npos; at = text.find('\x01', at)) {
      text.replace(at, 1, std::to_string(port));
    }
  }
  return text;
}

// Inside a wait loop: stop waiting when the server ($server, expanded by the outer script) exited.
constexpr char kAliveOrStop[] = "kill -0 $server 2>/dev/null || exit 1; sleep 0.2";

// A line that starts a server, run in the background; the script then waits until it is ready.
std::string ServerLine(const std::string& line, int& servers) {
  static const std::regex kServer(R"(^omni-proxmox (pve-sim|omni-sim|run)\b)");
  std::smatch match;
  if (!std::regex_search(line, match, kServer) || line.find("--stdin") != std::string::npos) return "";
  std::string command = line.substr(0, line.find(" #"));
  while (!command.empty() && (command.back() == ' ' || command.back() == '&')) command.pop_back();
  const std::string log = fmt::format("server-{}.log", ++servers);
  std::string wait;
  if (match[1] == "run") {
    std::smatch listen;
    static const std::regex kListen(R"(--listen ([0-9.]+:[0-9]+))");
    if (!std::regex_search(command, listen, kListen))
      return "echo 'run without --listen: cannot wait for it'; exit 1\n";
    wait = fmt::format("until /usr/bin/curl -sf http://{}/readyz >/dev/null 2>&1; do {}; done", listen[1].str(),
                       kAliveOrStop);
  } else {
    const std::string ready = match[1] == "pve-sim" ? "pve-sim listening on" : "omni stand-in running";
    wait = fmt::format("until grep -q '{}' {}; do {}; done", ready, log, kAliveOrStop);
  }
  return fmt::format(
      "{} > {} 2>&1 &\nserver=$!\necho \"[doc-example] started: {}\"\n"
      "timeout 60 bash -c \"{}\" || {{ cat {}; exit 1; }}\n",
      command, log, command, wait, log);
}

// The script for one document's runnable blocks.
std::string Script(const std::vector<Block>& blocks, const std::map<std::string, int>& ports) {
  std::string script =
      "set -euo pipefail\n"
      "trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT\n";
  int servers = 0;
  for (const auto& block : blocks) {
    script += fmt::format("echo '[doc-example] {} (line {})'\n", block.Key(), block.line);
    std::stringstream lines(WithPorts(block.text, ports));
    for (std::string line; std::getline(lines, line);) {
      const std::string server = ServerLine(line, servers);
      script += server.empty() ? line + "\n" : server;
    }
  }
  return script;
}

class DocExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("op-doc-examples-{}", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "bin");
    fs::create_directory_symlink(fs::path(OP_SOURCE_DIR) / "docs", dir_ / "docs");
    fs::create_symlink(OP_BINARY, dir_ / "bin" / "omni-proxmox");
    std::ofstream(dir_ / "bin" / "curl") << "#!/bin/sh\nexec /usr/bin/curl --fail-with-body -sS \"$@\"\n";
    fs::permissions(dir_ / "bin" / "curl", fs::perms::owner_all);
  }
  void TearDown() override { fs::remove_all(dir_); }

  testing::ProcessResult RunDocument(const std::vector<Block>& blocks) {
    std::map<std::string, int> ports;
    for (const char* fixed : {"8006", "8098", "8099", "9489"}) ports[fixed] = FreePort();
    std::ofstream(dir_ / "examples.sh") << Script(blocks, ports);
    const std::string path = (dir_ / "bin").string() + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin");
    return testing::RunProcess({"/bin/bash", "-c", fmt::format("cd '{}' && bash examples.sh", dir_.string())}, "",
                               {"PATH=" + path}, std::chrono::seconds{240});
  }

  fs::path dir_;
};

TEST_F(DocExamplesTest, EveryShellBlockIsRunOrSkippedWithAReason) {
  const auto blocks = AllShellBlocks(OP_SOURCE_DIR);
  ASSERT_GE(blocks.size(), 20u);
  std::set<std::string> keys;
  for (const auto& b : blocks) keys.insert(b.Key());
  for (const auto& [key, reason] : SkipList()) {
    EXPECT_TRUE(keys.contains(key)) << "skip list names " << key << ", which is no shell block (any more)";
    EXPECT_FALSE(reason.empty()) << key;
  }
}

// One test per document with runnable blocks; the rest are skipped above.
class DocExamplesRun : public DocExamplesTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(DocExamplesRun, RunsAsWritten) {
  std::vector<Block> runnable;
  for (const auto& block : AllShellBlocks(OP_SOURCE_DIR)) {
    if (block.file == GetParam() && !SkipList().contains(block.Key())) runnable.push_back(block);
  }
  ASSERT_FALSE(runnable.empty()) << GetParam() << " has no runnable shell block";
  const auto result = RunDocument(runnable);
  EXPECT_EQ(result.exit_code, 0) << "script:\n"
                                 << ReadText(dir_ / "examples.sh") << "\nout:\n"
                                 << result.out << "\nerr:\n"
                                 << result.err;
}

INSTANTIATE_TEST_SUITE_P(Docs, DocExamplesRun, ::testing::Values("docs/omni-sim.md", "docs/pve-sim.md"),
                         [](const auto& info) {
                           std::string name = fs::path(info.param).stem().string();
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// Every document whose shell blocks are not all skipped is run by DocExamplesRun.
TEST_F(DocExamplesTest, EveryDocumentWithRunnableBlocksIsRun) {
  const std::set<std::string> run = {"docs/omni-sim.md", "docs/pve-sim.md"};
  for (const auto& block : AllShellBlocks(OP_SOURCE_DIR)) {
    if (SkipList().contains(block.Key())) continue;
    EXPECT_TRUE(run.contains(block.file))
        << block.Key() << " (line " << block.line << ") is neither run nor on the skip list:\n"
        << block.text;
  }
}

}  // namespace
}  // namespace omni_proxmox::cli
