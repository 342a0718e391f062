// Matrix-vector products for decode (a few tokens at once), weight dequantization for the BLAS
// prefill path, and the one-time rearrangement of quantized weights at upload.
//
// Mat-vec: one 32-lane team per weight row; lane L takes groups L, L + 32, ... of 32 weights,
// so a team reads a contiguous stretch of the row's quants (16-byte loads) per step. Quantized
// weights are dotted with int8 activations (groups of 32 with their scale and sums) through
// 4-way int8 dot products in exactly the CPU's order (src/quant/dot, "canonical order"): each
// group's integer sum is exact, lane L accumulates fma(sum, d_w * d_x, acc) over its groups,
// and the 32 lane sums meet in the butterfly of kernels/numerics.h; the results are the CPU's
// bits. Float weights are dotted with the f32 activations, rounded as the CPU rounds them for
// that weight type (within a few ulp of the CPU, not bit-identical).
#include "rf_kernels.h"
#include "quant.h"
#include "numerics.h"
#include "kv_cache.h"
#include "qgroup.h"
#include "rope_store.h"

#define RF_MAX_MATVEC_TOKENS 8

// 32-lane teams per block; counted in groups of 32 lanes, never in waves, so the same launch
// shape is right for wave32 and wave64.
#define MV_GROUPS (RF_BLOCK / 32)

// Joins the lanes' sums (butterfly) and writes (or adds to) y[t, row] for each token. With
// `rk.rot` set, the results of neighbouring teams (rows 2p, 2p + 1: one RoPE pair, as a block's
// teams cover whole pairs) are rotated by rf_rope_rotate and stored where rf_rope_kv stores
// them. Called by every thread of the block.
// ROPE is a template flag so that plain products carry no shared memory (which would change
// the L1 / shared split the mat-vec relies on for its activations: measured 3-9 % slower).
template <int N, bool ROPE>
__device__ __forceinline__ void mv_finish(const float* acc, int n, bool active, int row,
                                          float* y, int ldy, int accumulate,
                                          const RfRopeKv& rk) {
    const int lane = threadIdx.x % 32;
    if constexpr (!ROPE) {
#pragma unroll
        for (int t = 0; t < N; t++) {
            if (t < n) {
                const float s = rf_butterfly32(acc[t]);
                if (active && lane == 0) {
                    float* dst = y + (size_t)t * ldy + row;
                    *dst = accumulate ? *dst + s : s;
                }
            }
        }
        return;
    }
    const int team = threadIdx.x / 32;
    __shared__ float pair_sums[N][MV_GROUPS];
#pragma unroll
    for (int t = 0; t < N; t++) {
        if (t < n) {
            const float s = rf_butterfly32(acc[t]);
            if (lane == 0) pair_sums[t][team] = s;
        }
    }
    __syncthreads();
    if (lane == 0 && team % 2 == 0 && active)
        for (int t = 0; t < n; t++)
            rf_store_rope_pair(rk, row, t, pair_sums[t][team], pair_sums[t][team + 1], y, ldy);
    rf_note_cells(rk, n);
}

// mv_finish for teams of two rows (lanes 0..15 one row, 16..31 the next; the K-quant mat-vec
// of rows of at most 16 super-blocks): each half holds the 16 lane sums of its row, whose other 16 canonical lanes are
// +0. The 32-lane butterfly's first step (mask 16) would add those zeros, which changes
// nothing but -0 into +0: `+ 0.0f` does exactly that, and the remaining steps (masks 8..1)
// stay inside the half, in the butterfly's order. With ROPE the two rows are one RoPE pair.
template <int N, bool ROPE>
__device__ __forceinline__ void mv_finish_half(const float* acc, int n, bool active, int row,
                                               float* y, int ldy, int accumulate,
                                               const RfRopeKv& rk) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int t = 0; t < N; t++) {
        if (t < n) {
            float s = acc[t] + 0.0f;
#pragma unroll
            for (int m = 8; m > 0; m >>= 1) s += rf_shfl_xor(s, m);
            if constexpr (ROPE) {
                const float b = rf_shfl_group32(s, 16);  // the pair's odd row, to lane 0
                if (lane == 0 && active) rf_store_rope_pair(rk, row, t, s, b, y, ldy);
            } else if (active && lane % 16 == 0) {
                float* dst = y + (size_t)t * ldy + row;
                *dst = accumulate ? *dst + s : s;
            }
        }
    }
    if constexpr (ROPE) rf_note_cells(rk, n);
}

// Software pipelining: each lane holds one group of weights in use and has the next in flight
// (the first one loads before the wait on the previous kernel). At 40 registers six blocks fit
// an SM, which the mat-vecs of 6,144 rows need to run in one wave; the compiler is held to that
// (RF_MV_MIN_BLOCKS), as small code changes otherwise tip it to 48 registers and 5 blocks.
// Only for single-token 4-bit products: Q8_0's groups (and several tokens' sums) spill at 40
// registers, and Q8_0 ran as fast at 61 (291 vs 292 tok/s).
// Measured on an H100 (Llama-3-8B shape, GPU-only decode, Q4_0 / Q8_0 tok/s): two groups
// loaded then used, no pipelining 457 / 285; this 468 / 291; two in use and two in flight
// 431 / 287; one in use and two or three in flight 418-425 / 280-282; nothing loaded before
// the wait 415 / 282. Before: an L2 prefetch of each team's row, a K-split over several teams
// and a grid-stride loop over rows were all slower.
#if defined(RF_PLATFORM_NVIDIA)
#define RF_MV_MIN_BLOCKS 6
#else
#define RF_MV_MIN_BLOCKS 1  // HIP's second launch bound counts waves per EU: left at default
#endif

