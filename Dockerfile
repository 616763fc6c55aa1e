# SPDX-License-Identifier: Apache-2.0
# The omni-proxmox container image: a drop-in for the Go provider's image (same flags and
# environment; the entrypoint is the binary and the default command `run`).
#
#   docker build --build-context shared=../shared -t omni-proxmox .
#   make image        # the same with podman, on base images made locally (docs/operator-guide.md)
#
# The build needs the Proxmox API schema from the shared reference data beside the repository
# (../shared/pve-apidata), passed as the named build context "shared".

# Build stage: the Debian packages scripts/install-deps.sh installs to build the binary, and only
# the omni-proxmox target (no tests, benchmarks or fuzzers).
FROM debian:bookworm AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN bash /src/scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY --from=shared pve-apidata/provider-subset.json pve-apidata/pve-9.2-apidoc.json /shared/pve-apidata/
COPY . /src
ARG JOBS=""
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DOMNI_PROXMOX_TESTS=OFF \
      -DOMNI_PROXMOX_BENCH=OFF -DOMNI_PROXMOX_SHARED_DIR=/shared \
 && cmake --build /build --target omni-proxmox -j "${JOBS:-$(nproc)}" \
 && strip --strip-unneeded /build/omni-proxmox \
 && bash /src/scripts/runtime-packages.sh /build/omni-proxmox > /build/runtime-packages.txt \
 && cat /build/runtime-packages.txt

# Runtime stage: the packages owning the binary's NEEDED libraries (derived above, not listed by
# hand) plus ca-certificates for TLS to Omni and Proxmox, and an unprivileged user.
FROM debian:bookworm-slim
COPY --from=build /build/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 omni-proxmox \
 && useradd --system --uid 10001 --gid omni-proxmox --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin omni-proxmox
COPY --from=build /build/omni-proxmox /usr/bin/omni-proxmox
COPY LICENSE deploy/debian/copyright /usr/share/doc/omni-proxmox/
RUN omni-proxmox --version

ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="omni-proxmox" \
      org.opencontainers.image.description="Sidero Omni infrastructure provider for Proxmox VE" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

USER 10001:10001
# /healthz, /readyz and /metrics; `run --listen` and `healthcheck` both read OMNI_PROXMOX_LISTEN.
EXPOSE 9489
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["omni-proxmox", "healthcheck"]
ENTRYPOINT ["omni-proxmox"]
CMD ["run"]
