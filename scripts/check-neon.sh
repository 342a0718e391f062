#!/usr/bin/env bash
# Runs the dot-product kernel tests for aarch64 under qemu: the NEON kernels must give the
# same bits as the scalar canonical kernels (src/quant/dot/tests.rs), like every x86 kernel.
# The aarch64 standard library comes from rustup's target aarch64-unknown-linux-gnu when it
# is installed; otherwise (rustup's servers are not reachable from CI) from Debian: rustc-web
# (bookworm-security, a current stable rustc) with its arm64 std through multiarch
# (libstd-rust-web-dev:arm64), used as RUSTC for this build only. Installs those, qemu-user and
# the aarch64 cross linker from Debian when missing.
# The test binary is linked statically: dynamically linked aarch64 programs hang in their
# first pthread_create under qemu-user on our VMs' kernel (6.18), qemu 7.2 and 10.0 alike,
# while static ones run.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
install() {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! rustup target list --installed 2>/dev/null | grep -qx $target; then
    if [ ! -d /usr/lib/rustlib/$target ]; then
        dpkg --add-architecture arm64
        install rustc-web libstd-rust-web-dev:arm64
    fi
    export RUSTC=/usr/bin/rustc
    echo "NEON kernel tests with Debian's $($RUSTC --version) and its arm64 standard library"
fi
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
CARGO_TARGET_DIR=target/aarch64 cargo test --quiet --release --target $target --lib quant::dot