// One 32-lane team per row: lane L takes groups L, L + 32, ... in ascending order (the
// canonical order of the CPU's dot products), and the lanes meet in the butterfly. N: most
// tokens (n <= N, a compile-time bound so the accumulators stay in registers). Launched
// overlapped: the first weights load before the previous kernel has finished.
template <int T, int N, bool ROPE>
__global__ void __launch_bounds__(RF_BLOCK, N == 1 && T != RF_Q8_0 ? RF_MV_MIN_BLOCKS : 1)
    matvec_q_kernel(const uint8_t* w, int rows, int cols, const int8_t* xq, const float4* xs,
                    int n, float* y, int ldy, int accumulate, RfRopeKv rk) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * MV_GROUPS + threadIdx.x / 32;
    const bool active = row < rows;
    const int ng = cols / 32;
    const size_t ng_total = (size_t)rows * ng;
    const size_t first = (size_t)row * ng;  // the row's first group
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = 0.0f;
    QGroup<T> cur, next;
    if (active && lane < ng) cur.load(w, ng_total, first + lane);  // weights are never written
    rf_wait_previous();
    rf_release_next();
    if (active) {
        for (int g = lane; g < ng; g += 32) {
            if (g + 32 < ng) next.load(w, ng_total, first + g + 32);
#pragma unroll
            for (int t = 0; t < N; t++) {
                if (t < n) {
                    const int4* xp = (const int4*)(xq + (size_t)t * cols + g * 32);
                    const int4 a = xp[0], c = xp[1];
                    const int x[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
                    acc[t] = cur.acc(x, xs[(size_t)t * ng + g], acc[t]);
                }
            }
            cur = next;
        }
    }
    mv_finish<N, ROPE>(acc, n, active, row, y, ldy, accumulate, rk);
}

template <int T, int N>
static void launch_mv(const uint8_t* w, int rows, int cols, const int8_t* xq, const float4* xs,
                      int n, float* y, int ldy, int accumulate, const RfRopeKv& rk,
                      hipStream_t s) {
    const dim3 grid((rows + MV_GROUPS - 1) / MV_GROUPS);
    if (rk.rot)
        RF_LAUNCH_OVERLAPPED((matvec_q_kernel<T, N, true>), grid, dim3(RF_BLOCK), 0, s, w, rows,
                             cols, xq, xs, n, y, ldy, accumulate, rk);
    else
        RF_LAUNCH_OVERLAPPED((matvec_q_kernel<T, N, false>), grid, dim3(RF_BLOCK), 0, s, w, rows,
                             cols, xq, xs, n, y, ldy, accumulate, rk);
}

template <int T>
static void launch_mv_n(const uint8_t* w, int rows, int cols, const int8_t* xq,
                        const float4* xs, int n, float* y, int ldy, int accumulate,
                        const RfRopeKv& rk, hipStream_t s) {
    if (n == 1)
        launch_mv<T, 1>(w, rows, cols, xq, xs, n, y, ldy, accumulate, rk, s);
    else if (n == 2)
        launch_mv<T, 2>(w, rows, cols, xq, xs, n, y, ldy, accumulate, rk, s);
    else if (n <= 4)
        launch_mv<T, 4>(w, rows, cols, xq, xs, n, y, ldy, accumulate, rk, s);
    else
        launch_mv<T, RF_MAX_MATVEC_TOKENS>(w, rows, cols, xq, xs, n, y, ldy, accumulate, rk, s);
}

// ---- K-quant mat-vec: super-block S of a row goes to lane S % 32 (the canonical order of the
// K-quants, src/quant/dot/scalar.rs). Per super-block and token the lane forms the exact
// integer parts isum = Σ_j sc_j (q . a)_j and msum = Σ_j m_j bsum_j, then
//   acc = fma((float)isum, d * a.d, acc);  acc = fma(-(float)msum, dmin * a.d, acc)
// (the second only for types with mins), as the CPU does. Weights are read once per super-block
// for all the tokens, 16-byte plane by plane (coalesced across the team, see quant.h).

// Integer parts of one super-block S against the activations of tokens t < n: xa[t] points at
// the token's 256 quants of this super-block, bs[t] at its 16 group sums. Returns the float
// factors (d, dmin) of the super-block.
template <int T> struct KDot;

template <> struct KDot<RF_Q4_K> {
    static constexpr bool has_min = true;
    template <int N>
    __device__ static float2 parts(const uint4* P, const uint8_t* w, size_t nsb, size_t S,
                                   const int8_t* const* xa, int xs, const int16_t* const* bs, int n,
                                   int* isum, int* msum) {
        const uint4 h = P[8];
        const uint32_t sp[3] = {h.y, h.z, h.w};
#pragma unroll
        for (int c = 0; c < 4; c++) {  // sub-blocks 2c (low nibbles) and 2c + 1 (high)
            const uint4 a = P[2 * c];
            const uint4 b = P[2 * c + 1];
            const uint32_t q[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            const int2 sm0 = rf_scale_min_k4(sp, 2 * c), sm1 = rf_scale_min_k4(sp, 2 * c + 1);
#pragma unroll
            for (int t = 0; t < N; t++) {
                if (t < n) {
                    const int4 p0 = rf_q8k_chunk(xa[t], xs, 4 * c);
                    const int4 p1 = rf_q8k_chunk(xa[t], xs, 4 * c + 1);
                    const int4 p2 = rf_q8k_chunk(xa[t], xs, 4 * c + 2);
                    const int4 p3 = rf_q8k_chunk(xa[t], xs, 4 * c + 3);
                    const int xl[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
                    const int xh[8] = {p2.x, p2.y, p2.z, p2.w, p3.x, p3.y, p3.z, p3.w};
                    int lo = 0, hi = 0;
#pragma unroll
                    for (int i = 0; i < 8; i++) {
                        lo = rf_dp4a((int)(q[i] & 0x0F0F0F0Fu), xl[i], lo);
                        hi = rf_dp4a((int)((q[i] >> 4) & 0x0F0F0F0Fu), xh[i], hi);
                    }
                    isum[t] += sm0.x * lo + sm1.x * hi;
                    // the 4 group sums of sub-blocks 2c, 2c + 1 in one 8-byte load
                    const int2 b = *(const int2*)(bs[t] + 4 * c);
                    msum[t] += sm0.y * ((int)(int16_t)(b.x & 0xFFFF) + (b.x >> 16)) +
                               sm1.y * ((int)(int16_t)(b.y & 0xFFFF) + (b.y >> 16));
                }
            }
        }
        return make_float2(rf_half_to_float(h.x & 0xFFFF), rf_half_to_float(h.x >> 16));
    }
};

template <> struct KDot<RF_Q6_K> {
    static constexpr bool has_min = false;
    template <int N>
    __device__ static float2 parts(const uint4* P, const uint8_t* w, size_t nsb, size_t S,
                                   const int8_t* const* xa, int xs, const int16_t* const* bs, int n,
                                   int* isum, int*) {
        const uint4 scv = P[12];
        const uint32_t scw[4] = {scv.x, scv.y, scv.z, scv.w};
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int u = 0; u < 2; u++) {
                // elements 128 h + 32 k + 16 u + (0..16) for k = 0..3: sub-block 8 h + 2 k + u
                const uint4 A = P[4 * h + u];
                const uint4 B = P[4 * h + 2 + u];
                const uint4 C = P[8 + 2 * h + u];
                const uint32_t a[4] = {A.x, A.y, A.z, A.w}, b[4] = {B.x, B.y, B.z, B.w};
                const uint32_t c[4] = {C.x, C.y, C.z, C.w};
                uint32_t q[4][4];  // [k][word]
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    q[0][i] = (a[i] & 0x0F0F0F0Fu) | ((c[i] << 4) & 0x30303030u);
                    q[1][i] = (b[i] & 0x0F0F0F0Fu) | ((c[i] << 2) & 0x30303030u);
                    q[2][i] = ((a[i] >> 4) & 0x0F0F0F0Fu) | (c[i] & 0x30303030u);
                    q[3][i] = ((b[i] >> 4) & 0x0F0F0F0Fu) | ((c[i] >> 2) & 0x30303030u);
                }
#pragma unroll
                for (int t = 0; t < N; t++) {
                    if (t < n) {
#pragma unroll
                        for (int k = 0; k < 4; k++) {
                            const int j = 8 * h + 2 * k + u;
                            const int4 x = rf_q8k_chunk(xa[t], xs, j);
                            int s = rf_dp4a((int)q[k][0], x.x, 0);
                            s = rf_dp4a((int)q[k][1], x.y, s);
                            s = rf_dp4a((int)q[k][2], x.z, s);
                            s = rf_dp4a((int)q[k][3], x.w, s);
                            s -= 32 * bs[t][j];
                            const int sc = (int)(int8_t)((scw[j / 4] >> (8 * (j % 4))) & 0xFF);
                            isum[t] += sc * s;
                        }
                    }
                }
            }
        }
        return make_float2(Fmt<RF_Q6_K>::d(w, nsb, S), 0.0f);
    }
};

