#!/usr/bin/env bash
# Where one decode token's GPU time goes: Nsight Compute times every kernel of a few
# single-token passes (serialised, so overlap between kernels is not counted) and
# profile_summary.py adds them up per kernel per token.
# Expects $DIST (default dist/gpu) as scripts/gpu/bench.sh; writes $OUT_DIR/profile-<type>.csv.
# Usage: scripts/gpu/profile.sh [type ...]   (default: q4_0)
set -uo pipefail
DIST=${DIST:-dist/gpu}
OUT_DIR=${OUT_DIR:-${OUT:-/tmp}}
types=("$@")
[ ${#types[@]} -eq 0 ] && types=(q4_0)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
NCU=${NCU:-/usr/local/cuda/bin/ncu}
for ty in "${types[@]}"; do
    [ -f "/tmp/l3-$ty.gguf" ] || "$DIST/rocmforge_synth" --shape llama3-8b --type "$ty" \
        --vocab "$DIST/vocab-smollm2.gguf" --out "/tmp/l3-$ty.gguf" --distinct-rows 256
    # One prefill and 16 decode tokens run before the replay; skipping the first 4000
    # kernels lands in the decode tokens.
    ROCMFORGE_BENCH_REPS=0 ROCMFORGE_BENCH_MODEL="/tmp/l3-$ty.gguf" \
        "$NCU" --cache-control none --clock-control none --graph-profiling node \
        --metrics gpu__time_duration.sum --launch-skip "${SKIP:-4000}" --launch-count "${COUNT:-700}" \
        --csv --page raw --print-units base "$DIST/gpu_bench" --ignored --nocapture --exact gpu_pp512_tg128 \
        > "$OUT_DIR/profile-$ty.csv" 2> "$OUT_DIR/profile-$ty.err"
    python3 "$(dirname "$0")/profile_summary.py" "$OUT_DIR/profile-$ty.csv"
done
