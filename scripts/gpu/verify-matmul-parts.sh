#!/usr/bin/env bash
# The tree mat-mat in parts (kernels/matmul_q.hip: steps of 17-64 tokens in blocks of 64 rows x
# 32 tokens over 8 of the 32 positions, joined) on the GPU machine, in one call: parity of the
# blocks-of-32 types (every decode, wide and mixed-batch step bit-identical to the CPU) with the
# defaults, with 16 positions a block, with steps of up to 64 tokens and with the staged
# fallback forced; then many sequences on the Llama-3-8B shape, Q4_0 and Q8_0, next to
# llama.cpp's llama-batched-bench and, where the carried build has it, an earlier build
# ($D/rocmforge_bench_base, the same call's baseline). Expects dist/gpu.tar.xz
# (scripts/gpu/build-dist.sh, plus rocmforge_bench_base if wanted) and
# dist/llbin/llama-bin.tar.xz (scripts/gpu/build-llama-cuda.sh). Writes everything under $OUT
# as one archive, results.tgz. NPL, TYPES as verify-matmul-tree.sh; VARIANTS=0 skips the
# tuning variant (16 positions).
# Usage: OUT=... scripts/gpu/verify-matmul-parts.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/unpack-carried.sh
L=/tmp/llama-build/bin
export LD_LIBRARY_PATH=$L:$LD_LIBRARY_PATH
R=$OUT/results
mkdir -p "$R"
models=$(blocks32_parity_models)
parity() { # label env...
    local lab=$1; shift
    for t in thirty_two_sequences_in_mixed_batches_match_each_alone_on_the_gpu \
        gpu_matches_cpu_on_listed_models; do
        env "$@" ROCMFORGE_GPU_MODELS="$models" ROCMFORGE_EXPECT_GPU=1 \
            ROCMFORGE_GPU_REPORT=$R/parity-$lab.jsonl \
            timeout 200 $D/gpu_parity --exact $t --test-threads=1 --nocapture \
            >$R/parity-$lab-$t.log 2>&1
        echo "parity $lab $t: rc $? at ${SECONDS}s"
        grep -h 'test result\|panicked' $R/parity-$lab-$t.log | head -3
        grep -h 'GPU mixed vs alone' $R/parity-$lab-$t.log | head -3
        grep -h '"model"' $R/parity-$lab-$t.log | python3 -c '
import sys, json
rs = [json.loads(l[l.index("{"):]) for l in sys.stdin]
bad = [r["model"] for r in rs if r["decode_logits_differing"] or r["wide_step_logits_differing"]
       or not r["greedy_tokens_equal"]]
print(len(rs), "models; with differences:", bad)'
    done
}
parity default X=1
[ "${VARIANTS:-1}" = 1 ] && parity pos16 ROCMFORGE_MATMUL_Q_TREE_POSITIONS=16
parity max64 ROCMFORGE_MATMUL_Q_MAX_TOKENS=64 ROCMFORGE_MATMUL_Q_TREE_MAX_TOKENS=64
parity staged ROCMFORGE_MATMUL_Q_TREE_REFUSE_STAGES=1
npl=${NPL:-1,4,8,12,16,20,24,32,48,64}
for ty in ${TYPES:-q4_0 q8_0}; do
    m=/tmp/l8-$ty.gguf
    $D/rocmforge_synth --shape llama3-8b --type $ty --vocab $V --out $m --threads "$(nproc)" \
        --distinct-rows 256 >/dev/null
    LD_PRELOAD=$LIBCUDA timeout 150 $L/llama-batched-bench -m $m -ngl 99 -c 16384 -npp 128 \
        -ntg 64 -npl $npl --output-format jsonl 2>>$R/llama-batched.err | grep '^{' \
        >$R/batched.llama_cpp.$ty.jsonl
    echo "llama $ty at ${SECONDS}s"
    run() { # label binary list env...
        local k=$1 b=$2 list=$3
        shift 3
        [ -x "$b" ] || return 0
        env "$@" timeout 100 $b batched -m $m --gpu -npp 128 -ntg 64 -npl "$list" --jsonl \
            >>$R/batched.rocmforge.$ty.$k.jsonl 2>$R/err.$ty.$k.log
        echo "$k rc $? at ${SECONDS}s"
        python3 scripts/batched-ratios.py $R/batched.rocmforge.$ty.$k.jsonl \
            $R/batched.llama_cpp.$ty.jsonl "$ty $k: " 2>&1 | grep -v '^cpu\|^rocmforge ISA'
    }
    run base $D/rocmforge_bench_base $npl X=1
    [ "${VARIANTS:-1}" = 1 ] &&
        run pos16 $D/rocmforge_bench 20,24,32 ROCMFORGE_MATMUL_Q_TREE_POSITIONS=16
    for round in 1 2; do
        run max64 $D/rocmforge_bench $npl ROCMFORGE_MATMUL_Q_MAX_TOKENS=64 \
            ROCMFORGE_MATMUL_Q_TREE_MAX_TOKENS=64
    done
done
echo "done at ${SECONDS}s"
tar -C "$OUT" -czf "$OUT/results.tgz" results && rm -rf "$R"
