#!/usr/bin/env bash
# Builds, here (no GPU needed), what the GPU machine runs, into $DIST: the GPU test binaries
# (tests/gpu_parity.rs, gpu_bench.rs, gpu_runtime.rs with the `cuda` feature), rocmforge_synth,
# rocmforge_bench with the `cuda` feature (its `batched --gpu` mode) and the SmolLM2 vocabulary (vocab-smollm2.gguf, 1.8 MB), stripped. Carry $DIST to the GPU
# machine and run scripts/gpu/parity.sh or bench.sh there.
# WAVE64=1 builds the wave-64 emulation instead (kernels/arch.h: the kernels see 64-lane waves
# as on AMD CDNA), in target/cuda-wave64 and dist/gpu-wave64; `WAVE64=1 scripts/gpu/parity.sh`
# runs it.
# Usage: [WAVE64=1] scripts/gpu/build-dist.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${WAVE64:-}" ]; then
    export ROCMFORGE_WAVE64_EMULATION=1 CARGO_TARGET_DIR=target/cuda-wave64
    DIST=${DIST:-dist/gpu-wave64}
else
    export CARGO_TARGET_DIR=target/cuda
    DIST=${DIST:-dist/gpu}
fi
tests=(gpu_parity gpu_bench gpu_runtime)
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
cargo test --release --features cuda "${args[@]}" --no-run
mkdir -p "$CARGO_TARGET_DIR"
# Built above: this run only lists the executables.
cargo test --release --features cuda "${args[@]}" --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' >"$CARGO_TARGET_DIR/gpu-tests.txt"
mkdir -p "$DIST"
while read -r name exe; do cp "$exe" "$DIST/$name"; done <"$CARGO_TARGET_DIR/gpu-tests.txt"
for t in "${tests[@]}"; do [ -x "$DIST/$t" ] || { echo "no $t test binary built" >&2; exit 1; }; done
env -u ROCMFORGE_WAVE64_EMULATION CARGO_TARGET_DIR=target cargo build --release --quiet --bin rocmforge_synth
cp target/release/rocmforge_synth "$DIST/"
cargo build --release --features cuda --quiet --bin rocmforge_bench
cp "$CARGO_TARGET_DIR/release/rocmforge_bench" "$DIST/"
strip "${tests[@]/#/$DIST/}" "$DIST/rocmforge_synth" "$DIST/rocmforge_bench"
model=$(scripts/fetch-models.sh | awk '/SmolLM2-135M-Instruct.Q4_1/ { m = $0 } END { print m }')
[ -f "$DIST/vocab-smollm2.gguf" ] ||
    "$DIST/rocmforge_synth" --extract-vocab "$model" --out "$DIST/vocab-smollm2.gguf"
# The Qwen2 vocabulary (5.9 MB) for the qwen2.5-7b benchmark shape, when fetched.
[ -f .cache/models/ggml-vocab-qwen2.gguf ] && cp .cache/models/ggml-vocab-qwen2.gguf "$DIST/"
du -sh "$DIST"
