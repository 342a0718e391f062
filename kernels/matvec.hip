// Matrix-vector products for decode (a few tokens at once), weight dequantization for the BLAS
// prefill path, and the one-time rearrangement of quantized weights at upload.
//
// Mat-vec: one wave per weight row; each lane takes every RF_WAVE-th group of 32 weights, so a
// wave reads a contiguous stretch of the row's quants (16-byte loads) per step. Quantized
// weights are dotted with int8 activations (groups of 32 with their scale and sums) through
// 4-way int8 dot products, with the CPU backend's numerics; float weights with the f32
// activations, rounded as the CPU rounds them for that weight type.
#include "rf_kernels.h"
#include "quant.h"

#define RF_MAX_MATVEC_TOKENS 8

template <int T> struct QDot;

// (q - 8) . x = q . x - 8 sum(x): integer sums, scaled by d_w d_x.
template <> struct QDot<RF_Q4_0> {
    __device__ static float dot(const uint8_t* w, size_t ng, size_t G, const int* x, float4 xs) {
        const uint4 q4 = Fmt<RF_Q4_0>::quants(w, G);
        const int q[4] = {(int)q4.x, (int)q4.y, (int)q4.z, (int)q4.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = rf_dp4a(q[i] & 0x0F0F0F0F, x[i], s);
            s = rf_dp4a((q[i] >> 4) & 0x0F0F0F0F, x[4 + i], s);
        }
        return Fmt<RF_Q4_0>::scale(w, ng, G) * xs.x * ((float)s - 8.0f * xs.y);
    }
};
// (q d + m) . x = d d_x (q . x_q) + m f16(d_x sum(x_q)), as the CPU's Q4_1 x Q8_1 product.
template <> struct QDot<RF_Q4_1> {
    __device__ static float dot(const uint8_t* w, size_t ng, size_t G, const int* x, float4 xs) {
        const uint4 q4 = Fmt<RF_Q4_1>::quants(w, G);
        const int q[4] = {(int)q4.x, (int)q4.y, (int)q4.z, (int)q4.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = rf_dp4a(q[i] & 0x0F0F0F0F, x[i], s);
            s = rf_dp4a((q[i] >> 4) & 0x0F0F0F0F, x[4 + i], s);
        }
        const float2 dm = Fmt<RF_Q4_1>::scales(w, ng, G);
        return dm.x * xs.x * (float)s + dm.y * xs.z;
    }
};
template <> struct QDot<RF_Q8_0> {
    __device__ static float dot(const uint8_t* w, size_t ng, size_t G, const int* x, float4 xs) {
        const uint4* p = (const uint4*)(w + G * 32);
        const uint4 a = p[0], b = p[1];
        const int q[8] = {(int)a.x, (int)a.y, (int)a.z, (int)a.w,
                          (int)b.x, (int)b.y, (int)b.z, (int)b.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) s = rf_dp4a(q[i], x[i], s);
        return Fmt<RF_Q8_0>::scale(w, ng, G) * xs.x * (float)s;
    }
};

// Rows are split between teams of 32 * ks threads (ks "K-slices" of 32 lanes each, so long
// rows keep enough loads in flight); partial sums meet in shared memory. Teams are counted in
// groups of 32 lanes, never in waves, so the same launch shape is right for wave32 and wave64.
#define MV_GROUPS (RF_BLOCK / 32)

__device__ __forceinline__ void mv_finish(float (*part)[RF_MAX_MATVEC_TOKENS], const float* acc,
                                          int n, bool active, int ks, int row, float* y,
                                          int ldy, int accumulate) {
    const int grp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (ks == 1) {  // one team per row: no exchange through shared memory (block-uniform)
#pragma unroll
        for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
            if (t < n) {
                const float s = rf_group32_sum(acc[t]);
                if (active && lane == 0) {
                    float* dst = y + (size_t)t * ldy + row;
                    *dst = accumulate ? *dst + s : s;
                }
            }
        }
        return;
    }
#pragma unroll
    for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
        if (t < n) {
            const float s = rf_group32_sum(acc[t]);
            if (lane == 0) part[grp][t] = s;
        }
    }
    __syncthreads();
    if (active && grp % ks == 0 && lane < n) {
        float s = 0.0f;
        for (int j = 0; j < ks; j++) s += part[grp + j][lane];
        float* dst = y + (size_t)lane * ldy + row;
        *dst = accumulate ? *dst + s : s;
    }
}

// Each team computes R neighbouring rows, so every activation group it loads serves R weight
// groups. Measured on the H200: R = 2 helps Q8_0 (+4 %), not Q4_0 (−4 %).
template <int T> struct MvRows { static constexpr int R = 1; };
template <> struct MvRows<RF_Q8_0> { static constexpr int R = 2; };

