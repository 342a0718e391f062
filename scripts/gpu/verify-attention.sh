#!/usr/bin/env bash
# Checks decode attention on the GPU machine (kernels/attention.hip).
#   parity: scripts/gpu/parity.sh (every test, 45 synthetic models: GQA groups of 1 to 4 heads,
#           head sizes 32 to 128), then the long-context test on 2-layer 8B-shaped files
#           (Llama-3-8B Q4_K_M: groups of 4; Qwen2.5-7B Q4_K_M: groups of 7) at 300, 9,000
#           (one block joins two chunks of its split) and 17,000 cells (the join's windows).
#   bench:  decode after 0 / 4,096 / 16,384 prompt tokens next to `llama-bench -d` (f16 caches
#           on both sides), then many sequences next to llama-batched-bench, Llama-3-8B Q4_0.
#   compare: one call of at most about 550 s for a change to the GQA kernel: the long-context
#           test (f16, f32 and q8_0 caches at 9,000 cells, Qwen's groups of 7) and
#           the 32-sequence mixed batches, with the defaults and with each setting of
#           $VARIANTS (space-separated NAME=VALUE environment settings; f16 at 9,000 cells
#           only), in parallel; then decode at depth and 1 / 8 / 32 / 64 sequences for
#           $D/gpu_bench_base and $D/rocmforge_bench_base (an earlier build, where carried),
#           the defaults and each variant, next to llama-bench and llama-batched-bench (NPL:
#           the sequence counts, default 1,8,32,64). LONG / LONG_QWEN set the cells (the GQA
#           kernel takes a single sequence from 4,096 cells with 8 KV heads, 8,192 with
#           Qwen's 4); SKIP_F32=1 leaves the f32 cache out.
#           Everything lands in $OUT/results.tgz.
# Expects dist/gpu.tar.xz (scripts/gpu/build-dist.sh, then `tar -C dist -cJf dist/gpu.tar.xz
# gpu`) and dist/llbin/llama-bin.tar.xz (scripts/gpu/build-llama-cuda.sh); writes under $OUT.
# Usage (on the GPU machine): [VARIANTS=...] scripts/gpu/verify-attention.sh parity|bench|compare
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/verify-attention}
. scripts/gpu/unpack-carried.sh
# The long-context test's 2-layer files: /tmp/p-llama.gguf (Llama-3-8B Q4_K_M) and
# /tmp/p-qwen.gguf (Qwen2.5-7B Q4_K_M).
long_context_models() {
    $D/rocmforge_synth --shape llama3-8b --type q4_k_m --layers 2 --vocab $V --out /tmp/p-llama.gguf \
        --threads 16 --distinct-rows 256 > /dev/null
    $D/rocmforge_synth --shape qwen2.5-7b --type q4_k_m --layers 2 --vocab $Q --out /tmp/p-qwen.gguf \
        --threads 16 --distinct-rows 256 > /dev/null
}
case "${1:-}" in
parity)
    OUT_DIR=$OUT MODELS=/tmp/rf-models timeout 300 scripts/gpu/parity.sh > "$OUT/parity.log" 2>&1
    echo "parity.sh rc $? after ${SECONDS}s"; grep -E "^test |test result" "$OUT/parity.log"
    long_context_models
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
        -npl ${NPL:-1,8,32,64} --output-format jsonl 2>> "$OUT/llama-batched-bench.err" | grep '^{' \
        | tee "$OUT/batched.llama_cpp.jsonl"
    $D/rocmforge_bench batched -m $m --gpu -npp 128 -ntg 64 -npl 1,8,32,64 --jsonl \
        | tee "$OUT/batched.rocmforge.jsonl"
    python3 scripts/batched-ratios.py "$OUT/batched.rocmforge.jsonl" "$OUT/batched.llama_cpp.jsonl" "q4_0: "
    ;;
