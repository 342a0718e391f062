// The arithmetic the GPU shares with the CPU backend, rounding for rounding: the mirror of
// src/backend/numerics.rs (change both together). With these and the kernels compiled without
// floating-point contraction (build.rs: --fmad=false / -ffp-contract=off), the decode path
// reproduces the CPU's logits bit for bit.
//
// Canonical sum: element i goes to partial i % 32 (lane i % 32 of a 32-lane group), each
// partial adds in ascending i, and the partials meet in a butterfly read at lane 0.
#pragma once
#include "arch.h"

#define RF_LANES 32

// Butterfly over the 32 lanes of an aligned group: every lane ends with the lane-0 value of
// v += shfl_xor(v, m), m = 16..1 (float addition is commutative, so all lanes agree).
__device__ __forceinline__ float rf_butterfly32(float v) { return rf_group32_sum(v); }

// e^x as numerics::exp: Cody-Waite reduction, degree-7 Taylor polynomial, 2^n from bits.
__device__ __forceinline__ float rf_exp(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    const float n = (x * 1.44269504088896340736f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693145751953125f) - n * 1.4286068e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * __int_as_float(((int)n + 127) << 23);
}

// RoPE rotations are not evaluated here: the host computes them with numerics::sin_cos (the
// CPU backend's own function) and uploads them with each batch. Applying one, as the CPU's
// ops::rope_in_place does: the pair (a, b) rotated by r = (sin, cos) into dst[0], dst[1].
__device__ __forceinline__ void rf_rope_rotate(float a, float b, float2 r, float* dst) {
    const float sn = r.x, cs = r.y;
    dst[0] = a * cs - b * sn;
    dst[1] = a * sn + b * cs;
}

// SiLU as the CPU's ops::silu: g / (1 + e^-g).
__device__ __forceinline__ float rf_silu(float g) { return g / (1.0f + rf_exp(-g)); }

// (float)i for |i| < 2^22, exactly, with a full-rate integer add and float subtract instead of
// the quarter-rate conversion: the bits of 1.5 * 2^23 + i, less 1.5 * 2^23. A product that knows
// a constant to add to i first folds it into the bias (rf_exact_float_biased(i + bias)).
#define RF_EXACT_FLOAT_BIAS 0x4B400000
__device__ __forceinline__ float rf_exact_float_biased(int biased) {
    return __int_as_float(biased) - 12582912.0f;
}
__device__ __forceinline__ float rf_exact_float(int i) {
    return rf_exact_float_biased(i + RF_EXACT_FLOAT_BIAS);
}

// tanh and the tanh-approximated GELU as numerics::tanh / numerics::gelu.
__device__ __forceinline__ float rf_tanh(float x) {
    const float t = 1.0f - 2.0f / (rf_exp(2.0f * fabsf(x)) + 1.0f);
    return x < 0.0f ? -t : t;
}
__device__ __forceinline__ float rf_gelu(float x) {
    return 0.5f * x * (1.0f + rf_tanh(0.7978846f * x * (1.0f + 0.044715f * x * x)));
}

// Int8 quantization of one group of 32 activations held one per lane of an aligned 32-lane
// group, as the CPU's quantizer: q = round-half-even(v * 127 / amax), the scale kept as f16,
// and the group's sums for Q4_0's offset and (as f16(d * sum)) Q4_1's. Writes q8[o] and, from
// the group's first lane, scales[o / 32] = (f16 scale, sum, f16(scale * sum), sum as int bits):
// the products read the integer sum from .w without a float-to-int conversion.
//
// rf_q8_group32: the quantization itself, for any 32-lane group: lane's q (a whole float) and
// the group's scale amax / 127 in *d (before its rounding to f16).
__device__ __forceinline__ float rf_q8_group32(float v, float* d) {
    const float amax = rf_group32_max(fabsf(v));
    *d = amax / 127.0f;
    return amax > 0.0f ? rintf(v * (127.0f / amax)) : 0.0f;
}
__device__ __forceinline__ void rf_quantize_group32(float v, int8_t* q8, float4* scales,
                                                    size_t o) {
    float qd;
    const float qv = rf_q8_group32(v, &qd);
    const float qsum = rf_group32_sum(qv);
    q8[o] = (int8_t)qv;
    if ((threadIdx.x & 31) == 0)
        scales[o / 32] = make_float4(__half2float(__float2half(qd)), qsum,
                                     __half2float(__float2half(qd * qsum)),
                                     __int_as_float((int)qsum));
}
