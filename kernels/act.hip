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

// Q8_K activations for the K-quants' mat-vec, bit for bit the CPU's q8_k quantizer (and
// llama.cpp's quantize_row_q8_K_ref): per super-block of 256, the element of largest
// magnitude (the first on ties) maps to -127, iscale = -127 / max,
// q = min(127, round-half-even(iscale * x)), d = 1 / iscale; an all-zero block is zeros; the
// sums of each group of 16 quants. Quants (n, d) int8, chunk k (16 quants) of super-block S
// of a row at k * per_row + S (16-byte units): lane S of the mat-vec reading chunk k of its
// super-block then loads next to its neighbours (kernels/quant.h, rf_q8k_chunk); headers
// (n, d / 256) RfQ8KHead. Here 64 consecutive threads of the block hold a super-block, 4
// elements each (v); every thread of the block calls it (it has block barriers); `live`: this
// thread's elements exist. It was a kernel of its own after each transform until it was
// fused: a launch fewer per transform (113 per token of a 28-layer model), each about 2.5 us
// of the H200's serialised kernel time.
__device__ __forceinline__ void act_store_q8k(const float* v, bool live, int r, int e, int d,
                                              int8_t* qk, RfQ8KHead* qkh) {
    __shared__ float part_amax[RF_BLOCK / 32], part_max[RF_BLOCK / 32];
    __shared__ int part_idx[RF_BLOCK / 32];
    const int i = (e % 256) / 4;  // this thread's 4 elements within the super-block
    float amax = 0.0f, max = 0.0f;
    int idx = 256;
    if (live) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                max = v[j];
                idx = 4 * i + j;
            }
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
    const int group = threadIdx.x / 32;  // a super-block is groups 2k and 2k + 1
    if (threadIdx.x % 32 == 0) {
        part_amax[group] = amax;
        part_max[group] = max;
        part_idx[group] = idx;
    }
    __syncthreads();
    const int other = group ^ 1;
    if (part_amax[other] > amax || (part_amax[other] == amax && part_idx[other] < idx)) {
        amax = part_amax[other];
        max = part_max[other];
    }
    __syncthreads();  // the slots are free for the next call
    const float iscale = amax == 0.0f ? 0.0f : -127.0f / max;
    int q[4];
#pragma unroll
    for (int j = 0; j < 4; j++) q[j] = amax == 0.0f ? 0 : (int)fminf(rintf(iscale * v[j]), 127.0f);
    int sum = q[0] + q[1] + q[2] + q[3];
    // group g of 16 elements = threads 4g .. 4g + 3 of the super-block
    sum += __float_as_int(rf_shfl_xor(__int_as_float(sum), 1));
    sum += __float_as_int(rf_shfl_xor(__int_as_float(sum), 2));
    if (!live) return;
    const int per_row = d / 256, sb = e / 256, g = i / 4;
    // Chunk g (16 quants) of super-block sb of row r at (g * per_row + sb) 16-byte units.
    char4 c;
    c.x = (signed char)q[0]; c.y = (signed char)q[1];
    c.z = (signed char)q[2]; c.w = (signed char)q[3];
    *(char4*)(qk + (size_t)r * d + ((size_t)g * per_row + sb) * 16 + (i % 4) * 4) = c;
    RfQ8KHead* h = qkh + (size_t)r * per_row + sb;
    if (i % 4 == 0) h->bsums[g] = (int16_t)sum;
    if (i == 0) h->d = amax == 0.0f ? 0.0f : 1.0f / iscale;
}

__global__ void act_kernel(int mode, const float* in, const float* w, float eps, int d,
                           const int32_t* row_map, float* out_f32, __half* out_f16,
                           int f16_from_q8, int8_t* q8, float4* q8_scales, int8_t* qk,
                           RfQ8KHead* qkh) {
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
            // Every load issued before the first store: one round trip to L2, not one per
            // slice of the row.
            constexpr int SLICES = ACT_STAGE_MAX / ACT_PER_BLOCK;
            float4 part[SLICES];
#pragma unroll
            for (int k = 0; k < SLICES; k++) {
                const int i = (threadIdx.x + k * RF_BLOCK) * 4;
                if (i < d) part[k] = *(const float4*)(x + i);
            }
#pragma unroll
            for (int k = 0; k < SLICES; k++) {
                const int i = (threadIdx.x + k * RF_BLOCK) * 4;
                if (i < d) *(float4*)(stage + i) = part[k];
            }
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
    if (qk) act_store_q8k(v, live, r, e, d, qk, qkh);  // uniform: a kernel argument
}

extern "C" int rf_act(int mode, const float* in, const float* w, float eps, int d, int n,
                      const int32_t* row_map, float* out_f32, void* out_f16, int f16_from_q8,
                      int8_t* q8, void* q8_scales, int8_t* qk, void* qk_heads, void* stream) {
    if (d % 32 != 0 || n <= 0 || mode < 0 || mode > RF_ACT_GEGLU) return RF_ERR_SHAPE;
    if (qk && (d % 256 != 0 || !qk_heads)) return RF_ERR_SHAPE;
    const dim3 grid(n, (d + ACT_PER_BLOCK - 1) / ACT_PER_BLOCK);
    RF_LAUNCH_OVERLAPPED(act_kernel, grid, dim3(RF_BLOCK), 0, (hipStream_t)stream, mode, in, w,
                       eps, d, row_map, out_f32, (__half*)out_f16, f16_from_q8, q8,
                       (float4*)q8_scales, qk, (RfQ8KHead*)qk_heads);
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
