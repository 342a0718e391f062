# Sourced by the verify-*.sh scripts on the GPU machine, from the repository root: unpacks the
# carried builds (dist/gpu.tar.xz into dist/gpu, dist/llbin/llama-bin.tar.xz into
# /tmp/llama-build), names the card, and sets D (the build), V and Q (the SmolLM2 and Qwen2
# vocabularies for rocmforge_synth), and LIBCUDA: the driver's libcuda.so.1, to preload for the
# carried llama.cpp (build-llama-cuda.sh links it against a stub the linker may leave out of
# its libraries' needs: "undefined symbol: cuDeviceGet" without it). Expects OUT to be set.
mkdir -p "$OUT"
tar -C dist -xJf dist/gpu.tar.xz
mkdir -p /tmp/llama-build && tar -C /tmp/llama-build -xJf dist/llbin/llama-bin.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader
export LD_LIBRARY_PATH=/usr/local/cuda/lib64
D=dist/gpu; V=$D/vocab-smollm2.gguf; Q=$D/ggml-vocab-qwen2.gguf
LIBCUDA=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')
# The 18 blocks-of-32 parity models (the llama3-mini, tiny and SmolLM2 shapes in Q4_0, Q8_0,
# Q4_1, Q5_0, Q5_1, IQ4_NL) written to /tmp; prints their paths, comma-separated, for
# ROCMFORGE_GPU_MODELS.
blocks32_parity_models() {
    local list=() shape ty f
    for shape in llama3-mini tiny smollm2-135m; do
        for ty in q4_0 q8_0 q4_1 q5_0 q5_1 iq4_nl; do
            f=/tmp/p-$shape-$ty.gguf
            $D/rocmforge_synth --shape $shape --type $ty --vocab $V --out $f >/dev/null
            list+=("$f")
        done
    done
    (IFS=,; echo "${list[*]}")
}
