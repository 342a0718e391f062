// Quantized matrix-matrix products for steps of many tokens (the tree kernel below: every
// int8 step on NVIDIA, up to 8 tokens on AMD; the staged kernel: the rest, and where a device
// refuses the tree kernel's shared memory): each
// block reads its weights once for up to 32 tokens, and the integer dot products run on the
// matrix units (int8 MMA, m16n8k32, on NVIDIA sm_80+; 4-way dot products elsewhere) — while
// every output keeps the exact arithmetic of the mat-vec, so a token's results are the same
// bits whether it runs alone, in a batch of 8 or in a batch of 500 (and the CPU's).
//
// The canonical order (kernels/numerics.h, src/quant/dot): group g of a row's groups of 32 goes
// to partial L = g % 32, each partial adds its groups in ascending g through
// QGroup<T>::term (qgroup.h), and the 32 partials meet in the butterfly, which at lane 0 is a
// binary tree over the partials in bit-reversed order: ((P0 + P16) + (P8 + P24)) + ... A mat-vec
// lane holds one partial for its row; here one thread holds many outputs, so instead of 32
// partials per output it visits the partials one after another in that bit-reversed order
// (position p holds partial L = bitrev5(p)) and joins each finished partial into a stack of
// subtree sums the way a binary counter carries: the tree's order exactly, with 6 floats per
// output instead of 32. A block may take only an aligned range of positions (a subtree of
// W = 32 / P leaves, P = 2, 4, 8 or 16 parts): its subtree sums go to a scratch buffer and
// rf_matmul_q_join adds them as the tree's top levels do.
//
// Block: MQ_TEAMS 32-lane teams; team w takes 16 weight rows, all NT x 8 tokens of the block
// (NT tiles of 8 tokens). Work goes in stages of MQ_SLICE groups of one position: the block
// copies the stage's token groups and weight quants into shared memory asynchronously (a ring
// of MqDepth stages, the next ones' copies in flight while one computes; the scales pass
// through registers, the tokens' prepared on the way, MqRegs), and each thread then reads its
// weight words from the stage and forms, per token tile, the 16 x 8 integer sums of one group
// — one MMA.
#include <atomic>
#include <stdlib.h>

#include "rf_kernels.h"
#include "quant.h"
#include "qgroup.h"
#include "rope_store.h"

#if defined(RF_PLATFORM_NVIDIA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define MQ_MMA 1
#else
#define MQ_MMA 0
#endif

#define MQ_TEAMS 4
#define MQ_THREADS (32 * MQ_TEAMS)
#define MQ_ROWS (16 * MQ_TEAMS)  // weight rows per block
#define MQ_SLICE 4                // groups of a partial staged at once (one stage)
// Shared words per token and group. The MMA path reads a token's words 2t, 2t + 1 with one
// 8-byte load: at 8 words apart, the 8 tokens x 4 pairs of a half-warp cover the 32 banks once.
// The dot-product path reads all 8 words of 4 tokens at once: 12 apart keeps them off each
// other's banks.
#if MQ_MMA
#define MQ_STRIDE 8
#else
#define MQ_STRIDE 12
#endif

__device__ __forceinline__ int mq_bitrev5(int p) { return (int)(__brev((unsigned)p) >> 27); }

// The exact integer sums of one group for a 16 x 8 tile: rows r0 (this thread's row g = lane
// / 4) and r0 + 8, tokens 2 (lane % 4) and + 1 of the tile, in the MMA accumulator order
// c[0] = (g, 2t), c[1] = (g, 2t + 1), c[2] = (g + 8, 2t), c[3] = (g + 8, 2t + 1).
// Each sum starts from its token's bias (QGroup::mm_bias), `bias` in that order.
// `a`: this thread's weight words, `xw`: the tile's token words in shared memory.
#if MQ_MMA
// The MMA's k index 4t + i holds element 8t + i and 16 + 4t + i holds 8t + 4 + i (QGroup::pair
// and the token's words 2t, 2t + 1): a permutation of the 32 products of the integer sum.
struct MqWeights {
    uint32_t lo0, lo1, hi0, hi1;  // rows g / g + 8: element words 2t / 2t + 1
};
template <int T>
__device__ __forceinline__ void mq_load(const uint8_t* w, size_t ng, size_t G0, size_t G1,
                                        int t, MqWeights& a) {
    QGroup<T>::pair(w, ng, G0, t, a.lo0, a.hi0);
    QGroup<T>::pair(w, ng, G1, t, a.lo1, a.hi1);
}
__device__ __forceinline__ void mq_dot(const MqWeights& a, const int* xw, int lane, int4 bias,
                                       int c[4]) {
    const int g = lane / 4, t = lane % 4;
    const int2 b = *(const int2*)&xw[g * MQ_STRIDE + 2 * t];
    // Early-clobber outputs: the weight words stay in their registers for the next tile.
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%10, %11, %12, %13};"
        : "=&r"(c[0]), "=&r"(c[1]), "=&r"(c[2]), "=&r"(c[3])
        : "r"(a.lo0), "r"(a.lo1), "r"(a.hi0), "r"(a.hi1), "r"(b.x), "r"(b.y), "r"(bias.x),
          "r"(bias.y), "r"(bias.z), "r"(bias.w));
}
#else
struct MqWeights {
    uint32_t w0[8], w1[8];  // rows g / g + 8, elements 4i .. 4i + 3 in word i
};
template <int T>
__device__ __forceinline__ void mq_load(const uint8_t* w, size_t ng, size_t G0, size_t G1,
                                        int, MqWeights& a) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        QGroup<T>::frag(w, ng, G0, i, a.w0[i], a.w0[4 + i]);
        QGroup<T>::frag(w, ng, G1, i, a.w1[i], a.w1[4 + i]);
    }
}
__device__ __forceinline__ void mq_dot(const MqWeights& a, const int* xw, int lane, int4 bias,
                                       int c[4]) {
    const int t = lane % 4;
    const int init[4] = {bias.x, bias.y, bias.z, bias.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const int* x = xw + (2 * t + (k & 1)) * MQ_STRIDE;
        const uint32_t* wr = k < 2 ? a.w0 : a.w1;
        int s = init[k];
#pragma unroll
        for (int i = 0; i < 8; i++) s = rf_dp4a((int)wr[i], x[i], s);
        c[k] = s;
    }
}
#endif

// Asynchronous 16-byte copy global -> shared (cp.async on sm_80+, a plain copy elsewhere), and
// the wait for all but the latest group of them.
__device__ __forceinline__ void mq_copy16(void* dst_shared, const void* src) {
#if MQ_MMA
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst_shared);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src));
#else
    *(int4*)dst_shared = *(const int4*)src;
#endif
}
__device__ __forceinline__ void mq_commit() {
#if MQ_MMA
    asm volatile("cp.async.commit_group;" ::);
#endif
}

// One stage's data in shared memory: the tokens' int8 groups and their prepared scales
// (QGroup::prep, tokens 2t and 2t + 1 side by side for one 16-byte read), and the block's
// weights for MQ_SLICE groups of each row, laid out as quant.h's device layout of a small
// matrix (quants of every group, then their scales) with group index row * MQ_SLICE + j, so
// QGroup<T>::pair / scales read it as they read global memory.
template <int T, int NT> struct MqStage {
    static constexpr int QB = Fmt<T>::qbytes, SB = Fmt<T>::sbytes;
    static constexpr int NGS = MQ_ROWS * MQ_SLICE;  // groups staged
    int x[MQ_SLICE][8 * NT][MQ_STRIDE];
    float2 xp[MQ_SLICE][8 * NT];
    // Per pair of tokens u: the biases of 2u, 2u + 1, 2u, 2u + 1, as the MMA's accumulator
    // input takes them (one 16-byte read).
    int4 xb[MQ_SLICE][4 * NT];
    uint8_t w[NGS * (QB + SB)];
};