template <> struct KDot<RF_Q5_K> {
    static constexpr bool has_min = true;
    template <int N>
    __device__ static float2 parts(const uint4* P, const uint8_t* w, size_t nsb, size_t S,
                                   const int8_t* const* xa, int xs, const int16_t* const* bs, int n,
                                   int* isum, int* msum) {
        const uint4 h = P[10];
        const uint32_t sp[3] = {h.y, h.z, h.w};
        const uint4 qa = P[8];
        const uint4 qb = P[9];
        const uint32_t qh[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
        for (int c = 0; c < 4; c++) {  // sub-blocks 2c (low nibbles) and 2c + 1 (high)
            const uint4 a = P[2 * c];
            const uint4 b = P[2 * c + 1];
            const uint32_t q[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            uint32_t lo[8], hi[8];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                lo[i] = (q[i] & 0x0F0F0F0Fu) | (((qh[i] >> (2 * c)) & 0x01010101u) << 4);
                hi[i] = ((q[i] >> 4) & 0x0F0F0F0Fu) | (((qh[i] >> (2 * c + 1)) & 0x01010101u) << 4);
            }
            const int2 sm0 = rf_scale_min_k4(sp, 2 * c), sm1 = rf_scale_min_k4(sp, 2 * c + 1);
#pragma unroll
            for (int t = 0; t < N; t++) {
                if (t < n) {
                    const int4 p0 = rf_q8k_chunk(xa[t], xs, 4 * c);
                    const int4 p1 = rf_q8k_chunk(xa[t], xs, 4 * c + 1);
                    const int4 p2 = rf_q8k_chunk(xa[t], xs, 4 * c + 2);
                    const int4 p3 = rf_q8k_chunk(xa[t], xs, 4 * c + 3);
                    const int xl[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
                    const int xh[8] = {p2.x, p2.y, p2.z, p2.w, p3.x, p3.y, p3.z, p3.w};
                    int dl = 0, dh = 0;
#pragma unroll
                    for (int i = 0; i < 8; i++) {
                        dl = rf_dp4a((int)lo[i], xl[i], dl);
                        dh = rf_dp4a((int)hi[i], xh[i], dh);
                    }
                    isum[t] += sm0.x * dl + sm1.x * dh;
                    // the 4 group sums of sub-blocks 2c, 2c + 1 in one 8-byte load
                    const int2 b = *(const int2*)(bs[t] + 4 * c);
                    msum[t] += sm0.y * ((int)(int16_t)(b.x & 0xFFFF) + (b.x >> 16)) +
                               sm1.y * ((int)(int16_t)(b.y & 0xFFFF) + (b.y >> 16));
                }
            }
        }
        return make_float2(rf_half_to_float(h.x & 0xFFFF), rf_half_to_float(h.x >> 16));
    }
};

// Q3_K: the 3-bit value q + 4 (0..7) is dotted, and 4 bsum_j taken off per sub-block.
template <> struct KDot<RF_Q3_K> {
    static constexpr bool has_min = false;
    template <int N>
    __device__ static float2 parts(const uint4* P, const uint8_t* w, size_t nsb, size_t S,
                                   const int8_t* const* xa, int xs, const int16_t* const* bs, int n,
                                   int* isum, int*) {
        uint32_t sp[3];
        const float d = Fmt<RF_Q3_K>::scales(w, nsb, S, sp);
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const uint4 H = P[u];
            const uint32_t m[4] = {H.x, H.y, H.z, H.w};
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const uint4 Q = P[2 + 2 * h + u];
                const uint32_t qw[4] = {Q.x, Q.y, Q.z, Q.w};
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int j = 8 * h + 2 * k + u;
                    uint32_t q[4];
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        q[i] = ((qw[i] >> (2 * k)) & 0x03030303u) |
                               (((m[i] >> (4 * h + k)) & 0x01010101u) << 2);
                    const int sc = Fmt<RF_Q3_K>::scale(sp, j);
#pragma unroll
                    for (int t = 0; t < N; t++) {
                        if (t < n) {
                            const int4 x = rf_q8k_chunk(xa[t], xs, j);
                            int s = rf_dp4a((int)q[0], x.x, 0);
                            s = rf_dp4a((int)q[1], x.y, s);
                            s = rf_dp4a((int)q[2], x.z, s);
                            s = rf_dp4a((int)q[3], x.w, s);
                            isum[t] += sc * (s - 4 * bs[t][j]);
                        }
                    }
                }
            }
        }
        return make_float2(d, 0.0f);
    }
};

