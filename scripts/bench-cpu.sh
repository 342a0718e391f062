#!/usr/bin/env bash
# CPU benchmark, ROCmForge next to llama.cpp on the same machine in the same run: prompt
# processing (pp) and generation (tg) tokens/s at 1 and 2 threads, with the ratio
# ROCmForge / llama.cpp and the CPU (model, family/model numbers, SIMD flags, our kernels).
# Builds llama.cpp from the llama-cpp-python sdist on first use (about 6 minutes on 2 cores).
# Models: SmolLM2-135M-Instruct Q4_1 (the real file), and with QUANTS=Q8_0,Q4_0 (default
# Q4_1,Q8_0,Q4_0,Q4_K_M,Q6_K) the same model requantized by llama.cpp's llama-quantize into
# target/bench/ (same source weights, so the rows differ only in the tensor types; in
# Q4_K_M and Q6_K the tensors whose 576-element rows are not whole 256-element super-blocks
# get llama.cpp's fallbacks, Q5_0 / Q8_0).
# Env: PP (default 128,512), TG (default 64,128), REPS (default 5), THREADS (default 1,2),
#      QUANTS (default Q4_1,Q8_0,Q4_0,Q4_K_M,Q6_K), ISA (ROCMFORGE_CPU_ISA for our side,
#      default auto),
#      VARIANT (llama.cpp build: native, or avx2 to pair with ISA=avx2 on an AVX-512 machine)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${MODEL:-$(scripts/fetch-models.sh | grep SmolLM2)}
out=${OUT_DIR:-target/bench}
mkdir -p "$out"
cargo build --release --quiet --bin rocmforge_bench
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
