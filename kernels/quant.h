// Weight formats on the device: every supported type is read in groups of 32 elements (one
// GGML block for the quantized types; 32 consecutive values for the float types), so all
// kernels share one loop shape.
#pragma once
#include "arch.h"
#include <stdint.h>

// The GPU backend's tensor types, one row each:
//   X(name, GGUF type id, elements per block, bytes per block, mat-vec activations)
// where the mat-vec reads INT8 activations (quantized weights, rearranged at upload by
// rf_repack) or F32 ones (float weights, kept as stored). The type ids, RfType<T> and the
// dispatch below are generated from it; a Rust test (src/quant/registry/tests.rs) checks every
// row against the format registry (src/quant/registry.rs), so the two cannot drift. A new
// type: its row here, its Fmt<T> below, and for INT8 its QGroup<T> in matvec.hip.
#define RF_QUANT_TYPES(X)    \
    X(F32, 0, 1, 4, F32)     \
    X(F16, 1, 1, 2, F32)     \
    X(Q4_0, 2, 32, 18, INT8) \
    X(Q4_1, 3, 32, 20, INT8) \
    X(Q8_0, 8, 32, 34, INT8) \
    X(BF16, 30, 1, 2, F32)

// Type ids as in GGUF: RF_F32, RF_F16, RF_Q4_0, ...
#define RF_TYPE_ID(name, id, elems, bytes, matvec) constexpr int RF_##name = id;
RF_QUANT_TYPES(RF_TYPE_ID)
#undef RF_TYPE_ID

#define RF_MATVEC_INT8 true
#define RF_MATVEC_F32 false

// The row of type T: block geometry, the bytes of one group of 32 elements, and whether the
// mat-vec reads int8 activations.
template <int T> struct RfType;
#define RF_TYPE_INFO(name, id, elems, bytes, matvec)                             \
    template <> struct RfType<id> {                                              \
        static_assert(32 % elems == 0, #name ": a group of 32 is whole blocks"); \
        static constexpr int block_elems = elems, block_bytes = bytes;           \
        static constexpr int group_bytes = 32 / elems * bytes;                   \
        static constexpr bool int8_matvec = RF_MATVEC_##matvec;                  \
    };
RF_QUANT_TYPES(RF_TYPE_INFO)
#undef RF_TYPE_INFO

template <int T> struct Fmt;

// Quantized matrices are stored on the device split in two arrays ("structure of arrays",
// rearranged once at upload by rf_repack): first the quants of every group, back to back and
// 16-byte aligned, then the scales of every group. Group G of a matrix with `ng_total` groups
// has its quants at base + G * qbytes and its scales at base + ng_total * qbytes + G * sbytes.
// Float types keep the GGUF layout (groups of 32 values).

// value = (q - 8) * d; element j < 16 is the low nibble of qs[j], element j + 16 its high one.
template <> struct Fmt<RF_Q4_0> {
    static constexpr int qbytes = 16, sbytes = 2;
    __device__ static uint4 quants(const uint8_t* base, size_t G) {
        return ((const uint4*)base)[G];
    }
    __device__ static float scale(const uint8_t* base, size_t ng, size_t G) {
        return rf_half_to_float(((const uint16_t*)(base + ng * qbytes))[G]);
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
        const uint4 q4 = quants(base, G);
        const uint32_t q[4] = {q4.x, q4.y, q4.z, q4.w};
        const float d = scale(base, ng, G);
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const uint32_t byte = (q[i / 4] >> (8 * (i % 4))) & 0xFF;
            v[i] = ((int)(byte & 0xF) - 8) * d;
            v[i + 16] = ((int)(byte >> 4) - 8) * d;
        }
    }
    // Elements 8 j .. 8 j + 8 of group G (j < 4), with the same arithmetic as load().
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const uint2 q2 = ((const uint2*)base)[2 * G + (j & 1)];
        const uint32_t q[2] = {q2.x, q2.y};
        const int shift = (j >> 1) * 4;
        const float d = scale(base, ng, G);
#pragma unroll
        for (int i = 0; i < 8; i++)
            v[i] = ((int)((q[i / 4] >> (8 * (i % 4) + shift)) & 0xF) - 8) * d;
    }
};

// value = q * d + m; nibble order as Q4_0; scales are (d, m) f16 pairs.
template <> struct Fmt<RF_Q4_1> {
    static constexpr int qbytes = 16, sbytes = 4;
    __device__ static uint4 quants(const uint8_t* base, size_t G) {
        return ((const uint4*)base)[G];
    }
    __device__ static float2 scales(const uint8_t* base, size_t ng, size_t G) {
        const uint32_t u = ((const uint32_t*)(base + ng * qbytes))[G];
        return make_float2(rf_half_to_float(u & 0xFFFF), rf_half_to_float(u >> 16));
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
        const uint4 q4 = quants(base, G);
        const uint32_t q[4] = {q4.x, q4.y, q4.z, q4.w};
        const float2 dm = scales(base, ng, G);
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const uint32_t byte = (q[i / 4] >> (8 * (i % 4))) & 0xFF;
            v[i] = (byte & 0xF) * dm.x + dm.y;
            v[i + 16] = (byte >> 4) * dm.x + dm.y;
        }
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const uint2 q2 = ((const uint2*)base)[2 * G + (j & 1)];
        const uint32_t q[2] = {q2.x, q2.y};
        const int shift = (j >> 1) * 4;
        const float2 dm = scales(base, ng, G);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = ((q[i / 4] >> (8 * (i % 4) + shift)) & 0xF) * dm.x + dm.y;
    }
};