template <> struct KDot<RF_Q2_K> {
    static constexpr bool has_min = true;
    template <int N>
    __device__ static float2 parts(const uint4* P, const uint8_t* w, size_t nsb, size_t S,
                                   const int8_t* const* xa, int xs, const int16_t* const* bs, int n,
                                   int* isum, int* msum) {
        const uint4 scv = P[0];
        const uint32_t scw[4] = {scv.x, scv.y, scv.z, scv.w};
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const uint4 Q = P[1 + 2 * h + u];
                const uint32_t qw[4] = {Q.x, Q.y, Q.z, Q.w};
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int j = 8 * h + 2 * k + u;
                    const int packed = (scw[j / 4] >> (8 * (j % 4))) & 0xFF;
#pragma unroll
                    for (int t = 0; t < N; t++) {
                        if (t < n) {
                            const int4 x = rf_q8k_chunk(xa[t], xs, j);
                            int s = rf_dp4a((int)((qw[0] >> (2 * k)) & 0x03030303u), x.x, 0);
                            s = rf_dp4a((int)((qw[1] >> (2 * k)) & 0x03030303u), x.y, s);
                            s = rf_dp4a((int)((qw[2] >> (2 * k)) & 0x03030303u), x.z, s);
                            s = rf_dp4a((int)((qw[3] >> (2 * k)) & 0x03030303u), x.w, s);
                            isum[t] += (packed & 0x0F) * s;
                            msum[t] += (packed >> 4) * bs[t][j];
                        }
                    }
                }
            }
        }
        return Fmt<RF_Q2_K>::dm(w, nsb, S);
    }
};

// IQ4_XS: per sub-block j (plane j) the table values . a, times the signed scale ls_j - 32;
// no mins.
template <> struct KDot<RF_IQ4_XS> {
    static constexpr bool has_min = false;
    template <int N>
    __device__ static float2 parts(const uint4* P, const uint8_t* w, size_t nsb, size_t S,
                                   const int8_t* const* xa, int xs, const int16_t* const*, int n,
                                   int* isum, int*) {
        const uint2 h = Fmt<RF_IQ4_XS>::head(w, nsb, S);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const uint4 Q = P[j];
            const uint32_t qw[4] = {Q.x, Q.y, Q.z, Q.w};
            uint32_t lo[4], hi[4];  // elements 4i.. and 16 + 4i.. as signed table values
#pragma unroll
            for (int i = 0; i < 4; i++) {
                lo[i] = rf_iq4_word(qw[i] & 0x0F0F0F0Fu);
                hi[i] = rf_iq4_word((qw[i] >> 4) & 0x0F0F0F0Fu);
            }
            const int sc = Fmt<RF_IQ4_XS>::scale(h, j);
#pragma unroll
            for (int t = 0; t < N; t++) {
                if (t < n) {
                    const int4 p0 = rf_q8k_chunk(xa[t], xs, 2 * j);
                    const int4 p1 = rf_q8k_chunk(xa[t], xs, 2 * j + 1);
                    const int xv[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
                    int s = 0;
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        s = rf_dp4a((int)lo[i], xv[i], s);
                        s = rf_dp4a((int)hi[i], xv[4 + i], s);
                    }
                    isum[t] += sc * s;
                }
            }
        }
        return make_float2(rf_half_to_float(h.x & 0xFFFF), 0.0f);
    }
};

// One super-block's planes in registers (tails are read where they are used). Loading them all
// before any arithmetic keeps a lane's whole super-block in flight at once.
template <int T> struct KPlanes {
    uint4 p[Fmt<T>::planes];
    __device__ __forceinline__ void load(const uint8_t* w, size_t nsb, size_t S) {
#pragma unroll
        for (int k = 0; k < Fmt<T>::planes; k++) p[k] = *(const uint4*)rf_plane(w, nsb, S, k);
    }
};

// LPR lanes per row: 32, or 16 for rows of at most 16 super-blocks (4096 columns: most of a
// Llama-3-8B layer), where a 32-lane team would leave half its lanes without a super-block;
// then a team takes two rows, and lane L of a half still holds super-block L, as the canonical
// order has it (see mv_finish_half). The first super-block's planes load before the wait on
// the previous kernel (weights are never written), as the blocks-of-32 mat-vec does.
// Measured on the H200 (Llama-3-8B shape cut to 8 layers, tg128, Q4_K_M / Q6_K tok/s): 955 /
// 945 before (one row per team, loads after the wait); 972-1006 / 952-977 so; every lane
// 32 per row with the early load 944-968 / 943-946; at most 64 registers (4 blocks per SM)
// 968-994 / 870-872; a team taking 2 or 4 row pairs with the next pair's planes in flight
// 762-869 / 786-825 (136-157 registers); the next super-block in flight on wide rows 979-984
// / 918-944. What held it was the activations: each lane read its super-block's 256 quants
// and 16 group sums on its own, so every 16-byte load of a team touched 32 cache lines (about
// 700 L1 sectors per team and super-block against 144 for the weights). With the quants
// stored chunk-major (act.hip's act_store_q8k, RfQ8KHead's comment) and the group sums read 8 bytes at
// a time: Q4_K_M 1,470 tok/s, 0.42 of the copy bandwidth.
// `block`: this block's index among the product's blocks (see matvec_k_pair_kernel).
template <int T, int N, bool ROPE, int LPR>
__device__ __forceinline__ void matvec_k_rows(int block, const uint8_t* w, int rows, int cols,
                                              const int8_t* xq, const RfQ8KHead* xh, int n,
                                              float* y, int ldy, int accumulate,
                                              const RfRopeKv& rk) {
    static_assert(LPR == 32 || LPR == 16, "a row takes a team or half of one");
    const int lane = threadIdx.x % 32;
    const int sub = lane % LPR;
    const int row = (block * MV_GROUPS + threadIdx.x / 32) * (32 / LPR) + lane / LPR;
    const bool active = row < rows;
    const int nsb = cols / 256;
    const size_t nsb_total = (size_t)rows * nsb;
    const size_t first = (size_t)row * nsb;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = 0.0f;
    KPlanes<T> cur;
    if (active && sub < nsb) cur.load(w, nsb_total, first + sub);
    rf_wait_previous();
    rf_release_next();
    if (active) {
        for (int sb = sub; sb < nsb; sb += LPR) {
            if (sb != sub) cur.load(w, nsb_total, first + sb);
            const int8_t* xa[N];
            const int16_t* bs[N];
            int isum[N], msum[N];
#pragma unroll
            for (int t = 0; t < N; t++) {
                xa[t] = xq + (size_t)t * cols + (size_t)sb * 16;  // chunk 0 (see RfQ8KHead)
                bs[t] = xh[(size_t)t * nsb + sb].bsums;
                isum[t] = 0;
                msum[t] = 0;
            }
            const float2 dm = KDot<T>::template parts<N>(cur.p, w, nsb_total, first + sb, xa,
                                                         nsb * 16, bs, n, isum, msum);
#pragma unroll
            for (int t = 0; t < N; t++) {
                if (t < n) {
                    const float ad = xh[(size_t)t * nsb + sb].d;
                    acc[t] = fmaf((float)isum[t], __fmul_rn(dm.x, ad), acc[t]);
                    if constexpr (KDot<T>::has_min)
                        acc[t] = fmaf(-(float)msum[t], __fmul_rn(dm.y, ad), acc[t]);
                }
            }
        }
    }
    if constexpr (LPR == 32)
        mv_finish<N, ROPE>(acc, n, active, row, y, ldy, accumulate, rk);
    else
        mv_finish_half<N, ROPE>(acc, n, active, row, y, ldy, accumulate, rk);
}

