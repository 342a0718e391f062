#!/usr/bin/env bash
# CPU benchmark, ROCmForge next to llama.cpp on the same machine in the same run:
# prompt processing (pp) and generation (tg) tokens/s for SmolLM2-135M-Instruct Q4_1 at 1 and
# 2 threads, with the ratio ROCmForge / llama.cpp. Builds llama.cpp from the llama-cpp-python
# sdist on first use (about 6 minutes on 2 cores).
# Env: PP (default 128), TG (default 64), REPS (default 3), THREADS (default 1,2)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${MODEL:-$(scripts/fetch-models.sh | grep SmolLM2)}
out=${OUT_DIR:-target/bench}
mkdir -p "$out"
cargo build --release --quiet --bin rocmforge_bench
export PP=${PP:-128} TG=${TG:-64} REPS=${REPS:-3} THREADS=${THREADS:-1,2}
# Alternate the engines so that neither always runs on a warmer machine.
tools/reference/bench-llama-cpp.sh "$model" "$out/llama_cpp.json" 2>/dev/null
target/release/rocmforge_bench -m "$model" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" \
  > "$out/rocmforge.jsonl"
python3 - "$out/llama_cpp.json" "$out/rocmforge.jsonl" "$model" <<'PY'
import json, sys
peer = {}
for r in json.load(open(sys.argv[1])):
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    peer[(r["n_threads"], test)] = (r["avg_ts"], r["stddev_ts"])
print(f"model: {sys.argv[3].rsplit('/', 1)[-1]}   cpu: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
print(f"{'test':<7}{'threads':>8}{'rocmforge tok/s':>18}{'llama.cpp tok/s':>18}{'ratio':>8}")
for line in open(sys.argv[2]):
    r = json.loads(line)
    if "threads" not in r:
        print(f"(tokenizer: {r['test']}: {r['tokens_per_second']:.0f} tokens/s)")
        continue
    p = peer.get((r["threads"], r["test"]))
    ours = f"{r['tokens_per_second']:.1f} ± {r['stddev']:.1f}"
    theirs = f"{p[0]:.1f} ± {p[1]:.1f}" if p else "-"
    ratio = f"{r['tokens_per_second'] / p[0]:.2f}x" if p else "-"
    print(f"{r['test']:<7}{r['threads']:>8}{ours:>18}{theirs:>18}{ratio:>8}")
PY
