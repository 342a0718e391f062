// The blocks-of-32 quantized types as the int8 products read them: one group of 32 weights
// dotted with 32 int8 activations (a group of the Q8_0-style activations: quants and a float4
// (f16 scale, sum, f16(scale * sum), sum as int bits)). Both products, the mat-vec (matvec.hip) and the
// mat-mat (matmul_q.hip), form the group's exact integer sum s their own way (4-way dot
// products, matrix instructions) and then add it to their accumulator through term(), the one
// definition of the float arithmetic: that is what keeps the two bit-identical to each other and
// to the CPU's canonical dot products (src/quant/dot).
//
// Per type T:
//   term(s, dm, xs, acc): the accumulator after adding the group whose raw integer sum of
//     (stored quant x activation quant) is s; dm = (d, m) the group's scales (m unused by the
//     symmetric types).
//   scales(w, ng, G): dm of group G.
//   frag(w, ng, G, t, lo, hi): the stored quants of group G as signed bytes in element order,
//     the four words t (elements 4t .. 4t + 3) and 4 + t (elements 16 + 4t ..).
//   pair(w, ng, G, t, lo, hi): the element words 2t and 2t + 1 (elements 8t .. 8t + 7), the
//     fragment order of the mat-mat's matrix instructions: a permutation of frag's elements,
//     applied to the activations too, which the integer sum does not see.
//   prep(xs) / mm_bias(xp) / mm_term(b, dm, xp, acc): the mat-mat's form of term. prep reduces
//     a token's group scales to the two values the mat-mat keeps (once per token and group, not
//     per output); the integer sum starts from mm_bias(xp) instead of 0 (the matrix unit adds it
//     for free), which folds the type's integer offset into rf_exact_float's bias; and with b
//     that biased sum, mm_term(b, dm, prep(xs), acc) == term(s, dm, xs, acc) bit for bit.
//   QGroup<T>: one group held in registers by a mat-vec lane (load / acc).
#pragma once
#include "quant.h"
#include "numerics.h"

template <int T> struct QGroup;

// The mat-mat's term of a type whose arithmetic is type U's (a derived QGroup may still hide
// prep with its own).
template <int U> struct MmTermAs {
    __device__ static float2 prep(float4 xs) { return QGroup<U>::prep(xs); }
    __device__ static int mm_bias(float2 xp) { return QGroup<U>::mm_bias(xp); }
    __device__ static float mm_term(int b, float2 dm, float2 xp, float acc) {
        return QGroup<U>::mm_term(b, dm, xp, acc);
    }
};

