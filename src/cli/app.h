// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace omni_proxmox::cli {

// Entry point of the omni-proxmox binary: parses the command line, sets up logging and
// runs one subcommand. Returns the process exit code (0 ok, 1 findings, 2 usage).
int RunCli(int argc, char** argv);

}  // namespace omni_proxmox::cli
