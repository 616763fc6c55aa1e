#!/usr/bin/env bash
# `make demo`: runs the embedded demo end to end once it exists (issue #8); until then it
# proves the binary runs and says what the demo will do.
set -euo pipefail
build_dir=${1:-build}
bin="$build_dir/omni-proxmox"
if "$bin" demo --help >/dev/null 2>&1; then
  exec "$bin" demo --fast
fi
"$bin" --version
cat <<'TEXT'
The embedded demo is not built yet. When it is, `make demo` will start a simulated
3-node Proxmox VE cluster and an Omni stand-in in one process, run the provider against
them, scale a MachineRequestSet up to 6 machines with live progress, show the VMs that
were made, scale back to 0 and print a summary.
TEXT
