#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Debian package's test (`make package-test`, CI): in a fresh Debian 12 minbase chroot (the
# untouched tarball of scripts/minbase.sh), `apt-get install ./omni-proxmox_*.deb` must resolve
# every dependency from Debian, the files must land where the docs say, and the demo must pass
# inside the chroot. Needs root (chroot, mounts in a private mount namespace).
#
#   scripts/package-test.sh [DIR]     (DIR holds the .deb; default build-package)
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-build-package}
debs=("$dir"/omni-proxmox_*.deb)
[[ -f "${debs[0]}" && ${#debs[@]} -eq 1 ]] || { echo "package-test: want one omni-proxmox_*.deb in $dir" >&2; exit 1; }
deb=${debs[0]}
started=$(date +%s)

bash scripts/minbase.sh build-image/bookworm-minbase.tar
root=$(mktemp -d /tmp/omni-proxmox-package-test.XXXXXX)
trap 'rm -rf "$root"' EXIT
tar -C "$root" --numeric-owner -xpf build-image/bookworm-minbase.tar
cp "$deb" "$root/tmp/"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# The chroot's commands: install, check the files, run the demo. Its JSON summary is the last line.
cat >"$root/tmp/inside.sh" <<'INSIDE'
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends /tmp/omni-proxmox_*.deb
dpkg -s omni-proxmox | sed -n 's/^\(Version\|Depends\|Installed-Size\): /package-test: \1: /p'
for f in /usr/bin/omni-proxmox /usr/lib/systemd/system/omni-proxmox.service /usr/share/man/man1/omni-proxmox.1.gz \
         /usr/share/doc/omni-proxmox/copyright /usr/share/doc/omni-proxmox/examples/config.yaml.example \
         /usr/share/doc/omni-proxmox/examples/omni-proxmox.env.example /usr/share/omni-proxmox/omni-proxmox.json \
         /usr/share/omni-proxmox/alerts.yaml; do
  [ -e "$f" ] || { echo "package-test: $f is missing"; exit 1; }
done
omni-proxmox --version
omni-proxmox --format json demo --fast > /tmp/demo.json
cat /tmp/demo.json
INSIDE

# A private mount namespace: /proc and /dev exist for the chroot and vanish with it.
unshare --mount --propagation private bash -c '
  set -e
  mount -t proc proc "$1/proc"
  mount --rbind /dev "$1/dev"
  chroot "$1" /bin/sh /tmp/inside.sh
' _ "$root" | tee "$root/inside.log"

summary=$(tail -n 1 "$root/inside.log")
python3 - "$summary" <<'CHECK'
import json, sys
s = json.loads(sys.argv[1])
want = {"machines_provisioned": 6, "machines_joined": 6, "vms_remaining": 0, "ok": True}
bad = {k: s.get(k) for k, v in want.items() if s.get(k) != v}
if bad:
    sys.exit(f"package-test: demo summary {bad}, want {want}")
CHECK
size=$(stat -c %s "$deb")
echo "package-test: $(basename "$deb") ($((size / 1024)) KiB) installs in a fresh bookworm chroot and its demo passes" \
  "($(($(date +%s) - started)) s)"