template <int T, int N, bool ROPE, int LPR>
__global__ void __launch_bounds__(RF_BLOCK)
    matvec_k_kernel(const uint8_t* w, int rows, int cols, const int8_t* xq,
                    const RfQ8KHead* xh, int n, float* y, int ldy, int accumulate, RfRopeKv rk) {
    matvec_k_rows<T, N, ROPE, LPR>(blockIdx.x, w, rows, cols, xq, xh, n, y, ldy, accumulate,
                                   rk);
}

// Two K-quant matrices of one width, read against the same activations, in one launch: the
// first `blocks0` blocks take the rows of w0 (type T0), the rest those of w1 (T1), each exactly
// as matvec_k_kernel would (same lanes, same chain, same bits). For a Q|K|V product whose V
// has another type than Q|K (llama.cpp's K-quant mixes give some layers' attn_v more bits).
template <int T0, int T1, int N, bool ROPE, int LPR>
__global__ void __launch_bounds__(RF_BLOCK)
    matvec_k_pair_kernel(const uint8_t* w0, int rows0, int blocks0, float* y0, RfRopeKv rk0,
                         const uint8_t* w1, int rows1, float* y1, RfRopeKv rk1, int cols,
                         const int8_t* xq, const RfQ8KHead* xh, int n, int ldy, int accumulate) {
    if ((int)blockIdx.x < blocks0)
        matvec_k_rows<T0, N, ROPE, LPR>(blockIdx.x, w0, rows0, cols, xq, xh, n, y0, ldy,
                                        accumulate, rk0);
    else
        matvec_k_rows<T1, N, ROPE, LPR>(blockIdx.x - blocks0, w1, rows1, cols, xq, xh, n, y1, ldy,
                                        accumulate, rk1);
}

// Rows of 33..128 super-blocks (ffn_down: 14,336 columns of Llama-3-8B are 56, 18,944 of
// Qwen2.5-7B 74): M teams per row, team k's lane L holding super-block 32 k + L, so every
// super-block of the row is loaded at once, before the wait on the previous kernel. (One team
// per row loaded a lane's second super-block only after the first one's arithmetic: two
// memory round trips in a row, ffn_down at 1.7 TB/s of the H100's 3.0.) The integer parts
// and the factor products of a super-block do not depend on the order, so teams k > 0 leave
// theirs in shared memory and lane L of team 0 takes them up in the canonical order:
// acc = fma(isum, d * a.d, acc) (and the min term) for super-blocks L, L + 32, ..., exactly
// the one-team kernel's chain, so the same bits. R rows per block of 32 M R threads.
template <int M> struct KSplitShape {
    static constexpr int rows = M == 3 ? 2 : 8 / M;
    static constexpr int threads = 32 * M * rows;
};

template <int T, int N, int M>
__global__ void __launch_bounds__(KSplitShape<M>::threads)
    matvec_k_split_kernel(const uint8_t* w, int rows, int cols, const int8_t* xq,
                          const RfQ8KHead* xh, int n, float* y, int ldy, int accumulate) {
    static_assert(M >= 2 && M <= 4, "two to four teams per row");
    constexpr int THREADS = KSplitShape<M>::threads;
    // (isum, msum) and (d * a.d, dmin * a.d) of each thread's super-block, per token.
    __shared__ int2 parts_s[N][THREADS];
    __shared__ float2 factors_s[N][THREADS];
    const int lane = threadIdx.x % 32;
    const int team = threadIdx.x / 32;
    const int k = team % M;
    const int row = blockIdx.x * KSplitShape<M>::rows + team / M;
    const bool active = row < rows;
    const int nsb = cols / 256;
    const int sb = 32 * k + lane;
    const bool mine = active && sb < nsb;
    const size_t nsb_total = (size_t)rows * nsb;
    const size_t S = (size_t)row * nsb + sb;
    KPlanes<T> cur;
    if (mine) cur.load(w, nsb_total, S);
    rf_wait_previous();
    rf_release_next();
    int isum[N], msum[N];
    float f[N], g[N];
#pragma unroll
    for (int t = 0; t < N; t++) {
        isum[t] = 0;
        msum[t] = 0;
        f[t] = 0.0f;
        g[t] = 0.0f;
    }
    if (mine) {
        const int8_t* xa[N];
        const int16_t* bs[N];
#pragma unroll
        for (int t = 0; t < N; t++) {
            xa[t] = xq + (size_t)t * cols + (size_t)sb * 16;  // chunk 0 (see RfQ8KHead)
            bs[t] = xh[(size_t)t * nsb + sb].bsums;
        }
        const float2 dm =
            KDot<T>::template parts<N>(cur.p, w, nsb_total, S, xa, nsb * 16, bs, n, isum, msum);
#pragma unroll
        for (int t = 0; t < N; t++) {
            if (t < n) {
                const float ad = xh[(size_t)t * nsb + sb].d;
                f[t] = __fmul_rn(dm.x, ad);
                g[t] = __fmul_rn(dm.y, ad);
            }
        }
        if (k > 0) {
#pragma unroll
            for (int t = 0; t < N; t++) {
                parts_s[t][threadIdx.x] = make_int2(isum[t], msum[t]);
                factors_s[t][threadIdx.x] = make_float2(f[t], g[t]);
            }
        }
    }
    __syncthreads();
    // Whole teams leave: the butterfly below stays inside team 0.
    if (k > 0 || !active) return;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++) {
        acc[t] = 0.0f;
        if (t < n && mine) {
            acc[t] = fmaf((float)isum[t], f[t], acc[t]);
            if constexpr (KDot<T>::has_min) acc[t] = fmaf(-(float)msum[t], g[t], acc[t]);
        }
    }