// value = q * d, q signed bytes.
template <> struct Fmt<RF_Q8_0> {
    static constexpr int qbytes = 32, sbytes = 2;
    __device__ static float scale(const uint8_t* base, size_t ng, size_t G) {
        return rf_half_to_float(((const uint16_t*)(base + ng * qbytes))[G]);
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
        const uint4* p = (const uint4*)(base + G * qbytes);
        const float d = scale(base, ng, G);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint4 q4 = p[h];
            const uint32_t q[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
            for (int i = 0; i < 16; i++)
                v[16 * h + i] = (float)(int8_t)((q[i / 4] >> (8 * (i % 4))) & 0xFF) * d;
        }
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const uint2 q2 = ((const uint2*)(base + G * qbytes))[j];
        const uint32_t q[2] = {q2.x, q2.y};
        const float d = scale(base, ng, G);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = (float)(int8_t)((q[i / 4] >> (8 * (i % 4))) & 0xFF) * d;
    }
};

template <> struct Fmt<RF_F16> {
    static constexpr int qbytes = 64, sbytes = 0;
    __device__ static void load(const uint8_t* base, size_t, size_t G, float* v) {
        const uint4* p = (const uint4*)(base + G * qbytes);  // 64-byte groups: 16-byte aligned
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
    __device__ static void load8(const uint8_t* base, size_t, size_t G, int j, float* v) {
        const uint4 w = ((const uint4*)(base + G * qbytes))[j];
        const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = rf_half_to_float(u[i] & 0xFFFF);
            v[2 * i + 1] = rf_half_to_float(u[i] >> 16);
        }
    }
};

template <> struct Fmt<RF_BF16> {
    static constexpr int qbytes = 64, sbytes = 0;
    __device__ static void load(const uint8_t* base, size_t, size_t G, float* v) {
        const uint4* p = (const uint4*)(base + G * qbytes);
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
    __device__ static void load8(const uint8_t* base, size_t, size_t G, int j, float* v) {
        const uint4 w = ((const uint4*)(base + G * qbytes))[j];
        const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = rf_bf16_to_float(u[i] & 0xFFFF);
            v[2 * i + 1] = rf_bf16_to_float(u[i] >> 16);
        }
    }
};

template <> struct Fmt<RF_F32> {
    static constexpr int qbytes = 128, sbytes = 0;
    __device__ static void load(const uint8_t* base, size_t, size_t G, float* v) {
        const float4* p = (const float4*)(base + G * qbytes);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float4 w = p[i];
            v[4 * i] = w.x; v[4 * i + 1] = w.y; v[4 * i + 2] = w.z; v[4 * i + 3] = w.w;
        }
    }
    __device__ static void load8(const uint8_t* base, size_t, size_t G, int j, float* v) {
        const float4* p = (const float4*)(base + G * qbytes) + 2 * j;
        const float4 a = p[0], b = p[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
};

// Every row has a device layout, of its group size.
#define RF_CHECK_FMT(name, id, elems, bytes, matvec)                              \
    static_assert(Fmt<id>::qbytes + Fmt<id>::sbytes == RfType<id>::group_bytes, \
                  #name ": Fmt<T> holds one group of 32 elements");
RF_QUANT_TYPES(RF_CHECK_FMT)
#undef RF_CHECK_FMT

// A type id as a compile-time constant, as rf_visit_type passes it.
template <int T> struct RfTypeTag {
    static constexpr int value = T;
};

// Calls f(RfTypeTag<T>()) for the row of RF_QUANT_TYPES whose id is `ty`; false (f not
// called) for an id without a row.
template <class F> inline bool rf_visit_type(int ty, F&& f) {
    switch (ty) {
#define RF_TYPE_CASE(name, id, elems, bytes, matvec) \
    case id: f(RfTypeTag<id>()); return true;
        RF_QUANT_TYPES(RF_TYPE_CASE)
#undef RF_TYPE_CASE
        default: return false;
    }
}

// Runs CALL (a statement, or a { block } without top-level commas) with `constexpr int T` set
// to the runtime type id, or returns RF_ERR_BAD_TYPE for an unknown one.
#define RF_DISPATCH_TYPE(ty, CALL)                     \
    if (!rf_visit_type(ty, [&](auto rf_tag) {          \
            constexpr int T = decltype(rf_tag)::value; \
            CALL;                                      \
        }))                                            \
        return RF_ERR_BAD_TYPE;
