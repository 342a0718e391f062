#!/usr/bin/env bash
# GPU-vs-CPU parity on the GPU machine. Expects, in $DIST (default dist/gpu): gpu_parity (the
# test binary from `cargo test --features cuda --test gpu_parity --no-run`), rocmforge_synth and
# vocab-smollm2.gguf (`rocmforge_synth --extract-vocab SmolLM2.gguf --out ...`). Writes the
# synthetic models to $MODELS and the report to $OUT_DIR/parity.jsonl.
# Extra real models may be appended with EXTRA_MODELS=a.gguf,b.gguf.
# ROCMFORGE_GPU_WINDOWED_MODEL=gemma-3-270m-q4_k_m.gguf (passed through) adds a real model with
# sliding-window layers to the windowed test: past its window, with the GPU's full tables
# (swa_full) and with its ring, one and two sequences.
# WAVE64=1: the wave-64 emulation build instead (default DIST dist/gpu-wave64, made by
# `WAVE64=1 scripts/gpu/build-dist.sh`), whose kernels must report 64-lane waves.
set -euo pipefail
if [ -n "${WAVE64:-}" ]; then
    DIST=${DIST:-dist/gpu-wave64}
    export ROCMFORGE_EXPECT_WAVE=64
fi
DIST=${DIST:-dist/gpu}
MODELS=${MODELS:-/tmp/rf-models}
OUT_DIR=${OUT_DIR:-${OUT:-/tmp}}
mkdir -p "$MODELS"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
list=()
for shape in tiny llama3-mini smollm2-135m; do
    for ty in q4_0 q4_1 q8_0 f16 f32 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k q4_k_m iq4_nl iq4_xs; do
        f="$MODELS/$shape-$ty.gguf"
        "$DIST/rocmforge_synth" --shape "$shape" --type "$ty" --vocab "$DIST/vocab-smollm2.gguf" --out "$f"
        list+=("$f")
    done
done
models=$(IFS=,; echo "${list[*]}")
[ -n "${EXTRA_MODELS:-}" ] && models="$models,$EXTRA_MODELS"
ROCMFORGE_GPU_MODELS="$models" ROCMFORGE_EXPECT_GPU=1 ROCMFORGE_GPU_REPORT="$OUT_DIR/parity.jsonl" \
    "$DIST/gpu_parity" --test-threads=1 --nocapture
