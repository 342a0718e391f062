#!/usr/bin/env bash
# CPU benchmark on the GPU machine's host CPU (another processor to measure, see docs/BENCHMARKS.md):
# llama.cpp b11312 built there for the CPU (-march=native, and AVX2-only) next to rocmforge_bench
# (and rocmforge_bench_old, an earlier build to compare against) on SmolLM2-shaped synthetic models,
# both pinned to two cores. Carry dist/gpu (rocmforge_synth, vocab-smollm2.gguf), dist/llamacpp and
# dist/cpubench (rocmforge_bench, rocmforge_bench_old: release builds, stripped). Results: one
# $OUT/cpu-bench.tgz (a call returns only a few files).
set -u
D=dist/cpubench; O=/tmp/cpu-bench; mkdir -p $O
lscpu > $O/lscpu.txt
grep -o 'avx512[a-z_0-9]*\|avx_vnni\|amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ' > $O/flags.txt
B=/tmp/llama-cpu
( cmake -S dist/llamacpp -B $B -DCMAKE_BUILD_TYPE=Release -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_NUMBER=11312 \
  -DLLAMA_BUILD_COMMIT=0c1e570 -DBUILD_SHARED_LIBS=ON && cmake --build $B --target llama-bench -j16 ) > $O/llama-build.log 2>&1 &
bp=$!
B2=/tmp/llama-cpu-avx2
( cmake -S dist/llamacpp -B $B2 -DCMAKE_BUILD_TYPE=Release -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_NUMBER=11312 \
  -DLLAMA_BUILD_COMMIT=0c1e570 -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
  -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF \
  && cmake --build $B2 --target llama-bench -j8 ) > $O/llama-build-avx2.log 2>&1 &
bp2=$!
for t in q4_1 q8_0 q4_0; do
  dist/gpu/rocmforge_synth --shape smollm2-135m --type $t --vocab dist/gpu/vocab-smollm2.gguf --out /tmp/smol-$t.gguf
done
wait $bp || { echo "llama build failed"; tail -20 $O/llama-build.log; }
wait $bp2 || { echo "llama avx2 build failed"; tail -20 $O/llama-build-avx2.log; }
for t in q4_1 q8_0 q4_0; do
  m=/tmp/smol-$t.gguf
  # pinned to two cores of one socket, like the 2-core VM
  taskset -c 2,3 $B/bin/llama-bench -m $m -t 1,2 -p 128,512 -n 64,128 -r 3 --repack 0 -o json > $O/llama.$t.json 2>/dev/null
  taskset -c 2,3 $D/rocmforge_bench -m $m -p 128,512 -n 64,128 -t 1,2 -r 3 > $O/new.$t.jsonl
  taskset -c 2,3 $D/rocmforge_bench_old -m $m -p 128 -n 64 -t 1,2 -r 3 > $O/old.$t.jsonl 2>&1
  taskset -c 2,3 $B2/bin/llama-bench -m $m -t 1,2 -p 128 -n 64 -r 3 --repack 0 -o json > $O/llama-avx2.$t.json 2>/dev/null
  ROCMFORGE_CPU_ISA=avx2 taskset -c 2,3 $D/rocmforge_bench -m $m -p 128 -n 64 -t 1,2 -r 3 > $O/new-avx2.$t.jsonl
done
echo done
tar -C $O -czf ${OUT:-/tmp}/cpu-bench.tgz .
