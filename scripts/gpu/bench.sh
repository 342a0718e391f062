#!/usr/bin/env bash
# Decode / prefill speed on the GPU machine, ours next to llama.cpp's in the same run.
# Expects $DIST (default dist/gpu): gpu_bench (`cargo test --features cuda --test gpu_bench
# --no-run`), rocmforge_synth, vocab-smollm2.gguf; and llama.cpp: dist/llbin/llama-bin.tar.xz
# (scripts/gpu/build-llama-cuda.sh), else $LLAMA (default dist/llamacpp): the llama.cpp source
# vendored by the llama-cpp-python 0.3.36 sdist, without models/ and docs/, built there.
# Writes $OUT_DIR/bench.jsonl (ours) and $OUT_DIR/llama-bench.jsonl.
# Then many sequences: `rocmforge_bench batched --gpu` ($DIST/rocmforge_bench, built by
# build-dist.sh) next to llama.cpp's llama-batched-bench, same shape (B prompts of NPP tokens
# submitted together, then NTG steps of one token per sequence; each sequence its own cache
# region on our side, llama.cpp's default per-sequence streams on its side), into
# $OUT_DIR/batched.rocmforge.jsonl and batched.llama_cpp.jsonl, with ratios per B.
# Env: NPL (default 1,8,32,64), NPP (128), NTG (64), SKIP_BATCHED=1 to leave it out;
# SHAPE (default llama3-8b; e.g. qwen2.5-7b, a qwen2 file with Q/K/V biases) and VOCAB (default
# $DIST/vocab-smollm2.gguf; for qwen2 shapes a Qwen2 vocabulary such as
# .cache/models/ggml-vocab-qwen2.gguf) of the synthetic model.
# Usage: [SKIP_LLAMA=1] scripts/gpu/bench.sh [type or mix ...]   (default: q4_0 q8_0; q4_k_m is
# llama.cpp's Q4_K_M mix)
set -uo pipefail
DIST=${DIST:-dist/gpu}
LLAMA=${LLAMA:-dist/llamacpp}
OUT_DIR=${OUT_DIR:-${OUT:-/tmp}}
BUILD=/tmp/llama-build
SHAPE=${SHAPE:-llama3-8b}
VOCAB=${VOCAB:-$DIST/vocab-smollm2.gguf}
types=("$@")
[ ${#types[@]} -eq 0 ] && types=(q4_0 q8_0)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH

# llama.cpp with CUDA for Hopper, only the llama-bench and llama-batched-bench targets: built
# here by scripts/gpu/build-llama-cuda.sh and carried (dist/llbin), else built on the machine
# (in the background while the synthetic models are written; about 6 minutes).
if [ -z "${SKIP_LLAMA:-}" ] && [ ! -x "$BUILD/bin/llama-bench" ] && [ -f dist/llbin/llama-bin.tar.xz ]; then
    mkdir -p "$BUILD" && tar -C "$BUILD" -xJf dist/llbin/llama-bin.tar.xz
    export LD_LIBRARY_PATH=$BUILD/bin:$LD_LIBRARY_PATH
    # Binaries that do not load here (another CUDA, a missing library) are built instead.
    "$BUILD/bin/llama-bench" --help >/dev/null 2>&1 || {
        echo "the carried llama-bench does not run here: building llama.cpp" >&2
        rm -rf "$BUILD"
    }
fi
if [ -z "${SKIP_LLAMA:-}" ] && [ ! -x "$BUILD/bin/llama-bench" ]; then
    (cmake -S "$LLAMA" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_NUMBER=11312 \
        -DLLAMA_BUILD_COMMIT=0c1e570 -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        && cmake --build "$BUILD" --target llama-bench llama-batched-bench -j"$(nproc)") \
        > "$OUT_DIR/llama-build.log" 2>&1 &
    build_pid=$!
fi
for ty in "${types[@]}"; do
    # Rows repeat every 256 (speed does not depend on the values): an 8B K-quant mix would
    # take minutes of the machine's cores to quantize whole.
    [ -f "/tmp/$SHAPE-$ty.gguf" ] || "$DIST/rocmforge_synth" --shape "$SHAPE" --type "$ty" \
        --vocab "$VOCAB" --out "/tmp/$SHAPE-$ty.gguf" --threads "$(nproc)" --distinct-rows 256
done
[ -n "${build_pid:-}" ] && { wait "$build_pid" || echo "llama.cpp build failed (see llama-build.log)"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for ty in "${types[@]}"; do
    ROCMFORGE_BENCH_MODEL="/tmp/$SHAPE-$ty.gguf" "$DIST/gpu_bench" --ignored --nocapture --test-threads=1 --exact gpu_pp512_tg128 2>&1 \
        | grep '^{' | tee -a "$OUT_DIR/bench.jsonl"
    if [ -x "$BUILD/bin/llama-bench" ]; then
        "$BUILD/bin/llama-bench" -m "/tmp/$SHAPE-$ty.gguf" -ngl 99 -p 512 -n 128 -r 3 -o jsonl \
            2>>"$OUT_DIR/llama-bench.err" | tee -a "$OUT_DIR/llama-bench.jsonl"
    fi
done
python3 "$(dirname "$0")/ratios.py" "$OUT_DIR/bench.jsonl" "$OUT_DIR/llama-bench.jsonl"

[ -n "${SKIP_BATCHED:-}" ] && exit 0
npl=${NPL:-1,8,32,64} npp=${NPP:-128} ntg=${NTG:-64}
max_pl=$(tr , '\n' <<<"$npl" | sort -n | tail -1)
n_ctx=$(( max_pl * ((npp + ntg + 255) / 256 * 256) ))
for ty in "${types[@]}"; do
    m=/tmp/$SHAPE-$ty.gguf
    # llama.cpp first, then ours (the GPU's clocks settle during the first).
    if [ -x "$BUILD/bin/llama-batched-bench" ]; then
        "$BUILD/bin/llama-batched-bench" -m "$m" -ngl 99 -c "$n_ctx" -npp "$npp" -ntg "$ntg" \
            -npl "$npl" --output-format jsonl 2>>"$OUT_DIR/llama-batched-bench.err" | grep '^{' \
            | tee "$OUT_DIR/batched.llama_cpp.$ty.jsonl"
    fi
    "$DIST/rocmforge_bench" batched -m "$m" --gpu -npp "$npp" -ntg "$ntg" -npl "$npl" --jsonl \
        | tee "$OUT_DIR/batched.rocmforge.$ty.jsonl"
    python3 "$(dirname "$0")/../batched-ratios.py" "$OUT_DIR/batched.rocmforge.$ty.jsonl" \
        "$OUT_DIR/batched.llama_cpp.$ty.jsonl" "$ty: "
done
