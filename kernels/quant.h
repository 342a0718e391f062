// Weight formats on the device: every supported type is read in groups of 32 elements (one
// GGML block for the quantized types; 32 consecutive values for the float types), so all
// kernels share one loop shape.
#pragma once
#include "arch.h"
#include <stdint.h>

// The GPU backend's tensor types, one row each:
//   X(name, GGUF type id, elements per block, bytes per block, mat-vec activations)
// where the mat-vec reads INT8 activations (quantized weights, rearranged at upload by
// rf_repack) or F32 ones (float weights, kept as stored). Blocks of 32 read int8 groups of 32
// (Q8_0 / Q8_1 style); the K-quants' super-blocks of 256 read Q8_K activations (RfQ8KHead).
// The type ids, RfType<T> and the dispatch below are generated from it; a Rust test
// (src/quant/registry/tests.rs) checks every row against the format registry
// (src/quant/registry.rs), so the two cannot drift. A new type: its row here, its Fmt<T>
// below, and for INT8 its QGroup<T> (blocks of 32) or KDot<T> (super-blocks) in matvec.hip.
#define RF_QUANT_TYPES(X)      \
    X(F32, 0, 1, 4, F32)       \
    X(F16, 1, 1, 2, F32)       \
    X(Q4_0, 2, 32, 18, INT8)   \
    X(Q4_1, 3, 32, 20, INT8)   \
    X(Q5_0, 6, 32, 22, INT8)   \
    X(Q5_1, 7, 32, 24, INT8)   \
    X(Q8_0, 8, 32, 34, INT8)   \
    X(Q2_K, 10, 256, 84, INT8) \
    X(Q3_K, 11, 256, 110, INT8) \
    X(Q4_K, 12, 256, 144, INT8) \
    X(Q5_K, 13, 256, 176, INT8) \
    X(Q6_K, 14, 256, 210, INT8) \
    X(IQ4_NL, 20, 32, 18, INT8) \
    X(IQ4_XS, 23, 256, 136, INT8) \
    X(BF16, 30, 1, 2, F32)

// Type ids as in GGUF: RF_F32, RF_F16, RF_Q4_0, ...
#define RF_TYPE_ID(name, id, elems, bytes, matvec) constexpr int RF_##name = id;
RF_QUANT_TYPES(RF_TYPE_ID)
#undef RF_TYPE_ID

#define RF_MATVEC_INT8 true
#define RF_MATVEC_F32 false

