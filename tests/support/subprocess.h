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
