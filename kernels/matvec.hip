// Matrix-vector products for decode (a few tokens at once) and weight dequantization for the
// BLAS prefill path.
//
// Mat-vec: one wave per weight row; each lane takes every RF_WAVE-th group of 32 weights, so a
// wave reads a contiguous stretch of the row per step. Quantized weights are dotted with int8
// activations (groups of 32 with a float scale and the group's integer sum) through 4-way int8
// dot products; float weights with the f32 activations.
#include "rf_kernels.h"
#include "quant.h"

#define RF_MAX_MATVEC_TOKENS 8

// Bytes of a quantized group as 32-bit words (groups are only 2-byte aligned).
__device__ __forceinline__ int rf_word(const uint16_t* h, int i) {
    return (int)((uint32_t)h[2 * i] | ((uint32_t)h[2 * i + 1] << 16));
}

template <int T> struct QDot;

template <> struct QDot<RF_Q4_0> {
    __device__ static float dot(const uint8_t* b, const int* x, float2 xs) {
        const uint16_t* h = (const uint16_t*)b;
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int q = rf_word(h + 1, i);
            s = rf_dp4a(q & 0x0F0F0F0F, x[i], s);
            s = rf_dp4a((q >> 4) & 0x0F0F0F0F, x[4 + i], s);
        }
        return rf_half_to_float(h[0]) * xs.x * ((float)s - 8.0f * xs.y);
    }
};
template <> struct QDot<RF_Q4_1> {
    __device__ static float dot(const uint8_t* b, const int* x, float2 xs) {
        const uint16_t* h = (const uint16_t*)b;
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int q = rf_word(h + 2, i);
            s = rf_dp4a(q & 0x0F0F0F0F, x[i], s);
            s = rf_dp4a((q >> 4) & 0x0F0F0F0F, x[4 + i], s);
        }
        return xs.x * (rf_half_to_float(h[0]) * (float)s + rf_half_to_float(h[1]) * xs.y);
    }
};
template <> struct QDot<RF_Q8_0> {
    __device__ static float dot(const uint8_t* b, const int* x, float2 xs) {
        const uint16_t* h = (const uint16_t*)b;
        int s = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) s = rf_dp4a(rf_word(h + 1, i), x[i], s);
        return rf_half_to_float(h[0]) * xs.x * (float)s;
    }
};

