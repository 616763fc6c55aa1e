// SPDX-License-Identifier: Apache-2.0
#include "support/replica_process.h"

#include <httplib.h>
#include <signal.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace omni_proxmox::testing {
namespace {

// The process state letter from /proc/<pid>/stat ('\0' when it cannot be read).
char ProcessState(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() ? line[paren + 2] : '\0';
}

}  // namespace

ReplicaProcess::ReplicaProcess(const std::vector<std::string>& argv, std::string log_path)
    : process_(argv, {}, std::move(log_path)) {}

bool ReplicaProcess::WaitStarted(std::chrono::milliseconds timeout) {
  static const std::regex kPort(R"(/metrics on 127\.0\.0\.1:([0-9]+))");
  static const std::regex kIdentity(R"(this replica is ([^\s"]+))");
  if (!identity_.empty()) return true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const std::string log = process_.Log();
    std::smatch port;
    std::smatch identity;
    if (std::regex_search(log, port, kPort) && std::regex_search(log, identity, kIdentity)) {
      status_port_ = std::stoi(port[1]);
      identity_ = identity[1];
      return true;
    }
    if (gone_ || exited_on_its_own() || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
}

ReplicaProcess::Reply ReplicaProcess::Get(const std::string& path) const {
  if (status_port_ == 0 || gone_) return {};
  httplib::Client client("127.0.0.1", status_port_);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(5, 0);
  auto reply = client.Get(path);
  if (!reply) return {};
  return {reply->status, reply->body};
}

std::optional<double> ReplicaProcess::Metric(const std::string& name) const {
  const Reply reply = Get("/metrics");
  if (reply.status != 200) return std::nullopt;
  std::istringstream lines(reply.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == ' ') {
      return std::stod(line.substr(name.size() + 1));
    }
  }
  return std::nullopt;
}

ReplicaProcess::MonotonicTime ReplicaProcess::Kill() {
  process_.Signal(SIGKILL);
  process_.Wait(std::chrono::seconds{30});
  gone_ = true;
  return std::chrono::steady_clock::now();
}

ReplicaProcess::MonotonicTime ReplicaProcess::Pause() {
  process_.Signal(SIGSTOP);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (ProcessState(pid()) != 'T' && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds{200});
  }
  return std::chrono::steady_clock::now();
}

ReplicaProcess::MonotonicTime ReplicaProcess::Resume() {
  const auto now = std::chrono::steady_clock::now();
  process_.Signal(SIGCONT);
  return now;
}

int ReplicaProcess::Terminate(std::chrono::seconds timeout) {
  process_.Signal(SIGTERM);
  const int code = process_.Wait(timeout);
  gone_ = true;
  return code;
}

bool ReplicaProcess::exited_on_its_own() const {
  if (gone_) return false;
  const char state = ProcessState(pid());
  return state == '\0' || state == 'Z';
}

}  // namespace omni_proxmox::testing
