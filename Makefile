# SPDX-License-Identifier: Apache-2.0
# The single entry point. `make test` and `make demo` install what is missing first.
BUILD_TYPE ?= Release
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
FUZZ_BUILD_DIR ?= build-fuzz
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps packaging-deps configure build test demo bench asan-test format fuzz clean torture \
	image image-test package package-test

all: build

deps:
	@bash scripts/install-deps.sh

# The container image, the Debian package and their tests need more tools than `make test`.
packaging-deps:
	@bash scripts/install-deps.sh --packaging

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

configure: $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps
	@$(MAKE) --no-print-directory build
	@bash scripts/run-tests.sh $(BUILD_DIR)

demo: deps
	@$(MAKE) --no-print-directory build
	@bash scripts/demo.sh $(BUILD_DIR)

bench: deps
	@$(MAKE) --no-print-directory build
	@bash scripts/run-bench.sh $(BUILD_DIR)

# The long crash torture and fault soak (docs/reliability.md); OP_TORTURE_SEED reruns one.
torture: deps
	@$(MAKE) --no-print-directory build
	$(BUILD_DIR)/tests/torture/torture_long

asan-test: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DOMNI_PROXMOX_ASAN=ON -DOMNI_PROXMOX_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	@bash scripts/run-tests.sh $(ASAN_BUILD_DIR)

fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_PROXMOX_FUZZ=ON -DOMNI_PROXMOX_TESTS=OFF -DOMNI_PROXMOX_BENCH=OFF
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS)

# omni-proxmox:dev from the root Dockerfile, with podman and locally made Debian base images
# (scripts/image.sh); IMAGE_BUILD_FLAGS=--no-cache builds from nothing.
image: packaging-deps
	@bash scripts/image.sh

# The image's own checks: the demo inside it, the provider container against simulators on the
# host, a non-root process, the HEALTHCHECK and the labels (scripts/image-test.sh).
image-test: image
	@bash scripts/image-test.sh

# build-package/omni-proxmox_<version>_<arch>.deb (CPack; Depends from dpkg-shlibdeps).
package: deps packaging-deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS) --target omni-proxmox omni-proxmox-man
	cd $(BUILD_DIR) && cpack -B $(CURDIR)/build-package
	@ls -l build-package/*.deb

# Installs the package into a fresh Debian 12 minbase chroot and runs the demo there.
package-test: package
	@bash scripts/package-test.sh build-package

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(FUZZ_BUILD_DIR) build-image build-package
