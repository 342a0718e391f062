#!/usr/bin/env bash
# Checks the K-quant decode path on the GPU machine in one call of about 400 s: GPU-vs-CPU
# parity on 8B-shaped files cut to 2 layers (every K-quant type and the Q4_K_M mix, Llama-3-8B
# and Qwen2.5-7B shapes: their ffn_down rows of 56 and 74 super-blocks take the split mat-vec,
# attention writes the output projection's Q8_K input), one model per process; the
# long-context test past one attention chunk; then tg128 / pp512 of the whole files next to
# llama-bench on the same card.
# Expects dist/gpu.tar.xz (scripts/gpu/build-dist.sh, then `tar -C dist -cJf dist/gpu.tar.xz
# gpu`) and dist/llbin/llama-bin.tar.xz (scripts/gpu/build-llama-cuda.sh); writes under $OUT.
# Usage (on the GPU machine): scripts/gpu/verify-kquant-decode.sh
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/verify-kquant}
. scripts/gpu/unpack-carried.sh
for ty in q4_k_m q6_k q4_k q5_k q3_k q2_k iq4_xs; do
  $D/rocmforge_synth --shape llama3-8b --type $ty --layers 2 --vocab $V --out /tmp/p-$ty.gguf --threads 16 --distinct-rows 256 > /dev/null
done
$D/rocmforge_synth --shape qwen2.5-7b --type q4_k_m --layers 2 --vocab $Q --out /tmp/p-qwen.gguf --threads 16 --distinct-rows 256 > /dev/null
echo synth done $SECONDS
for ty in q4_k_m q6_k q4_k q5_k q3_k q2_k iq4_xs qwen; do
  ROCMFORGE_GPU_MODELS=/tmp/p-$ty.gguf ROCMFORGE_GPU_REPORT=$OUT/parity8b.jsonl timeout 60 \
    $D/gpu_parity --exact gpu_matches_cpu_on_listed_models --nocapture > $OUT/parity-$ty.log 2>&1
  echo parity $ty rc $? $SECONDS
done
ROCMFORGE_GPU_MODELS=/tmp/p-q4_k_m.gguf timeout 40 $D/gpu_parity --exact long_context_decode_attention_matches_cpu --nocapture > $OUT/parity-long.log 2>&1
echo long rc $? $SECONDS
bench() {  # model
  echo "ours $(basename $1) $(ROCMFORGE_BENCH_MODEL=$1 timeout 50 $D/gpu_bench --ignored --nocapture --test-threads=1 --exact gpu_pp512_tg128 2>&1 | grep '^{' | cut -c1-420)" | tee -a $OUT/ab.txt
}
llama() {  # model (libcuda preloaded: the carried build links the driver library as needed)
  LD_PRELOAD=libcuda.so.1 LD_LIBRARY_PATH=/tmp/llama-build/bin:$LD_LIBRARY_PATH timeout 60 /tmp/llama-build/bin/llama-bench -m $1 -ngl 99 -p 512 -n 128 -r 3 -o jsonl 2>>$OUT/llama-bench.err | tee -a $OUT/llama-bench.jsonl | python3 -c "
import sys,json
for l in sys.stdin:
  j=json.loads(l); print('llama', j['model_filename'].split('/')[-1], j['n_prompt'], j['n_gen'], round(j['avg_ts'],1))"
}
for sh in llama3-8b:q4_k_m qwen2.5-7b:q4_k_m llama3-8b:q6_k llama3-8b:q4_0; do
  s=${sh%%:*}; ty=${sh##*:}; voc=$V; [ $s = qwen2.5-7b ] && voc=$Q
  m=/tmp/$s-$ty.gguf
  $D/rocmforge_synth --shape $s --type $ty --vocab $voc --out $m --threads 16 --distinct-rows 256 > /dev/null
  bench $m
  llama $m
  bench $m
  echo $SECONDS
done
grep -h 'test result\|panicked' $OUT/parity-*.log
cut -c1-160 $OUT/parity8b.jsonl
