#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages omni-proxmox needs. Idempotent and non-interactive: it asks apt only
# for what is missing, and runs `apt-get update` only when something is missing. Works as root, or
# through sudo.
#
#   install-deps.sh              build, test, benchmark and fuzz (what `make test` needs)
#   install-deps.sh --build      only what building the omni-proxmox binary needs (the image's build stage)
#   install-deps.sh --packaging  only the extra tools of `make image`, `make image-test`, `make package`
#                                and their tests (podman, mmdebstrap, promtool, systemd-analyze, ...)
set -euo pipefail

# Building the binary: compiler, build tools and the libraries it links.
build_packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libcurl4-openssl-dev libssl-dev
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  librnp-dev libre2-dev libisofs-dev libcpp-httplib-dev libabsl-dev
)
# The test suite, benchmarks and fuzzers on top of that.
test_packages=(
  git clang clang-format libclang-rt-14-dev lld
  libgtest-dev libgmock-dev libbenchmark-dev
  gnupg sq curl xorriso genisoimage
)
# Container image, Debian package and the deployment files' checks. runc, not crun: crun fails in
# the sandboxes CI runs in (deploy/podman/containers.conf selects runc).
packaging_packages=(
  podman runc mmdebstrap
  dpkg-dev file help2man
  prometheus systemd python3 python3-yaml curl
)

case "${1:-}" in
  "") packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  --build) packages=("${build_packages[@]}") ;;
  --packaging) packages=("${packaging_packages[@]}") ;;
  *)
    echo "install-deps: unknown option '$1'; use --build, --packaging or nothing" >&2
    exit 2
    ;;
esac

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: missing packages (${missing[*]}) and not root; run as root or install sudo" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