// The row of type T: block geometry, the bytes of one group of 32 elements (of one
// super-block for the K-quants), and whether the mat-vec reads int8 activations.
template <int T> struct RfType;
#define RF_TYPE_INFO(name, id, elems, bytes, matvec)                                    \
    template <> struct RfType<id> {                                                     \
        static_assert(32 % elems == 0 || elems == 256,                                  \
                      #name ": a group of 32 is whole blocks, or a super-block of 256"); \
        static constexpr int block_elems = elems, block_bytes = bytes;                  \
        static constexpr bool super_block = elems == 256;                               \
        static constexpr int group_bytes = super_block ? bytes : 32 / elems * bytes;    \
        static constexpr bool int8_matvec = RF_MATVEC_##matvec;                         \
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

// Spreads 4 bits (bit k of x) to bit 4 of byte k: the fifth bits of Q5_0 / Q5_1 quants.
__device__ __forceinline__ uint32_t rf_spread4(uint32_t x) {
    return ((x & 1u) << 4) | ((x & 2u) << 11) | ((x & 4u) << 18) | ((x & 8u) << 25);
}

// value = (q - 16) * d, q = low nibble (as Q4_0) | fifth bit j of qh << 4. Scales part: the
// GGUF block's first 6 bytes (f16 d, then qh), read as three 2-byte words.
template <> struct Fmt<RF_Q5_0> {
    static constexpr int qbytes = 16, sbytes = 6;
    __device__ static uint4 quants(const uint8_t* base, size_t G) {
        return ((const uint4*)base)[G];
    }
    // (d, qh)
    __device__ static void scales(const uint8_t* base, size_t ng, size_t G, float* d,
                                  uint32_t* qh) {
        const uint16_t* s = (const uint16_t*)(base + ng * qbytes) + 3 * G;
        *d = rf_half_to_float(s[0]);
        *qh = (uint32_t)s[1] | ((uint32_t)s[2] << 16);
    }
    // The 5-bit quant words: element 4 i + k in byte k of lo[i], element 16 + 4 i + k in
    // byte k of hi[i].
    __device__ static void words(uint4 q4, uint32_t qh, uint32_t* lo, uint32_t* hi) {
        const uint32_t q[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            lo[i] = (q[i] & 0x0F0F0F0Fu) | rf_spread4((qh >> (4 * i)) & 0xF);
            hi[i] = ((q[i] >> 4) & 0x0F0F0F0Fu) | rf_spread4((qh >> (16 + 4 * i)) & 0xF);
        }
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        float d;
        uint32_t qh, lo[4], hi[4];
        scales(base, ng, G, &d, &qh);
        words(quants(base, G), qh, lo, hi);
        const uint32_t* w = j < 2 ? lo : hi;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = (w[2 * (j & 1) + i / 4] >> (8 * (i % 4))) & 0xFF;
            v[i] = (float)(q - 16) * d;
        }
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// value = q * d + m, q as Q5_0's; scales part: (f16 d, f16 m, qh), 8 bytes.
template <> struct Fmt<RF_Q5_1> {
    static constexpr int qbytes = 16, sbytes = 8;
    __device__ static uint4 quants(const uint8_t* base, size_t G) {
        return ((const uint4*)base)[G];
    }
    // (d, m) and qh
    __device__ static float2 scales(const uint8_t* base, size_t ng, size_t G, uint32_t* qh) {
        const uint2 u = ((const uint2*)(base + ng * qbytes))[G];
        *qh = u.y;
        return make_float2(rf_half_to_float(u.x & 0xFFFF), rf_half_to_float(u.x >> 16));
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        uint32_t qh, lo[4], hi[4];
        const float2 dm = scales(base, ng, G, &qh);
        Fmt<RF_Q5_0>::words(quants(base, G), qh, lo, hi);
        const uint32_t* w = j < 2 ? lo : hi;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = (w[2 * (j & 1) + i / 4] >> (8 * (i % 4))) & 0xFF;
            v[i] = (float)q * dm.x + dm.y;
        }
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// ---- IQ4: 4-bit indices into a fixed table of 16 signed levels (GGML's kvalues_iq4nl, the
// CPU's formats/iq4_nl.rs VALUES), as bytes: entry k < 8 is byte k of RF_IQ4_LO, entry 8 + k
// byte k of RF_IQ4_HI.
#define RF_IQ4_LO 0xF6EADDCFBFAD9881ull
#define RF_IQ4_HI 0x7159453526190D01ull

// The table value of index i (0..15), as a signed byte in the low 8 bits.
__device__ __forceinline__ uint32_t rf_iq4_byte(uint32_t i) {
    return (uint32_t)(((i & 8) ? RF_IQ4_HI : RF_IQ4_LO) >> (8 * (i & 7))) & 0xFF;
}

// Four indices (one per byte, each 0..15) -> the four table values, bytes in the same order:
// a word of signed bytes for the 4-way dot products. On NVIDIA two byte permutes (`prmt`: byte
// n of the result = byte s[4n + 2 : 4n] of the 8 bytes {y, x}) look all four up in each half
// of the table, and bit 3 of each index picks the half; elsewhere one shift per byte.
__device__ __forceinline__ uint32_t rf_iq4_word(uint32_t idx) {
#if defined(RF_PLATFORM_NVIDIA)
    const uint32_t s = (idx & 0x7u) | ((idx >> 4) & 0x70u) | ((idx >> 8) & 0x700u) |
                       ((idx >> 12) & 0x7000u);
    const uint32_t lo = __byte_perm((uint32_t)RF_IQ4_LO, (uint32_t)(RF_IQ4_LO >> 32), s);
    const uint32_t hi = __byte_perm((uint32_t)RF_IQ4_HI, (uint32_t)(RF_IQ4_HI >> 32), s);
    const uint32_t high_half = ((idx >> 3) & 0x01010101u) * 0xFFu;
    return (lo & ~high_half) | (hi & high_half);
#else
    return rf_iq4_byte(idx & 0xF) | (rf_iq4_byte((idx >> 8) & 0xF) << 8) |
           (rf_iq4_byte((idx >> 16) & 0xF) << 16) | (rf_iq4_byte(idx >> 24) << 24);
#endif  // RF_PLATFORM_NVIDIA
}

// Eight values scale * table[q] from the nibbles at bit `shift` of the 8 bytes of q (the
// CPU's decode: the f32 scale times the table value).
__device__ __forceinline__ void rf_iq4_load8(uint2 q, int shift, float scale, float* v) {
    const uint32_t qw[2] = {q.x, q.y};
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const uint32_t idx = (qw[i / 4] >> (8 * (i % 4) + shift)) & 0xF;
        v[i] = scale * (float)(int8_t)rf_iq4_byte(idx);
    }
}

// IQ4_NL: value = d * table[q]; nibble order as Q4_0's (element j < 16 the low nibble of
// qs[j], j + 16 its high one); scales part: f16 d.
template <> struct Fmt<RF_IQ4_NL> {
    static constexpr int qbytes = 16, sbytes = 2;
    __device__ static uint4 quants(const uint8_t* base, size_t G) {
        return ((const uint4*)base)[G];
    }
    __device__ static float scale(const uint8_t* base, size_t ng, size_t G) {
        return rf_half_to_float(((const uint16_t*)(base + ng * qbytes))[G]);
    }
    // Elements 8 j .. 8 j + 8 of group G (j < 4).
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const uint2 q = ((const uint2*)base)[2 * G + (j & 1)];
        rf_iq4_load8(q, (j >> 1) * 4, scale(base, ng, G), v);
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// ---- K-quants: super-blocks of 256 elements. On the device a super-block is cut into
// 16-byte planes plus a tail of fewer bytes: plane p of super-block S (of `nsb` in the
// matrix) lies at base + (p * nsb + S) * 16, its tail at base + nsb * 16 * planes + S * tail.
// So lane L of a team, reading plane p of super-block L, makes 32 neighbouring 16-byte loads:
// one coalesced 512-byte read. Fmt<T>::plane_src(p) / tail_src say where each part lies in
// the GGUF block (rf_repack). qbytes / sbytes are the plane and tail bytes of a super-block.
// load / load8 take G in groups of 32 (super-block G / 8) and decode as the CPU does.

__device__ __forceinline__ const uint8_t* rf_plane(const uint8_t* base, size_t nsb, size_t S,
                                                   int p) {
    return base + ((size_t)p * nsb + S) * 16;
}

// Byte k of the 12 packed bytes held in s[0..3] (little-endian words).
__device__ __forceinline__ int rf_byte12(const uint32_t* s, int k) {
    return (s[k / 4] >> (8 * (k % 4))) & 0xFF;
}

// The 6-bit (scale, min) of sub-block j from the 12 packed bytes of Q4_K / Q5_K (the CPU's
// q4_k::scale_min).
__device__ __forceinline__ int2 rf_scale_min_k4(const uint32_t* s, int j) {
    if (j < 4) return make_int2(rf_byte12(s, j) & 63, rf_byte12(s, j + 4) & 63);
    return make_int2((rf_byte12(s, j + 4) & 0x0F) | ((rf_byte12(s, j - 4) >> 6) << 4),
                     (rf_byte12(s, j + 4) >> 4) | ((rf_byte12(s, j) >> 6) << 4));
}

// value = (d * sc_j) * q - dmin * m_j; 8 sub-blocks of 32. Planes 0..7: qs (plane p = bytes
// 16 p .. 16 p + 16 of qs: sub-blocks 2 (p / 2) (low nibbles) and 2 (p / 2) + 1 (high), elements
// 16 (p % 2) ..); plane 8: the header (f16 d, f16 dmin, 12 packed scale / min bytes).
template <> struct Fmt<RF_Q4_K> {
    static constexpr int planes = 9, tail = 0;
    static constexpr int qbytes = 16 * planes, sbytes = tail;
    __host__ __device__ static constexpr int plane_src(int p) { return p < 8 ? 16 + 16 * p : 0; }
    static constexpr int tail_src = 0;
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const size_t nsb = ng / 8, S = G / 8;
        const int e0 = (int)(G % 8) * 32 + 8 * j;
        const uint4 h = *(const uint4*)rf_plane(base, nsb, S, 8);
        const uint32_t s[3] = {h.y, h.z, h.w};
        const int sub = e0 / 32, l0 = e0 % 32;
        const int2 sm = rf_scale_min_k4(s, sub);
        const float scale = rf_half_to_float(h.x & 0xFFFF) * (float)sm.x;
        const float min = rf_half_to_float(h.x >> 16) * (float)sm.y;
        const uint2 q = *(const uint2*)(rf_plane(base, nsb, S, (sub / 2) * 2 + l0 / 16) + l0 % 16);
        const uint32_t qw[2] = {q.x, q.y};
        const int shift = 4 * (sub % 2);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int b = (qw[i / 4] >> (8 * (i % 4) + shift)) & 0xF;
            v[i] = scale * (float)b - min;
        }
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// value = (d * sc_j) * (q - 32); 16 sub-blocks of 16, signed 8-bit scales. The GGUF block is
// ql (128 bytes), qh (64), scales (16), f16 d: planes 0..7 are ql, 8..11 qh, 12 the scales
// (plane p = GGUF bytes 16 p ..), the tail is d. Element e = 128 h + 32 k + l: low bits a
// nibble (k / 2) of ql[64 h + 32 (k % 2) + l], top bits 2k.. of qh[32 h + l].
template <> struct Fmt<RF_Q6_K> {
    static constexpr int planes = 13, tail = 2;
    static constexpr int qbytes = 16 * planes, sbytes = tail;
    __host__ __device__ static constexpr int plane_src(int p) { return 16 * p; }
    static constexpr int tail_src = 208;
    __device__ static float d(const uint8_t* base, size_t nsb, size_t S) {
        return rf_half_to_float(((const uint16_t*)(base + nsb * qbytes))[S]);
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const size_t nsb = ng / 8, S = G / 8;
        const int e0 = (int)(G % 8) * 32 + 8 * j;
        const int h = e0 / 128, k = e0 % 128 / 32, l0 = e0 % 32;
        const uint2 lo = *(const uint2*)(rf_plane(base, nsb, S, 4 * h + 2 * (k % 2) + l0 / 16) +
                                         l0 % 16);
        const uint2 hi = *(const uint2*)(rf_plane(base, nsb, S, 8 + 2 * h + l0 / 16) + l0 % 16);
        const int sc = (int8_t)rf_plane(base, nsb, S, 12)[e0 / 16];
        const float scale = d(base, nsb, S) * (float)sc;
        const uint32_t lw[2] = {lo.x, lo.y}, hw[2] = {hi.x, hi.y};
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int sh = 8 * (i % 4);
            const int q = ((lw[i / 4] >> (sh + 4 * (k / 2))) & 0xF) |
                          (((hw[i / 4] >> (sh + 2 * k)) & 3) << 4);
            v[i] = scale * (float)(q - 32);
        }
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// value = (d * sc_j) * q - dmin * m_j with 5-bit q: Q4_K's scales and nibbles plus a fifth
// bit, bit j of qh[l] for element l of sub-block j. The GGUF block is the header (f16 d, f16
// dmin, 12 scale / min bytes), qh (32), qs (128): planes 0..7 are qs (as Q4_K's), 8..9 qh,
// 10 the header.
template <> struct Fmt<RF_Q5_K> {
    static constexpr int planes = 11, tail = 0;
    static constexpr int qbytes = 16 * planes, sbytes = tail;
    __host__ __device__ static constexpr int plane_src(int p) {
        return p < 8 ? 48 + 16 * p : p < 10 ? 16 + 16 * (p - 8) : 0;
    }
    static constexpr int tail_src = 0;
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const size_t nsb = ng / 8, S = G / 8;
        const int e0 = (int)(G % 8) * 32 + 8 * j;
        const uint4 h = *(const uint4*)rf_plane(base, nsb, S, 10);
        const uint32_t s[3] = {h.y, h.z, h.w};
        const int sub = e0 / 32, l0 = e0 % 32;
        const int2 sm = rf_scale_min_k4(s, sub);
        const float scale = rf_half_to_float(h.x & 0xFFFF) * (float)sm.x;
        const float min = rf_half_to_float(h.x >> 16) * (float)sm.y;
        const uint2 q = *(const uint2*)(rf_plane(base, nsb, S, (sub / 2) * 2 + l0 / 16) + l0 % 16);
        const uint2 qh = *(const uint2*)(rf_plane(base, nsb, S, 8 + l0 / 16) + l0 % 16);
        const uint32_t qw[2] = {q.x, q.y}, hw[2] = {qh.x, qh.y};
        const int shift = 4 * (sub % 2);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int sh = 8 * (i % 4);
            const int b = ((qw[i / 4] >> (sh + shift)) & 0xF) | (((hw[i / 4] >> (sh + sub)) & 1) << 4);
            v[i] = scale * (float)b - min;
        }
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// value = (d * (sc_j - 32)) * q, q = 2 low bits - 4 unless the hmask bit is set; 16
// sub-blocks of 16. The GGUF block is hmask (32 bytes), qs (64), 12 packed 6-bit scales, f16
// d: planes 0..1 hmask, 2..5 qs, the tail the scales and d (14 bytes). Element
// e = 128 h + 32 k + l: low bits 2k.. of qs[32 h + l], high bit 4 h + k of hmask[l].
template <> struct Fmt<RF_Q3_K> {
    static constexpr int planes = 6, tail = 14;
    static constexpr int qbytes = 16 * planes, sbytes = tail;
    __host__ __device__ static constexpr int plane_src(int p) { return 16 * p; }
    static constexpr int tail_src = 96;
    // The 12 scale bytes as words and d.
    __device__ static float scales(const uint8_t* base, size_t nsb, size_t S, uint32_t* s) {
        const uint16_t* t = (const uint16_t*)(base + nsb * qbytes + S * tail);
#pragma unroll
        for (int i = 0; i < 3; i++) s[i] = (uint32_t)t[2 * i] | ((uint32_t)t[2 * i + 1] << 16);
        return rf_half_to_float(t[6]);
    }
    // The CPU's q3_k::scale: 6 bits - 32.
    __device__ static int scale(const uint32_t* s, int j) {
        const int low = j < 8 ? rf_byte12(s, j) & 0x0F : rf_byte12(s, j - 8) >> 4;
        const int high = (rf_byte12(s, 8 + j % 4) >> (2 * (j / 4))) & 3;
        return (low | (high << 4)) - 32;
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const size_t nsb = ng / 8, S = G / 8;
        const int e0 = (int)(G % 8) * 32 + 8 * j;
        const int h = e0 / 128, k = e0 % 128 / 32, l0 = e0 % 32;
        uint32_t s[3];
        const float d = scales(base, nsb, S, s);
        const float sc = d * (float)scale(s, e0 / 16);
        const uint2 q = *(const uint2*)(rf_plane(base, nsb, S, 2 + 2 * h + l0 / 16) + l0 % 16);
        const uint2 m = *(const uint2*)(rf_plane(base, nsb, S, l0 / 16) + l0 % 16);
        const uint32_t qw[2] = {q.x, q.y}, mw[2] = {m.x, m.y};
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int sh = 8 * (i % 4);
            const int low = (qw[i / 4] >> (sh + 2 * k)) & 3;
            const int hi = (mw[i / 4] >> (sh + 4 * h + k)) & 1;
            v[i] = sc * (float)(hi ? low : low - 4);
        }
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// value = (d * sc_j) * q - dmin * m_j, q 2 bits; 16 sub-blocks of 16, each with a byte of
// (scale low nibble, min high nibble). The GGUF block is the 16 scale bytes, qs (64), f16 d,
// f16 dmin: plane 0 the scales, 1..4 qs, the tail (d, dmin). Element e = 128 h + 32 k + l:
// bits 2k.. of qs[32 h + l].
template <> struct Fmt<RF_Q2_K> {
    static constexpr int planes = 5, tail = 4;
    static constexpr int qbytes = 16 * planes, sbytes = tail;
    __host__ __device__ static constexpr int plane_src(int p) { return 16 * p; }
    static constexpr int tail_src = 80;
    __device__ static float2 dm(const uint8_t* base, size_t nsb, size_t S) {
        const uint32_t u = ((const uint32_t*)(base + nsb * qbytes))[S];
        return make_float2(rf_half_to_float(u & 0xFFFF), rf_half_to_float(u >> 16));
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const size_t nsb = ng / 8, S = G / 8;
        const int e0 = (int)(G % 8) * 32 + 8 * j;
        const int h = e0 / 128, k = e0 % 128 / 32, l0 = e0 % 32;
        const float2 f = dm(base, nsb, S);
        const int packed = rf_plane(base, nsb, S, 0)[e0 / 16];
        const float scale = f.x * (float)(packed & 0x0F), min = f.y * (float)(packed >> 4);
        const uint2 q = *(const uint2*)(rf_plane(base, nsb, S, 1 + 2 * h + l0 / 16) + l0 % 16);
        const uint32_t qw[2] = {q.x, q.y};
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int b = (qw[i / 4] >> (8 * (i % 4) + 2 * k)) & 3;
            v[i] = scale * (float)b - min;
        }
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
    }
};

// Q8_K activations on the device (the K-quants' mat-vec input), beside the int8 quants
// (n, cols): one header per (token, super-block), as the CPU's BlockQ8K holds them: f32 d
// and the 16 sums of 16 quants. 48 bytes so that each is three 16-byte loads.
// The quants of a token's row are stored chunk-major: its 16 quants k * 16 .. k * 16 + 16 of
// super-block S at byte (k * nsb + S) * 16 of the row (nsb super-blocks per row), as the
// weights' planes are, so that the 32 lanes of a team reading chunk k of their super-blocks
// S, S + 1, ... read 512 contiguous bytes (one super-block's 256 contiguous bytes per lane made
// every such load touch 32 cache lines).
struct __align__(16) RfQ8KHead {
    int16_t bsums[16];
    float d;
    float pad[3];
};
static_assert(sizeof(RfQ8KHead) == 48, "RfQ8KHead: 48 bytes (context.rs sizes the buffer so)");

// Chunk k (16 quants) of the super-block whose chunk 0 is at `xa`, `xs` bytes between chunks.
__device__ __forceinline__ int4 rf_q8k_chunk(const int8_t* xa, int xs, int k) {
    return *(const int4*)(xa + (size_t)k * xs);
}

// Q8_K quantization of super-block `sb` of a row by one aligned 32-lane group, lane L holding
// its elements 8 L .. 8 L + 7 in v. Bit for bit act.hip's
// act_store_q8k (the CPU's q8_k quantizer): the element of largest magnitude, the first on
// ties, maps to -127; q = min(127, round-half-even(-127 / max * x)); d = 1 / iscale; an
// all-zero block is zeros; the sums of each group of 16. `qk` is the row's quants (nsb
// super-blocks, chunk-major as above), `head` the super-block's header.
__device__ __forceinline__ void rf_quantize_q8k_group32(const float* v, int8_t* qk, int nsb,
                                                        int sb, RfQ8KHead* head) {
    const int lane = threadIdx.x % 32;
    float amax = 0.0f, max = 0.0f;
    int idx = 256;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        if (fabsf(v[j]) > amax) {
            amax = fabsf(v[j]);
            max = v[j];
            idx = 8 * lane + j;
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
    int q[8];
    int sum = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        q[j] = amax == 0.0f ? 0 : (int)fminf(rintf(iscale * v[j]), 127.0f);
        sum += q[j];
    }
    sum += __float_as_int(rf_shfl_xor(__int_as_float(sum), 1));  // lanes 2g, 2g + 1: group g
    uint32_t w[2];
#pragma unroll
    for (int h = 0; h < 2; h++)
        w[h] = (uint32_t)(q[4 * h] & 0xFF) | ((uint32_t)(q[4 * h + 1] & 0xFF) << 8) |
               ((uint32_t)(q[4 * h + 2] & 0xFF) << 16) | ((uint32_t)(q[4 * h + 3] & 0xFF) << 24);
    const int g = lane / 2;
    *(uint2*)(qk + ((size_t)g * nsb + sb) * 16 + (lane % 2) * 8) = make_uint2(w[0], w[1]);
    if (lane % 2 == 0) head->bsums[g] = (int16_t)sum;
    if (lane == 0) head->d = amax == 0.0f ? 0.0f : 1.0f / iscale;
}

// The same for a super-block whose 256 floats are at src, written by other blocks of the
// kernel and made visible by __threadfence() (so read past L1).
__device__ __forceinline__ void rf_store_q8k_group32(const float* src, int8_t* qk, int nsb, int sb,
                                                     RfQ8KHead* head) {
    const int lane = threadIdx.x % 32;
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = rf_load_coherent(src + 8 * lane + j);
    rf_quantize_q8k_group32(v, qk, nsb, sb, head);
}

// IQ4_XS: value = (d * (ls_j - 32)) * table[q]; 8 sub-blocks of 32, each one IQ4_NL block's
// indices. The GGUF block is f16 d, u16 scales_h, 4 bytes scales_l, qs (128): planes 0..7 are
// qs (plane p = sub-block p), the tail the 8 header bytes (ls_j: nibble j of scales_l, bits
// 2j.. of scales_h above it).
template <> struct Fmt<RF_IQ4_XS> {
    static constexpr int planes = 8, tail = 8;
    static constexpr int qbytes = 16 * planes, sbytes = tail;
    __host__ __device__ static constexpr int plane_src(int p) { return 8 + 16 * p; }
    static constexpr int tail_src = 0;
    // The header of super-block S: x = d | scales_h << 16, y = scales_l.
    __device__ static uint2 head(const uint8_t* base, size_t nsb, size_t S) {
        return ((const uint2*)(base + nsb * qbytes))[S];
    }
    // The signed scale ls_j - 32 of sub-block j.
    __device__ static int scale(uint2 h, int j) {
        const int low = (h.y >> (4 * j)) & 0xF, high = (h.x >> (16 + 2 * j)) & 3;
        return (low | (high << 4)) - 32;
    }
    __device__ static void load8(const uint8_t* base, size_t ng, size_t G, int j, float* v) {
        const size_t nsb = ng / 8, S = G / 8;
        const int sub = (int)(G % 8), l0 = 8 * j;
        const uint2 h = head(base, nsb, S);
        const float dl = rf_half_to_float(h.x & 0xFFFF) * (float)scale(h, sub);
        const uint2 q = *(const uint2*)(rf_plane(base, nsb, S, sub) + l0 % 16);
        rf_iq4_load8(q, 4 * (l0 / 16), dl, v);
    }
    __device__ static void load(const uint8_t* base, size_t ng, size_t G, float* v) {
#pragma unroll
        for (int j = 0; j < 4; j++) load8(base, ng, G, j, v + 8 * j);
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

// Elements per block of type `ty` (0 for an id without a row): rows of a matrix are whole
// blocks, which the entry points check before dispatching.
inline int rf_block_elems(int ty) {
    int elems = 0;
    rf_visit_type(ty, [&](auto tag) { elems = RfType<decltype(tag)::value>::block_elems; });
    return elems;
}