compare)
    L=/tmp/llama-build/bin
    export LD_LIBRARY_PATH=$L:$LD_LIBRARY_PATH
    R=$OUT/results
    mkdir -p "$R"
    [ -f "$Q" ] || Q=$V  # the Qwen shape with SmolLM2's vocabulary where Qwen2's is not carried
    long_context_models
    long() { # label model tokens cache env...
        local lab=$1 model=$2 n=$3 ct=$4
        shift 4
        env "$@" ROCMFORGE_GPU_MODELS=/tmp/p-$model.gguf ROCMFORGE_GPU_LONG_TOKENS=$n \
            ROCMFORGE_GPU_CACHE_TYPE=$ct ROCMFORGE_EXPECT_GPU=1 timeout 200 $D/gpu_parity \
            --exact long_context_decode_attention_matches_cpu --nocapture --test-threads=1 \
            > "$R/long-$lab-$model-$n-$ct.log" 2>&1
        echo "long $lab $model $n $ct: rc $? at ${SECONDS}s ($(grep -c 'test result: ok. 1 passed' "$R/long-$lab-$model-$n-$ct.log") passed)"
    }
    mixed() { # label env...
        local lab=$1
        shift
        env "$@" ROCMFORGE_EXPECT_GPU=1 timeout 200 $D/gpu_parity --exact \
            thirty_two_sequences_in_mixed_batches_match_each_alone_on_the_gpu --nocapture \
            --test-threads=1 > "$R/mixed-$lab.log" 2>&1
        echo "mixed $lab: rc $? at ${SECONDS}s; $(grep -h 'GPU mixed vs alone' "$R/mixed-$lab.log" | head -2 | tr '\n' ' ')"
    }
    {
        long default llama ${LONG:-9000} f16 X=1 &
        long default qwen ${LONG_QWEN:-9000} f16 X=1 &
        long default llama ${LONG:-9000} q8_0 X=1 &
        [ -n "${SKIP_F32:-}" ] || long default llama ${LONG:-9000} f32 X=1 &
        mixed default X=1 &
        for v in ${VARIANTS:-}; do
            long "$v" llama ${LONG:-9000} f16 "$v" &
        done
        wait
    } | tee "$R/parity-summary.txt"
    m=/tmp/llama3-8b-q4_0.gguf
    $D/rocmforge_synth --shape llama3-8b --type q4_0 --vocab $V --out $m --threads 16 \
        --distinct-rows 256 > /dev/null
    LD_PRELOAD=$LIBCUDA timeout 120 $L/llama-bench -m $m -ngl 99 -p 0 -n 128 -d 0,4096,16384 \
        -r 1 -o jsonl 2>> "$R/llama-bench.err" > "$R/depth.llama_cpp.jsonl"
    echo "llama-bench at ${SECONDS}s"; cat "$R/depth.llama_cpp.jsonl" | cut -c1-400
    LD_PRELOAD=$LIBCUDA timeout 120 $L/llama-batched-bench -m $m -ngl 99 -c 16384 -npp 128 \
        -ntg 64 -npl ${NPL:-1,8,32,64} --output-format jsonl 2>> "$R/llama-batched-bench.err" \
        | grep '^{' > "$R/batched.llama_cpp.jsonl"
    echo "llama-batched-bench at ${SECONDS}s"
    bench() { # label gpu_bench rocmforge_bench env...
        local lab=$1 gb=$2 rb=$3
        shift 3
        [ -x "$gb" ] || return 0
        for d in 4096 16384; do
            env "$@" ROCMFORGE_BENCH_REPS=1 ROCMFORGE_BENCH_DEPTH=$d ROCMFORGE_BENCH_MODEL=$m \
                timeout 100 $gb --ignored --nocapture --exact gpu_pp512_tg128 2>&1 | grep '^{' \
                | sed "s/^{/{\"variant\":\"$lab\",\"depth\":$d,/" | tee -a "$R/depth.rocmforge.jsonl" | cut -c1-300
        done
        env "$@" timeout 100 $rb batched -m $m --gpu -npp 128 -ntg 64 -npl ${NPL:-1,8,32,64} --jsonl \
            > "$R/batched.rocmforge.$lab.jsonl" 2> "$R/batched-err.$lab.log"
        echo "$lab batched rc $? at ${SECONDS}s"
        python3 scripts/batched-ratios.py "$R/batched.rocmforge.$lab.jsonl" \
            "$R/batched.llama_cpp.jsonl" "$lab: " 2>&1 | grep -v '^cpu\|^rocmforge ISA'
    }
    bench base $D/gpu_bench_base $D/rocmforge_bench_base X=1
    bench default $D/gpu_bench $D/rocmforge_bench X=1
    for v in ${VARIANTS:-}; do bench "$v" $D/gpu_bench $D/rocmforge_bench "$v"; done
    echo "done at ${SECONDS}s"
    tar -C "$OUT" -czf "$OUT/results.tgz" results && rm -rf "$R"
    ;;
*) echo "usage: $0 parity|bench|compare" >&2; exit 2 ;;
esac
