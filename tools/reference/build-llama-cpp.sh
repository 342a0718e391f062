#!/usr/bin/env bash
# Builds the llama.cpp reference (CPU) that our tests and benchmarks compare against.
# The source is the llama.cpp tree vendored by PyPI's llama-cpp-python==0.3.36 sdist
# (llama.cpp commit 0c1e570, build b11312); it stays under .cache/ref and is never committed.
# Usage: tools/reference/build-llama-cpp.sh   (idempotent; prints the build directory)
# Env:   ROCMFORGE_REF_DIR  (default .cache/ref), JOBS (default 2),
#        VARIANT (native: -march=native, the default; avx2: AVX2/FMA/F16C only, no AVX-512 or
#        AVX-VNNI, in build-avx2/, to compare against our forced AVX2 table)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
ref=${ROCMFORGE_REF_DIR:-$here/.cache/ref}
jobs=${JOBS:-2}
version=0.3.36
src=$ref/llama-cpp-python-$version/vendor/llama.cpp
variant=${VARIANT:-native}
case $variant in
  native) build=$ref/build isa_flags=()
    # With AMX in /proc/cpuinfo, -march=native compiles llama.cpp's AMX kernels, and on the
    # Sapphire Rapids VMs we are lent they die with SIGILL (tilezero in tinygemm_kernel_amx,
    # on the worker threads) even though the kernel grants AMX to the process. Our engine has no
    # AMX kernels either, so there the peer gets every other extension of the CPU, named.
    if grep -qw amx_tile /proc/cpuinfo; then
      isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
        -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON
        -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF
        -DGGML_AMX_BF16=OFF)
      amx_note=without-amx
    fi ;;
  avx2) build=$ref/build-avx2
    isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
      -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF) ;;
  *) echo "VARIANT must be native or avx2" >&2; exit 2 ;;
esac
mkdir -p "$ref"

targets=(llama llama-bench llama-batched-bench llama-tokenize llama-simple llama-completion llama-quantize
  llama-server)
built() {
  # A build configured before the AMX rule above (cache says GGML_NATIVE=ON) is redone.
  if [ "${amx_note:-}" = without-amx ] && grep -q '^GGML_NATIVE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
    return 1
  fi
  [ -x "$build/bin/llama-bench" ] && [ -x "$build/bin/llama-batched-bench" ] &&
    [ -x "$build/bin/llama-tokenize" ] &&
    [ -x "$build/bin/llama-simple" ] && [ -x "$build/bin/llama-completion" ] &&
    [ -x "$build/bin/llama-quantize" ] && [ -x "$build/bin/llama-server" ] &&
    ls "$build"/bin/libllama.so >/dev/null 2>&1
}
if built; then
  echo "$build"
  exit 0
fi

# 1. Source: the sdist, not a wheel (--no-binary for this package only; ':all:' would also
#    build cmake itself from source).
if [ ! -f "$src/include/llama.h" ]; then
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$ref" >&2
  tar -xzf "$ref/llama_cpp_python-$version.tar.gz" -C "$ref" 2>/dev/null ||
    tar -xzf "$ref"/llama*cpp*python-"$version".tar.gz -C "$ref"
  [ -d "$ref/llama_cpp_python-$version" ] && [ ! -d "$ref/llama-cpp-python-$version" ] &&
    mv "$ref/llama_cpp_python-$version" "$ref/llama-cpp-python-$version"
fi
[ -f "$src/include/llama.h" ] || { echo "no llama.cpp source at $src" >&2; exit 1; }

# 2. CMake: the system one if present, else PyPI's cmake package in a private venv.
cmake_bin=$(command -v cmake || true)
if [ -z "$cmake_bin" ]; then
  if [ ! -x "$ref/venv/bin/cmake" ]; then
    python3 -m venv "$ref/venv"
    "$ref/venv/bin/pip" install --quiet --disable-pip-version-check cmake >&2
  fi
  cmake_bin=$ref/venv/bin/cmake
fi

# 3. Configure and build for CPU. The tree has no git data, so build number and commit are
#    passed in; the web UI would be downloaded at build time unless turned off.
"$cmake_bin" -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_NUMBER=11312 -DLLAMA_BUILD_COMMIT=0c1e570 \
  -DBUILD_SHARED_LIBS=ON ${isa_flags[@]+"${isa_flags[@]}"} >&2
"$cmake_bin" --build "$build" --config Release -j"$jobs" --target "${targets[@]}" >&2
built || { echo "llama.cpp build incomplete in $build" >&2; exit 1; }
echo "$build"
