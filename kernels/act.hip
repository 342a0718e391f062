// Activation transforms that feed a matrix product: RMSNorm, plain copy or SwiGLU, fused with
// the conversions the next product needs (f32, f16 for BLAS, int8 groups of 32 for the
// quantized mat-vec). One block per row.
#include "rf_kernels.h"
#include "arch.h"

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

__global__ void act_kernel(int mode, const float* in, const float* w, float eps, int d,
                           const int32_t* row_map, float* out_f32, __half* out_f16,
                           int f16_from_q8, int8_t* q8, float4* q8_scales) {
    __shared__ float scratch[1024 / RF_WAVE];
    const int r = blockIdx.x;
    const int src_row = row_map ? row_map[r] : r;
    const float* x = in + (size_t)src_row * (mode == RF_ACT_SWIGLU ? 2 * d : d);
    float scale = 1.0f;
    if (mode == RF_ACT_RMSNORM) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < d; i += blockDim.x) ss += x[i] * x[i];
        ss = rf_block_sum(ss, scratch);
        scale = 1.0f / sqrtf(ss / d + eps);
    }
    // d is a multiple of 32 and blockDim a multiple of 32: each aligned group of 32 lanes
    // handles one group of 32 consecutive elements.
    const int d_round = (d + blockDim.x - 1) / blockDim.x * blockDim.x;
    for (int i = threadIdx.x; i < d_round; i += blockDim.x) {
        const bool live = i < d;
        float v = 0.0f;
        if (live) {
            if (mode == RF_ACT_RMSNORM) v = x[i] * scale * w[i];
            else if (mode == RF_ACT_COPY) v = x[i];
            else v = silu(x[i]) * x[d + i];
        }
        if (live && out_f32) out_f32[(size_t)r * d + i] = v;
        if (out_f16 && !f16_from_q8 && live) out_f16[(size_t)r * d + i] = __float2half(v);
        if (q8 || f16_from_q8) {
            // Same numerics as the CPU quantizer: q = round-half-even(v * 127 / amax), the scale
            // kept as f16; the group sum feeds Q4_0's offset and (as f16(d * sum)) Q4_1's.
            // The group is whole or wholly past the end (d is a multiple of 32), so every lane
            // of a live group takes part in the shuffles.
            const float amax = rf_group32_max(fabsf(v));
            const float qd = amax / 127.0f;
            const float qd16 = __half2float(__float2half(qd));
            const float qv = amax > 0.0f ? rintf(v * (127.0f / amax)) : 0.0f;
            const float qsum = rf_group32_sum(qv);
            if (live && q8) {
                q8[(size_t)r * d + i] = (int8_t)qv;
                if ((threadIdx.x & 31) == 0)
                    q8_scales[((size_t)r * d + i) / 32] =
                        make_float4(qd16, qsum, __half2float(__float2half(qd * qsum)), 0.0f);
            }
            // BLAS inputs for quantized weights: the int8 values the CPU would use, as f16.
            if (live && out_f16 && f16_from_q8) out_f16[(size_t)r * d + i] = __float2half(qv * qd16);
        }
    }
}

extern "C" int rf_act(int mode, const float* in, const float* w, float eps, int d, int n,
                      const int32_t* row_map, float* out_f32, void* out_f16, int f16_from_q8,
                      int8_t* q8, void* q8_scales, void* stream) {
    if (d % 32 != 0 || n <= 0 || mode < 0 || mode > 2) return RF_ERR_SHAPE;
    hipLaunchKernelGGL(act_kernel, dim3(n), dim3(RF_BLOCK), 0, (hipStream_t)stream, mode, in, w,
                       eps, d, row_map, out_f32, (__half*)out_f16, f16_from_q8, q8,
                       (float4*)q8_scales);
    return (int)hipGetLastError();
}
