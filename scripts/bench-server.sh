#!/usr/bin/env bash
# Load benchmark of rocmforge-server and llama.cpp's llama-server (the reference build,
# tools/reference/build-llama-cpp.sh) with the same model, both on loopback, in the same run:
# tools/bench/serve_load.py at 1, 8 and 32 concurrent streaming clients (total tok/s, time to
# first token and inter-token latency p50/p99) and the ~500-token shared-prefix check.
# Both servers: 32768 cells, 32 parallel sequences (1024 cells each), THREADS threads.
# Usage: [THREADS=2] [MODEL=...] [RPC=2] scripts/bench-server.sh
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
model=${MODEL:-$(scripts/fetch-models.sh | awk '/SmolLM2-135M-Instruct.Q4_1/ { m = $0 } END { print m }')}
ref=$(tools/reference/build-llama-cpp.sh)
cargo build --release --quiet -p rocmforge-server --bin rocmforge-server
grep -m1 'model name' /proc/cpuinfo
uptime
target/release/rocmforge-server -m "$model" --port 18080 -c 32768 -p 32 -b 256 -t "$threads" \
    >/tmp/rocmforge-server.log 2>&1 &
ours=$!
"$ref/bin/llama-server" -m "$model" --port 18081 -c 32768 -np 32 -t "$threads" \
    >/tmp/llama-server.log 2>&1 &
theirs=$!
trap 'kill $ours $theirs 2>/dev/null || true' EXIT
for port in 18080 18081; do
    for _ in $(seq 60); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 1
    done
done
python3 tools/bench/serve_load.py rocmforge=http://127.0.0.1:18080 \
    llama-server=http://127.0.0.1:18081 --conc 1,8,32 --requests-per-client "${RPC:-2}"
