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
// CPU backend's own function) and uploads them with each batch (rope_kv.hip).