// What one thread copies into every stage, fixed for the whole kernel: per copy the offset of
// its source at the block's first group (byte offsets into the weights, which the host keeps
// below 2^32; element offsets into the activations) and whether it lies in the matrix. A
// stage then adds its group offset (a block-wide value) to each: one add and one address each.
template <int T, int NT> struct MqPlan {
    using S = MqStage<T, NT>;
    static constexpr int CHUNKS = S::QB / 16;         // 16-byte pieces of a group's quants
    static constexpr int PIECES = S::SB / 2;          // 2-byte pieces of its scales
    static constexpr int NX = MQ_SLICE * 8 * NT * 2;  // token copies (two halves a group)
    static constexpr int NP = MQ_SLICE * 8 * NT;      // token scales
    static constexpr int NW = S::NGS * CHUNKS;        // weight quant copies
    static constexpr int NS = S::NGS * PIECES;        // weight scale pieces
    static constexpr int KX = (NX + MQ_THREADS - 1) / MQ_THREADS;
    static constexpr int KW = (NW + MQ_THREADS - 1) / MQ_THREADS;
    static constexpr int KS = (NS + MQ_THREADS - 1) / MQ_THREADS;
    static constexpr int KP = (NP + MQ_THREADS - 1) / MQ_THREADS;
    uint32_t x_off[KX], w_off[KW], s_off[KS], p_off[KP];
    int x_j[KX], w_j[KW], s_j[KS], p_j[KP];  // slice index of each copy; MQ_SLICE when none

    // Group (row r, column group L + 32 (j0 + j)) of the block is at r * ng + 32 j + (L + 32
    // j0): the plan holds all but the last term.
    __device__ void init(int ng, int rows, int r_blk, int cols, int t0, int n_here) {
        const int tid = threadIdx.x;
#pragma unroll
        for (int k = 0; k < KX; k++) {
            const int i = tid + k * MQ_THREADS;
            const int h = i % 2, tok = (i / 2) % (8 * NT), j = i / (2 * 8 * NT);
            x_j[k] = i < NX && tok < n_here ? j : MQ_SLICE;
            x_off[k] = (uint32_t)((t0 + tok) * cols + 32 * 32 * j + 16 * h);
        }
#pragma unroll
        for (int k = 0; k < KP; k++) {
            const int i = tid + k * MQ_THREADS;
            const int tok = i % (8 * NT), j = i / (8 * NT);
            p_j[k] = i < NP && tok < n_here ? j : MQ_SLICE;
            p_off[k] = (uint32_t)((t0 + tok) * ng + 32 * j);
        }
#pragma unroll
        for (int k = 0; k < KW; k++) {
            const int i = tid + k * MQ_THREADS;
            const int c = i % CHUNKS, gl = i / CHUNKS, r = gl / MQ_SLICE, j = gl % MQ_SLICE;
            w_j[k] = i < NW ? j : MQ_SLICE;
            const uint32_t row = (uint32_t)min(r_blk + r, rows - 1);
            w_off[k] = (row * (uint32_t)ng + 32 * j) * S::QB + 16 * c;
        }
#pragma unroll
        for (int k = 0; k < KS; k++) {
            const int i = tid + k * MQ_THREADS;
            const int c = i % PIECES, gl = i / PIECES, r = gl / MQ_SLICE, j = gl % MQ_SLICE;
            s_j[k] = i < NS ? j : MQ_SLICE;
            const uint32_t row = (uint32_t)min(r_blk + r, rows - 1);
            s_off[k] = (row * (uint32_t)ng + 32 * j) * PIECES + c;  // in 2-byte pieces
        }
    }
};

// The pieces of a stage that pass through registers: the weight scales (2-byte pieces, too
// small and unaligned for the asynchronous copies) and this thread's token scales (prepared on
// the way).
template <int T, int NT> struct MqRegs {
    uint16_t s[MqPlan<T, NT>::KS];
    float4 xs[MqPlan<T, NT>::KP];
};

// Starts loading the stage of groups L + 32 (j0 + j), j < nj, into `st`: tokens and weight
// quants asynchronously, the scales into `rg` (stored by mq_store once the stage's turn comes).
template <int T, int NT>
__device__ __forceinline__ void mq_issue(MqStage<T, NT>& st, MqRegs<T, NT>& rg,
                                        const MqPlan<T, NT>& plan, const uint8_t* w,
                                        size_t ng_total, const int8_t* xq, const float4* xs,
                                        int L, int j0, int nj) {
    using S = MqStage<T, NT>;
    using P = MqPlan<T, NT>;
    const uint32_t G = (uint32_t)(L + 32 * j0);  // the stage's first group of row 0
    const int tid = threadIdx.x;
#pragma unroll
    for (int k = 0; k < P::KX; k++) {
        const int i = tid + k * MQ_THREADS;
        const int h = i % 2, tok = (i / 2) % (8 * NT);
        if (plan.x_j[k] < nj)
            mq_copy16(&st.x[plan.x_j[k]][tok][4 * h], xq + plan.x_off[k] + 32 * G);
    }
#pragma unroll
    for (int k = 0; k < P::KW; k++) {
        const int i = tid + k * MQ_THREADS;
        if (plan.w_j[k] < nj)
            mq_copy16(st.w + (size_t)(i / P::CHUNKS) * S::QB + 16 * (i % P::CHUNKS),
                      w + plan.w_off[k] + G * S::QB);
    }
    mq_commit();
#pragma unroll
    for (int k = 0; k < P::KP; k++)
        rg.xs[k] = plan.p_j[k] < nj ? xs[plan.p_off[k] + G] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const uint16_t* scales = (const uint16_t*)(w + ng_total * S::QB);
#pragma unroll
    for (int k = 0; k < P::KS; k++)
        rg.s[k] = plan.s_j[k] < nj ? scales[plan.s_off[k] + G * P::PIECES] : 0;
}

template <int T, int NT>
__device__ __forceinline__ void mq_store(MqStage<T, NT>& st, const MqRegs<T, NT>& rg) {
    using S = MqStage<T, NT>;
    using P = MqPlan<T, NT>;
    const int tid = threadIdx.x;
#pragma unroll
    for (int k = 0; k < P::KS; k++) {
        const int i = tid + k * MQ_THREADS;
        if (i < P::NS) ((uint16_t*)(st.w + S::NGS * S::QB))[i] = rg.s[k];
    }
#pragma unroll
    for (int k = 0; k < P::KP; k++) {
        const int i = tid + k * MQ_THREADS;
        if (i < P::NP) {
            const int j = i / (8 * NT), tok = i % (8 * NT);
            const float2 xp = QGroup<T>::prep(rg.xs[k]);
            st.xp[j][tok] = xp;
            int* b = (int*)&st.xb[j][tok / 2];
            b[tok % 2] = b[2 + tok % 2] = QGroup<T>::mm_bias(xp);
        }
    }
}

// Groups L, L + 32, ... below ng: how many.
__device__ __forceinline__ int mq_groups(int L, int ng) { return L < ng ? (ng - L + 31) / 32 : 0; }

// Stages in flight: three where they fit the 48 KiB of static shared memory, else two.
template <int T, int NT> struct MqDepth {
    static constexpr int value = 3 * sizeof(MqStage<T, NT>) <= 48 * 1024 ? 3 : 2;
};

