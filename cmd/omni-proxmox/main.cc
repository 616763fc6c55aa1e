// SPDX-License-Identifier: Apache-2.0
#include "cli/app.h"

int main(int argc, char** argv) { return omni_proxmox::cli::RunCli(argc, argv); }
