// Activation transforms that feed a matrix product: RMSNorm, plain copy, SwiGLU or GeGLU, fused with
// the conversions the next product needs (f32, f16 for BLAS, int8 groups of 32 for the
// quantized mat-vec).
//
// Grid (row, slice): each thread handles 4 consecutive elements, so a group of 32 is 8
// neighbouring lanes and a block of RF_BLOCK threads covers a slice of 4 * RF_BLOCK elements.
// Many blocks per row keep single-token decode from running on one block.
//
// Numerics follow kernels/numerics.h (the CPU's ops.rs, operation for operation).
#include "rf_kernels.h"
#include "arch.h"
#include "numerics.h"
#include "quant.h"

#define ACT_PER_BLOCK (4 * RF_BLOCK)
// Widest row the RMSNorm stages in shared memory (32 KiB); wider rows read global memory.
#define ACT_STAGE_MAX 8192


// Max / sum over the 8 lanes of an aligned group (xor masks below 8 stay inside it).
__device__ __forceinline__ float group8_max(float v) {
#pragma unroll
    for (int m = 4; m > 0; m >>= 1) v = fmaxf(v, rf_shfl_xor(v, m));
    return v;
}
__device__ __forceinline__ float group8_sum(float v) {
#pragma unroll
    for (int m = 4; m > 0; m >>= 1) v += rf_shfl_xor(v, m);
    return v;
}

__global__ void act_kernel(int mode, const float* in, const float* w, float eps, int d,
                           const int32_t* row_map, float* out_f32, __half* out_f16,
                           int f16_from_q8, int8_t* q8, float4* q8_scales) {
    __shared__ float row_scale;
    __shared__ __align__(16) float stage[ACT_STAGE_MAX];
    const int e = (blockIdx.y * blockDim.x + threadIdx.x) * 4;
    const bool live = e < d;  // d is a multiple of 32: a group is wholly live or wholly dead
    // The norm's weights are model constants: loaded before waiting for the previous kernel.
    const float4 g = mode == RF_ACT_RMSNORM && live ? *(const float4*)(w + e)
                                                    : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    rf_wait_previous();  // launched overlapped: nothing else is read before this
    rf_release_next();
    const int r = blockIdx.x;
    const int src_row = row_map ? row_map[r] : r;
    const bool gated = mode == RF_ACT_SWIGLU || mode == RF_ACT_GEGLU;
    const float* x = in + (size_t)src_row * (gated ? 2 * d : d);
    float scale = 1.0f;
    bool staged = false;
    if (mode == RF_ACT_RMSNORM) {
        // Every block of the row computes the row's mean square (the row is in cache), in
        // the canonical order: the row is staged in shared memory by the whole block, then the
        // first 32 threads hold the partials and a butterfly joins them.
        staged = d <= ACT_STAGE_MAX;
        if (staged) {
            for (int i = threadIdx.x * 4; i < d; i += blockDim.x * 4)
                *(float4*)(stage + i) = *(const float4*)(x + i);
            __syncthreads();
        }
        const float* xs = staged ? stage : x;
        if (threadIdx.x < RF_LANES) {
            float ss = 0.0f;
#pragma unroll 8
            for (int i = threadIdx.x; i < d; i += RF_LANES) ss = ss + xs[i] * xs[i];
            ss = rf_butterfly32(ss);
            if (threadIdx.x == 0) row_scale = 1.0f / sqrtf(ss / (float)d + eps);
        }
        __syncthreads();
        scale = row_scale;
    }
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (live) {
        const float4 a = staged ? *(const float4*)(stage + e) : *(const float4*)(x + e);
        if (mode == RF_ACT_RMSNORM) {
            v[0] = a.x * scale * g.x; v[1] = a.y * scale * g.y;
            v[2] = a.z * scale * g.z; v[3] = a.w * scale * g.w;
        } else if (mode == RF_ACT_COPY) {
            v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        } else if (mode == RF_ACT_SWIGLU) {
            const float4 u = *(const float4*)(x + d + e);
            v[0] = rf_silu(a.x) * u.x; v[1] = rf_silu(a.y) * u.y;
            v[2] = rf_silu(a.z) * u.z; v[3] = rf_silu(a.w) * u.w;
        } else {
            const float4 u = *(const float4*)(x + d + e);
            v[0] = rf_gelu(a.x) * u.x; v[1] = rf_gelu(a.y) * u.y;
            v[2] = rf_gelu(a.z) * u.z; v[3] = rf_gelu(a.w) * u.w;
        }
    }
    const size_t o = (size_t)r * d + e;
    if (live && out_f32) *(float4*)(out_f32 + o) = make_float4(v[0], v[1], v[2], v[3]);
    if (live && out_f16 && !f16_from_q8) {
        *(__half2*)(out_f16 + o) = __floats2half2_rn(v[0], v[1]);
        *(__half2*)(out_f16 + o + 2) = __floats2half2_rn(v[2], v[3]);
    }
    if (q8 || f16_from_q8) {
        // Same numerics as the CPU quantizer: q = round-half-even(v * 127 / amax), the scale
        // kept as f16; the group sum feeds Q4_0's offset and (as f16(d * sum)) Q4_1's.
        float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
        amax = group8_max(amax);
        const float qd = amax / 127.0f;
        const float qd16 = __half2float(__float2half(qd));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        float qv[4];
#pragma unroll
        for (int j = 0; j < 4; j++) qv[j] = rintf(v[j] * id);
        const float qsum = group8_sum(qv[0] + qv[1] + qv[2] + qv[3]);
        if (live && q8) {
            char4 c;
            c.x = (signed char)qv[0]; c.y = (signed char)qv[1];
            c.z = (signed char)qv[2]; c.w = (signed char)qv[3];
            *(char4*)(q8 + o) = c;
            if ((threadIdx.x & 7) == 0)
                q8_scales[o / 32] =
                    make_float4(qd16, qsum, __half2float(__float2half(qd * qsum)),
                                __int_as_float((int)qsum));
        }
        // BLAS inputs for quantized weights: the int8 values the CPU would use, as f16.
        if (live && out_f16 && f16_from_q8) {
            *(__half2*)(out_f16 + o) = __floats2half2_rn(qv[0] * qd16, qv[1] * qd16);
            *(__half2*)(out_f16 + o + 2) = __floats2half2_rn(qv[2] * qd16, qv[3] * qd16);
        }
    }
}

