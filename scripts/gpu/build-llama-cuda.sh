#!/usr/bin/env bash
# Builds the peer for GPU benchmarks here, without a GPU: llama.cpp b11312 (the tree vendored by
# the llama-cpp-python 0.3.36 sdist, as tools/reference/build-llama-cpp.sh fetches it) with CUDA
# for sm_90, by the pip CUDA toolchain of .cuda/ (nvcc 13.0.88, the GPU machine's version),
# into dist/llbin/llama-bin.tar.xz: llama-bench, llama-batched-bench and their shared
# libraries (about 42 MB, so it travels to the GPU machine in one call, where building it took
# about 6 of the session's 30 device minutes). cuBLAS and the CUDA runtime are the machine's
# (/usr/local/cuda/lib64), libcuda its driver's: a stub stands in for it at link time.
# 2 cores: about 25 minutes. scripts/gpu/bench.sh unpacks it when it is there.
# Usage: scripts/gpu/build-llama-cuda.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
src=.cache/ref/llama-cpp-python-0.3.36/vendor/llama.cpp
[ -d "$src" ] || tools/reference/build-llama-cpp.sh >/dev/null
cu=$(dirname "$(dirname "$(find "$root/.cuda" -path '*/cu13/bin/nvcc' | head -1)")")
[ -x "$cu/bin/nvcc" ] || { echo "no pip CUDA toolchain in .cuda (scripts/gpu/install-toolchains.sh)" >&2; exit 1; }
work=$root/target/llama-cuda
# A toolkit root in the layout CMake's FindCUDAToolkit expects (bin, include, lib64, stubs).
tk=$work/toolkit
rm -rf "$tk" && mkdir -p "$tk/bin" "$tk/nvvm" "$tk/lib64/stubs"
ln -s "$cu/include" "$tk/include"
for f in "$cu"/bin/*; do ln -s "$f" "$tk/bin/"; done
for f in "$cu"/nvvm/*; do ln -s "$f" "$tk/nvvm/"; done
for f in "$cu"/lib/*; do ln -s "$f" "$tk/lib64/"; done
for l in cudart cublas cublasLt; do ln -sf "$cu/lib/lib$l.so.13" "$tk/lib64/lib$l.so"; done
echo 'void rf_libcuda_stub(void) {}' > "$work/stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$tk/lib64/stubs/libcuda.so" "$work/stub.c"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_NUMBER=11312 \
    -DLLAMA_BUILD_COMMIT=0c1e570 -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_CUDA_COMPILER="$tk/bin/nvcc" -DCUDAToolkit_ROOT="$tk" \
    -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined >/dev/null
cmake --build "$work/build" --target llama-bench llama-batched-bench -j"$(nproc)"
mkdir -p dist/llbin
tar -C "$work/build" -cf - bin | xz -T0 -6 > dist/llbin/llama-bin.tar.xz
du -h dist/llbin/llama-bin.tar.xz