template <int T>
__global__ void matvec_q_kernel(const uint8_t* w, int rows, int cols, const int8_t* xq,
                                const float4* xs, int n, float* y, int ldy, int accumulate,
                                int ks) {
    __shared__ float part[MV_GROUPS][RF_MAX_MATVEC_TOKENS];
    const int grp = threadIdx.x / 32, lane = threadIdx.x % 32;
    constexpr int MV_ROWS = MvRows<T>::R;
    const int row0 = (blockIdx.x * (MV_GROUPS / ks) + grp / ks) * MV_ROWS;
    const int slice = grp % ks;
    const int ng = cols / 32;
    const size_t ng_total = (size_t)rows * ng;
    float acc[MV_ROWS][RF_MAX_MATVEC_TOKENS];
#pragma unroll
    for (int r = 0; r < MV_ROWS; r++)
#pragma unroll
        for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) acc[r][t] = 0.0f;
    if (row0 < rows) {
        for (int g = slice * 32 + lane; g < ng; g += 32 * ks) {
#pragma unroll
            for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
                if (t < n) {
                    const int4* xp = (const int4*)(xq + (size_t)t * cols + g * 32);
                    const int4 a = xp[0], c = xp[1];
                    const int x[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
                    const float4 sc = xs[(size_t)t * ng + g];
#pragma unroll
                    for (int r = 0; r < MV_ROWS; r++)
                        if (row0 + r < rows)
                            acc[r][t] += QDot<T>::dot(w, ng_total, (size_t)(row0 + r) * ng + g, x, sc);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < MV_ROWS; r++) {
        if (ks > 1) __syncthreads();  // part[] is reused for each row
        mv_finish(part, acc[r], n, row0 + r < rows, ks, row0 + r, y, ldy, accumulate);
    }
}

// The CPU dots F16 weights with f16-rounded activations and BF16 with bf16-rounded ones.
template <int T> __device__ __forceinline__ float rf_round1(float x) { return x; }
template <> __device__ __forceinline__ float rf_round1<RF_F16>(float x) {
    return __half2float(__float2half(x));
}
template <> __device__ __forceinline__ float rf_round1<RF_BF16>(float x) {
    // round to nearest even on the upper 16 bits (finite activations)
    const unsigned int u = __float_as_uint(x);
    return __uint_as_float((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}

template <int T>
__global__ void matvec_f_kernel(const uint8_t* w, int rows, int cols, const float* x, int n,
                                float* y, int ldy, int accumulate, int ks) {
    __shared__ float part[MV_GROUPS][RF_MAX_MATVEC_TOKENS];
    const int grp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * (MV_GROUPS / ks) + grp / ks;
    const int slice = grp % ks;
    const bool active = row < rows;
    const int ng = cols / 32;
    float acc[RF_MAX_MATVEC_TOKENS];
#pragma unroll
    for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) acc[t] = 0.0f;
    if (active) {
        for (int g = slice * 32 + lane; g < ng; g += 32 * ks) {
            float v[32];
            Fmt<T>::load(w, 0, (size_t)row * ng + g, v);
#pragma unroll
            for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
                if (t < n) {
                    const float* xp = x + (size_t)t * cols + g * 32;
#pragma unroll
                    for (int i = 0; i < 32; i++) acc[t] += v[i] * rf_round1<T>(xp[i]);
                }
            }
        }
    }
    mv_finish(part, acc, n, active, ks, row, y, ldy, accumulate);
}

// Largest K-split the mat-vec may use (a tuning knob; 1 = one 32-lane team per row).
static int g_matvec_ks_max = 1;
extern "C" void rf_set_matvec_ks_max(int ks) { g_matvec_ks_max = ks < 1 ? 1 : ks; }

extern "C" int rf_matvec(int ty, const void* w, int rows, int cols, const float* x,
                         const int8_t* xq, const void* xq_scales, int n, float* y, int ldy,
                         int accumulate, void* stream) {
    if (cols % 32 != 0 || n <= 0 || n > RF_MAX_MATVEC_TOKENS || rows <= 0 || ldy < rows)
        return RF_ERR_SHAPE;
    // K-slices per row: enough that each lane has a few groups, no more than fit a block.
    const int ng = cols / 32;
    int ks = 1;
    while (ks < g_matvec_ks_max && ks < MV_GROUPS && ng >= 64 * ks * 2) ks *= 2;
    const int rows_per_block = MV_GROUPS / ks;
    const dim3 grid((rows + rows_per_block - 1) / rows_per_block);
    const int q8_rows_per_block = rows_per_block * MvRows<RF_Q8_0>::R;
    const dim3 q8grid((rows + q8_rows_per_block - 1) / q8_rows_per_block);
    hipStream_t s = (hipStream_t)stream;
    const uint8_t* wb = (const uint8_t*)w;
    const float4* xs = (const float4*)xq_scales;
    switch (ty) {
        case RF_Q4_0:
            hipLaunchKernelGGL(matvec_q_kernel<RF_Q4_0>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, xq, xs, n, y, ldy, accumulate, ks);
            break;
        case RF_Q4_1:
            hipLaunchKernelGGL(matvec_q_kernel<RF_Q4_1>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, xq, xs, n, y, ldy, accumulate, ks);
            break;
        case RF_Q8_0:
            hipLaunchKernelGGL(matvec_q_kernel<RF_Q8_0>, q8grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, xq, xs, n, y, ldy, accumulate, ks);
            break;
        case RF_F16:
            hipLaunchKernelGGL(matvec_f_kernel<RF_F16>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, x, n, y, ldy, accumulate, ks);
            break;
        case RF_BF16:
            hipLaunchKernelGGL(matvec_f_kernel<RF_BF16>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, x, n, y, ldy, accumulate, ks);
            break;
        case RF_F32:
            hipLaunchKernelGGL(matvec_f_kernel<RF_F32>, grid, dim3(RF_BLOCK), 0, s, wb, rows,
                               cols, x, n, y, ldy, accumulate, ks);
            break;
        default: return RF_ERR_BAD_TYPE;
    }
    return (int)hipGetLastError();
}

// One thread per group of 32 weights: dequantize, write 32 halves.
template <int T>
__global__ void dequant_f16_kernel(const uint8_t* w, size_t ng_total, size_t first_group,
                                   size_t n_groups, __half* out) {
    const size_t g = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n_groups) return;
    float v[32];
    Fmt<T>::load(w, ng_total, first_group + g, v);
    __half2* dst = (__half2*)(out + g * 32);
#pragma unroll
    for (int i = 0; i < 16; i++) dst[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
}

extern "C" int rf_dequant_f16(int ty, const void* w, int rows, int row0, int n_rows, int cols,
                              void* out, void* stream) {
    if (cols % 32 != 0 || n_rows <= 0 || row0 < 0 || row0 + n_rows > rows) return RF_ERR_SHAPE;
    const size_t ng = (size_t)n_rows * (cols / 32);
    const size_t first = (size_t)row0 * (cols / 32);
    const size_t total = (size_t)rows * (cols / 32);
    const dim3 grid((unsigned)((ng + RF_BLOCK - 1) / RF_BLOCK));
    RF_DISPATCH_TYPE(ty, hipLaunchKernelGGL(dequant_f16_kernel<T>, grid, dim3(RF_BLOCK), 0,
                                            (hipStream_t)stream, (const uint8_t*)w, total, first,
                                            ng, (__half*)out));
    return (int)hipGetLastError();
}

// GGUF blocks (scale(s) first, then quants) -> quants array + scales array. One thread per
// block; reads 2-byte words since GGUF blocks are only 2-byte aligned.
template <int T>
__global__ void repack_kernel(const uint8_t* src, size_t n_groups, uint8_t* dst) {
    const size_t G = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (G >= n_groups) return;
    constexpr int Q = Fmt<T>::qbytes, S = Fmt<T>::sbytes;
    const uint16_t* b = (const uint16_t*)(src + G * Fmt<T>::gguf_bytes);
    uint16_t* sc = (uint16_t*)(dst + n_groups * Q + G * S);
    uint16_t* qs = (uint16_t*)(dst + G * Q);
#pragma unroll
    for (int i = 0; i < S / 2; i++) sc[i] = b[i];
#pragma unroll
    for (int i = 0; i < Q / 2; i++) qs[i] = b[S / 2 + i];
}

extern "C" int rf_repack(int ty, const void* src, size_t n_groups, void* dst, void* stream) {
    const dim3 grid((unsigned)((n_groups + RF_BLOCK - 1) / RF_BLOCK));
    hipStream_t s = (hipStream_t)stream;
    switch (ty) {
        case RF_Q4_0:
            hipLaunchKernelGGL(repack_kernel<RF_Q4_0>, grid, dim3(RF_BLOCK), 0, s,
                               (const uint8_t*)src, n_groups, (uint8_t*)dst);
            break;
        case RF_Q4_1:
            hipLaunchKernelGGL(repack_kernel<RF_Q4_1>, grid, dim3(RF_BLOCK), 0, s,
                               (const uint8_t*)src, n_groups, (uint8_t*)dst);
            break;
        case RF_Q8_0:
            hipLaunchKernelGGL(repack_kernel<RF_Q8_0>, grid, dim3(RF_BLOCK), 0, s,
                               (const uint8_t*)src, n_groups, (uint8_t*)dst);
            break;
        default: return RF_ERR_BAD_TYPE;  // float types keep their layout
    }
    return (int)hipGetLastError();
}
