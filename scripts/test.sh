#!/usr/bin/env bash
# Runs every test: installs missing tools, fetches the real test models, runs the Rust unit and
# integration tests (real-model comparisons against llama.cpp's fixtures, the C API built and run
# against the real library, valgrind), the NEON dot kernels under qemu (bit-identical to the
# scalar ones), then the GPU build checks: the `rocm` feature built with Debian's hipcc
# (gfx90a, gfx1030) and the C API tests run with it (runtime present, no AMD GPU), the kernels
# compiled for gfx90a, gfx942, gfx1030 and gfx1100 with clang-19 and each code object checked
# for its wave size and dot instruction, the `cuda` feature built with the pip CUDA toolchain
# (neither GPU build may link against its GPU runtime), and the kernels compiled as the wave-64
# emulation build (which ones depend on the wave size).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh
scripts/fetch-models.sh >/dev/null
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
scripts/check-neon.sh || status=$?
scripts/gpu/check-rocm-build.sh || status=$?
scripts/gpu/check-amd-paths.sh || status=$?
scripts/gpu/check-cuda-build.sh || status=$?
scripts/gpu/check-wave64.sh || status=$?
exit $status
