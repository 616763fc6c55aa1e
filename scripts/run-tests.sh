#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the whole suite through ctest and ends with one line "N passed, M failed".
# Exits non-zero when any test fails or when no test ran.
set -uo pipefail
build_dir=${1:-build}
jobs=${JOBS:-$(nproc)}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

ctest --test-dir "$build_dir" -j "$jobs" --output-on-failure --timeout 600 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
if [[ -z "$summary" ]]; then
  echo "0 passed, 1 failed"
  echo "run-tests: ctest printed no summary (exit $rc)" >&2
  exit 1
fi
failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$summary")
# ctest counts a skipped test (e.g. the Go interop suite without Go) as passed; we do not.
skipped=$(grep -cE '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" || true)
passed=$((total - failed - skipped))
if [[ $skipped -gt 0 ]]; then
  echo "${skipped} skipped (listed above under 'The following tests did not run')"
fi
echo "${passed} passed, ${failed} failed"
if [[ $rc -ne 0 || $failed -ne 0 || $total -eq 0 ]]; then
  exit 1
fi
