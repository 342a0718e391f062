#!/usr/bin/env bash
# Benchmarks the llama.cpp reference (llama-bench, CPU) on a model, for threads 1 and 2, so our
# benchmark script can print ROCmForge/llama.cpp ratios.
# Usage: tools/reference/bench-llama-cpp.sh MODEL OUT.json [extra llama-bench args]
# Env:   PP (prompt tokens, default 128), TG (generated tokens, default 64), REPS (default 3),
#        THREADS (default 1,2), REPACK (0|1, default 0: see below)
# Output: llama-bench's JSON (-o json): a list with one object per (threads, test), holding
#         n_prompt/n_gen, n_threads, avg_ts/stddev_ts (tokens per second) and samples_ns.
# REPACK=0 turns off llama.cpp's extra weight buffers (repacking, AMX): on our AMX-capable
# development VM, ggml's AMX path crashes with a Q4_1 model; 0 also matches the reference
# logits, which are made with use_extra_bufts=false.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 MODEL OUT.json [llama-bench args]" >&2; exit 2; }
model=$1 out=$2
shift 2
build=$("$here"/tools/reference/build-llama-cpp.sh)
"$build"/bin/llama-bench -m "$model" -t "${THREADS:-1,2}" -p "${PP:-128}" -n "${TG:-64}" \
  -r "${REPS:-3}" --repack "${REPACK:-0}" -o json "$@" > "$out.part"
mv "$out.part" "$out"
# A short human-readable summary on stderr.
python3 - "$out" <<'PY' >&2
import json, sys
for r in json.load(open(sys.argv[1])):
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    print(f"{r['model_type']:<28} threads={r['n_threads']} fa={r.get('flash_attn')} {test:<6} "
          f"{r['avg_ts']:8.2f} ± {r['stddev_ts']:.2f} tok/s")
PY
