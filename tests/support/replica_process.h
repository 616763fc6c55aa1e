// SPDX-License-Identifier: Apache-2.0
#pragma once

// One `omni-proxmox run` replica as a child process, for the two-replica tests, the crash torture
// and the takeover benchmark: its identity and status port read from its log, /readyz and
// /metrics, and the signals those tests send, each returning when it took effect on the host's
// monotonic clock (the clock of the simulators' journals, support/fencing_check.h).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/subprocess.h"

namespace omni_proxmox::testing {

class ReplicaProcess {
 public:
  using MonotonicTime = std::chrono::steady_clock::time_point;

  ReplicaProcess(const std::vector<std::string>& argv, std::string log_path);

  int pid() const { return process_.pid(); }
  // Waits until the log names the replica's identity and status port (looks at least once, also
  // after the process ended); false on timeout or exit.
  bool WaitStarted(std::chrono::milliseconds timeout);
  const std::string& identity() const { return identity_; }
  int status_port() const { return status_port_; }
  std::string Log() const { return process_.Log(); }

  // GET on the status server; status 0 when it cannot be reached.
  struct Reply {
    int status = 0;
    std::string body;
  };
  Reply Get(const std::string& path) const;
  // The value of the metric line starting with `name` followed by a space (no labels).
  std::optional<double> Metric(const std::string& name) const;

  // SIGKILL, then reaped: returns the moment it was known dead.
  MonotonicTime Kill();
  // SIGSTOP, then waits until the kernel shows it stopped: returns that moment.
  MonotonicTime Pause();
  // Returns the moment before SIGCONT was sent.
  MonotonicTime Resume();
  // SIGTERM and the exit code (-1 when it did not exit in `timeout`).
  int Terminate(std::chrono::seconds timeout);
  bool exited_on_its_own() const;

 private:
  ChildProcess process_;
  std::string identity_;
  int status_port_ = 0;
  bool gone_ = false;
};

}  // namespace omni_proxmox::testing
