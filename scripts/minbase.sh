#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes a Debian 12 minbase root filesystem as a tarball with mmdebstrap, once per checkout: the
# local stand-in for the public debian:bookworm images (scripts/image.sh) and the fresh chroot of
# the package test (scripts/package-test.sh). Merged /usr like the official images, from the
# bookworm, bookworm-updates and bookworm-security suites.
#
#   scripts/minbase.sh [OUT.tar]     (default build-image/bookworm-minbase.tar; kept if it exists)
#
# DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override the mirrors. Needs root (mmdebstrap's root mode).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-build-image/bookworm-minbase.tar}
if [[ -s "$out" ]]; then
  echo "minbase: $out exists"
  exit 0
fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
mkdir -p "$(dirname "$out")"
started=$(date +%s)
mmdebstrap --quiet --variant=minbase --format=tar \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  bookworm "$out.partial" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
mv "$out.partial" "$out"
echo "minbase: $out ($(du -m "$out" | cut -f1) MiB) in $(($(date +%s) - started)) s"
