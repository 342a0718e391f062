#!/usr/bin/env bash
# Where one decode token's GPU time goes: Nsight Compute times every kernel of a few
# single-token passes (serialised, so overlap between kernels is not counted) and
# profile_summary.py adds them up per kernel per token.
# Expects $DIST (default dist/gpu) as scripts/gpu/bench.sh; writes $OUT_DIR/profile-<type>.csv.
# SHAPE (default llama3-8b) and VOCAB (default $DIST/vocab-smollm2.gguf) as in bench.sh;
# METRICS (default gpu__time_duration.sum; add dram__bytes_read.sum for each kernel's bandwidth,
# at one more replay per kernel); BY_GRID=1 tells launches apart by grid size.
# NPL=N profiles decode steps of N sequences instead (NTG, SKIP as below).
# Usage: scripts/gpu/profile.sh [type ...]   (default: q4_0)
set -uo pipefail
DIST=${DIST:-dist/gpu}
OUT_DIR=${OUT_DIR:-${OUT:-/tmp}}
types=("$@")
[ ${#types[@]} -eq 0 ] && types=(q4_0)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
NCU=${NCU:-/usr/local/cuda/bin/ncu}
SHAPE=${SHAPE:-llama3-8b}
VOCAB=${VOCAB:-$DIST/vocab-smollm2.gguf}
METRICS=${METRICS:-gpu__time_duration.sum}
for ty in "${types[@]}"; do
    m=/tmp/$SHAPE-$ty.gguf
    [ -f "$m" ] || "$DIST/rocmforge_synth" --shape "$SHAPE" --type "$ty" \
        --vocab "$VOCAB" --out "$m" --threads "$(nproc)" --distinct-rows 256
    if [ -n "${NPL:-}" ]; then
        # Decode steps of NPL sequences (`rocmforge_bench batched`: NPL 128-token prompts, then
        # NTG steps of one token each): the prompts and the first steps run before the replay,
        # SKIP (default 9000) kernels in.
        cmd=("$DIST/rocmforge_bench" batched -m "$m" --gpu -npp 128 -ntg "${NTG:-40}" -npl "$NPL")
        skip=${SKIP:-9000}
    else
        # One prefill and 16 decode tokens run before the replay; skipping the first 4000
        # kernels lands in the decode tokens.
        cmd=("$DIST/gpu_bench" --ignored --nocapture --exact gpu_pp512_tg128)
        skip=${SKIP:-4000}
    fi
    ROCMFORGE_BENCH_REPS=0 ROCMFORGE_BENCH_MODEL="$m" \
        "$NCU" --cache-control none --clock-control none --graph-profiling node \
        --metrics "$METRICS" --launch-skip "$skip" --launch-count "${COUNT:-700}" \
        --csv --page raw --print-units base "${cmd[@]}" \
        > "$OUT_DIR/profile-$ty.csv" 2> "$OUT_DIR/profile-$ty.err"
    python3 "$(dirname "$0")/profile_summary.py" "$OUT_DIR/profile-$ty.csv"
done