template <int T>
__global__ void matvec_q_kernel(const uint8_t* w, int rows, int cols, const int8_t* xq,
                                const float2* xs, int n, float* y, int ldy, int accumulate) {
    const int lane = threadIdx.x % RF_WAVE;
    const int row = blockIdx.x * (blockDim.x / RF_WAVE) + threadIdx.x / RF_WAVE;
    if (row >= rows) return;
    const int ng = cols / 32;
    const uint8_t* wr = w + (size_t)row * ng * Fmt<T>::bytes;
    float acc[RF_MAX_MATVEC_TOKENS];
#pragma unroll
    for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) acc[t] = 0.0f;
    for (int g = lane; g < ng; g += RF_WAVE) {
        const uint8_t* b = wr + (size_t)g * Fmt<T>::bytes;
#pragma unroll
        for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
            if (t < n) {
                const int4* xp = (const int4*)(xq + (size_t)t * cols + g * 32);
                const int4 a = xp[0], c = xp[1];
                const int x[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
                acc[t] += QDot<T>::dot(b, x, xs[(size_t)t * ng + g]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
        if (t < n) {
            const float s = rf_wave_sum(acc[t]);
            if (lane == 0) {
                float* dst = y + (size_t)t * ldy + row;
                *dst = accumulate ? *dst + s : s;
            }
        }
    }
}

template <int T>
__global__ void matvec_f_kernel(const uint8_t* w, int rows, int cols, const float* x, int n,
                                float* y, int ldy, int accumulate) {
    const int lane = threadIdx.x % RF_WAVE;
    const int row = blockIdx.x * (blockDim.x / RF_WAVE) + threadIdx.x / RF_WAVE;
    if (row >= rows) return;
    const int ng = cols / 32;
    const uint8_t* wr = w + (size_t)row * ng * Fmt<T>::bytes;
    float acc[RF_MAX_MATVEC_TOKENS];
#pragma unroll
    for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) acc[t] = 0.0f;
    for (int g = lane; g < ng; g += RF_WAVE) {
        float v[32];
        Fmt<T>::load(wr + (size_t)g * Fmt<T>::bytes, v);
#pragma unroll
        for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
            if (t < n) {
                const float4* xp = (const float4*)(x + (size_t)t * cols + g * 32);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    const float4 a = xp[i];
                    acc[t] += v[4 * i] * a.x + v[4 * i + 1] * a.y + v[4 * i + 2] * a.z +
                              v[4 * i + 3] * a.w;
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
        if (t < n) {
            const float s = rf_wave_sum(acc[t]);
            if (lane == 0) {
                float* dst = y + (size_t)t * ldy + row;
                *dst = accumulate ? *dst + s : s;
            }
        }
    }
}

extern "C" int rf_matvec(int ty, const void* w, int rows, int cols, const float* x,
                         const int8_t* xq, const void* xq_scales, int n, float* y, int ldy,
                         int accumulate, void* stream) {
    if (cols % 32 != 0 || n <= 0 || n > RF_MAX_MATVEC_TOKENS || rows <= 0 || ldy < rows)
        return RF_ERR_SHAPE;
    const int rows_per_block = RF_BLOCK / RF_WAVE;
    const dim3 grid((rows + rows_per_block - 1) / rows_per_block);
    hipStream_t s = (hipStream_t)stream;
    const uint8_t* wb = (const uint8_t*)w;
    switch (ty) {
        case RF_Q4_0:
            hipLaunchKernelGGL(matvec_q_kernel<RF_Q4_0>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, xq, (const float2*)xq_scales, n, y, ldy, accumulate);
            break;
        case RF_Q4_1:
            hipLaunchKernelGGL(matvec_q_kernel<RF_Q4_1>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, xq, (const float2*)xq_scales, n, y, ldy, accumulate);
            break;
        case RF_Q8_0:
            hipLaunchKernelGGL(matvec_q_kernel<RF_Q8_0>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, xq, (const float2*)xq_scales, n, y, ldy, accumulate);
            break;
        case RF_F16:
            hipLaunchKernelGGL(matvec_f_kernel<RF_F16>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, x, n, y, ldy, accumulate);
            break;
        case RF_BF16:
            hipLaunchKernelGGL(matvec_f_kernel<RF_BF16>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, x, n, y, ldy, accumulate);
            break;
        case RF_F32:
            hipLaunchKernelGGL(matvec_f_kernel<RF_F32>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, x, n, y, ldy, accumulate);
            break;
        default: return RF_ERR_BAD_TYPE;
    }
    return (int)hipGetLastError();
}

// One thread per group of 32 weights: dequantize, write 32 halves.
template <int T>
__global__ void dequant_f16_kernel(const uint8_t* w, size_t first_group, size_t n_groups,
                                   __half* out) {
    const size_t g = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n_groups) return;
    float v[32];
    Fmt<T>::load(w + (first_group + g) * Fmt<T>::bytes, v);
    __half* dst = out + g * 32;
#pragma unroll
    for (int i = 0; i < 32; i++) dst[i] = __float2half(v[i]);
}

extern "C" int rf_dequant_f16(int ty, const void* w, int row0, int n_rows, int cols, void* out,
                              void* stream) {
    if (cols % 32 != 0 || n_rows <= 0 || row0 < 0) return RF_ERR_SHAPE;
    const size_t ng = (size_t)n_rows * (cols / 32);
    const size_t first = (size_t)row0 * (cols / 32);
    const dim3 grid((unsigned)((ng + RF_BLOCK - 1) / RF_BLOCK));
    RF_DISPATCH_TYPE(ty, hipLaunchKernelGGL(dequant_f16_kernel<T>, grid, dim3(RF_BLOCK), 0,
                                            (hipStream_t)stream, (const uint8_t*)w, first, ng,
                                            (__half*)out));
    return (int)hipGetLastError();
}
