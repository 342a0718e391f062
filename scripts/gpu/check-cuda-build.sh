#!/usr/bin/env bash
# Builds the library with the `cuda` feature: the same kernels/*.hip compiled by nvcc through
# kernels/hip_compat.h for sm_90, linked against cudart and cuBLAS from the pip toolchain in
# .cuda/. In its own target folder, so the default build's librocmforge.so stays GPU-free.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO_TARGET_DIR=target/cuda cargo build --quiet --lib --features cuda
so=target/cuda/debug/librocmforge.so
symbols=$(nm -D --defined-only "$so")
needed=$(readelf -d "$so")
grep -q rocmforge_device_count <<<"$symbols" || { echo "no C API in the cuda build" >&2; exit 1; }
grep -q 'libcublas' <<<"$needed" || { echo "cuda build does not link cuBLAS" >&2; exit 1; }
echo "cuda feature build OK: $(stat -c %s "$so") bytes, links $(grep -o 'libcublas[^]]*' <<<"$needed")"