// Next stage after (q, j0) in the block's order: the next slice of position q, else the first
// slice of the next position with groups; q == W when none is left.
template <int W>
__device__ __forceinline__ void mq_advance(int p0, int ng, int& q, int& j0) {
    j0 += MQ_SLICE;
    if (q < W && j0 < mq_groups(mq_bitrev5(p0 + q), ng)) return;
    j0 = 0;
    q++;
    while (q < W && mq_groups(mq_bitrev5(p0 + q), ng) == 0) q++;
}

// y[t, r] (+)= (x . W^T)[t, r] for tokens [t0, t0 + 8 NT) and rows [r0, r0 + MQ_ROWS); W rows x
// cols of type T; partial positions [p0, p0 + W) (blockIdx.x = p0 / W). With W < 32 the block
// writes its subtree sums to part[p0 / W][t][r] instead. Stages (position, slice of MQ_SLICE
// groups) go through a ring of MqDepth buffers: the next ones' loads are in flight while one
// computes.
template <int T, int NT, int W>
__global__ void __launch_bounds__(MQ_THREADS)
    matmul_q_kernel(const uint8_t* w, int rows, int cols, const int8_t* xq, const float4* xs,
                    int n, float* y, int ldy, int accumulate, float* part) {
    constexpr int LEVELS = W == 32 ? 5 : W == 16 ? 4 : W == 8 ? 3 : W == 4 ? 2 : 1;
    static_assert(W == 32 || W == 16 || W == 8 || W == 4 || W == 2, "W: an aligned subtree");
    constexpr int DEPTH = MqDepth<T, NT>::value;
    using Stage = MqStage<T, NT>;
    __shared__ __align__(16) Stage stage[DEPTH];
    const int lane = threadIdx.x % 32, team = threadIdx.x / 32;
    const int g = lane / 4, t = lane % 4;
    // The parts of one output block are neighbours in the grid (x fastest): they read the two
    // halves of the same 32-byte sectors of weights (groups L and L ^ 1), so the second read
    // finds them in L2.
    const int part_idx = blockIdx.x;
    const int t0 = blockIdx.y * 8 * NT;
    const int r_blk = blockIdx.z * MQ_ROWS;
    const int r0 = r_blk + team * 16;
    const int p0 = part_idx * W;
    const int ng = cols / 32;
    const size_t ng_total = (size_t)rows * ng;
    const int n_here = min(8 * NT, n - t0);
    // This thread's rows within the stage (group index row * MQ_SLICE + j).
    const int ra = team * 16 + g, rb = ra + 8;

    float run[NT][4], stk[LEVELS][NT][4];
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
        for (int k = 0; k < 4; k++) run[i][k] = 0.0f;
    MqPlan<T, NT> plan;
    plan.init(ng, rows, r_blk, cols, t0, n_here);
    MqRegs<T, NT> pro[DEPTH - 1];  // the first stages' register pieces, loaded together
    MqRegs<T, NT>& rg = pro[0];
    rf_wait_previous();
    rf_release_next();
    // Issue cursor (iq, ij) runs DEPTH - 1 stages ahead of the compute cursor (q, j0).
    int q = 0, j0 = -MQ_SLICE;
    mq_advance<W>(p0, ng, q, j0);
    int iq = q, ij = j0;
    bool pro_issued[DEPTH - 1];
#pragma unroll
    for (int b = 0; b < DEPTH - 1; b++) {
        pro_issued[b] = iq < W;
        if (iq < W) {
            const int L = mq_bitrev5(p0 + iq);
            mq_issue<T, NT>(stage[b], pro[b], plan, w, ng_total, xq, xs, L, ij,
                            min(MQ_SLICE, mq_groups(L, ng) - ij));
            mq_advance<W>(p0, ng, iq, ij);
        } else {
            mq_commit();
        }
    }
#pragma unroll
    for (int b = 0; b < DEPTH - 1; b++)
        if (pro_issued[b]) mq_store<T, NT>(stage[b], pro[b]);
    // Positions before the first with groups (none: only when ng < 32) hold zero sums.
    int done = 0;  // positions carried
    int buf = 0, ibuf = DEPTH - 1;
    auto carry_to = [&](int upto) {
        // Carries positions done .. upto - 1 (their sums in `run`, then zeros) up the stack of
        // subtree sums, a binary counter: below the lowest 0 bit of the position every level
        // joins its pending sum; at that bit the sum waits. The stack is indexed by level at
        // run time, so it lives in local memory (L1): a few 16-byte loads and stores per
        // position instead of the register shuffles a fixed assignment would take.
        for (; done < upto; done++) {
            int lv = 0;
            for (; lv < LEVELS && ((done >> lv) & 1); lv++) {
#pragma unroll
                for (int i = 0; i < NT; i++)
#pragma unroll
                    for (int k = 0; k < 4; k++) run[i][k] = stk[lv][i][k] + run[i][k];
            }
            if (lv < LEVELS) {
#pragma unroll
                for (int i = 0; i < NT; i++)
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        stk[lv][i][k] = run[i][k];
                        run[i][k] = 0.0f;
                    }
            }
        }
    };
    while (q < W) {
        carry_to(q);  // empty positions before this one
        bool issued = false;
        if (iq < W) {
            const int L = mq_bitrev5(p0 + iq);
            mq_issue<T, NT>(stage[ibuf], rg, plan, w, ng_total, xq, xs, L, ij,
                            min(MQ_SLICE, mq_groups(L, ng) - ij));
            mq_advance<W>(p0, ng, iq, ij);
            issued = true;
        } else {
            mq_commit();  // an empty group keeps the wait below uniform
        }
#if MQ_MMA
        if (DEPTH == 3)
            asm volatile("cp.async.wait_group 2;" ::: "memory");
        else
            asm volatile("cp.async.wait_group 1;" ::: "memory");
#endif
        __syncthreads();  // this stage's data (all threads' copies) is in place
        const Stage& st = stage[buf];
        const int nj_here = min(MQ_SLICE, mq_groups(mq_bitrev5(p0 + q), ng) - j0);
#pragma unroll
        for (int j = 0; j < MQ_SLICE; j++) {
            if (j < nj_here) {
                MqWeights a;
                mq_load<T>(st.w, Stage::NGS, (size_t)ra * MQ_SLICE + j,
                           (size_t)rb * MQ_SLICE + j, t, a);
                const float2 dm0 = QGroup<T>::scales(st.w, Stage::NGS, (size_t)ra * MQ_SLICE + j);
                const float2 dm1 = QGroup<T>::scales(st.w, Stage::NGS, (size_t)rb * MQ_SLICE + j);
#pragma unroll
                for (int i = 0; i < NT; i++) {
                    if (8 * i < n_here) {
                        const float4 xp = *(const float4*)&st.xp[j][8 * i + 2 * t];
                        const float2 xa = make_float2(xp.x, xp.y), xb = make_float2(xp.z, xp.w);
                        int c[4];
                        mq_dot(a, &st.x[j][8 * i][0], lane, st.xb[j][4 * i + t], c);
                        run[i][0] = QGroup<T>::mm_term(c[0], dm0, xa, run[i][0]);
                        run[i][1] = QGroup<T>::mm_term(c[1], dm0, xb, run[i][1]);
                        run[i][2] = QGroup<T>::mm_term(c[2], dm1, xa, run[i][2]);
                        run[i][3] = QGroup<T>::mm_term(c[3], dm1, xb, run[i][3]);
                    }
                }
            }
        }
        if (issued) mq_store<T, NT>(stage[ibuf], rg);
        __syncthreads();  // everyone is done with stage[buf] before it is refilled
        buf = buf + 1 == DEPTH ? 0 : buf + 1;
        ibuf = ibuf + 1 == DEPTH ? 0 : ibuf + 1;
        const int q_was = q;
        mq_advance<W>(p0, ng, q, j0);
        if (q != q_was) carry_to(q_was + 1);  // position q_was is complete
    }
    carry_to(W);  // trailing empty positions; `run` then holds the subtree's sum