extern "C" int rf_act(int mode, const float* in, const float* w, float eps, int d, int n,
                      const int32_t* row_map, float* out_f32, void* out_f16, int f16_from_q8,
                      int8_t* q8, void* q8_scales, void* stream) {
    if (d % 32 != 0 || n <= 0 || mode < 0 || mode > RF_ACT_GEGLU) return RF_ERR_SHAPE;
    const dim3 grid(n, (d + ACT_PER_BLOCK - 1) / ACT_PER_BLOCK);
    RF_LAUNCH_OVERLAPPED(act_kernel, grid, dim3(RF_BLOCK), 0, (hipStream_t)stream, mode, in, w,
                       eps, d, row_map, out_f32, (__half*)out_f16, f16_from_q8, q8,
                       (float4*)q8_scales);
    return (int)hipGetLastError();
}

// ---- The residual add of a block whose output is transformed first (Gemma's post-norms, an
// attention output bias), as the CPU's forward pass: y = proj (+ bias), then, with a norm,
// y = RMSNorm(y) * w (the row's sum of squares in canonical order), then x += y. One block
// per row: the row is staged in shared memory, the first 32 threads hold the partials.
__global__ void residual_kernel(float* x, const float* proj, const float* bias, const float* w,
                                float eps, int d) {
    __shared__ float row_scale;
    __shared__ __align__(16) float stage[ACT_STAGE_MAX];
    rf_wait_previous();
    rf_release_next();
    const size_t r = blockIdx.x;
    const float* p = proj + r * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) stage[i] = bias ? p[i] + bias[i] : p[i];
    __syncthreads();
    float scale = 1.0f;
    if (w) {
        if (threadIdx.x < RF_LANES) {
            float ss = 0.0f;
            for (int i = threadIdx.x; i < d; i += RF_LANES) ss = ss + stage[i] * stage[i];
            ss = rf_butterfly32(ss);
            if (threadIdx.x == 0) row_scale = 1.0f / sqrtf(ss / (float)d + eps);
        }
        __syncthreads();
        scale = row_scale;
    }
    float* xr = x + r * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        xr[i] = xr[i] + (w ? stage[i] * scale * w[i] : stage[i]);
}

extern "C" int rf_residual(float* x, const float* proj, const float* bias, const float* w,
                           float eps, int d, int n, void* stream) {
    if (d <= 0 || d > ACT_STAGE_MAX || n <= 0) return RF_ERR_SHAPE;
    RF_LAUNCH_OVERLAPPED(residual_kernel, dim3(n), dim3(RF_BLOCK), 0, (hipStream_t)stream, x,
                         proj, bias, w, eps, d);
    return (int)hipGetLastError();
}

// Logit soft-capping as the CPU's ops::softcap_in_place: x = cap * tanh(x / cap).
__global__ void softcap_kernel(float* x, size_t count, float cap) {
    rf_wait_previous();
    rf_release_next();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = cap * rf_tanh(x[i] / cap);
}

