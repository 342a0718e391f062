#!/usr/bin/env bash
# Runs every test: installs missing tools, fetches the real test models, runs the Rust unit and
# integration tests (real-model comparisons against llama.cpp's fixtures, the C API built and run
# against the real library, valgrind), the NEON dot kernels under qemu (bit-identical to the
# scalar ones), then the GPU build checks: the kernels compiled for AMD (gfx90a, gfx1030) with
# hipcc, and the `cuda` feature built with the pip CUDA toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh
scripts/fetch-models.sh >/dev/null
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
scripts/check-neon.sh || status=$?
scripts/gpu/check-amd-compile.sh || status=$?
scripts/gpu/check-cuda-build.sh || status=$?
exit $status
