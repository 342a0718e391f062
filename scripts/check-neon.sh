#!/usr/bin/env bash
# Runs the dot-product kernel tests for aarch64 under qemu: the NEON kernels must give the
# same bits as the scalar canonical kernels (src/quant/dot/tests.rs), like every x86 kernel.
# Needs the Rust target aarch64-unknown-linux-gnu (installed with the toolchain here; rustup's
# servers are not reachable from CI, so without it this step says so and passes); installs
# qemu-user and the aarch64 cross linker from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    echo "NEON kernel tests skipped: Rust target aarch64-unknown-linux-gnu is not installed"
    exit 0
fi
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user gcc-aarch64-linux-gnu \
        libc6-dev-arm64-cross >/dev/null
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
CARGO_TARGET_DIR=target/aarch64 cargo test --quiet --target aarch64-unknown-linux-gnu --lib \
    quant::dot
