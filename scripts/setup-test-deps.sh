#!/usr/bin/env bash
# Installs, when missing, everything the test suite needs on a fresh Debian 12 machine:
# cargo-nextest; valgrind, pkg-config, make, gcc/g++ and binutils for the C API tests; the
# pinned cbindgen for the header drift test; hipcc and the pip CUDA toolchain for the GPU build
# checks.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
missing=()
for tool in valgrind pkg-config make cc c++ readelf nm; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind pkg-config make gcc g++ binutils >/dev/null
fi
bash scripts/gen-header.sh --install  # the pinned cbindgen
bash scripts/gpu/install-toolchains.sh
# cmake for the CMake consumer project of tests/cpp_and_install.rs, from Debian.
if ! command -v cmake >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi
