#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs a deployment check that needs an external tool: `with_tool.sh TOOL COMMAND...` exits 77
# (ctest: skipped) when TOOL is not installed, else runs COMMAND. scripts/install-deps.sh
# --packaging installs every such tool, and .ci/run installs them, so CI never skips.
set -euo pipefail
tool=$1
shift
if ! command -v "$tool" >/dev/null 2>&1; then
  echo "skipped: $tool is not installed (scripts/install-deps.sh --packaging)"
  exit 77
fi
exec "$@"
