#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the Debian packages that provide the shared libraries a binary names in its dynamic
# section (NEEDED), one per line, sorted. The container image's runtime stage installs exactly
# these (apt pulls in their own dependencies), so the list follows the binary instead of being
# kept by hand. Run it where the binary was built: it asks that system's dpkg database which
# package owns each library the dynamic loader resolves.
#
#   scripts/runtime-packages.sh build/omni-proxmox
#
# Exits 1, naming the library, when a NEEDED entry does not resolve or no package owns it.
set -euo pipefail

binary=${1:?usage: runtime-packages.sh BINARY}
[[ -x "$binary" ]] || { echo "runtime-packages: '$binary' is not an executable" >&2; exit 1; }

mapfile -t needed < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*Shared library: \[\(.*\)\]/\1/p')
[[ ${#needed[@]} -gt 0 ]] || { echo "runtime-packages: '$binary' has no NEEDED entries (static?)" >&2; exit 1; }

# soname -> path as the dynamic loader would resolve it (ldconfig's cache of this system).
declare -A resolved
while read -r soname path; do
  [[ -n "${resolved[$soname]:-}" ]] || resolved[$soname]=$path
done < <(ldconfig -p | sed -n 's/^\s*\(\S*\) (libc6,x86-64[^)]*) => \(.*\)$/\1 \2/p; s/^\s*\(\S*\) (libc6,AArch64[^)]*) => \(.*\)$/\1 \2/p')

packages=()
for soname in "${needed[@]}"; do
  path=${resolved[$soname]:-}
  if [[ -z "$path" ]]; then
    echo "runtime-packages: $soname (NEEDED by $binary) is not in the loader cache" >&2
    exit 1
  fi
  # dpkg records the path a package shipped, which on merged-/usr systems may be the /lib alias
  # of the /usr/lib file the cache names (or the other way round), so try each spelling.
  owner=""
  for candidate in "$path" "${path#/usr}" "/usr${path}" "$(readlink -f "$path")" "$(readlink -f "$path" | sed 's|^/usr||')"; do
    owner=$(dpkg-query -S "$candidate" 2>/dev/null | head -n 1 | cut -d: -f1 || true)
    [[ -n "$owner" ]] && break
  done
  if [[ -z "$owner" ]]; then
    echo "runtime-packages: no Debian package owns $path ($soname, NEEDED by $binary)" >&2
    exit 1
  fi
  packages+=("$owner")
done

printf '%s\n' "${packages[@]}" | sort -u
