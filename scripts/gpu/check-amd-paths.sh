#!/usr/bin/env bash
# The AMD-only paths no machine of ours can run, checked in the code objects themselves: every
# kernel compiled for gfx90a and gfx942 (CDNA, 64-lane waves) and gfx1030 and gfx1100 (RDNA,
# 32-lane waves) by scripts/gpu/amd-targets-newer.sh (clang-19), then
# - each kernel's wave size in the code object's metadata is the target's;
# - the quantized mat-vec got the target's 4-way int8 dot instruction (kernels/arch.h,
#   rf_dp4a): v_dot4c_i32_i8 on gfx90a, gfx942 and gfx1030, v_dot4_i32_iu8 on gfx1100 (RDNA3
#   has no v_dot4_i32_i8), so no target falls back to byte-by-byte multiplies unnoticed.
# The arithmetic of those instructions against the CPU's is tests/amd_paths.rs.
# Usage: scripts/gpu/check-amd-paths.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
objdump=$(command -v llvm-objdump-19 || true)
readelf=$(command -v llvm-readelf-19 || true)
[ -n "$objdump" ] && [ -n "$readelf" ] || { echo "llvm-objdump-19/llvm-readelf-19 missing (apt-get install llvm-19)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ROCMFORGE_AMD_OUT=$out scripts/gpu/amd-targets-newer.sh gfx90a gfx942 gfx1030 gfx1100
status=0
fail() { echo "check-amd-paths: $*" >&2; status=1; }
for target in gfx90a:64:v_dot4c_i32_i8 gfx942:64:v_dot4c_i32_i8 gfx1030:32:v_dot4c_i32_i8 \
    gfx1100:32:v_dot4_i32_iu8; do
    IFS=: read -r arch wave dot <<<"$target"
    kernels=0
    for co in "$out"/*."$arch".co; do
        sizes=$("$readelf" --notes "$co" | grep -o 'wavefront_size: *[0-9]*' | grep -o '[0-9]*$' || true)
        for s in $sizes; do
            kernels=$((kernels + 1))
            [ "$s" = "$wave" ] || fail "$(basename "$co"): a kernel with wave size $s, expected $wave"
        done
    done
    dots=$("$objdump" -d "$out/matvec.$arch.co" | grep -cE "\b$dot(_e32)?\b" || true)
    [ "$dots" -gt 0 ] || fail "matvec.$arch.co: no $dot (rf_dp4a fell back to plain multiplies)"
    echo "$arch: $kernels kernels, all wave $wave; matvec uses $dot ($dots instructions)"
done
exit $status
