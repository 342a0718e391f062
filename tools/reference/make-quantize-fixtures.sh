#!/usr/bin/env bash
# Records llama-quantize's per-tensor type choices for every mix the quantizer writes, as the
# reference of tests/quantize.rs (see tests/fixtures/README.md):
#   tests/fixtures/quantize/smollm2_types.txt  SmolLM2-135M-Instruct Q4_1 (--allow-requantize):
#                                              rows of 576, the tied-embedding rules
#   tests/fixtures/quantize/tiny_types.txt     the 16-layer tiny model of tests/quantize.rs (F16,
#                                              rows of 256 and 512, 4 query heads per KV head)
#   tests/fixtures/quantize/{smollm2,tiny}_sha256.txt
#                                              the sha256 of each file llama-quantize wrote
#                                              (`MIX SHA256` lines): ours must be these bytes
# Each file: a header `tensor MIX...`, then per tensor (llama.cpp's file order) its type in
# each mix. Usage: tools/reference/make-quantize-fixtures.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
ref=${ROCMFORGE_REF_DIR:-$here/.cache/ref}
build=$(tools/reference/build-llama-cpp.sh)
models=$(scripts/fetch-models.sh)
smol=$(echo "$models" | grep 'SmolLM2-135M-Instruct.Q4_1.gguf$')
mixes=(Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 F16 BF16 F32
  IQ4_NL IQ4_XS)
work=$ref/quantize
mkdir -p "$work" tests/fixtures/quantize
ROCMFORGE_TINY_OUT="$work" cargo test --quiet --test quantize -- --ignored write_reference_model

# table NAME INPUT: runs llama-quantize for every mix and writes the table.
table() {
  local name=$1 input=$2 out=tests/fixtures/quantize/$1_types.txt
  rm -f "$work/$name-sha256.txt"
  for mix in "${mixes[@]}"; do
    "$build/bin/llama-quantize" --allow-requantize "$input" "$work/$name-$mix.gguf" "$mix" 2 \
      >"$work/$name-$mix.log" 2>&1
    python3 tools/reference/tensor_types.py "$work/$name-$mix.gguf" >"$work/$name-$mix.types"
    echo "$mix $(sha256sum <"$work/$name-$mix.gguf" | cut -d' ' -f1)" >>"$work/$name-sha256.txt"
    rm "$work/$name-$mix.gguf"
  done
  {
    echo "# llama-quantize b11312 per-tensor types of $(basename "$input")" \
      "(tools/reference/make-quantize-fixtures.sh)"
    echo "tensor ${mixes[*]}"
    # One row per tensor: the name, then its type in each mix (same order in every file).
    python3 - "$work" "$name" "${mixes[@]}" <<'PY'
import sys
work, name, mixes = sys.argv[1], sys.argv[2], sys.argv[3:]
cols = [[l.split() for l in open(f"{work}/{name}-{m}.types") if l.strip()] for m in mixes]
for i, (tensor, _) in enumerate(cols[0]):
    assert all(c[i][0] == tensor for c in cols), f"tensor order differs at {tensor}"
    print(tensor, *[c[i][1] for c in cols])
PY
  } >"$out"
  echo "$out"
}
table smollm2 "$smol"
table tiny "$work/quantize_tiny_f16.gguf"
for name in smollm2 tiny; do
  {
    echo "# sha256 of the files llama-quantize b11312 wrote from the $name model" \
      "(tools/reference/make-quantize-fixtures.sh)"
    cat "$work/$name-sha256.txt"
  } >tests/fixtures/quantize/${name}_sha256.txt
done
