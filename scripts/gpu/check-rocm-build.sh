#!/usr/bin/env bash
# Builds the library with the `rocm` feature using Debian's hipcc (HIP 5.2: gfx90a and gfx1030
# code objects; gfx942 and gfx1100 are checked by amd-targets-newer.sh with clang-19), checks
# that nothing links against ROCm (the HIP runtime and rocBLAS are opened at run time), and
# runs the C API tests and the backend-selection tests with that build: on a machine without
# an AMD GPU, the runtime is found (Debian's libamdhip64) and reports no device, GPU answers
# BACKEND_UNAVAILABLE with the reason, and AUTO runs everything on the CPU. Valgrind runs on
# the default build only (the HIP runtime's own allocations are not ours to account for).
# In its own target folder, so the default build stays GPU-free.
set -euo pipefail
cd "$(dirname "$0")/../.."
export ROCMFORGE_HIP_ARCHS=${ROCMFORGE_HIP_ARCHS:-gfx90a,gfx1030}
export CARGO_TARGET_DIR=target/rocm
cargo build --quiet --lib --features rocm
so=$CARGO_TARGET_DIR/debug/librocmforge.so
needed=$(readelf -d "$so")
if grep -E 'amdhip|hipblas|rocblas|libhsa' <<<"$needed"; then
    echo "rocm build has a hard dependency on a ROCm library (above)" >&2
    exit 1
fi
# One offload bundle entry per target in each kernel object: count them in the library.
for arch in ${ROCMFORGE_HIP_ARCHS//,/ }; do
    grep -c -a "amdgcn-amd-amdhsa--$arch" "$so" >/dev/null ||
        { echo "no $arch code object in $so" >&2; exit 1; }
done
echo "rocm feature build OK ($ROCMFORGE_HIP_ARCHS): $(stat -c %s "$so") bytes, needs only:" \
    "$(grep -o 'Shared library: \[[^]]*' <<<"$needed" | sed 's/.*\[//' | tr '\n' ' ')"
cargo nextest run --features rocm --no-fail-fast --test ffi_c --test gpu_runtime \
    -E 'not test(valgrind)'
