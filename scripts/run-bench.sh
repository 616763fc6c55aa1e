#!/usr/bin/env bash
# Runs every benchmark binary under build/bench and prints their reports.
set -euo pipefail
build_dir=${1:-build}
shopt -s nullglob
benches=("$build_dir"/bench/*_bench)
if [[ ${#benches[@]} -eq 0 ]]; then
  echo "run-bench: no benchmarks built yet"
  exit 0
fi
for bench in "${benches[@]}"; do
  echo "== $bench"
  "$bench" --benchmark_min_time=0.2
done
