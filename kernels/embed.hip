// Embedding gather: one block per token dequantizes that token's row of the table, times
// the model's embedding scale (exact when 1), as the CPU scales the dequantized row.
#include "rf_kernels.h"
#include "quant.h"

template <int T>
__global__ void embed_kernel(const uint8_t* table, size_t ng_total, int cols,
                             const int32_t* tokens, float scale, float* out) {
    const int t = blockIdx.x;
    const int n_groups = cols / 32;
    const size_t first = (size_t)tokens[t] * n_groups;
    float* dst = out + (size_t)t * cols;
    for (int g = threadIdx.x; g < n_groups; g += blockDim.x) {
        float v[32];
        Fmt<T>::load(table, ng_total, first + g, v);
#pragma unroll
        for (int i = 0; i < 32; i++) dst[g * 32 + i] = v[i] * scale;
    }
}

extern "C" int rf_embed(int ty, const void* table, int rows, int cols, const int32_t* tokens,
                        int n, float scale, float* out, void* stream) {
    if (cols % 32 != 0 || n <= 0) return RF_ERR_SHAPE;
    if (rf_block_elems(ty) > 32 && cols % rf_block_elems(ty) != 0) return RF_ERR_SHAPE;
    RF_DISPATCH_TYPE(ty, hipLaunchKernelGGL(embed_kernel<T>, dim3(n), dim3(128), 0,
                                            (hipStream_t)stream, (const uint8_t*)table,
                                            (size_t)rows * (cols / 32), cols,
                                            tokens, scale, out));
    return (int)hipGetLastError();
}