#pragma unroll
    for (int i = 0; i < NT; i++) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int tok = 8 * i + 2 * t + (k & 1), r = r0 + g + 8 * (k >> 1);
            if (tok >= n_here || r >= rows) continue;
            const float v = run[i][k];
            if (W == 32) {
                float* dst = y + (size_t)(t0 + tok) * ldy + r;
                *dst = accumulate ? *dst + v : v;
            } else {
                part[((size_t)part_idx * n + t0 + tok) * rows + r] = v;
            }
        }
    }
}

// The tree's top levels over the P subtree sums part[P][n][rows]: y (+)= s, as the mat-vec's
// lane 0 adds its butterfly result.
template <int P>
__global__ void matmul_q_join_kernel(const float* part, int rows, int n, float* y, int ldy,
                                     int accumulate) {
    rf_wait_previous();
    rf_release_next();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * n) return;
    const size_t plane = (size_t)rows * n;
    float v[P];
#pragma unroll
    for (int k = 0; k < P; k++) v[k] = part[k * plane + i];
    // Neighbours first, then pairs of pairs: ((v0 + v1) + (v2 + v3)) + ...
#pragma unroll
    for (int step = 1; step < P; step *= 2)
#pragma unroll
        for (int k = 0; k + step < P; k += 2 * step) v[k] = v[k] + v[k + step];
    const float s = v[0];
    float* dst = y + (i / rows) * ldy + i % rows;
    *dst = accumulate ? *dst + s : s;
}

// ---- The tree kernel: a block owns 16 R weight rows and whole subtrees of the canonical tree ----
//
// The staged kernel above visits a block's positions one after another, so its fixed work (the
// carries, the joins of split sums) is paid per short block: at 8 tokens a step, most of its
// instructions. Here each of a block's POS teams (32 lanes) owns one position of the canonical
// tree instead, for the block's R tiles of 16 rows and NT tiles of 8 tokens, and keeps one
// running sum per output (R x NT x 4 floats); the teams' positions are an aligned range
// [POS z, POS z + POS) of the 32 (z = blockIdx.x, one of 32 / POS parts): team i's partial is
// L_i = bitrev5(POS z + i). Those partials are the L = (32 / POS) m + c0 for m < POS, c0 =
// bitrev5(POS z), so at every step j the block needs groups 32 j + (32 / POS) m + c0 of each of
// its rows and tokens: for POS = 32 whole rows of 512 bytes (Q4_0), for POS = 8 every fourth
// group. The parts of an output block are neighbours in the grid: the halves of a 32-byte
// sector of Q4_0 weights (groups L, L + 1) that two parts read meet in L2. The block
// copies them into shared memory together, each thread 16-byte pieces (cp.async, a ring of
// stages in flight), and each team then reads its fragments from there. Each team reading its
// own group of every row straight from global memory touched 32 cache lines per step for 576
// bytes: that kept L1 at 83-91 % of its throughput and the weights' stream at 1.3-1.5 TB/s on an
// H100 (Nsight Compute, 8 sequences), whatever the loads in flight. The POS partial sums meet in
// shared memory in the tree's order; with POS = 32 that is the whole tree (no scratch, no join
// launch), else the block's subtree sum goes to part[z] and matmul_q_join_kernel adds the parts
// as the tree's top levels.
//
// Why parts at all: the registers of a block hold (outputs) x (positions) running sums, so a
// block with all 32 positions holds few outputs (16 rows x 32 tokens at 1,024 threads), and for
// steps of 17-64 tokens each block then read 32 tokens' data (48 bytes a token and group) for
// 16 rows of weights (18 bytes a row and group, Q4_0): five times the weights' bytes through L2.
// With 8 positions a block holds 64 rows x 32 tokens, and reads 1.3 times its weights' bytes.
//
// One stage, for the step's POS groups (column m: group 32 j + (32 / POS) m + c0, so that a
// warp's copies read neighbouring groups) of ROWS = 16 R weight rows and TOK = 8 NT tokens, in
// bytes:
//   weights: quant.h's device layout of a small matrix of ROWS x PADG groups (row r's column m
//            at r * PADG + m, PADG = POS + 1; the quants of all of them, then the scales), so
//            QGroup<T>::pair / scales read it as they read global memory; the pad group keeps
//            the rows of a fragment load on different banks;
//   tokens:  per token its POS int8 groups (TQ bytes apart), then per token its POS float4
//            scales (TS bytes apart), both padded for the banks.
#define MQT_NONE (1 << 30)  // above any 32 j + group of a row (cols < 2^31)
template <int T, int R, int NT, int POS> struct MqTreeStage {
    static_assert(POS == 32 || POS == 16 || POS == 8, "POS: an aligned subtree of the 32");
    static constexpr int THREADS = 32 * POS;
    static constexpr int QB = Fmt<T>::qbytes, SB = Fmt<T>::sbytes;
    static_assert(QB % 16 == 0, "a group's quants are whole 16-byte pieces");
    static constexpr int ROWS = 16 * R, TOK = 8 * NT;
    static constexpr int PADG = POS + 1;
    // A token's 8-byte fragment loads of a half-warp (4 tokens x 4 pairs of words) cover the 32
    // banks once when tokens lie 8 words apart modulo 32; the scales' 16-byte loads (tokens 2t
    // of a quarter-warp) when tokens lie 4 apart.
    static constexpr int TQ = POS * 32 + 32, TS = PADG * 16;
    static constexpr int NGS = ROWS * PADG;  // groups of the small matrix
    static constexpr int WBYTES = (NGS * (QB + SB) + 15) / 16 * 16;
    static constexpr int TBYTES = TOK * (TQ + TS);
    static constexpr int BYTES = WBYTES + TBYTES;
    static_assert(BYTES <= 65536, "a stage's offsets fit the plan's 16 bits");
    // Stages in flight: three on NVIDIA; on AMD two, within 64 KiB of LDS.
#if defined(RF_PLATFORM_AMD)
    static constexpr int DEPTH = 2;
    static_assert(2 * BYTES <= 64 * 1024, "two stages fit the LDS");
#else
    static constexpr int DEPTH = 3;
#endif
    // Copies of a stage: 16-byte pieces of the weights' quants, 2-byte pieces of their scales
    // (too small and unaligned in the padded layout for cp.async: they pass through
    // registers), 16-byte pieces of the tokens' groups (two a group) and scales (one).
    static constexpr int CQ = QB / 16, CS = SB / 2;
    static constexpr int NQ = ROWS * POS * CQ, NS = ROWS * POS * CS, NT16 = TOK * POS * 3;
    static constexpr int KQ = (NQ + THREADS - 1) / THREADS, KS = (NS + THREADS - 1) / THREADS;
    static constexpr int KT = (NT16 + THREADS - 1) / THREADS;
};