#pragma unroll
    for (int kk = 1; kk < M; kk++) {
        if (32 * kk + lane < nsb) {
            const int i = threadIdx.x + 32 * kk;
#pragma unroll
            for (int t = 0; t < N; t++) {
                if (t < n) {
                    const int2 p = parts_s[t][i];
                    const float2 q = factors_s[t][i];
                    acc[t] = fmaf((float)p.x, q.x, acc[t]);
                    if constexpr (KDot<T>::has_min) acc[t] = fmaf(-(float)p.y, q.y, acc[t]);
                }
            }
        }
    }
    const RfRopeKv none{};
    mv_finish<N, false>(acc, n, true, row, y, ldy, accumulate, none);
}

template <int T, int N, int M>
static void launch_mv_k_split(const uint8_t* w, int rows, int cols, const int8_t* xq,
                              const RfQ8KHead* xh, int n, float* y, int ldy, int accumulate,
                              hipStream_t s) {
    const dim3 grid((rows + KSplitShape<M>::rows - 1) / KSplitShape<M>::rows);
    RF_LAUNCH_OVERLAPPED((matvec_k_split_kernel<T, N, M>), grid, dim3(KSplitShape<M>::threads),
                         0, s, w, rows, cols, xq, xh, n, y, ldy, accumulate);
}

template <int T, int N, int LPR>
static void launch_mv_k_lanes(const uint8_t* w, int rows, int cols, const int8_t* xq,
                              const RfQ8KHead* xh, int n, float* y, int ldy, int accumulate,
                              const RfRopeKv& rk, hipStream_t s) {
    const int rows_per_block = MV_GROUPS * (32 / LPR);
    const dim3 grid((rows + rows_per_block - 1) / rows_per_block);
    if (rk.rot)
        RF_LAUNCH_OVERLAPPED((matvec_k_kernel<T, N, true, LPR>), grid, dim3(RF_BLOCK), 0, s, w,
                             rows, cols, xq, xh, n, y, ldy, accumulate, rk);
    else
        RF_LAUNCH_OVERLAPPED((matvec_k_kernel<T, N, false, LPR>), grid, dim3(RF_BLOCK), 0, s, w,
                             rows, cols, xq, xh, n, y, ldy, accumulate, rk);
}

// Rows of 33..128 super-blocks take the split kernel (Llama-3-8B Q4_K_M decode on an H100,
// with attention writing the output projection's Q8_K input: 344 -> 370 tok/s).
template <int T, int N>
static void launch_mv_k(const uint8_t* w, int rows, int cols, const int8_t* xq,
                        const RfQ8KHead* xh, int n, float* y, int ldy, int accumulate,
                        const RfRopeKv& rk, hipStream_t s) {
    const int nsb = cols / 256;
    if (!rk.rot && nsb > 32 && nsb <= 128) {
        if (nsb <= 64)
            launch_mv_k_split<T, N, 2>(w, rows, cols, xq, xh, n, y, ldy, accumulate, s);
        else if (nsb <= 96)
            launch_mv_k_split<T, N, 3>(w, rows, cols, xq, xh, n, y, ldy, accumulate, s);
        else
            launch_mv_k_split<T, N, 4>(w, rows, cols, xq, xh, n, y, ldy, accumulate, s);
    } else if (cols <= 16 * 256)
        launch_mv_k_lanes<T, N, 16>(w, rows, cols, xq, xh, n, y, ldy, accumulate, rk, s);
    else
        launch_mv_k_lanes<T, N, 32>(w, rows, cols, xq, xh, n, y, ldy, accumulate, rk, s);
}

template <int T>
static void launch_mv_k_n(const uint8_t* w, int rows, int cols, const int8_t* xq,
                          const RfQ8KHead* xh, int n, float* y, int ldy, int accumulate,
                          const RfRopeKv& rk, hipStream_t s) {
    if (n == 1)
        launch_mv_k<T, 1>(w, rows, cols, xq, xh, n, y, ldy, accumulate, rk, s);
    else if (n == 2)
        launch_mv_k<T, 2>(w, rows, cols, xq, xh, n, y, ldy, accumulate, rk, s);
    else if (n <= 4)
        launch_mv_k<T, 4>(w, rows, cols, xq, xh, n, y, ldy, accumulate, rk, s);
    else
        launch_mv_k<T, RF_MAX_MATVEC_TOKENS>(w, rows, cols, xq, xh, n, y, ldy, accumulate, rk, s);
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

template <int T, bool ROPE>
__global__ void matvec_f_kernel(const uint8_t* w, int rows, int cols, const float* x, int n,
                                float* y, int ldy, int accumulate, RfRopeKv rk) {
    const int grp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * MV_GROUPS + grp;
    const bool active = row < rows;
    const int ng = cols / 32;
    float acc[RF_MAX_MATVEC_TOKENS];
#pragma unroll
    for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) acc[t] = 0.0f;
    if (active) {
        for (int g = lane; g < ng; g += 32) {
            float v[32];
            Fmt<T>::load(w, 0, (size_t)row * ng + g, v);
#pragma unroll
            for (int t = 0; t < RF_MAX_MATVEC_TOKENS; t++) {
                if (t < n) {
                    const float* xp = x + (size_t)t * cols + g * 32;
#pragma unroll
                    for (int i = 0; i < 32; i++) acc[t] = fmaf(v[i], rf_round1<T>(xp[i]), acc[t]);
                }
            }
        }
    }
    mv_finish<RF_MAX_MATVEC_TOKENS, ROPE>(acc, n, active, row, y, ldy, accumulate, rk);
}

