// Weight formats on the device: every supported type is read in groups of 32 elements (one
// GGML block for the quantized types; 32 consecutive values for the float types), so all
// kernels share one loop shape. Blocks are only 2-byte aligned (18/20/34-byte blocks), so they
// are read with 16-bit loads.
#pragma once
#include "arch.h"
#include <stdint.h>

// Type ids as in GGUF (and src/quant/types.rs).
#define RF_F32 0
#define RF_F16 1
#define RF_Q4_0 2
#define RF_Q4_1 3
#define RF_Q8_0 8
#define RF_BF16 30

template <int T> struct Fmt;

// value = (q - 8) * d; element j < 16 is the low nibble of qs[j], element j + 16 its high one.
template <> struct Fmt<RF_Q4_0> {
    static constexpr int bytes = 18;
    __device__ static void load(const uint8_t* b, float* v) {
        const uint16_t* h = (const uint16_t*)b;
        const float d = rf_half_to_float(h[0]);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint16_t q = h[1 + i];
            v[2 * i] = ((int)(q & 0xF) - 8) * d;
            v[2 * i + 1] = ((int)((q >> 8) & 0xF) - 8) * d;
            v[2 * i + 16] = ((int)((q >> 4) & 0xF) - 8) * d;
            v[2 * i + 17] = ((int)(q >> 12) - 8) * d;
        }
    }
};

// value = q * d + m; nibble order as Q4_0.
template <> struct Fmt<RF_Q4_1> {
    static constexpr int bytes = 20;
    __device__ static void load(const uint8_t* b, float* v) {
        const uint16_t* h = (const uint16_t*)b;
        const float d = rf_half_to_float(h[0]), m = rf_half_to_float(h[1]);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint16_t q = h[2 + i];
            v[2 * i] = (q & 0xF) * d + m;
            v[2 * i + 1] = ((q >> 8) & 0xF) * d + m;
            v[2 * i + 16] = ((q >> 4) & 0xF) * d + m;
            v[2 * i + 17] = (q >> 12) * d + m;
        }
    }
};

// value = q * d, q signed bytes.
template <> struct Fmt<RF_Q8_0> {
    static constexpr int bytes = 34;
    __device__ static void load(const uint8_t* b, float* v) {
        const uint16_t* h = (const uint16_t*)b;
        const float d = rf_half_to_float(h[0]);
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const uint16_t q = h[1 + i];
            v[2 * i] = (float)(int8_t)(q & 0xFF) * d;
            v[2 * i + 1] = (float)(int8_t)(q >> 8) * d;
        }
    }
};

template <> struct Fmt<RF_F16> {
    static constexpr int bytes = 64;
    __device__ static void load(const uint8_t* b, float* v) {
        const uint4* p = (const uint4*)b;  // rows of F16 are 64-byte multiples: 16-byte aligned
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint4 w = p[i];
            const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                v[8 * i + 2 * j] = rf_half_to_float(u[j] & 0xFFFF);
                v[8 * i + 2 * j + 1] = rf_half_to_float(u[j] >> 16);
            }
        }
    }
};

template <> struct Fmt<RF_BF16> {
    static constexpr int bytes = 64;
    __device__ static void load(const uint8_t* b, float* v) {
        const uint4* p = (const uint4*)b;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint4 w = p[i];
            const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                v[8 * i + 2 * j] = rf_bf16_to_float(u[j] & 0xFFFF);
                v[8 * i + 2 * j + 1] = rf_bf16_to_float(u[j] >> 16);
            }
        }
    }
};

template <> struct Fmt<RF_F32> {
    static constexpr int bytes = 128;
    __device__ static void load(const uint8_t* b, float* v) {
        const float4* p = (const float4*)b;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float4 w = p[i];
            v[4 * i] = w.x; v[4 * i + 1] = w.y; v[4 * i + 2] = w.z; v[4 * i + 3] = w.w;
        }
    }
};

// Calls `f.template run<T>()` for the runtime type id, or returns false for an unknown one.
#define RF_DISPATCH_TYPE(ty, CALL)                          \
    switch (ty) {                                           \
        case RF_Q4_0: { constexpr int T = RF_Q4_0; CALL; } break; \
        case RF_Q4_1: { constexpr int T = RF_Q4_1; CALL; } break; \
        case RF_Q8_0: { constexpr int T = RF_Q8_0; CALL; } break; \
        case RF_F16: { constexpr int T = RF_F16; CALL; } break;   \
        case RF_BF16: { constexpr int T = RF_BF16; CALL; } break; \
        case RF_F32: { constexpr int T = RF_F32; CALL; } break;   \
        default: return RF_ERR_BAD_TYPE;                    \
    }