// The offsets of one thread's copies at step 0, where each goes in a stage, and which group of
// the step each copies (a step j adds 32 j groups; a piece whose group is past the row's end
// is not copied, nor one marked MQT_NONE: a thread with fewer pieces of a kind than others, or
// a token past the step's end). The stage's rows of tokens past the end keep whatever they
// held: their sums are never stored, and no other output reads them (each output is one row
// and one token of the MMA's tile). Copying the last token there instead sent all those copies
// of every block to the same few L2 lines: steps of 20 tokens ran the 64 x 32 blocks at 475
// GB/s, 32 tokens at 640 (H100, gate|up).
template <int T, int R, int NT, int POS> struct MqTreePlan {
    using S = MqTreeStage<T, R, NT, POS>;
    uint32_t q_src[S::KQ], s_src[S::KS], t_src[S::KT];  // bytes, u16 pieces, bytes
    int q_g[S::KQ], s_g[S::KS], t_g[S::KT];              // group in the step, or MQT_NONE
    uint16_t q_dst[S::KQ], s_dst[S::KS], t_dst[S::KT];   // bytes, u16 pieces, bytes

    __device__ void init(int rows, int r_blk, int cols, int ng, int n, int t0, int p0) {
        const int tid = threadIdx.x;
        const int c0 = mq_bitrev5(p0);  // column c holds partial L = (32 / POS) c + c0
#pragma unroll
        for (int k = 0; k < S::KQ; k++) {
            const int i = tid + S::THREADS * k, r = i / (POS * S::CQ), c = i / S::CQ % POS;
            const int L = 32 / POS * c + c0;
            q_g[k] = i < S::NQ ? L : MQT_NONE;
            q_src[k] = ((uint32_t)min(r_blk + r, rows - 1) * ng + L) * S::QB + 16 * (i % S::CQ);
            q_dst[k] = (uint16_t)((r * S::PADG + c) * S::QB + 16 * (i % S::CQ));
        }
#pragma unroll
        for (int k = 0; k < S::KS; k++) {
            const int i = tid + S::THREADS * k, r = i / (POS * S::CS), c = i / S::CS % POS;
            const int L = 32 / POS * c + c0;
            s_g[k] = i < S::NS ? L : MQT_NONE;
            s_src[k] = ((uint32_t)min(r_blk + r, rows - 1) * ng + L) * S::CS + i % S::CS;
            s_dst[k] = (uint16_t)((r * S::PADG + c) * S::CS + i % S::CS);
        }
#pragma unroll
        for (int k = 0; k < S::KT; k++) {
            const int i = tid + S::THREADS * k;
            if (i < S::TOK * POS * 2) {  // token groups: two pieces a group
                const int u = i / (2 * POS), c = i / 2 % POS, h = i % 2;
                const int tok = min(t0 + u, n - 1), L = 32 / POS * c + c0;
                t_g[k] = t0 + u < n ? L : MQT_NONE;
                t_src[k] = (uint32_t)tok * cols + 32 * L + 16 * h;
                t_dst[k] = (uint16_t)(S::WBYTES + u * S::TQ + 32 * c + 16 * h);
            } else {  // token scales: one float4 a group
                const int v = i - S::TOK * POS * 2, u = v / POS, c = v % POS;
                const int tok = min(t0 + u, n - 1), L = 32 / POS * c + c0;
                t_g[k] = v < S::TOK * POS && t0 + u < n ? L : MQT_NONE;
                t_src[k] = ((uint32_t)tok * ng + L) * 16;
                t_dst[k] = (uint16_t)(S::WBYTES + S::TOK * S::TQ + u * S::TS + 16 * c);
            }
        }
    }
};

// Issues the asynchronous copies of step j into `st` (weights, or the tokens once the previous
// kernel is done) and loads the weights' scale pieces into `sc` (stored by mq_tree_store).
template <int T, int R, int NT, int POS>
__device__ __forceinline__ void mq_tree_issue_weights(uint8_t* st, uint16_t* sc,
                                                      const MqTreePlan<T, R, NT, POS>& plan,
                                                      const uint8_t* w, size_t ng_total, int ng,
                                                      int j) {
    using S = MqTreeStage<T, R, NT, POS>;
#pragma unroll
    for (int k = 0; k < S::KQ; k++)
        if (32 * j + plan.q_g[k] < ng)
            mq_copy16(st + plan.q_dst[k], w + plan.q_src[k] + (uint32_t)(32 * j * S::QB));
    const uint16_t* scales = (const uint16_t*)(w + ng_total * S::QB);
#pragma unroll
    for (int k = 0; k < S::KS; k++)
        sc[k] = 32 * j + plan.s_g[k] < ng ? scales[plan.s_src[k] + (uint32_t)(32 * S::CS * j)]
                                          : (uint16_t)0;
}
template <int T, int R, int NT, int POS>
__device__ __forceinline__ void mq_tree_issue_tokens(uint8_t* st,
                                                     const MqTreePlan<T, R, NT, POS>& plan,
                                                     const int8_t* xq, const float4* xs,
                                                     int ng, int j) {
    using S = MqTreeStage<T, R, NT, POS>;
#pragma unroll
    for (int k = 0; k < S::KT; k++) {
        const int i = threadIdx.x + S::THREADS * k;
        if (32 * j + plan.t_g[k] >= ng) continue;
        if (i < S::TOK * POS * 2)
            mq_copy16(st + plan.t_dst[k], xq + plan.t_src[k] + (uint32_t)(1024 * j));
        else
            mq_copy16(st + plan.t_dst[k],
                      (const uint8_t*)xs + plan.t_src[k] + (uint32_t)(512 * j));
    }
}
template <int T, int R, int NT, int POS>
__device__ __forceinline__ void mq_tree_store(uint8_t* st, const uint16_t* sc,
                                              const MqTreePlan<T, R, NT, POS>& plan) {
    using S = MqTreeStage<T, R, NT, POS>;
    uint16_t* dst = (uint16_t*)(st + S::NGS * S::QB);
#pragma unroll
    for (int k = 0; k < S::KS; k++)
        if (plan.s_g[k] != MQT_NONE) dst[plan.s_dst[k]] = sc[k];
}

// The 16 x 8 tile's exact integer sums for one group, biased (mq_dot's contract); `tq`: the
// tile's tokens' words of the group in the stage (TQ bytes a token).
#if MQ_MMA
template <int TQ>
__device__ __forceinline__ void mq_tree_dot(const MqWeights& a, const uint8_t* tq, int lane,
                                            int4 bias, int c[4]) {
    const int g = lane / 4, t = lane % 4;
    const int2 b = *(const int2*)(tq + g * TQ + 8 * t);
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%10, %11, %12, %13};"
        : "=&r"(c[0]), "=&r"(c[1]), "=&r"(c[2]), "=&r"(c[3])
        : "r"(a.lo0), "r"(a.lo1), "r"(a.hi0), "r"(a.hi1), "r"(b.x), "r"(b.y), "r"(bias.x),
          "r"(bias.y), "r"(bias.z), "r"(bias.w));
}
#else
template <int TQ>
__device__ __forceinline__ void mq_tree_dot(const MqWeights& a, const uint8_t* tq, int lane,
                                            int4 bias, int c[4]) {
    const int t = lane % 4;
    const int init[4] = {bias.x, bias.y, bias.z, bias.w};
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int* x = (const int*)(tq + (2 * t + (q & 1)) * TQ);
        const uint32_t* wr = q < 2 ? a.w0 : a.w1;
        int s = init[q];
#pragma unroll
        for (int i = 0; i < 8; i++) s = rf_dp4a((int)wr[i], x[i], s);
        c[q] = s;
    }
}
#endif

// Launch bounds: on NVIDIA the whole-tree blocks (1,024 threads) ask for 64 registers, the
// part blocks for 128 (two blocks of 256 or one of 512 per multiprocessor: their 64 running
// sums a thread fit); HIP's second bound means something else (waves per execution unit) and
// is left out there.
#if defined(RF_PLATFORM_NVIDIA)
#define MQ_TREE_BOUNDS(POS) __launch_bounds__(32 * (POS), (POS) == 32 ? 1 : 16 / (POS))
#else
#define MQ_TREE_BOUNDS(POS) __launch_bounds__(32 * (POS))
#endif