extern "C" int rf_softcap(float* x, size_t count, float cap, void* stream) {
    if (count == 0 || !(cap > 0.0f)) return RF_ERR_SHAPE;
    const size_t blocks = (count + RF_BLOCK - 1) / RF_BLOCK;
    const unsigned grid = (unsigned)(blocks < 4096 ? blocks : 4096);
    RF_LAUNCH_OVERLAPPED(softcap_kernel, dim3(grid), dim3(RF_BLOCK), 0, (hipStream_t)stream, x,
                         count, cap);
    return (int)hipGetLastError();
}

// ---- Q8_K activations for the K-quants' mat-vec, bit for bit the CPU's q8_k quantizer (and
// llama.cpp's quantize_row_q8_K_ref): per super-block of 256, the element of largest
// magnitude (the first on ties) maps to -127, iscale = -127 / max,
// q = min(127, round-half-even(iscale * x)), d = 1 / iscale; an all-zero block is zeros.
// One 32-lane team per super-block, lane L holding elements 8 L .. 8 L + 8; quants (n, d)
// int8, headers (n, d / 256) RfQ8KHead.
#define Q8K_TEAMS (RF_BLOCK / 32)

__global__ void quantize_q8k_kernel(const float* x, int d, int n_sb, int8_t* q,
                                    RfQ8KHead* heads) {
    const int lane = threadIdx.x % 32;
    const int sb = blockIdx.x * Q8K_TEAMS + threadIdx.x / 32;
    const bool live = sb < n_sb;
    const int per_row = d / 256;
    const size_t base = live ? (size_t)(sb / per_row) * d + (size_t)(sb % per_row) * 256 : 0;  // x
    float v[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    // Launched overlapped: its launch hides behind the previous kernel, and the mat-vec after
    // it starts loading weights while it runs.
    rf_wait_previous();
    rf_release_next();
    if (live) {
        const float4 a = *(const float4*)(x + base + 8 * lane);
        const float4 b = *(const float4*)(x + base + 8 * lane + 4);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
    // (magnitude, index, value) of the first largest element: strictly larger wins, equal
    // magnitudes go to the lower index, so every order of comparison picks the CPU's element.
    float amax = 0.0f, max = 0.0f;
    int idx = 256;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (fabsf(v[i]) > amax) {
            amax = fabsf(v[i]);
            max = v[i];
            idx = 8 * lane + i;
        }
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) {
        const float oa = rf_shfl_xor(amax, m), ov = rf_shfl_xor(max, m);
        const int oi = __float_as_int(rf_shfl_xor(__int_as_float(idx), m));
        if (oa > amax || (oa == amax && oi < idx)) {
            amax = oa;
            max = ov;
            idx = oi;
        }
    }
    const float iscale = amax == 0.0f ? 0.0f : -127.0f / max;
    int qi[8];
    int sum = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        qi[i] = amax == 0.0f ? 0 : (int)fminf(rintf(iscale * v[i]), 127.0f);
        sum += qi[i];
    }
    // group g of 16 = lanes 2g, 2g + 1
    sum += __float_as_int(rf_shfl_xor(__int_as_float(sum), 1));
    if (!live) return;
    uint2 packed;
    packed.x = (uint32_t)(qi[0] & 0xFF) | ((uint32_t)(qi[1] & 0xFF) << 8) |
               ((uint32_t)(qi[2] & 0xFF) << 16) | ((uint32_t)(qi[3] & 0xFF) << 24);
    packed.y = (uint32_t)(qi[4] & 0xFF) | ((uint32_t)(qi[5] & 0xFF) << 8) |
               ((uint32_t)(qi[6] & 0xFF) << 16) | ((uint32_t)(qi[7] & 0xFF) << 24);
    // Chunk k (16 quants) of super-block S of a row lies at k * per_row + S (16-byte units):
    // lane S of the mat-vec reading chunk k of its super-block then loads next to its
    // neighbours (kernels/quant.h, rf_q8k_chunk).
    const size_t row = (size_t)(sb / per_row) * d;
    const size_t chunk = (size_t)(lane / 2) * per_row + (size_t)(sb % per_row);
    *(uint2*)(q + row + chunk * 16 + 8 * (lane % 2)) = packed;
    RfQ8KHead* h = heads + sb;
    if (lane % 2 == 0) h->bsums[lane / 2] = (int16_t)sum;
    if (lane == 0) h->d = amax == 0.0f ? 0.0f : 1.0f / iscale;
}

extern "C" int rf_quantize_q8k(const float* x, int d, int n, int8_t* q, void* heads,
                               void* stream) {
    if (d % 256 != 0 || n <= 0) return RF_ERR_SHAPE;
    const int n_sb = n * (d / 256);
    const dim3 grid((n_sb + Q8K_TEAMS - 1) / Q8K_TEAMS);
    RF_LAUNCH_OVERLAPPED(quantize_q8k_kernel, grid, dim3(RF_BLOCK), 0, (hipStream_t)stream, x,
                         d, n_sb, q, (RfQ8KHead*)heads);
    return (int)hipGetLastError();
}
