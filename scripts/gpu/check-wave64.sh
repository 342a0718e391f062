#!/usr/bin/env bash
# Compiles every kernel twice with nvcc (the pip toolchain in .cuda/), as the normal `cuda`
# build and as the wave-64 emulation build (RF_WAVE64_EMULATION: RF_WAVE = 64 as on AMD CDNA,
# kernels/arch.h), and names the kernel files whose code depends on the wave size: those are
# the ones the wave-64 parity run on the GPU machine (WAVE64=1 scripts/gpu/build-dist.sh, then
# WAVE64=1 scripts/gpu/parity.sh) exercises beyond the normal build. Fails when either build
# does not compile, or when a file other than those listed in WAVE_DEPENDENT changes under
# RF_WAVE = 64 (a kernel that starts to depend on the wave size must be added there and run in
# the emulation on the GPU machine before it ships).
set -euo pipefail
cd "$(dirname "$0")/../.."
# The kernel files whose code may differ between wave 32 and 64: only the helpers' own check.
WAVE_DEPENDENT=(wave_check)
nvcc=$(ls .cuda/lib/python3*/site-packages/nvidia/cu13/bin/nvcc 2>/dev/null | head -n1 || true)
nvcc=${ROCMFORGE_CUDA_HOME:+$ROCMFORGE_CUDA_HOME/bin/nvcc}${ROCMFORGE_CUDA_HOME:-$nvcc}
[ -x "$nvcc" ] || { echo "no nvcc (scripts/setup-test-deps.sh installs the pip toolchain)" >&2; exit 1; }
home=$(dirname "$(dirname "$nvcc")")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for src in kernels/*.hip; do
    name=$(basename "$src" .hip)
    for wave in 32 64; do
        flags=()
        [ "$wave" = 64 ] && flags=(-DRF_WAVE64_EMULATION=1)
        "$nvcc" -x cu -std=c++17 -O3 --fmad=false -arch=sm_90 "${flags[@]}" -I"$home/include" \
            -I"$home/include/cccl" -ptx "$src" -o "$tmp/$name.$wave.ptx"
    done
    expected=same
    [[ " ${WAVE_DEPENDENT[*]} " == *" $name "* ]] && expected=differs
    if cmp -s "$tmp/$name.32.ptx" "$tmp/$name.64.ptx"; then got=same; else got=differs; fi
    echo "$name: code under RF_WAVE=64 $got"
    if [ "$got" != "$expected" ]; then
        echo "$name: expected its code to be the $expected under RF_WAVE=64 (see WAVE_DEPENDENT)" >&2
        status=1
    fi
done
exit $status
