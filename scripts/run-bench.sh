#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every Google Benchmark binary under <build>/bench, then the scale benchmark (scale_bench, which runs
# the provider binary against the simulators) and the leader takeover benchmark (takeover_bench, two replicas). Figures go to docs/benchmarks.md.
set -euo pipefail
build_dir=${1:-build}
shopt -s nullglob
benches=("$build_dir"/bench/*_bench)
if [[ ${#benches[@]} -eq 0 ]]; then
  echo "run-bench: no benchmarks built yet"
  exit 0
fi
for bench in "${benches[@]}"; do
  [[ $(basename "$bench") == scale_bench || $(basename "$bench") == takeover_bench ]] && continue
  echo "== $bench"
  "$bench" --benchmark_min_time=0.2
done
if [[ -x $build_dir/bench/scale_bench ]]; then
  echo "== $build_dir/bench/scale_bench"
  "$build_dir/bench/scale_bench"
fi
if [[ -x $build_dir/bench/takeover_bench ]]; then
  echo "== $build_dir/bench/takeover_bench"
  "$build_dir/bench/takeover_bench"
fi
