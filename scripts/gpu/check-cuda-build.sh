#!/usr/bin/env bash
# Builds the library with the `cuda` feature: the same kernels/*.hip compiled by nvcc through
# kernels/hip_compat.h for sm_90, linked against the static cudart of the pip toolchain in .cuda/ (cuBLAS is
# opened at run time). In its own target folder, so the default build's librocmforge.so stays GPU-free.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO_TARGET_DIR=target/cuda cargo build --quiet --lib --features cuda
so=target/cuda/debug/librocmforge.so
symbols=$(nm -D --defined-only "$so")
needed=$(readelf -d "$so")
grep -q rocmforge_device_count <<<"$symbols" || { echo "no C API in the cuda build" >&2; exit 1; }
# One library that loads without a GPU runtime: the static cudart opens the driver at run time
# and kernels/blas.hip opens cuBLAS, so no CUDA library may be a NEEDED entry.
if grep -E 'libcuda|libcudart|libcublas' <<<"$needed"; then
    echo "cuda build has a hard dependency on a CUDA library (above)" >&2
    exit 1
fi
echo "cuda feature build OK: $(stat -c %s "$so") bytes, needs only: $(grep -o 'Shared library: \[[^]]*' <<<"$needed" | sed 's/.*\[//' | tr '\n' ' ')"
# The C API tests and the backend-selection tests with this build, on a machine without the
# CUDA driver: the static runtime reports no usable device, GPU answers BACKEND_UNAVAILABLE with
# its reason, AUTO runs on the CPU. (Valgrind runs on the default build only.)
CARGO_TARGET_DIR=target/cuda cargo nextest run --features cuda --no-fail-fast --test ffi_c \
    --test gpu_runtime --lib -E 'not test(valgrind) and (not kind(lib) or test(/^backend::hip::/))'
