#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Puts `SPDX-License-Identifier: Apache-2.0` at the top of every tracked source file that lacks it,
# in the file's comment form (`//` for C++, protobuf and Go; `#` for shell, Python, CMake, make,
# YAML and the rest), after a #! line. `--check` changes nothing and lists the files without it
# (exit 1 when there is one; a ctest test runs it).
#
# Source files: code, build and deployment files. Not data (test inputs whose line numbers tests
# assert on, fuzz corpora, JSON, which has no comments) and not documentation.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly kTag="SPDX-License-Identifier: Apache-2.0"
check=false
[[ "${1:-}" == "--check" ]] && check=true

comment_for() {
  case "$1" in
    *.cc | *.h | *.proto | *.go) echo "//" ;;
    *.sh | *.py | *.cmake | */CMakeLists.txt | CMakeLists.txt | Makefile | Dockerfile | .ci/run) echo "#" ;;
    deploy/*.yaml | deploy/*.conf | deploy/*.service | deploy/*.example | deploy/*/.env.example) echo "#" ;;
    deploy/debian/postinst | deploy/debian/postrm) echo "#" ;;
    *) echo "" ;;
  esac
}

is_data() {
  case "$1" in
    */testdata/* | fuzz/corpus/* | *.json | *.md) return 0 ;;
    *) return 1 ;;
  esac
}

missing=()
while IFS= read -r file; do
  [[ -f "$file" ]] || continue
  is_data "$file" && continue
  comment=$(comment_for "$file")
  [[ -n "$comment" ]] || continue
  head -n 5 "$file" | grep -qF "$kTag" && continue
  missing+=("$file")
  $check && continue
  line="$comment $kTag"
  if head -n 1 "$file" | grep -q '^#!'; then
    { head -n 1 "$file"; echo "$line"; tail -n +2 "$file"; } >"$file.spdx"
  else
    { echo "$line"; cat "$file"; } >"$file.spdx"
  fi
  chmod --reference="$file" "$file.spdx"
  mv "$file.spdx" "$file"
done < <(git ls-files)

if $check; then
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "spdx: ${#missing[@]} tracked source file(s) without '$kTag' (run scripts/spdx.sh):"
    printf '  %s\n' "${missing[@]}"
    exit 1
  fi
  echo "spdx: every tracked source file carries '$kTag'"
else
  echo "spdx: added the line to ${#missing[@]} file(s)"
fi
