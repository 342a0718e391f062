#!/usr/bin/env bash
# Regenerates every llama.cpp reference fixture under tests/fixtures/ (see its README.md):
#   1. builds llama.cpp b11312 (tools/reference/build-llama-cpp.sh) and our dump_logits.c,
#   2. tokenizer fixtures for SmolLM2 (BPE), the Llama SentencePiece vocab, the Qwen2 vocab
#      (under its own pre-tokenizer name and as "deepseek-r1-qwen": the same ids) and
#      DeepSeek-R1-Distill-Qwen-7B's vocab,
#   3. teacher-forcing logits for each prompt in tests/fixtures/prompts/,
#   4. teacher-forcing logits of the small synthetic qwen2/qwen3 models of
#      tests/families_llamacpp_parity.rs -> tests/fixtures/families/,
#   5. llama.cpp's own logit variation across its settings -> llama_cpp_self_variation.json,
#      and around its q8_0-cache settings -> llama_cpp_kv_q8_0_self_variation.json.
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
qwen2_vocab=$(echo "$models" | grep 'ggml-vocab-qwen2.gguf$')
deepseek_qwen=$(echo "$models" | grep 'DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.header.gguf$')

mkdir -p "$ref/tools"
dump=$ref/tools/dump_logits
gcc -O2 -std=c11 -Wall -Wextra -DREF_BUILD='"b11312 (0c1e570)"' \
  -I"$src/include" -I"$src/ggml/include" tools/reference/dump_logits.c -o "$dump" \
  -L"$build/bin" -lllama -lggml -lggml-base -lm -Wl,-rpath,"$build/bin"

"$dump" tokenize "$smol" $fx/tokenizer_corpus.json $fx/tokenizer_smollm2.json
"$dump" tokenize "$spm" $fx/tokenizer_corpus.json $fx/tokenizer_llama_spm.json
"$dump" tokenize "$qwen2_vocab" $fx/tokenizer_corpus.json $fx/tokenizer_qwen2.json
# The same vocabulary renamed "deepseek-r1-qwen" (DeepSeek-R1-Distill-Qwen's pre-tokenizer):
# llama.cpp must give the very same ids, which tests/tokenizer_llamacpp.rs checks ours against.
cargo build --quiet --bin rocmforge_synth
mkdir -p "$ref/qwen"
target/debug/rocmforge_synth --extract-vocab "$qwen2_vocab" --pre deepseek-r1-qwen \
  --out "$ref/qwen/ggml-vocab-deepseek-r1-qwen.gguf"
"$dump" tokenize "$ref/qwen/ggml-vocab-deepseek-r1-qwen.gguf" $fx/tokenizer_corpus.json \
  "$ref/qwen/tokenizer_deepseek_r1_qwen.json"
cmp $fx/tokenizer_qwen2.json "$ref/qwen/tokenizer_deepseek_r1_qwen.json"
# DeepSeek-R1-Distill-Qwen-7B's own vocabulary (its header; llama.cpp loads the vocabulary only).
"$dump" tokenize "$deepseek_qwen" $fx/tokenizer_corpus.json $fx/tokenizer_deepseek_r1_qwen.json

mkdir -p $fx/smollm2
for p in $fx/prompts/*.txt; do
  name=$(basename "$p" .txt)
  "$dump" logits "$smol" "$p" $fx/smollm2/"$name".json --n-gen 64 --threads "$threads" --fa off --kv f32
done
# The 8-bit KV cache (llama.cpp's -ctk q8_0 -ctv q8_0; a quantized V cache needs flash attention).
mkdir -p $fx/smollm2_kv_q8_0
for name in prose code_python chat; do
  "$dump" logits "$smol" $fx/prompts/$name.txt $fx/smollm2_kv_q8_0/$name.json --n-gen 64 \
    --threads "$threads" --fa on --kv q8_0
done

# Small synthetic qwen2/qwen3/phi3 models and a windowed Mistral one (random weights, biases,
# QK-norm weights, fused tensors, RoPE factors, a declared window; F32, Q8_0, Q4_0), written by the test that rebuilds them in memory to compare.
ROCMFORGE_TINY_OUT="$ref/qwen" cargo test --quiet --test families_llamacpp_parity -- \
  --ignored write_reference_models
mkdir -p $fx/families
for m in qwen2_f32 qwen2_q8_0_tied qwen3_f32 qwen3_q4_0 phi3_f32_long phi3_f32_short phi3_q8_0_long \
    mistral_f32_windowed gpu_llama_biases_q8_0 gpu_qwen2_q8_0 gpu_qwen2_q4_0_tied gpu_qwen3_q4_0 \
    gpu_phi3_long_q8_0 gpu_phi3_short_q8_0 gpu_gemma3_q8_0; do
  # phi3: a context longer than the file's original 256 (the long RoPE factors), and one as
  # long ("_short": the short factors).
  n_ctx=256; case $m in phi3*_long) n_ctx=512 ;; esac
  "$dump" logits "$ref/qwen/$m.gguf" $fx/families/prompt.txt $fx/families/"$m".json \
    --n-gen 24 --threads "$threads" --fa off --kv f32 --n-ctx $n_ctx
done

[ "${1:-}" = "--no-vary" ] && exit 0
mkdir -p "$ref/vary"
for p in $fx/prompts/*.txt; do
  name=$(basename "$p" .txt)
  "$dump" vary "$smol" "$p" "$ref/vary/$name.json" --n-gen 64 --threads "$threads" --fa off --kv f32
done
python3 tools/reference/summarize_variation.py "$ref"/vary/*.json > $fx/llama_cpp_self_variation.json
echo "wrote $fx/llama_cpp_self_variation.json" >&2
# The same variations around the q8_0 cache (base: flash attention on, q8_0 keys and values).
mkdir -p "$ref/vary_kv_q8_0"
for name in prose code_python chat; do
  "$dump" vary "$smol" $fx/prompts/$name.txt "$ref/vary_kv_q8_0/$name.json" --n-gen 64 \
    --threads "$threads" --fa on --kv q8_0
done
python3 tools/reference/summarize_variation.py "$ref"/vary_kv_q8_0/*.json \
  > $fx/llama_cpp_kv_q8_0_self_variation.json
echo "wrote $fx/llama_cpp_kv_q8_0_self_variation.json" >&2
