#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/systemd/omni-proxmox.service: `systemd-analyze verify` is clean (no warning at all) in a
# root holding the unit, the built binary at /usr/bin/omni-proxmox and systemd's own units; its
# `systemd-analyze security` exposure is at most 2.0; the hardening the operator guide promises is there; the secrets are credentials read from
# ${CREDENTIALS_DIRECTORY}; and every flag of ExecStart is a flag of `run`.
#
#   systemd_unit_test.sh BINARY UNIT
set -euo pipefail
binary=$1
unit=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp -a "$(dirname "$(readlink -f /lib/systemd/system/sysinit.target)")" "$root/usr/lib/systemd/system"
cp "$binary" "$root/usr/bin/omni-proxmox"
cp "$unit" "$root/etc/systemd/system/omni-proxmox.service"
# The man page comes with the package (scripts/package-test.sh checks it there).
out=$(systemd-analyze verify --man=no --root="$root" omni-proxmox.service 2>&1) || {
  echo "systemd-analyze verify failed:"; echo "$out"; exit 1; }
[[ -z "$out" ]] || { echo "systemd-analyze verify is not clean:"; echo "$out"; exit 1; }
# systemd's own exposure score (0 best, 10 worst; 1.3 when this was written) stays at 2.0 or below.
security=$(systemd-analyze security --offline=true --root="$root" --threshold=20 omni-proxmox.service 2>&1) || {
  echo "systemd-analyze security: exposure above 2.0:"; echo "$security" | tail -n 25; exit 1; }

failed=0
for setting in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  CapabilityBoundingSet= Restart=on-failure \
  'LoadCredential=omni-infra-provider.key:/etc/omni-proxmox/omni-infra-provider.key' \
  'LoadCredential=pve-token-secret:/etc/omni-proxmox/pve-token-secret' \
  'LoadCredential=config.yaml:/etc/omni-proxmox/config.yaml'; do
  grep -qxF "$setting" "$unit" || { echo "missing: $setting"; failed=1; }
done
exec_start=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" | tr -d '\\\n')
for arg in '--config-file ${CREDENTIALS_DIRECTORY}/config.yaml' \
  '--omni-service-account-key-file ${CREDENTIALS_DIRECTORY}/omni-infra-provider.key'; do
  [[ "$exec_start" == *"$arg"* ]] || { echo "ExecStart does not pass: $arg"; failed=1; }
done
if grep -q '^ExecStart=.*/etc/omni-proxmox' <<<"$exec_start"; then
  echo "ExecStart reads /etc/omni-proxmox directly instead of the credentials"; failed=1
fi
help=$("$binary" run --help)
for flag in $(grep -o -- '--[a-z][a-z0-9-]*' <<<"$exec_start" | sort -u); do
  grep -qE -- "(^|[ ,])$flag([ =,]|$)" <<<"$help" || { echo "ExecStart flag $flag is not a flag of run"; failed=1; }
done
[[ $failed -eq 0 ]] && echo "omni-proxmox.service: verify clean, hardened, credentials from \${CREDENTIALS_DIRECTORY}"
exit $failed