// y[t, r] (+)= (x . W^T)[t, r] for rows [16 R blockIdx.z, + 16 R) and tokens [8 NT blockIdx.y,
// + 8 NT) (the parts and token blocks of one row block are neighbours: they meet in L2); team
// i takes position POS blockIdx.x + i of every output's tree. With POS < 32 the block writes
// its subtree sums to part[blockIdx.x][t][r] instead (and takes no RoPE epilogue).
// Dynamic shared memory: DEPTH stages.
template <int T, int R, int NT, int POS>
__global__ void MQ_TREE_BOUNDS(POS)
    matmul_q_tree_kernel(const uint8_t* w, int rows, int cols, const int8_t* xq,
                         const float4* xs, int n, float* y, int ldy, int accumulate, float* part,
                         RfRopeKv rk) {
    using S = MqTreeStage<T, R, NT, POS>;
    constexpr int DEPTH = S::DEPTH;
    extern __shared__ __align__(16) uint8_t mq_smem[];
    const int lane = threadIdx.x % 32, team = threadIdx.x / 32;
    const int g = lane / 4, t = lane % 4;
    const int p0 = POS * blockIdx.x;
    const int t0 = blockIdx.y * S::TOK;
    const int r_blk = blockIdx.z * S::ROWS;
    const int ng = cols / 32;
    const size_t ng_total = (size_t)rows * ng;
    const int n_here = min(S::TOK, n - t0);
    const int L = mq_bitrev5(p0 + team);
    const int col = L / (32 / POS);    // this team's column of the stages
    const int steps = (ng + 31) / 32;  // the block's; this team's partial has mq_groups(L, ng)

    MqTreePlan<T, R, NT, POS> plan;
    plan.init(rows, r_blk, cols, ng, n, t0, p0);
    uint16_t sc[DEPTH - 1][S::KS];
    // Weights are written by no kernel: the first stages' are in flight before the previous
    // kernel (which writes the activations) has finished.
#pragma unroll
    for (int b = 0; b < DEPTH - 1; b++)
        if (b < steps)
            mq_tree_issue_weights<T, R, NT, POS>(mq_smem + b * S::BYTES, sc[b], plan, w,
                                                 ng_total, ng, b);
    rf_wait_previous();
    rf_release_next();
#pragma unroll
    for (int b = 0; b < DEPTH - 1; b++) {
        if (b < steps)
            mq_tree_issue_tokens<T, R, NT, POS>(mq_smem + b * S::BYTES, plan, xq, xs, ng, b);
        mq_commit();
    }
#pragma unroll
    for (int b = 0; b < DEPTH - 1; b++)
        if (b < steps) mq_tree_store<T, R, NT, POS>(mq_smem + b * S::BYTES, sc[b], plan);

    float run[R][NT][4];
#pragma unroll
    for (int q = 0; q < R; q++)
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int k = 0; k < 4; k++) run[q][i][k] = 0.0f;
    int buf = 0, ibuf = DEPTH - 1;
    for (int j = 0; j < steps; j++) {
#if MQ_MMA
        asm volatile("cp.async.wait_group %0;" ::"n"(DEPTH - 2) : "memory");
#endif
        // Stage j is in place (every thread's copies and stores), and every team is done with
        // the stage that the copies below refill.
        __syncthreads();
        const bool issued = j + DEPTH - 1 < steps;
        if (issued) {
            mq_tree_issue_weights<T, R, NT, POS>(mq_smem + ibuf * S::BYTES, sc[0], plan, w,
                                                 ng_total, ng, j + DEPTH - 1);
            mq_tree_issue_tokens<T, R, NT, POS>(mq_smem + ibuf * S::BYTES, plan, xq, xs, ng,
                                                j + DEPTH - 1);
        }
        mq_commit();  // an empty group keeps the wait above uniform
        const uint8_t* st = mq_smem + buf * S::BYTES;
        if (L + 32 * j < ng) {
            const uint8_t* tq = st + S::WBYTES + col * 32;
            const uint8_t* ts = st + S::WBYTES + S::TOK * S::TQ + col * 16;
            MqWeights a[R];
            float2 dm0[R], dm1[R];
#pragma unroll
            for (int q = 0; q < R; q++) {
                const size_t Ga = (size_t)(16 * q + g) * S::PADG + col;
                const size_t Gb = Ga + 8 * S::PADG;
                mq_load<T>(st, S::NGS, Ga, Gb, t, a[q]);
                dm0[q] = QGroup<T>::scales(st, S::NGS, Ga);
                dm1[q] = QGroup<T>::scales(st, S::NGS, Gb);
            }
#pragma unroll
            for (int i = 0; i < NT; i++) {
                const float2 xa =
                    QGroup<T>::prep(*(const float4*)(ts + (8 * i + 2 * t) * S::TS));
                const float2 xb =
                    QGroup<T>::prep(*(const float4*)(ts + (8 * i + 2 * t + 1) * S::TS));
                const int ba = QGroup<T>::mm_bias(xa), bb = QGroup<T>::mm_bias(xb);
                const int4 bias = make_int4(ba, bb, ba, bb);
#pragma unroll
                for (int q = 0; q < R; q++) {
                    int c[4];
                    mq_tree_dot<S::TQ>(a[q], tq + 8 * i * S::TQ, lane, bias, c);
                    run[q][i][0] = QGroup<T>::mm_term(c[0], dm0[q], xa, run[q][i][0]);
                    run[q][i][1] = QGroup<T>::mm_term(c[1], dm0[q], xb, run[q][i][1]);
                    run[q][i][2] = QGroup<T>::mm_term(c[2], dm1[q], xa, run[q][i][2]);
                    run[q][i][3] = QGroup<T>::mm_term(c[3], dm1[q], xb, run[q][i][3]);
                }
            }
        }
        if (issued) mq_tree_store<T, R, NT, POS>(mq_smem + ibuf * S::BYTES, sc[0], plan);
        buf = buf + 1 == DEPTH ? 0 : buf + 1;
        ibuf = ibuf + 1 == DEPTH ? 0 : ibuf + 1;
    }
#if MQ_MMA
    asm volatile("cp.async.wait_group 0;" ::: "memory");
#endif
    __syncthreads();  // the stages are done with: the joins reuse their memory

    // The tree over the block's POS positions, one output per thread: neighbours first, then
    // pairs of pairs, as the mat-vec's butterfly adds at lane 0. The buffer, [team][tile]
    // [accumulator][lane], takes PT tiles (of R x NT) at a time.
    constexpr int TILES = R * NT, PT = TILES < 64 / POS ? TILES : 64 / POS;
    static_assert(POS * PT * 128 * 4 <= DEPTH * S::BYTES, "the join buffer fits the stages");
    float(*sub)[PT][4][32] = (float(*)[PT][4][32])mq_smem;