// Q4_0: (q - 8) . x = q . x - 8 sum(x), all integers; one fma with the product of the scales
// (rounded first), as the CPU.
template <> struct QGroup<RF_Q4_0> {
    __device__ static float term(int s, float2 dm, float4 xs, float acc) {
        s -= 8 * __float_as_int(xs.w);
        return fmaf(rf_exact_float(s), __fmul_rn(dm.x, xs.x), acc);
    }
    __device__ static float2 prep(float4 xs) {
        return make_float2(xs.x, __int_as_float(RF_EXACT_FLOAT_BIAS - 8 * __float_as_int(xs.w)));
    }
    __device__ static int mm_bias(float2 xp) { return __float_as_int(xp.y); }
    __device__ static float mm_term(int b, float2 dm, float2 xp, float acc) {
        return fmaf(rf_exact_float_biased(b), __fmul_rn(dm.x, xp.x), acc);
    }
    __device__ static void pair(const uint8_t* w, size_t, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        // Words 2t, 2t + 1 are the low (t < 2) or high nibbles of quant words 2t % 4 and + 1.
        const uint2 q = ((const uint2*)w)[2 * G + (t & 1)];
        const int shift = 4 * (t >> 1);
        lo = (q.x >> shift) & 0x0F0F0F0Fu;
        hi = (q.y >> shift) & 0x0F0F0F0Fu;
    }
    __device__ static float2 scales(const uint8_t* w, size_t ng, size_t G) {
        return make_float2(Fmt<RF_Q4_0>::scale(w, ng, G), 0.0f);
    }
    __device__ static void frag(const uint8_t* w, size_t, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        const uint32_t q = ((const uint32_t*)w)[4 * G + t];
        lo = q & 0x0F0F0F0Fu;
        hi = (q >> 4) & 0x0F0F0F0Fu;
    }

    uint4 q;
    float d;
    __device__ void load(const uint8_t* w, size_t ng, size_t G) {
        q = Fmt<RF_Q4_0>::quants(w, G);
        d = Fmt<RF_Q4_0>::scale(w, ng, G);
    }
    // The raw integer sum of 16 nibble pairs (elements 4i.. in the low nibbles of word i,
    // 16 + 4i.. in the high ones) with the group's 8 activation words.
    __device__ static int nibble_dot(uint4 q, const int* x) {
        const int v[4] = {(int)q.x, (int)q.y, (int)q.z, (int)q.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = rf_dp4a(v[i] & 0x0F0F0F0F, x[i], s);
            s = rf_dp4a((v[i] >> 4) & 0x0F0F0F0F, x[4 + i], s);
        }
        return s;
    }
    __device__ float acc(const int* x, float4 xs, float acc) const {
        return term(nibble_dot(q, x), make_float2(d, 0.0f), xs, acc);
    }
};
// Q4_1: (q d + m) . x = d d_x (q . x_q) + m s_x, with s_x = f16(d_x sum(x_q)) as the CPU's Q8_1.
template <> struct QGroup<RF_Q4_1> {
    __device__ static float term(int s, float2 dm, float4 xs, float acc) {
        acc = fmaf(rf_exact_float(s), __fmul_rn(dm.x, xs.x), acc);
        return fmaf(dm.y, xs.z, acc);
    }
    __device__ static float2 scales(const uint8_t* w, size_t ng, size_t G) {
        return Fmt<RF_Q4_1>::scales(w, ng, G);
    }
    __device__ static float2 prep(float4 xs) { return make_float2(xs.x, xs.z); }
    __device__ static int mm_bias(float2) { return RF_EXACT_FLOAT_BIAS; }
    __device__ static float mm_term(int b, float2 dm, float2 xp, float acc) {
        acc = fmaf(rf_exact_float_biased(b), __fmul_rn(dm.x, xp.x), acc);
        return fmaf(dm.y, xp.y, acc);
    }
    __device__ static void frag(const uint8_t* w, size_t ng, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        QGroup<RF_Q4_0>::frag(w, ng, G, t, lo, hi);  // same nibble layout
    }
    __device__ static void pair(const uint8_t* w, size_t ng, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        QGroup<RF_Q4_0>::pair(w, ng, G, t, lo, hi);
    }

    uint4 q;
    float2 dm;
    __device__ void load(const uint8_t* w, size_t ng, size_t G) {
        q = Fmt<RF_Q4_1>::quants(w, G);
        dm = Fmt<RF_Q4_1>::scales(w, ng, G);
    }
    __device__ float acc(const int* x, float4 xs, float acc) const {
        return term(QGroup<RF_Q4_0>::nibble_dot(q, x), dm, xs, acc);
    }
};
// Q5_0: (q - 16) . x = q . x - 16 sum(x), q the 5-bit quants.
template <> struct QGroup<RF_Q5_0> : MmTermAs<RF_Q4_0> {
    __device__ static float term(int s, float2 dm, float4 xs, float acc) {
        s -= 16 * __float_as_int(xs.w);
        return fmaf(rf_exact_float(s), __fmul_rn(dm.x, xs.x), acc);
    }
    __device__ static float2 scales(const uint8_t* w, size_t ng, size_t G) {
        float d;
        uint32_t qh;
        Fmt<RF_Q5_0>::scales(w, ng, G, &d, &qh);
        return make_float2(d, 0.0f);
    }
    // Word t of Fmt<RF_Q5_0>::words, computed alone.
    __device__ static void words_t(uint32_t q, uint32_t qh, int t, uint32_t& lo, uint32_t& hi) {
        lo = (q & 0x0F0F0F0Fu) | rf_spread4((qh >> (4 * t)) & 0xF);
        hi = ((q >> 4) & 0x0F0F0F0Fu) | rf_spread4((qh >> (16 + 4 * t)) & 0xF);
    }
    __device__ static void frag(const uint8_t* w, size_t ng, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        float d;
        uint32_t qh;
        Fmt<RF_Q5_0>::scales(w, ng, G, &d, &qh);
        words_t(((const uint32_t*)w)[4 * G + t], qh, t, lo, hi);
    }
    __device__ static float2 prep(float4 xs) {
        return make_float2(xs.x,
                           __int_as_float(RF_EXACT_FLOAT_BIAS - 16 * __float_as_int(xs.w)));
    }
    // Element word k takes the fifth bits 4k .. 4k + 3 of qh.
    __device__ static void pair_qh(const uint8_t* w, size_t ng, size_t G, int t, uint32_t qh,
                                   uint32_t& lo, uint32_t& hi) {
        QGroup<RF_Q4_0>::pair(w, ng, G, t, lo, hi);
        lo |= rf_spread4((qh >> (8 * t)) & 0xF);
        hi |= rf_spread4((qh >> (8 * t + 4)) & 0xF);
    }
    __device__ static void pair(const uint8_t* w, size_t ng, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        float d;
        uint32_t qh;
        Fmt<RF_Q5_0>::scales(w, ng, G, &d, &qh);
        pair_qh(w, ng, G, t, qh, lo, hi);
    }

    uint4 q;
    uint32_t qh;
    float d;
    __device__ void load(const uint8_t* w, size_t ng, size_t G) {
        q = Fmt<RF_Q5_0>::quants(w, G);
        Fmt<RF_Q5_0>::scales(w, ng, G, &d, &qh);
    }
    // The raw integer sum of the 5-bit quants (q, qh) with the group's 8 activation words.
    __device__ static int quint_dot(uint4 q, uint32_t qh, const int* x) {
        uint32_t lo[4], hi[4];
        Fmt<RF_Q5_0>::words(q, qh, lo, hi);
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = rf_dp4a((int)lo[i], x[i], s);
            s = rf_dp4a((int)hi[i], x[4 + i], s);
        }
        return s;
    }
    __device__ float acc(const int* x, float4 xs, float acc) const {
        return term(quint_dot(q, qh, x), make_float2(d, 0.0f), xs, acc);
    }
};
// Q5_1: as Q4_1 with 5-bit quants.
template <> struct QGroup<RF_Q5_1> : MmTermAs<RF_Q4_1> {
    __device__ static float term(int s, float2 dm, float4 xs, float acc) {
        return QGroup<RF_Q4_1>::term(s, dm, xs, acc);
    }
    __device__ static float2 scales(const uint8_t* w, size_t ng, size_t G) {
        uint32_t qh;
        return Fmt<RF_Q5_1>::scales(w, ng, G, &qh);
    }
    __device__ static void frag(const uint8_t* w, size_t ng, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        uint32_t qh;
        Fmt<RF_Q5_1>::scales(w, ng, G, &qh);
        QGroup<RF_Q5_0>::words_t(((const uint32_t*)w)[4 * G + t], qh, t, lo, hi);
    }
    __device__ static void pair(const uint8_t* w, size_t ng, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        uint32_t qh;
        Fmt<RF_Q5_1>::scales(w, ng, G, &qh);
        QGroup<RF_Q5_0>::pair_qh(w, ng, G, t, qh, lo, hi);
    }

    uint4 q;
    uint32_t qh;
    float2 dm;
    __device__ void load(const uint8_t* w, size_t ng, size_t G) {
        q = Fmt<RF_Q5_1>::quants(w, G);
        dm = Fmt<RF_Q5_1>::scales(w, ng, G, &qh);
    }
    __device__ float acc(const int* x, float4 xs, float acc) const {
        return term(QGroup<RF_Q5_0>::quint_dot(q, qh, x), dm, xs, acc);
    }
};
// Q8_0: q . x with signed quants.
template <> struct QGroup<RF_Q8_0> {
    __device__ static float term(int s, float2 dm, float4 xs, float acc) {
        return fmaf(rf_exact_float(s), __fmul_rn(dm.x, xs.x), acc);
    }
    __device__ static float2 scales(const uint8_t* w, size_t ng, size_t G) {
        return make_float2(Fmt<RF_Q8_0>::scale(w, ng, G), 0.0f);
    }
    __device__ static void frag(const uint8_t* w, size_t, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        const uint32_t* p = (const uint32_t*)(w + G * Fmt<RF_Q8_0>::qbytes);
        lo = p[t];
        hi = p[4 + t];
    }
    __device__ static float2 prep(float4 xs) { return make_float2(xs.x, 0.0f); }
    __device__ static int mm_bias(float2) { return RF_EXACT_FLOAT_BIAS; }
    __device__ static float mm_term(int b, float2 dm, float2 xp, float acc) {
        return fmaf(rf_exact_float_biased(b), __fmul_rn(dm.x, xp.x), acc);
    }
    __device__ static void pair(const uint8_t* w, size_t, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        const uint2 q = ((const uint2*)(w + G * Fmt<RF_Q8_0>::qbytes))[t];
        lo = q.x;
        hi = q.y;
    }

    uint4 a, b;
    float d;
    __device__ void load(const uint8_t* w, size_t ng, size_t G) {
        const uint4* p = (const uint4*)(w + G * 32);
        a = p[0];
        b = p[1];
        d = Fmt<RF_Q8_0>::scale(w, ng, G);
    }
    __device__ float acc(const int* x, float4 xs, float acc) const {
        const int v[8] = {(int)a.x, (int)a.y, (int)a.z, (int)a.w,
                          (int)b.x, (int)b.y, (int)b.z, (int)b.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) s = rf_dp4a(v[i], x[i], s);
        return term(s, make_float2(d, 0.0f), xs, acc);
    }
};
// IQ4_NL: table[q] . x, the table values as signed bytes (rf_iq4_word); one fma as Q8_0's.
template <> struct QGroup<RF_IQ4_NL> : MmTermAs<RF_Q8_0> {
    __device__ static float term(int s, float2 dm, float4 xs, float acc) {
        return QGroup<RF_Q8_0>::term(s, dm, xs, acc);
    }
    __device__ static float2 scales(const uint8_t* w, size_t ng, size_t G) {
        return make_float2(Fmt<RF_IQ4_NL>::scale(w, ng, G), 0.0f);
    }
    __device__ static void frag(const uint8_t* w, size_t, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        const uint32_t q = ((const uint32_t*)w)[4 * G + t];
        lo = rf_iq4_word(q & 0x0F0F0F0Fu);
        hi = rf_iq4_word((q >> 4) & 0x0F0F0F0Fu);
    }
    __device__ static void pair(const uint8_t* w, size_t ng, size_t G, int t, uint32_t& lo,
                                uint32_t& hi) {
        QGroup<RF_Q4_0>::pair(w, ng, G, t, lo, hi);
        lo = rf_iq4_word(lo);
        hi = rf_iq4_word(hi);
    }

    uint4 q;
    float d;
    __device__ void load(const uint8_t* w, size_t ng, size_t G) {
        q = Fmt<RF_IQ4_NL>::quants(w, G);
        d = Fmt<RF_IQ4_NL>::scale(w, ng, G);
    }
    __device__ float acc(const int* x, float4 xs, float acc) const {
        const uint32_t v[4] = {q.x, q.y, q.z, q.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = rf_dp4a((int)rf_iq4_word(v[i] & 0x0F0F0F0Fu), x[i], s);
            s = rf_dp4a((int)rf_iq4_word((v[i] >> 4) & 0x0F0F0F0Fu), x[4 + i], s);
        }
        return term(s, make_float2(d, 0.0f), xs, acc);
    }
};