template <int T>
static void launch_mv_f(dim3 grid, hipStream_t s, const uint8_t* w, int rows, int cols,
                        const float* x, int n, float* y, int ldy, int accumulate,
                        const RfRopeKv& rk) {
    if (rk.rot)
        hipLaunchKernelGGL((matvec_f_kernel<T, true>), grid, dim3(RF_BLOCK), 0, s, w, rows, cols,
                           x, n, y, ldy, accumulate, rk);
    else
        hipLaunchKernelGGL((matvec_f_kernel<T, false>), grid, dim3(RF_BLOCK), 0, s, w, rows, cols,
                           x, n, y, ldy, accumulate, rk);
}

extern "C" int rf_matvec(int ty, const void* w, int rows, int cols, const float* x,
                         const int8_t* xq, const void* xq_scales, int n, float* y, int ldy,
                         int accumulate, const RfRopeKv* rope_kv, void* stream) {
    if (cols % 32 != 0 || n <= 0 || n > RF_MAX_MATVEC_TOKENS || rows <= 0 || ldy < rows)
        return RF_ERR_SHAPE;
    if (rf_block_elems(ty) > 32 && cols % rf_block_elems(ty) != 0) return RF_ERR_SHAPE;
    RfRopeKv rk = {};
    if (rope_kv) {
        rk = *rope_kv;
        // whole pairs per block, whole heads, and a plain store
        if (!rk.rot || rk.head_dim % 2 != 0 || rk.out_offset % 2 != 0 || MV_GROUPS % 2 != 0 ||
            accumulate)
            return RF_ERR_SHAPE;
        // Element by element stores: f32 and f16 caches (q8_0 rows go through rf_qkv_post).
        if (rk.kv_type != RF_KV_F32 && rk.kv_type != RF_KV_F16) return RF_ERR_SHAPE;
    }
    const dim3 grid((rows + MV_GROUPS - 1) / MV_GROUPS);
    hipStream_t s = (hipStream_t)stream;
    const uint8_t* wb = (const uint8_t*)w;
    const float4* xs = (const float4*)xq_scales;
    RF_DISPATCH_TYPE(ty, {
        if constexpr (RfType<T>::super_block) {
            launch_mv_k_n<T>(wb, rows, cols, xq, (const RfQ8KHead*)xq_scales, n, y, ldy,
                             accumulate, rk, s);
        } else if constexpr (RfType<T>::int8_matvec)
            launch_mv_n<T>(wb, rows, cols, xq, xs, n, y, ldy, accumulate, rk, s);
        else
            launch_mv_f<T>(grid, s, wb, rows, cols, x, n, y, ldy, accumulate, rk);
    });
    return (int)hipGetLastError();
}

// The type pairs of one launch (Q|K type, V type): those llama.cpp's K-quant mixes give a Q|K|V
// product (src/api/quantize/mix.rs): Q4_K_M, Q5_K_M, Q4_K_S, Q3_K_M / L, Q2_K, IQ4_XS.
#define RF_MATVEC_PAIRS(X)       \
    X(RF_Q4_K, RF_Q6_K)          \
    X(RF_Q5_K, RF_Q6_K)          \
    X(RF_Q4_K, RF_Q5_K)          \
    X(RF_Q3_K, RF_Q5_K)          \
    X(RF_Q3_K, RF_Q4_K)          \
    X(RF_Q2_K, RF_Q4_K)          \
    X(RF_Q2_K, RF_Q3_K)          \
    X(RF_IQ4_XS, RF_Q5_K)

template <int T0, int T1, int N, bool ROPE, int LPR>
static void launch_mv_k_pair(const uint8_t* w0, int rows0, float* y0, const RfRopeKv& rk0,
                             const uint8_t* w1, int rows1, float* y1, const RfRopeKv& rk1,
                             int cols, const int8_t* xq, const RfQ8KHead* xh, int n, int ldy,
                             int accumulate, hipStream_t s) {
    const int rows_per_block = MV_GROUPS * (32 / LPR);
    const int blocks0 = (rows0 + rows_per_block - 1) / rows_per_block;
    const dim3 grid(blocks0 + (rows1 + rows_per_block - 1) / rows_per_block);
    RF_LAUNCH_OVERLAPPED((matvec_k_pair_kernel<T0, T1, N, ROPE, LPR>), grid, dim3(RF_BLOCK), 0, s,
                         w0, rows0, blocks0, y0, rk0, w1, rows1, y1, rk1, cols, xq, xh, n, ldy,
                         accumulate);
}

template <int T0, int T1, int N>
static void launch_mv_k_pair_n(const uint8_t* w0, int rows0, float* y0, const RfRopeKv& rk0,
                               const uint8_t* w1, int rows1, float* y1, const RfRopeKv& rk1,
                               int cols, const int8_t* xq, const RfQ8KHead* xh, int n, int ldy,
                               int accumulate, hipStream_t s) {
    // As launch_mv_k chooses for rows of this width (the split kernel's widths are refused).
    if (rk0.rot) {
        if (cols <= 16 * 256)
            launch_mv_k_pair<T0, T1, N, true, 16>(w0, rows0, y0, rk0, w1, rows1, y1, rk1, cols,
                                                  xq, xh, n, ldy, accumulate, s);
        else
            launch_mv_k_pair<T0, T1, N, true, 32>(w0, rows0, y0, rk0, w1, rows1, y1, rk1, cols,
                                                  xq, xh, n, ldy, accumulate, s);
    } else if (cols <= 16 * 256)
        launch_mv_k_pair<T0, T1, N, false, 16>(w0, rows0, y0, rk0, w1, rows1, y1, rk1, cols, xq,
                                               xh, n, ldy, accumulate, s);
    else
        launch_mv_k_pair<T0, T1, N, false, 32>(w0, rows0, y0, rk0, w1, rows1, y1, rk1, cols, xq,
                                               xh, n, ldy, accumulate, s);
}

