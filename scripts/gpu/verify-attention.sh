#!/usr/bin/env bash
# Checks decode attention on the GPU machine (kernels/attention.hip), in two calls of at most
# about 400 s each.
#   parity: scripts/gpu/parity.sh (every test, 45 synthetic models: GQA groups of 1 to 4 heads,
#           head sizes 32 to 128), then the long-context test on 2-layer 8B-shaped files
#           (Llama-3-8B Q4_K_M: groups of 4; Qwen2.5-7B Q4_K_M: groups of 7) at 300, 9,000
#           (one block joins two chunks of its split) and 17,000 cells (the join's windows).
#   bench:  decode after 0 / 4,096 / 16,384 prompt tokens next to `llama-bench -d` (f16 caches
#           on both sides), then many sequences next to llama-batched-bench, Llama-3-8B Q4_0.
# Expects dist/gpu.tar.xz (scripts/gpu/build-dist.sh, then `tar -C dist -cJf dist/gpu.tar.xz
# gpu`) and dist/llbin/llama-bin.tar.xz (scripts/gpu/build-llama-cuda.sh); writes under $OUT.
# Usage (on the GPU machine): scripts/gpu/verify-attention.sh parity|bench
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/verify-attention}
. scripts/gpu/unpack-carried.sh
case "${1:-}" in
parity)
    OUT_DIR=$OUT MODELS=/tmp/rf-models timeout 300 scripts/gpu/parity.sh > "$OUT/parity.log" 2>&1
    echo "parity.sh rc $? after ${SECONDS}s"; grep -E "^test |test result" "$OUT/parity.log"
    $D/rocmforge_synth --shape llama3-8b --type q4_k_m --layers 2 --vocab $V --out /tmp/p-llama.gguf \
        --threads 16 --distinct-rows 256 > /dev/null
    $D/rocmforge_synth --shape qwen2.5-7b --type q4_k_m --layers 2 --vocab $Q --out /tmp/p-qwen.gguf \
        --threads 16 --distinct-rows 256 > /dev/null
    for run in "llama 9000" "llama 17000" "qwen 9000"; do
        set -- $run
        ROCMFORGE_GPU_MODELS=/tmp/p-$1.gguf ROCMFORGE_GPU_LONG_TOKENS=$2 timeout 150 \
            $D/gpu_parity --exact long_context_decode_attention_matches_cpu --nocapture \
            > "$OUT/long-$1-$2.log" 2>&1
        echo "long $1 $2 rc $? after ${SECONDS}s"
    done
    ;;
bench)
    B=/tmp/llama-build/bin
    export LD_LIBRARY_PATH=$B:$LD_LIBRARY_PATH
    m=/tmp/llama3-8b-q4_0.gguf
    $D/rocmforge_synth --shape llama3-8b --type q4_0 --vocab $V --out $m --threads 16 \
        --distinct-rows 256 > /dev/null
    for d in 4096 16384; do
        ROCMFORGE_BENCH_REPS=1 ROCMFORGE_BENCH_DEPTH=$d ROCMFORGE_BENCH_MODEL=$m $D/gpu_bench \
            --ignored --nocapture --exact gpu_pp512_tg128 2>&1 | grep '^{' | tee -a "$OUT/depth.rocmforge.jsonl"
    done
    # llama-bench links the CUDA driver library against a stub: preload the real one.
    LD_PRELOAD=libcuda.so.1 $B/llama-bench -m $m -ngl 99 -p 0 -n 128 -d 0,4096,16384 -r 2 -o jsonl \
        2>> "$OUT/llama-bench.err" | tee "$OUT/depth.llama_cpp.jsonl"
    LD_PRELOAD=libcuda.so.1 $B/llama-batched-bench -m $m -ngl 99 -c 16384 -npp 128 -ntg 64 \
        -npl 1,8,32,64 --output-format jsonl 2>> "$OUT/llama-batched-bench.err" | grep '^{' \
        | tee "$OUT/batched.llama_cpp.jsonl"
    $D/rocmforge_bench batched -m $m --gpu -npp 128 -ntg 64 -npl 1,8,32,64 --jsonl \
        | tee "$OUT/batched.rocmforge.jsonl"
    python3 scripts/batched-ratios.py "$OUT/batched.rocmforge.jsonl" "$OUT/batched.llama_cpp.jsonl" "q4_0: "
    ;;
*) echo "usage: $0 parity|bench" >&2; exit 2 ;;
esac
