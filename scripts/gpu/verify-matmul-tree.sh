#!/usr/bin/env bash
# The tree mat-mat (kernels/matmul_q.hip, steps of 4-16 tokens) on the GPU machine: parity of
# the blocks-of-32 types (every decode and mixed-batch step bit-identical to the CPU), then
# many sequences on the Llama-3-8B shape next to the staged kernel
# (ROCMFORGE_MATMUL_Q_TREE_MAX_TOKENS=0) and llama.cpp's llama-batched-bench, in one call.
# Expects dist/gpu.tar.xz (scripts/gpu/build-dist.sh) and dist/llbin/llama-bin.tar.xz
# (scripts/gpu/build-llama-cuda.sh). Env: TYPES (default q4_0 q8_0), NPL (1,4,8,16,32,64),
# SKIP_PARITY=1.
# Usage: OUT=... scripts/gpu/verify-matmul-tree.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/unpack-carried.sh
L=/tmp/llama-build/bin
export LD_LIBRARY_PATH=$L:$LD_LIBRARY_PATH
if [ -z "${SKIP_PARITY:-}" ]; then
    models=$(blocks32_parity_models)
    for t in thirty_two_sequences_in_mixed_batches_match_each_alone_on_the_gpu \
        gpu_matches_cpu_on_listed_models; do
        ROCMFORGE_GPU_MODELS="$models" ROCMFORGE_EXPECT_GPU=1 ROCMFORGE_GPU_REPORT=$OUT/parity.jsonl \
            timeout 300 $D/gpu_parity --exact $t --test-threads=1 --nocapture >$OUT/parity-$t.log 2>&1
        echo "parity $t: rc $? at ${SECONDS}s"
        grep -h 'test result\|panicked\|bit-identical' $OUT/parity-$t.log | head -8
    done
fi
npl=${NPL:-1,4,8,16,32,64}
for ty in ${TYPES:-q4_0 q8_0}; do
    m=/tmp/l8-$ty.gguf
    $D/rocmforge_synth --shape llama3-8b --type $ty --vocab $V --out $m --threads "$(nproc)" \
        --distinct-rows 256 >/dev/null
    echo "synth $ty at ${SECONDS}s"
    if [ -x $L/llama-batched-bench ]; then
        LD_PRELOAD=$LIBCUDA $L/llama-batched-bench -m $m -ngl 99 -c 16384 -npp 128 -ntg 64 -npl "$npl" \
            --output-format jsonl 2>>$OUT/llama-batched.err | grep '^{' | tee $OUT/batched.llama_cpp.$ty.jsonl
    fi
    for k in tree staged tree; do
        e=()
        [ $k = staged ] && e=(ROCMFORGE_MATMUL_Q_TREE_MAX_TOKENS=0)
        env "${e[@]}" timeout 120 $D/rocmforge_bench batched -m $m --gpu -npp 128 -ntg 64 -npl "$npl" \
            --jsonl | tee -a $OUT/batched.rocmforge.$ty.$k.jsonl
        python3 scripts/batched-ratios.py $OUT/batched.rocmforge.$ty.$k.jsonl \
            $OUT/batched.llama_cpp.$ty.jsonl "$ty $k: " 2>&1 | tail -8
        echo "$k done at ${SECONDS}s"
    done
done
echo "done at ${SECONDS}s"