#pragma unroll
    for (int u0 = 0; u0 < TILES; u0 += PT) {
#pragma unroll
        for (int v = 0; v < PT; v++)
#pragma unroll
            for (int k = 0; k < 4; k++) sub[team][v][k][lane] = run[(u0 + v) / NT][(u0 + v) % NT][k];
        __syncthreads();
        for (int o = threadIdx.x; o < PT * 128; o += S::THREADS) {
            const int v = o / 128, k = (o / 32) % 4, l = o % 32;
            const int u = u0 + v, q = u / NT, i = u % NT;
            const int tok = 8 * i + 2 * (l % 4) + (k & 1);
            const int r = r_blk + 16 * q + l / 4 + 8 * (k >> 1);
            const bool live = tok < n_here && r < rows;
            float a[POS];
#pragma unroll
            for (int m = 0; m < POS; m++) a[m] = sub[m][v][k][l];
#pragma unroll
            for (int step = 1; step < POS; step *= 2)
#pragma unroll
                for (int m = 0; m + step < POS; m += 2 * step) a[m] = a[m] + a[m + step];
            if (POS < 32) {
                if (live) part[((size_t)blockIdx.x * n + t0 + tok) * rows + r] = a[0];
            } else if (rk.rot) {
                // Rows r and r ^ 1 (one RoPE pair) are lanes l and l ^ 4 of this warp, the same
                // token: the even row's lane rotates and stores both (rows is even).
                const float odd = rf_shfl_xor(a[0], 4);
                if (live && (r & 1) == 0) rf_store_rope_pair(rk, r, t0 + tok, a[0], odd, y, ldy);
            } else if (live) {
                float* dst = y + (size_t)(t0 + tok) * ldy + r;
                *dst = accumulate ? *dst + a[0] : a[0];
            }
        }
        if (u0 + PT < TILES) __syncthreads();  // the buffer is free for the next tiles
    }
    if (POS == 32 && rk.rot && blockIdx.y == 0 && blockIdx.z == 0) rf_note_cells(rk, n);
}

// The RoPE epilogue after a product that could not take it (the staged kernel, where a device
// cannot give the tree kernel its shared memory; the tree kernel in parts): each (token, pair)
// of y's rows read back, rotated and stored as the tree kernel would have. Grid (pairs /
// RF_BLOCK, n).
__global__ void mq_rope_after_kernel(float* y, int ldy, int rows, int n, RfRopeKv rk) {
    rf_wait_previous();
    rf_release_next();
    const int p = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (2 * p < rows) {
        const float* src = y + (size_t)t * ldy + 2 * p;
        rf_store_rope_pair(rk, 2 * p, t, src[0], src[1], y, ldy);
    }
    if (blockIdx.y == 0) rf_note_cells(rk, n);
}

// The join of `parts` (2, 4, 8 or 16) subtree sums part[parts][n][rows] into y.
static void launch_mq_join(int parts, const float* part, int rows, int n, float* y, int ldy,
                           int accumulate, hipStream_t s) {
    const dim3 grid((unsigned)(((size_t)rows * n + RF_BLOCK - 1) / RF_BLOCK));
#define MQ_JOIN(P)                                                                           \
    RF_LAUNCH_OVERLAPPED(matmul_q_join_kernel<P>, grid, dim3(RF_BLOCK), 0, s, part, rows, n, y, \
                         ldy, accumulate)
    if (parts == 2)
        MQ_JOIN(2);
    else if (parts == 4)
        MQ_JOIN(4);
    else if (parts == 8)
        MQ_JOIN(8);
    else
        MQ_JOIN(16);
#undef MQ_JOIN
}

// mq_rope_after_kernel over the n x rows outputs in y.
static void launch_mq_rope_after(float* y, int ldy, int rows, int n, const RfRopeKv& rk,
                                 hipStream_t s) {
    const dim3 grid((rows / 2 + RF_BLOCK - 1) / RF_BLOCK, n);
    RF_LAUNCH_OVERLAPPED(mq_rope_after_kernel, grid, dim3(RF_BLOCK), 0, s, y, ldy, rows, n, rk);
}

template <int T>
static void launch_mq_parts(const uint8_t* w, int rows, int cols, const int8_t* xq,
                            const float4* xs, int n, float* y, int ldy, int accumulate,
                            int parts, float* part, hipStream_t s);

// Whether this device lets a block of matmul_q_tree_kernel<T, R, NT, POS> have `bytes` of
// dynamic shared memory: above the default 48 KiB NVIDIA wants the kernel allowed once per
// device (sm_86 / sm_89 give a block at most 99 KiB, sm_80 163 KiB, sm_90 227 KiB); AMD's
// stages fit the 64 KiB of LDS (MqTreeStage's assert) without asking.
// ROCMFORGE_MATMUL_Q_TREE_REFUSE_STAGES (set: refuse every shape) lets the GPU tests take the
// fallbacks on a device that would allow them.
template <int T, int R, int NT, int POS> static bool mq_tree_allowed(int bytes) {
    static const bool refuse_all = getenv("ROCMFORGE_MATMUL_Q_TREE_REFUSE_STAGES") != nullptr;
    if (refuse_all) return false;
#if defined(RF_PLATFORM_NVIDIA)
    constexpr int MAX_DEVICES = 64;
    static std::atomic<int> allowed[MAX_DEVICES];  // 0: not asked yet, 1: yes, -1: no
    int dev = 0;
    if (hipGetDevice(&dev) != hipSuccess) return false;
    int ok = dev >= 0 && dev < MAX_DEVICES ? allowed[dev].load(std::memory_order_relaxed) : 0;
    if (ok == 0) {
        ok = hipFuncSetAttribute((const void*)matmul_q_tree_kernel<T, R, NT, POS>,
                                 hipFuncAttributeMaxDynamicSharedMemorySize, bytes) == hipSuccess
                 ? 1
                 : -1;
        (void)hipGetLastError();  // a refusal is answered here, not by the next launch's check
        if (dev >= 0 && dev < MAX_DEVICES) allowed[dev].store(ok, std::memory_order_relaxed);
    }
    return ok > 0;
#else
    (void)bytes;
    return true;
#endif
}

// One block per 16 R rows, 8 NT tokens and POS positions, the stages in dynamic shared memory;
// with POS < 32 the parts' subtree sums through `part` and the join (then the RoPE epilogue of
// its own). False (nothing launched) where the device cannot give a block that much.
template <int T, int R, int NT, int POS>
static bool launch_mq_tree(const uint8_t* w, int rows, int cols, const int8_t* xq,
                           const float4* xs, int n, float* y, int ldy, int accumulate,
                           float* part, const RfRopeKv& rk, hipStream_t s) {
    using S = MqTreeStage<T, R, NT, POS>;
    constexpr int bytes = S::DEPTH * S::BYTES;
    constexpr int parts = 32 / POS;
    if (!mq_tree_allowed<T, R, NT, POS>(bytes)) return false;
    const dim3 grid(parts, (n + S::TOK - 1) / S::TOK, (rows + S::ROWS - 1) / S::ROWS);
    const RfRopeKv none = {};
    RF_LAUNCH_OVERLAPPED((matmul_q_tree_kernel<T, R, NT, POS>), grid, dim3(S::THREADS), bytes, s,
                         w, rows, cols, xq, xs, n, y, ldy, accumulate, part,
                         parts == 1 ? rk : none);
    if (parts > 1) {
        launch_mq_join(parts, part, rows, n, y, ldy, accumulate, s);
        if (rk.rot) launch_mq_rope_after(y, ldy, rows, n, rk, s);
    }
    return true;
}

template <int T, int NT, int W>
static void launch_mq(const uint8_t* w, int rows, int cols, const int8_t* xq, const float4* xs,
                      int n, float* y, int ldy, int accumulate, float* part, hipStream_t s) {
    const dim3 grid(32 / W, (n + 8 * NT - 1) / (8 * NT), (rows + MQ_ROWS - 1) / MQ_ROWS);
    RF_LAUNCH_OVERLAPPED((matmul_q_kernel<T, NT, W>), grid, dim3(32 * MQ_TEAMS), 0, s, w, rows,
                         cols, xq, xs, n, y, ldy, accumulate, part);
}

