#!/usr/bin/env bash
# Regenerates every llama.cpp reference fixture under tests/fixtures/ (see its README.md):
#   1. builds llama.cpp b11312 (tools/reference/build-llama-cpp.sh) and our dump_logits.c,
#   2. tokenizer fixtures for SmolLM2 (BPE) and the Llama SentencePiece vocab,
#   3. teacher-forcing logits for each prompt in tests/fixtures/prompts/,
#   4. llama.cpp's own logit variation across its settings -> llama_cpp_self_variation.json.
# Usage: tools/reference/make-fixtures.sh [--no-vary]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
ref=${ROCMFORGE_REF_DIR:-$here/.cache/ref}
fx=tests/fixtures
threads=${THREADS:-2}

build=$(tools/reference/build-llama-cpp.sh)
src=$ref/llama-cpp-python-0.3.36/vendor/llama.cpp
models=$(scripts/fetch-models.sh)
smol=$(echo "$models" | grep 'SmolLM2-135M-Instruct.Q4_1.gguf$')
spm=$(echo "$models" | grep 'ggml-vocab-llama-spm.gguf$')

mkdir -p "$ref/tools"
dump=$ref/tools/dump_logits
gcc -O2 -std=c11 -Wall -Wextra -DREF_BUILD='"b11312 (0c1e570)"' \
  -I"$src/include" -I"$src/ggml/include" tools/reference/dump_logits.c -o "$dump" \
  -L"$build/bin" -lllama -lggml -lggml-base -lm -Wl,-rpath,"$build/bin"

"$dump" tokenize "$smol" $fx/tokenizer_corpus.json $fx/tokenizer_smollm2.json
"$dump" tokenize "$spm" $fx/tokenizer_corpus.json $fx/tokenizer_llama_spm.json

mkdir -p $fx/smollm2
for p in $fx/prompts/*.txt; do
  name=$(basename "$p" .txt)
  "$dump" logits "$smol" "$p" $fx/smollm2/"$name".json --n-gen 64 --threads "$threads" --fa off --kv f32
done

[ "${1:-}" = "--no-vary" ] && exit 0
mkdir -p "$ref/vary"
for p in $fx/prompts/*.txt; do
  name=$(basename "$p" .txt)
  "$dump" vary "$smol" "$p" "$ref/vary/$name.json" --n-gen 64 --threads "$threads" --fa off --kv f32
done
python3 tools/reference/summarize_variation.py "$ref"/vary/*.json > $fx/llama_cpp_self_variation.json
echo "wrote $fx/llama_cpp_self_variation.json" >&2