extern "C" int rf_matvec_pair(int ty0, const void* w0, int rows0, float* y0,
                              const RfRopeKv* rope0, int ty1, const void* w1, int rows1,
                              float* y1, const RfRopeKv* rope1, int cols, const int8_t* xq,
                              const void* xq_heads, int n, int ldy, int accumulate,
                              void* stream) {
    if (cols % 256 != 0 || n <= 0 || n > RF_MAX_MATVEC_TOKENS || rows0 <= 0 || rows1 <= 0)
        return RF_ERR_SHAPE;
    if ((rope0 == nullptr) != (rope1 == nullptr)) return RF_ERR_SHAPE;
    RfRopeKv rk0 = {}, rk1 = {};
    if (rope0) {
        rk0 = *rope0;
        rk1 = *rope1;
        // as rf_matvec: whole pairs per block, f32 / f16 caches, a plain store
        if (!rk0.rot || rk0.head_dim % 2 != 0 || rk0.out_offset % 2 != 0 ||
            rk1.out_offset % 2 != 0 || rows0 % 2 != 0 || accumulate)
            return RF_ERR_SHAPE;
        if (rk0.kv_type != RF_KV_F32 && rk0.kv_type != RF_KV_F16) return RF_ERR_SHAPE;
    }
    const int nsb = cols / 256;
    if (!rope0 && nsb > 32 && nsb <= 128) return RF_MATVEC_NOT_PAIRED;
    const uint8_t* a = (const uint8_t*)w0;
    const uint8_t* b = (const uint8_t*)w1;
    const RfQ8KHead* xh = (const RfQ8KHead*)xq_heads;
    hipStream_t s = (hipStream_t)stream;
#define RF_PAIR_CASE(A, B)                                                                     \
    if (ty0 == A && ty1 == B) {                                                                \
        if (n == 1)                                                                            \
            launch_mv_k_pair_n<A, B, 1>(a, rows0, y0, rk0, b, rows1, y1, rk1, cols, xq, xh, n, \
                                        ldy, accumulate, s);                                   \
        else if (n == 2)                                                                       \
            launch_mv_k_pair_n<A, B, 2>(a, rows0, y0, rk0, b, rows1, y1, rk1, cols, xq, xh, n, \
                                        ldy, accumulate, s);                                   \
        else if (n <= 4)                                                                       \
            launch_mv_k_pair_n<A, B, 4>(a, rows0, y0, rk0, b, rows1, y1, rk1, cols, xq, xh, n, \
                                        ldy, accumulate, s);                                   \
        else                                                                                   \
            launch_mv_k_pair_n<A, B, RF_MAX_MATVEC_TOKENS>(a, rows0, y0, rk0, b, rows1, y1,    \
                                                           rk1, cols, xq, xh, n, ldy,          \
                                                           accumulate, s);                     \
        return (int)hipGetLastError();                                                         \
    }
    RF_MATVEC_PAIRS(RF_PAIR_CASE)
#undef RF_PAIR_CASE
    return RF_MATVEC_NOT_PAIRED;
}

// Four threads per group of 32 weights, each dequantizing 8 neighbouring elements and writing
// them as one 16-byte store, so a wave's stores cover one contiguous stretch.
template <int T>
__global__ void dequant_f16_kernel(const uint8_t* w, size_t ng_total, size_t first_group,
                                   size_t n_groups, __half* out) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_groups * 4) return;
    const size_t g = i / 4;
    const int j = (int)(i % 4);
    float v[8];
    Fmt<T>::load8(w, ng_total, first_group + g, j, v);
    union {
        __half2 h[4];
        uint4 u;
    } pack;
#pragma unroll
    for (int k = 0; k < 4; k++) pack.h[k] = __floats2half2_rn(v[2 * k], v[2 * k + 1]);
    ((uint4*)out)[i] = pack.u;
}

extern "C" int rf_dequant_f16(int ty, const void* w, int rows, int row0, int n_rows, int cols,
                              void* out, void* stream) {
    if (cols % 32 != 0 || n_rows <= 0 || row0 < 0 || row0 + n_rows > rows) return RF_ERR_SHAPE;
    if (rf_block_elems(ty) > 32 && cols % rf_block_elems(ty) != 0) return RF_ERR_SHAPE;
    const size_t ng = (size_t)n_rows * (cols / 32);
    const size_t first = (size_t)row0 * (cols / 32);
    const size_t total = (size_t)rows * (cols / 32);
    const dim3 grid((unsigned)((4 * ng + RF_BLOCK - 1) / RF_BLOCK));
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
    static_assert(RfType<T>::block_elems == 32, "a group is one block");
    constexpr int Q = Fmt<T>::qbytes, S = Fmt<T>::sbytes;
    const uint16_t* b = (const uint16_t*)(src + G * RfType<T>::block_bytes);
    uint16_t* sc = (uint16_t*)(dst + n_groups * Q + G * S);
    uint16_t* qs = (uint16_t*)(dst + G * Q);
#pragma unroll
    for (int i = 0; i < S / 2; i++) sc[i] = b[i];
#pragma unroll
    for (int i = 0; i < Q / 2; i++) qs[i] = b[S / 2 + i];
}

// K-quants: GGUF super-blocks -> the planes and tails of quant.h. One thread per super-block;
// 2-byte words, as above.
template <int T>
__global__ void repack_k_kernel(const uint8_t* src, size_t nsb, uint8_t* dst) {
    const size_t S = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (S >= nsb) return;
    using F = Fmt<T>;
    const uint16_t* b = (const uint16_t*)(src + S * RfType<T>::block_bytes);
#pragma unroll
    for (int p = 0; p < F::planes; p++) {
        uint16_t* d = (uint16_t*)(dst + ((size_t)p * nsb + S) * 16);
#pragma unroll
        for (int i = 0; i < 8; i++) d[i] = b[F::plane_src(p) / 2 + i];
    }
    uint16_t* t = (uint16_t*)(dst + nsb * F::qbytes + S * F::tail);
#pragma unroll
    for (int i = 0; i < F::tail / 2; i++) t[i] = b[F::tail_src / 2 + i];
}

extern "C" int rf_repack(int ty, const void* src, size_t n_groups, void* dst, void* stream) {
    const dim3 grid((unsigned)((n_groups + RF_BLOCK - 1) / RF_BLOCK));
    hipStream_t s = (hipStream_t)stream;
    bool repacked = false;
    RF_DISPATCH_TYPE(ty, {
        if constexpr (RfType<T>::super_block) {
            hipLaunchKernelGGL(repack_k_kernel<T>, grid, dim3(RF_BLOCK), 0, s,
                               (const uint8_t*)src, n_groups, (uint8_t*)dst);
            repacked = true;
        } else if constexpr (RfType<T>::int8_matvec) {
            hipLaunchKernelGGL(repack_kernel<T>, grid, dim3(RF_BLOCK), 0, s,
                               (const uint8_t*)src, n_groups, (uint8_t*)dst);
            repacked = true;
        }
    });
    if (!repacked) return RF_ERR_BAD_TYPE;  // float types keep their layout
    return (int)hipGetLastError();
}
