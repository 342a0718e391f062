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

// The butterfly of N values at once, by recursive halving. At the level of mask m (16..1) each
// lane keeps half of the values it holds, sends the other half to lane ^ m and adds the half it
// receives: lane + partner, the butterfly's sum at that level (float addition is commutative),
// so every result has the bits of rf_butterfly32 on that value. Once one value is left the
// remaining levels are plain butterfly steps. N values cost N/2 + N/4 + ... shuffles instead of
// 5N. HELD and OWNER say where the results land: a lane ends holding x[0..HELD), the sums of
// values OWNER(lane) + k. With N >= 32, OWNER = lane * N / 32; with N < 32, 32 / N lanes hold
// each sum (OWNER = lane / (32 / N)).
template <int N> struct RfHalved {
    static_assert(N >= 1 && N <= 1024 && (N & (N - 1)) == 0, "a power of two");
    static constexpr int held = N >= 32 ? N / 32 : 1;
    static constexpr int dup = N >= 32 ? 1 : 32 / N;  // lanes holding each sum
    __device__ __forceinline__ static int owner(int lane) { return lane / dup * held; }
};
template <int M, int HOLD>
__device__ __forceinline__ void rf_halve_level(float* x, int lane) {
    if constexpr (M > 0) {
        if constexpr (HOLD == 1) {
            x[0] += rf_shfl_xor(x[0], M);
            rf_halve_level<M / 2, 1>(x, lane);
        } else {
            constexpr int HALF = HOLD / 2;
            const bool upper = (lane & M) != 0;  // keeps the upper half
#pragma unroll
            for (int i = 0; i < HALF; i++) {
                const float send = upper ? x[i] : x[i + HALF];
                const float keep = upper ? x[i + HALF] : x[i];
                x[i] = keep + rf_shfl_xor(send, M);
            }
            rf_halve_level<M / 2, HALF>(x, lane);
        }
    }
}
// x[N] per lane in, x[0..RfHalved<N>::held) of the 32 lanes' sums out. `lane`: index in the
// aligned 32-lane group.
template <int N> __device__ __forceinline__ void rf_butterfly32_many(float* x, int lane) {
    (void)sizeof(RfHalved<N>);
    rf_halve_level<16, N>(x, lane);
}

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
