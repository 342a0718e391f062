#!/usr/bin/env bash
# CPU benchmark, ROCmForge next to llama.cpp on the same machine in the same run: prompt
# processing (pp) and generation (tg) tokens/s at 1 and 2 threads, with the ratio
# ROCmForge / llama.cpp and the CPU (model, family/model numbers, SIMD flags, our kernels).
# Builds llama.cpp from the llama-cpp-python sdist on first use (about 6 minutes on 2 cores).
# Models: SmolLM2-135M-Instruct Q4_1 (the real file), and with QUANTS=Q8_0,Q4_0 (default
# Q4_1,Q8_0,Q4_0,Q4_K_M,Q6_K) the same model requantized by llama.cpp's llama-quantize into
# target/bench/ (same source weights, so the rows differ only in the tensor types; in
# Q4_K_M and Q6_K the tensors whose 576-element rows are not whole 256-element super-blocks
# get llama.cpp's fallbacks, Q5_0 / Q8_0; any llama-quantize type name works, e.g.
# QUANTS=IQ4_NL,IQ4_XS, where IQ4_XS falls back to IQ4_NL on those tensors).
# Env: PP (default 128,512), TG (default 64,128), REPS (default 5), THREADS (default 1,2),
#      QUANTS (default Q4_1,Q8_0,Q4_0,Q4_K_M,Q6_K), ISA (ROCMFORGE_CPU_ISA for our side,
#      default auto),
#      VARIANT (llama.cpp build: native, or avx2 to pair with ISA=avx2 on an AVX-512 machine)
#
# scripts/bench-cpu.sh batched: many sequences instead, `rocmforge_bench batched` next to
# llama.cpp's llama-batched-bench (same shape: B prompts of PP tokens submitted together, then
# TG steps each holding the next token of every sequence), on the real SmolLM2 (or MODEL),
# alternating the engines for ROUNDS rounds; prints prefill (S_PP), generation (S_TG) and total
# tokens/s per B with the ratios. Both caches one region (stream) per sequence: our
# set_seq_regions, llama.cpp's default non-unified cache with -c = B_max x (PP + TG) rounded
# up to 256. Env: NPL (default 1,4,8,16,32), NPP (128), NTG (64), THREADS (2), ROUNDS (2),
#      NBATCH (-b of both, default 2048; llama.cpp's -ub stays 512), REPACK (llama.cpp weight
#      repacking, default 0 as in bench-llama-cpp.sh), LAYOUT (ours: regions or pool)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${MODEL:-$(scripts/fetch-models.sh | grep SmolLM2)}
out=${OUT_DIR:-target/bench}
mkdir -p "$out"
cargo build --release --quiet --bin rocmforge_bench

if [ "${1:-}" = batched ]; then
  npl=${NPL:-1,4,8,16,32} npp=${NPP:-128} ntg=${NTG:-64} threads=${THREADS:-2}
  build=$(tools/reference/build-llama-cpp.sh)
  max_pl=$(tr , '\n' <<<"$npl" | sort -n | tail -1)
  max_len=$(( $(tr , '\n' <<<"$npp" | sort -n | tail -1) + $(tr , '\n' <<<"$ntg" | sort -n | tail -1) ))
  n_ctx=$(( max_pl * ((max_len + 255) / 256 * 256) ))
  repack=()
  [ "${REPACK:-0}" = 0 ] && repack=(--no-repack)
  rm -f "$out/batched.rocmforge.jsonl" "$out/batched.llama_cpp.jsonl"
  for round in $(seq "${ROUNDS:-2}"); do
    # Alternate which engine goes first, so neither always runs on a warmer machine.
    peer() {
      "$build"/bin/llama-batched-bench -m "$base" -c "$n_ctx" -b "${NBATCH:-2048}" -ub 512 \
        -npp "$npp" -ntg "$ntg" -npl "$npl" -t "$threads" "${repack[@]}" \
        --output-format jsonl 2>/dev/null | grep '^{' >>"$out/batched.llama_cpp.jsonl"
    }
    ours() {
      ROCMFORGE_CPU_ISA=${ISA:-auto} target/release/rocmforge_bench batched -m "$base" \
        -npp "$npp" -ntg "$ntg" -npl "$npl" -t "$threads" -b "${NBATCH:-2048}" \
        --layout "${LAYOUT:-regions}" --jsonl >>"$out/batched.rocmforge.jsonl"
    }
    if [ $((round % 2)) = 1 ]; then peer; ours; else ours; peer; fi
  done
  echo "model: $(basename "$base")   llama.cpp build: ${VARIANT:-native}"
  python3 scripts/batched-ratios.py "$out/batched.rocmforge.jsonl" "$out/batched.llama_cpp.jsonl"
  exit 0
fi
export PP=${PP:-128,512} TG=${TG:-64,128} REPS=${REPS:-5} THREADS=${THREADS:-1,2}
export VARIANT=${VARIANT:-native}
build=$(tools/reference/build-llama-cpp.sh)

IFS=, read -r -a quants <<<"${QUANTS:-Q4_1,Q8_0,Q4_0,Q4_K_M,Q6_K}"
for quant in "${quants[@]}"; do
  model=$base
  if [[ $base != *".$quant.gguf" ]]; then
    model=$out/$(basename "${base%.*.gguf}").$quant.gguf
    if [ ! -f "$model" ]; then
      "$build"/bin/llama-quantize --allow-requantize "$base" "$model.part" "$quant" >/dev/null 2>&1
      mv "$model.part" "$model"
    fi
  fi
  # Alternate the engines so that neither always runs on a warmer machine.
  tools/reference/bench-llama-cpp.sh "$model" "$out/llama_cpp.$quant.json" 2>/dev/null
  ROCMFORGE_CPU_ISA=${ISA:-auto} target/release/rocmforge_bench -m "$model" -p "$PP" -n "$TG" \
    -t "$THREADS" -r "$REPS" >"$out/rocmforge.$quant.jsonl"
  python3 - "$out/llama_cpp.$quant.json" "$out/rocmforge.$quant.jsonl" "$model" "$VARIANT" <<'PY'
import json, sys
peer = {}
for r in json.load(open(sys.argv[1])):
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    peer[(r["n_threads"], test)] = (r["avg_ts"], r["stddev_ts"])
print(f"\nmodel: {sys.argv[3].rsplit('/', 1)[-1]}   llama.cpp build: {sys.argv[4]}")
rows = [json.loads(line) for line in open(sys.argv[2])]
for r in rows:
    if "cpu" in r:
        print(f"cpu: {r['cpu']}   flags: {r['flags']}\n"
              f"rocmforge ISA: {r['isa']}   kernels: {', '.join(r['kernels'])}")
print(f"{'test':<7}{'threads':>8}{'rocmforge tok/s':>18}{'llama.cpp tok/s':>18}{'ratio':>8}")
for r in rows:
    if "threads" not in r:
        continue
    p = peer.get((r["threads"], r["test"]))
    ours = f"{r['tokens_per_second']:.1f} ± {r['stddev']:.1f}"
    theirs = f"{p[0]:.1f} ± {p[1]:.1f}" if p else "-"
    ratio = f"{r['tokens_per_second'] / p[0]:.2f}x" if p else "-"
    print(f"{r['test']:<7}{r['threads']:>8}{ours:>18}{theirs:>18}{ratio:>8}")
PY
done
