#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs clang's thread-safety analysis (-Wthread-safety) over the files whose locks are annotated
# (ABSL_GUARDED_BY and friends), with the flags CMake compiles them with (compile_commands.json).
# g++ ignores the annotations, so this is what makes them checked. Usage: check-thread-safety.sh BUILD_DIR
set -euo pipefail
build_dir=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v clang++ >/dev/null || { echo "check-thread-safety: clang++ not found" >&2; exit 77; }
files=$(grep -rlE 'ABSL_(GUARDED_BY|EXCLUSIVE_LOCKS_REQUIRED|SHARED_LOCKS_REQUIRED)' "$root/src" --include='*.h' |
  sed 's/\.h$/.cc/' | while read -r f; do [[ -f $f ]] && echo "$f"; done | sort -u)
python3 - "$build_dir/compile_commands.json" $files <<'PY'
import json, shlex, subprocess, sys
commands = {entry["file"]: entry for entry in json.load(open(sys.argv[1]))}
failed = 0
for path in sys.argv[2:]:
    entry = commands.get(path)
    if entry is None:
        print(f"check-thread-safety: {path} is not in compile_commands.json", file=sys.stderr)
        failed += 1
        continue
    args = shlex.split(entry["command"])
    keep = []
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD") or a.startswith("-Wno-restrict") or a.startswith("-Wno-maybe-uninitialized"):
            continue
        keep.append(a)
    cmd = ["clang++", "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option"] + keep
    result = subprocess.run(cmd, cwd=entry["directory"], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"{path}:\n{result.stderr}", file=sys.stderr)
        failed += 1
    else:
        print(f"ok {path}")
sys.exit(1 if failed else 0)
PY
