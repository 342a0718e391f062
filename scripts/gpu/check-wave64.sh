#!/usr/bin/env bash
# Which kernel files depend on the wave size, for the wave-64 emulation build
# (RF_WAVE64_EMULATION: RF_WAVE = 64 as on AMD CDNA, kernels/arch.h). That build differs from the
# normal one in two things only: the value of RF_WAVE (and the helpers sized by it:
# rf_wave_sum, rf_wave_max, rf_block_sum) and the exchange across the two 32-lane halves of a
# wave (rf_shfl_xor with mask 32, emulated by rf_emulated_cross_half). So a file depends on the
# wave size when its source names one of those, or when its code compiled as the emulation build
# (nvcc, the pip toolchain in .cuda/) calls the emulated exchange. Those files are what the
# wave-64 parity run on the GPU machine (WAVE64=1 scripts/gpu/build-dist.sh, then
# WAVE64=1 scripts/gpu/parity.sh) exercises beyond the normal build. Fails when a file does not
# compile as the emulation build, or when the files found differ from WAVE_DEPENDENT (a kernel
# that starts to depend on the wave size must be listed and run in the emulation on the GPU
# machine before it ships). Whether the generated code is byte-identical is printed as well (not
# a verdict: the optimiser may emit `a < b` as `b > a` when helper bodies differ).
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
    why=()
    grep -qE '\b(RF_WAVE|rf_wave_sum|rf_wave_max|rf_block_sum)\b' "$src" && why+=("names RF_WAVE or a wave-sized helper")
    grep -q 'rf_emulated_cross_half' "$tmp/$name.64.ptx" && why+=("exchanges across wave halves")
    if cmp -s "$tmp/$name.32.ptx" "$tmp/$name.64.ptx"; then same="identical"; else same="not identical"; fi
    listed=no
    [[ " ${WAVE_DEPENDENT[*]} " == *" $name "* ]] && listed=yes
    if [ ${#why[@]} -gt 0 ]; then
        echo "$name: depends on the wave size ($(IFS=';'; echo "${why[*]}")); code $same"
        [ $listed = yes ] || { echo "$name: not in WAVE_DEPENDENT" >&2; status=1; }
    else
        echo "$name: independent of the wave size; code $same"
        [ $listed = no ] || { echo "$name: listed in WAVE_DEPENDENT but independent" >&2; status=1; }
    fi
done
exit $status
