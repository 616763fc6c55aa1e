#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the container image omni-proxmox:dev from the root Dockerfile (`make image`).
#
# With podman (the default; CONTAINER_ENGINE=docker uses a Docker engine instead), configured only
# through deploy/podman/containers.conf via CONTAINERS_CONF. No registry is reachable from the
# machines this runs on, so the Dockerfile's base images are made here: a Debian 12 minbase root
# filesystem from mmdebstrap (scripts/minbase.sh), imported as docker.io/library/debian:bookworm,
# and a copy trimmed the way the official -slim image is (no docs but copyright files, no man
# pages, info or locales) imported as debian:bookworm-slim. The build then runs with --pull=never.
#
# Environment: IMAGE (default omni-proxmox:dev), OMNI_PROXMOX_SHARED_DIR (default ../shared),
# IMAGE_BUILD_FLAGS (extra build flags, e.g. --no-cache), SOURCE_URL (the image's source label).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

image=${IMAGE:-omni-proxmox:dev}
engine=${CONTAINER_ENGINE:-podman}
shared=$(cd "${OMNI_PROXMOX_SHARED_DIR:-$repo/../shared}" && pwd)
work=build-image
export CONTAINERS_CONF="$repo/deploy/podman/containers.conf"

version=$(sed -n 's/^project(omni-proxmox VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
revision=$(git rev-parse HEAD 2>/dev/null || true)
source_url=${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || true)}

# Writes a copy of the minbase tarball without what debian:bookworm-slim leaves out, and the dpkg
# configuration that keeps later installs (the runtime stage's) just as lean.
slim_tarball() {
  local full=$1 out=$2 root
  root=$(mktemp -d "$work/slim.XXXXXX")
  tar -C "$root" --numeric-owner -xpf "$full"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
# As in the official debian:*-slim images: no documentation but the copyright files, no locales.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
CFG
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -path "$root/usr/share/doc/*/copyright" -delete
  find "$root/usr/share/groff" "$root/usr/share/info" "$root/usr/share/linda" "$root/usr/share/lintian/overrides" \
    "$root/usr/share/locale" "$root/usr/share/man" -mindepth 1 ! -type d -delete 2>/dev/null || true
  find "$root/usr/share" -mindepth 1 -type d -empty -delete
  tar -C "$root" --numeric-owner -cf "$out" .
  rm -rf "$root"
}

# Imports the base images unless the same minbase tarball was imported already.
base_images() {
  bash scripts/minbase.sh "$work/bookworm-minbase.tar"
  local stamp="$work/base-images.stamp"
  if [[ -f "$stamp" && "$stamp" -nt "$work/bookworm-minbase.tar" ]] &&
    "$engine" image exists docker.io/library/debian:bookworm &&
    "$engine" image exists docker.io/library/debian:bookworm-slim; then
    echo "image: base images already imported from $work/bookworm-minbase.tar"
    return
  fi
  slim_tarball "$work/bookworm-minbase.tar" "$work/bookworm-slim.tar"
  "$engine" import --change 'CMD ["bash"]' "$work/bookworm-minbase.tar" docker.io/library/debian:bookworm >/dev/null
  "$engine" import --change 'CMD ["bash"]' "$work/bookworm-slim.tar" docker.io/library/debian:bookworm-slim >/dev/null
  rm -f "$work/bookworm-slim.tar"
  touch "$stamp"
  echo "image: imported debian:bookworm and debian:bookworm-slim from $work/bookworm-minbase.tar"
}

mkdir -p "$work"
started=$(date +%s)
if [[ "$engine" == podman ]]; then
  base_images
  pull=(--pull=never --format docker)
else
  pull=()
fi
# shellcheck disable=SC2086  # IMAGE_BUILD_FLAGS is a list of flags
"$engine" build "${pull[@]}" ${IMAGE_BUILD_FLAGS:-} \
  --build-context "shared=$shared" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE_URL=$source_url" \
  -t "$image" -f Dockerfile .
size=$("$engine" image inspect --format '{{.Size}}' "$image")
echo "image: $image built in $(($(date +%s) - started)) s; size $((size / 1024 / 1024)) MiB ($size bytes)"
