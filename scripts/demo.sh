#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make demo`: the embedded demo end to end (a simulated Proxmox cluster, an Omni stand-in
# and the provider in one process). DEMO_ARGS=--fast shortens the simulated task times.
set -euo pipefail
build_dir=${1:-build}
exec "$build_dir/omni-proxmox" demo ${DEMO_ARGS:-}
