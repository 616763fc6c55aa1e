// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace omni_proxmox::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or on timeout
  std::string out;
  std::string err;
};

// Runs argv[0] with the given arguments and environment additions, feeding `input` on
// stdin, and waits for it with a deadline (the process is killed past it).
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& input = "",
                         const std::vector<std::string>& extra_env = {},
                         std::chrono::seconds timeout = std::chrono::seconds{60});

}  // namespace omni_proxmox::testing

namespace omni_proxmox::testing {

// A child process running in the background, with stdout and stderr sent to files. Killed
// (SIGKILL) on destruction if still running.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env, std::string log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  int pid() const { return pid_; }
  void Signal(int signal_number);
  // Waits for exit up to `timeout`; returns the exit code, or -1 if killed by a signal or still running.
  int Wait(std::chrono::seconds timeout);
  std::string Log() const;  // stdout and stderr so far

 private:
  int pid_ = -1;
  bool exited_ = false;
  std::string log_path_;
};

}  // namespace omni_proxmox::testing