template <int T, int W>
static void launch_mq_nt(const uint8_t* w, int rows, int cols, const int8_t* xq,
                         const float4* xs, int n, float* y, int ldy, int accumulate,
                         float* part, hipStream_t s) {
    if (n <= 8)
        launch_mq<T, 1, W>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
    else if (n <= 16)
        launch_mq<T, 2, W>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
    else
        launch_mq<T, 4, W>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
}

template <int T>
static void launch_mq_parts(const uint8_t* w, int rows, int cols, const int8_t* xq,
                            const float4* xs, int n, float* y, int ldy, int accumulate,
                            int parts, float* part, hipStream_t s) {
    if (parts == 1)
        launch_mq_nt<T, 32>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
    else if (parts == 2)
        launch_mq_nt<T, 16>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
    else if (parts == 4)
        launch_mq_nt<T, 8>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
    else if (parts == 8)
        launch_mq_nt<T, 4>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
    else
        launch_mq_nt<T, 2>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, s);
}

extern "C" int rf_matmul_q_supported(int ty) {
    int ok = 0;
    RF_DISPATCH_TYPE(ty, {
        if constexpr (RfType<T>::int8_matvec && !RfType<T>::super_block) ok = 1;
    });
    return ok;
}

extern "C" int rf_matmul_q(int ty, const void* w, int rows, int cols, const int8_t* xq,
                           const void* xq_scales, int n, float* y, int ldy, int accumulate,
                           int parts, float* part, void* stream) {
    if (cols % 32 != 0 || n <= 0 || rows <= 0 || ldy < rows) return RF_ERR_SHAPE;
    if (parts != 1 && parts != 2 && parts != 4 && parts != 8 && parts != 16) return RF_ERR_SHAPE;
    if (parts > 1 && !part) return RF_ERR_SHAPE;
    if (!rf_matmul_q_supported(ty)) return RF_ERR_SHAPE;
    int bytes_ok = 0;  // the kernel addresses the weights with 32-bit byte offsets
    RF_DISPATCH_TYPE(ty, {
        bytes_ok = (size_t)rows * (cols / 32) * (Fmt<T>::qbytes + Fmt<T>::sbytes) <= 0xFFFFFFFFu;
    });
    if (!bytes_ok) return RF_ERR_SHAPE;
    hipStream_t s = (hipStream_t)stream;
    const uint8_t* wb = (const uint8_t*)w;
    const float4* xs = (const float4*)xq_scales;
    RF_DISPATCH_TYPE(ty, {
        if constexpr (RfType<T>::int8_matvec && !RfType<T>::super_block)
            launch_mq_parts<T>(wb, rows, cols, xq, xs, n, y, ldy, accumulate, parts, part, s);
    });
    if (parts > 1) launch_mq_join(parts, part, rows, n, y, ldy, accumulate, s);
    return (int)hipGetLastError();
}

// The shape asked for, else smaller ones where the device cannot give a block the stages'
// shared memory (one row tile, then one token tile: at most 91 KiB), else the staged kernel
// unsplit (then the RoPE epilogue of its own, where the product takes one): the same bits
// each way. Steps of more than 16 tokens on NVIDIA take blocks of 64 rows x 32 tokens over 8
// positions (4 parts, joined), or 16 positions (2 parts) where `part` holds fewer floats.
template <int T>
static void launch_mq_tree_shape(const uint8_t* w, int rows, int cols, const int8_t* xq,
                                 const float4* xs, int n, float* y, int ldy, int accumulate,
                                 int row_tiles, float* part, size_t part_floats,
                                 const RfRopeKv& rk, hipStream_t s) {
#define MQ_TREE_TRY(R, NT, POS)                                                                 \
    if (launch_mq_tree<T, R, NT, POS>(w, rows, cols, xq, xs, n, y, ldy, accumulate, part, rk, \
                                      s))                                                      \
    return
#if defined(RF_PLATFORM_AMD)
    // Two stages of more than one tile of rows or tokens need more than the 64 KiB of LDS for
    // the wider types: one of each, the grid covering the tokens in 8s.
    (void)row_tiles;
    (void)part_floats;
    MQ_TREE_TRY(1, 1, 32);
#else
    // One token tile a block for steps of up to 8 tokens, two to 16. Four tiles with all 32
    // positions (32 tokens, one row tile) were slower than the staged kernel at 24 tokens and
    // level at 32 (each block read all its tokens' data for 16 rows); two row tiles of four
    // spill.
    if (n > 16) {
        // ROCMFORGE_MATMUL_Q_TREE_POSITIONS=16 (tuning) forces the 16-position shape.
        static const bool sixteen = [] {
            const char* e = getenv("ROCMFORGE_MATMUL_Q_TREE_POSITIONS");
            return e && atoi(e) == 16;
        }();
        if (part && !sixteen && (size_t)4 * n * rows <= part_floats) MQ_TREE_TRY(4, 4, 8);
        if (part && (size_t)2 * n * rows <= part_floats) MQ_TREE_TRY(4, 4, 16);
    }
    if (n > 8) {
        if (row_tiles == 2) MQ_TREE_TRY(2, 2, 32);
        MQ_TREE_TRY(1, 2, 32);
    } else if (row_tiles == 2) {
        MQ_TREE_TRY(2, 1, 32);
    }
    MQ_TREE_TRY(1, 1, 32);
#endif
#undef MQ_TREE_TRY
    launch_mq_parts<T>(w, rows, cols, xq, xs, n, y, ldy, accumulate, 1, nullptr, s);
    if (rk.rot) launch_mq_rope_after(y, ldy, rows, n, rk, s);
}

extern "C" int rf_matmul_q_tree(int ty, const void* w, int rows, int cols, const int8_t* xq,
                                const void* xq_scales, int n, float* y, int ldy, int accumulate,
                                int row_tiles, float* part, size_t part_floats,
                                const RfRopeKv* rope_kv, void* stream) {
    if (cols % 32 != 0 || n <= 0 || rows <= 0 || ldy < rows) return RF_ERR_SHAPE;
    // The RoPE epilogue: whole pairs of rows, written, not added, and cells for every token
    // noted by one block's threads.
    if (rope_kv && (rows % 2 != 0 || accumulate || n > 1024)) return RF_ERR_SHAPE;
    RfRopeKv rk = {};
    if (rope_kv) rk = *rope_kv;
    if (row_tiles != 1 && row_tiles != 2) return RF_ERR_SHAPE;
    if (!rf_matmul_q_supported(ty)) return RF_ERR_SHAPE;
    // The kernel addresses weights and activations with 32-bit byte offsets.
    int fits = (size_t)n * cols <= 0xFFFFFFFFu && (size_t)n * (cols / 32) * 16 <= 0xFFFFFFFFu;
    RF_DISPATCH_TYPE(ty, {
        fits = fits && (size_t)rows * (cols / 32) * (Fmt<T>::qbytes + Fmt<T>::sbytes) <= 0xFFFFFFFFu;
    });
    if (!fits) return RF_ERR_SHAPE;
    hipStream_t s = (hipStream_t)stream;
    const uint8_t* wb = (const uint8_t*)w;
    const float4* xs = (const float4*)xq_scales;
    RF_DISPATCH_TYPE(ty, {
        if constexpr (RfType<T>::int8_matvec && !RfType<T>::super_block)
            launch_mq_tree_shape<T>(wb, rows, cols, xq, xs, n, y, ldy, accumulate, row_tiles,
                                    part, part_floats, rk, s);
    });
    return (int)hipGetLastError();
}
