// Attention over the KV cache for a few tokens at once (decode, and batches small enough for
// the mat-vec path), reproducing the CPU's src/backend/cpu/attention.rs bit for bit: the
// softmax is split over chunks of ATT_CHUNK cache cells, and within a chunk every sum follows
// the canonical order of kernels/numerics.h with the cell as the element (cell c goes to
// partial c % 32). Per chunk j: its largest score m_j, e_c = exp(s_c - m_j), l_j = sum e_c and
// o_j = sum e_c v_c; then, chunks ascending, with M the largest score and w_j = exp(m_j - M):
// L += l_j w_j, O += o_j w_j, and the output is O * (1 / L).
//
// Grid (head, token, split): block z takes chunks z, z + splits, ... A context of one chunk
// (the first 256 tokens) is finished by its block directly; a longer one is spread over
// `splits` blocks per head, which store each chunk's (m, l, o), and the last of them to finish
// (counted with an atomic) joins the chunks. Cells are visible to a token when they hold the
// token's sequence at a position not after its own, so one kernel serves decode, small causal
// batches and several sequences in one batch.
//
// Within a chunk the work is latency-bound (a decode step reads a few hundred cells), so it is
// spread over as many 32-lane groups as the head allows: scores of ATT_CELLS cells per group
// per round with all their keys loaded first; weighted values with one partial per lane over
// a slice of 4 or 8 output elements, four cells' loads in flight, joined in register
// butterflies. The head's K/V rows are called into L2 before waiting on the kernel that wrote
// the queries. Keys and values are read from the cache's element type T (kv_cache.h) and
// widened to f32, as the CPU reads them: the arithmetic is the same for every cache type.
#include "rf_kernels.h"
#include "arch.h"
#include "numerics.h"
#include "kv_cache.h"
#include "quant.h"
#include <atomic>
#include <stdlib.h>

#define ATT_CHUNK 256  // cells per chunk: src/backend/cpu/attention.rs CHUNK
#define ATT_CELLS 4    // cells per group per scoring round
#define ATT_MAX_SPLIT 32

// Writes v (element o of the output) and, when q8 is given, its int8 group quantization
// (numerics.h): the next product (the output projection) reads it directly. All 32 lanes of a
// group call this together (head_dim is a multiple of 32).
__device__ __forceinline__ void att_store(float* out, int8_t* q8, float4* q8_scales, size_t o,
                                          float v) {
    out[o] = v;
    if (q8) rf_quantize_group32(v, q8, q8_scales, o);
}

// With Q8_K outputs (the output projection's weights are K-quants): after this block stored
// head h's HD outputs of token t, it counts itself in every super-block of 256 the head
// overlaps, and the block that completes a super-block (every head overlapping it stored)
// quantizes it, one 32-lane group per super-block, as rf_act would from the f32 copy. The
// counters (q_dim / 256 per token) are left zero. Called by every thread of the block.
template <int HD>
__device__ __forceinline__ void att_store_q8k(const float* out_row, int h, int q_dim,
                                              int8_t* qk_row, RfQ8KHead* qkh_row,
                                              int32_t* cnt_row) {
    constexpr int MAX_SB = (HD + 255) / 256 + 1;  // super-blocks one head overlaps, at most
    __shared__ int todo[MAX_SB];
    __shared__ int n_todo;
    __threadfence();  // this block's outputs before its count
    __syncthreads();
    if (threadIdx.x == 0) {
        int k = 0;
        const int e0 = h * HD, e1 = e0 + HD;
        for (int sb = e0 / 256; sb * 256 < e1; sb++) {
            const int heads = ((sb + 1) * 256 - 1) / HD - (sb * 256) / HD + 1;
            if (atomicAdd(&cnt_row[sb], 1) + 1 == heads) {
                cnt_row[sb] = 0;  // every head has counted: ready for the next layer
                todo[k++] = sb;
            }
        }
        n_todo = k;
    }
    __syncthreads();
    if (n_todo == 0) return;
    __threadfence();  // the other heads' outputs after their counts
    const int nsb = q_dim / 256;
    for (int i = threadIdx.x / 32; i < n_todo; i += blockDim.x / 32)
        rf_store_q8k_group32(out_row + todo[i] * 256, qk_row, nsb, todo[i], qkh_row + todo[i]);
}

// The last block's join of the chunks, as the CPU does: ascending, or, in a sliding-window
// ring, ascending from the chunk of the window's oldest position (`first`, -1: none) and
// wrapping around. Joins `heads` consecutive heads (th_part0: the first one's chunk results,
// the others follow every `head_stride` floats), output element i of head g at
// o_at + g * HD + i. Called by every thread of the block (a multiple of 32 threads): the
// chunks' (m, l) are staged in shared memory JOIN_WINDOW at a time, so each output's loop
// waits only on its own o_j loads, which are independent and kept in flight together.
#define JOIN_WINDOW 64
#define JOIN_HEADS 8
#define JOIN_ROUNDS 2  // heads * HD <= JOIN_ROUNDS * blockDim.x
template <int HD>
__device__ __forceinline__ void att_join(const float* th_part0, size_t head_stride, int heads,
                                         int j_lo, int j_hi, int n_chunks, int first,
                                         float* out, int8_t* q8, float4* q8_scales,
                                         size_t o_at) {
    __shared__ float s_big[JOIN_HEADS];
    __shared__ float s_w[JOIN_HEADS][JOIN_WINDOW];  // exp(m_j - M), -inf: no visible cell
    __shared__ float s_l[JOIN_HEADS][JOIN_WINDOW];
    const int j_first = first >= 0 ? min(max(first, j_lo), j_hi - 1) : j_lo;
    // M: the largest chunk maximum of each head (max is exact in any order).
    if (threadIdx.x < heads) {
        const float* p = th_part0 + threadIdx.x * head_stride;
        float big = -INFINITY;
        for (int j = j_lo; j < j_hi; j++)
            big = fmaxf(big, rf_load_coherent(p + (size_t)j * (2 + HD)));
        s_big[threadIdx.x] = big;
    }
    const int outputs = heads * HD;  // at most JOIN_ROUNDS per thread
    float total[JOIN_ROUNDS], o[JOIN_ROUNDS];
#pragma unroll
    for (int r = 0; r < JOIN_ROUNDS; r++) total[r] = o[r] = 0.0f;
    for (int k0 = 0; k0 < n_chunks; k0 += JOIN_WINDOW) {
        const int kn = min(JOIN_WINDOW, n_chunks - k0);
        __syncthreads();  // s_big written; the previous window's weights used
        for (int i = threadIdx.x; i < heads * kn; i += blockDim.x) {
            const int g = i / kn, k = k0 + i % kn;
            const int j = j_first + k < j_hi ? j_first + k : j_first + k - n_chunks;
            const float* pj = th_part0 + g * head_stride + (size_t)j * (2 + HD);
            const float m = rf_load_coherent(pj);
            s_w[g][i % kn] = m == -INFINITY ? -INFINITY : rf_exp(m - s_big[g]);
            s_l[g][i % kn] = rf_load_coherent(pj + 1);
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < JOIN_ROUNDS; r++) {
            const int i = threadIdx.x + r * blockDim.x;
            if (i >= outputs) break;
            const int g = i / HD, e = i % HD;
            const float* pg = th_part0 + g * head_stride + 2 + e;
            float tr = total[r], orr = o[r];
#pragma unroll 8
            for (int k = 0; k < kn; k++) {
                const int kk = k0 + k;
                const int j = j_first + kk < j_hi ? j_first + kk : j_first + kk - n_chunks;
                // Loaded whatever the weight (every chunk's slot was written by this launch),
                // so that the loads of a window stay in flight together.
                const float oj = rf_load_coherent(pg + (size_t)j * (2 + HD));
                const float w = s_w[g][k];
                if (w != -INFINITY) {  // -inf: no visible cell in the chunk
                    tr = tr + s_l[g][k] * w;
                    orr = orr + oj * w;
                }
            }
            total[r] = tr;
            o[r] = orr;
        }
    }
    // Whole 32-lane groups store together (att_store's int8 quantization spans a group).
#pragma unroll
    for (int r = 0; r < JOIN_ROUNDS; r++) {
        const int i = threadIdx.x + r * blockDim.x;
        if (i - (int)(threadIdx.x % 32) >= outputs) break;
        if (i < outputs) att_store(out, q8, q8_scales, o_at + i, o[r] * (1.0f / total[r]));
    }
}

// att_store_q8k for token t's head h (out: the step's output rows of n_head * HD floats;
// qk / qkh the Q8_K rows and headers; sb_counters (tokens, q_dim / 256)).
template <int HD>
__device__ __forceinline__ void att_finish_q8k(const float* out, int t, int h, int n_head,
                                               int8_t* qk, RfQ8KHead* qkh, int32_t* sb_counters) {
    const int q_dim = n_head * HD, nsb = q_dim / 256;
    att_store_q8k<HD>(out + (size_t)t * q_dim, h, q_dim, qk + (size_t)t * q_dim,
                      qkh + (size_t)t * nsb, sb_counters + (size_t)t * nsb);
}

// 32-lane groups per block: one per 4 output elements up to head size 128, one per 8 above.
template <int HD> struct AttShape {
    static constexpr int groups = HD <= 128 ? HD / 4 : HD / 8;
};

// The narrow shape for launches of more blocks than the card has multiprocessors (head size
// 128 only, where it was measured: launch_attention): half the groups, each a slice of 8.
template <int HD> struct AttNarrow {
    static constexpr int groups = HD == 128 ? 16 : AttShape<HD>::groups;
};
// On NVIDIA the narrow shape is held to 64 registers, two blocks per multiprocessor (at 127 it
// would fit one); 0 leaves the other shapes unbounded, as they were. HIP's second bound counts
// waves per execution unit: left at default there.
#if defined(RF_PLATFORM_NVIDIA)
#define ATT_MIN_BLOCKS(HD, G) ((G) < AttShape<HD>::groups ? 2 : 0)
#else
#define ATT_MIN_BLOCKS(HD, G) 1
#endif
template <int HD, typename T, int GROUPS_ = AttShape<HD>::groups>
__global__ void __launch_bounds__(GROUPS_ * 32, ATT_MIN_BLOCKS(HD, GROUPS_))
    attention_kernel(const float* q, int ld_q, const T* k_cache, const T* v_cache,
                     const int32_t* cell_pos, const uint64_t* cell_seqs,
                     const int32_t* n_cells_dev, const int32_t* tok_pos, const int32_t* tok_seq,
                     const int32_t* tok_lo, const int32_t* tok_hi, const int32_t* tok_first,
                     int n_head, int n_head_kv, int n_ctx, int window, float scale, float* part,
                     int32_t* counters,
                     float* out, int8_t* q8, float4* q8_scales, int8_t* qk, RfQ8KHead* qkh,
                     int32_t* sb_counters) {
    constexpr int GROUPS = GROUPS_, THREADS = GROUPS * 32;
    constexpr int PER_LANE = HD / 32;     // key elements per lane
    constexpr int SLICE = HD / GROUPS;    // output elements per group (4 or 8)
    constexpr int QUADS = SLICE / 4;
    // Two cells' values in flight per lane in the narrow shape (its slices take the registers).
    constexpr int CELLS_IN_FLIGHT = GROUPS < AttShape<HD>::groups ? 2 : 4;
    constexpr int LINE_ELEMS = 128 / (int)sizeof(T);
    constexpr int LINES = (HD + LINE_ELEMS - 1) / LINE_ELEMS;  // 128-byte lines per cell's slice
    static_assert(HD % 32 == 0 && SLICE % 4 == 0, "whole lane groups and float4 slices");
    __shared__ float sc[ATT_CHUNK];  // the chunk's scores, then their exponentials
    __shared__ float sm_max[GROUPS];
    __shared__ float sm_sum;
    __shared__ float sm_out[HD];
    __shared__ bool last;
    const int h = blockIdx.x, t = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
    const int lane = threadIdx.x % 32, grp = threadIdx.x / 32;
    const int kv_dim = n_head_kv * HD;
    const int kv_off = (h / (n_head / n_head_kv)) * HD;
    const int max_chunks = (n_ctx + ATT_CHUNK - 1) / ATT_CHUNK;
    // (token, head)'s chunk results: (max_chunks, 2 + HD) floats, m_j, l_j, o_j.
    float* th_part = part + ((size_t)t * n_head + h) * max_chunks * (2 + HD);

    // The cell count comes from the batch metadata (copied before the pass, never written by
    // a kernel), so this block's share of the cache can be called into L2 while the queries
    // are still being computed: the cache was evicted by the previous token's weights.
    // Only the chunks of the token's cell range [tok_lo, tok_hi) can hold a visible cell;
    // the others would be skipped by the join anyway, so leaving them out changes no bit.
    const int n_cells = min(*n_cells_dev, n_ctx);
    const int j_lo = min(tok_lo[t], n_cells) / ATT_CHUNK;
    const int j_hi = max((min(tok_hi[t], n_cells) + ATT_CHUNK - 1) / ATT_CHUNK, j_lo + 1);
    const int n_chunks = j_hi - j_lo;
    for (int j = j_lo + z; j < j_hi; j += splits) {
        const int c_lo = j * ATT_CHUNK, n_here = min(ATT_CHUNK, n_cells - c_lo);
        for (int i = threadIdx.x; i < n_here * 2 * LINES; i += THREADS) {
            const int c = c_lo + i / (2 * LINES), r = i % (2 * LINES);
            const T* cache = r < LINES ? k_cache : v_cache;
            rf_prefetch_l2(rf_kv_addr(cache, (size_t)c, kv_dim, kv_off + (r % LINES) * LINE_ELEMS));
        }
    }
    rf_wait_previous();  // nothing the previous kernel writes is read before it ends
    rf_release_next();

    const int pos = tok_pos[t];
    const uint64_t bit = 1ull << tok_seq[t];
    float qr[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) qr[j] = q[(size_t)t * ld_q + h * HD + lane + 32 * j];
    int done = 0;
    for (int j = j_lo + z; j < j_hi; j += splits) {
        const int c_lo = j * ATT_CHUNK, c_hi = min(c_lo + ATT_CHUNK, n_cells);
        const int v_off = kv_off + grp * SLICE;
        // The first round of weighted values' rows, loaded before the scores that weight them
        // (the whole chunk for contexts of up to CELLS_IN_FLIGHT * 32 cells).
        float4 v_first[CELLS_IN_FLIGHT][QUADS];
#pragma unroll
        for (int b = 0; b < CELLS_IN_FLIGHT; b++) {
            const int c = c_lo + lane + b * RF_LANES;
#pragma unroll
            for (int u = 0; u < QUADS; u++)
                v_first[b][u] = c < c_hi ? rf_kv_at4(v_cache, (size_t)c, kv_dim, v_off + 4 * u)
                                         : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        // Scores: q . k in canonical order (lane = element % 32), then * scale, as the CPU.
        float mx = -INFINITY;
        for (int c0 = c_lo + grp * ATT_CELLS; c0 < c_hi; c0 += GROUPS * ATT_CELLS) {
            float kr[ATT_CELLS][PER_LANE];
            bool vis[ATT_CELLS];
#pragma unroll
            for (int b = 0; b < ATT_CELLS; b++) {
                const int c = c0 + b;
                vis[b] = c < c_hi && (cell_seqs[c] & bit) != 0 && cell_pos[c] >= 0 &&
                         cell_pos[c] <= pos && (window == 0 || pos - cell_pos[c] < window);
                // Loaded whether visible or not (an invisible cell's score is dropped below),
                // so the loads need not wait for the cell's position and sequence.
#pragma unroll
                for (int e = 0; e < PER_LANE; e++)
                    kr[b][e] = c < c_hi ? rf_kv_at(k_cache, (size_t)c, kv_dim, kv_off + lane + 32 * e)
                                        : 0.0f;
            }
#pragma unroll
            for (int b = 0; b < ATT_CELLS; b++) {
                const int c = c0 + b;
                float p = 0.0f;
#pragma unroll
                for (int e = 0; e < PER_LANE; e++) p = p + qr[e] * kr[b][e];
                p = rf_butterfly32(p) * scale;
                if (lane == 0 && c < c_hi) sc[c - c_lo] = vis[b] ? p : -INFINITY;
                if (vis[b]) mx = fmaxf(mx, p);
            }
        }
        if (lane == 0) sm_max[grp] = mx;
        __syncthreads();
        float m = -INFINITY;  // the chunk's largest score (-inf: no visible cell)
#pragma unroll
        for (int g = 0; g < GROUPS; g++) m = fmaxf(m, sm_max[g]);
        for (int i = threadIdx.x; i < c_hi - c_lo; i += THREADS) {
            const float s = sc[i];
            if (s != -INFINITY) sc[i] = rf_exp(s - m);
        }
        __syncthreads();
        if (grp == 0) {
            float sum = 0.0f;
            for (int c = c_lo + lane; c < c_hi; c += RF_LANES) {
                const float e = sc[c - c_lo];
                if (e != -INFINITY) sum = sum + e;
            }
            sum = rf_butterfly32(sum);
            if (lane == 0) sm_sum = sum;
        }
        // Weighted values: lane k holds partial k of this group's slice of elements.
        float acc[SLICE];
#pragma unroll
        for (int i = 0; i < SLICE; i++) acc[i] = 0.0f;
        for (int c0 = c_lo + lane; c0 < c_hi; c0 += CELLS_IN_FLIGHT * RF_LANES) {
            float4 v[CELLS_IN_FLIGHT][QUADS];
            float w[CELLS_IN_FLIGHT];
            const bool first = c0 == c_lo + lane;
#pragma unroll
            for (int b = 0; b < CELLS_IN_FLIGHT; b++) {
                const int c = c0 + b * RF_LANES;
                w[b] = c < c_hi ? sc[c - c_lo] : -INFINITY;
#pragma unroll
                for (int u = 0; u < QUADS; u++)
                    v[b][u] = first ? v_first[b][u]
                              : w[b] != -INFINITY
                                  ? rf_kv_at4(v_cache, (size_t)c, kv_dim, v_off + 4 * u)
                                  : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
#pragma unroll
            for (int b = 0; b < CELLS_IN_FLIGHT; b++) {
                if (w[b] == -INFINITY) continue;
#pragma unroll
                for (int u = 0; u < QUADS; u++) {
                    acc[4 * u] = acc[4 * u] + w[b] * v[b][u].x;
                    acc[4 * u + 1] = acc[4 * u + 1] + w[b] * v[b][u].y;
                    acc[4 * u + 2] = acc[4 * u + 2] + w[b] * v[b][u].z;
                    acc[4 * u + 3] = acc[4 * u + 3] + w[b] * v[b][u].w;
                }
            }
        }
#pragma unroll
        for (int i = 0; i < SLICE; i++) acc[i] = rf_butterfly32(acc[i]);
        if (lane < SLICE) {
            // every lane holds every sum; lane i stores element i of the slice
            float mine = acc[0];
#pragma unroll
            for (int i = 1; i < SLICE; i++)
                if (lane == i) mine = acc[i];
            sm_out[grp * SLICE + lane] = mine;
        }
        __syncthreads();
        if (n_chunks == 1) {
            // The whole context in one chunk: M = m, w = exp(0) = 1, joined here as below.
            if (threadIdx.x < HD) {
                const float w = rf_exp(m - m);
                const float total = 0.0f + sm_sum * w;
                const float o = 0.0f + sm_out[threadIdx.x] * w;
                att_store(out, q8, q8_scales, (size_t)t * n_head * HD + h * HD + threadIdx.x,
                          o * (1.0f / total));
            }
            if (qk) att_finish_q8k<HD>(out, t, h, n_head, qk, qkh, sb_counters);
            return;
        }
        float* pj = th_part + (size_t)j * (2 + HD);
        if (threadIdx.x == 0) {
            pj[0] = m;
            pj[1] = sm_sum;
        }
        if (threadIdx.x < HD) pj[2 + threadIdx.x] = sm_out[threadIdx.x];
        __threadfence();  // this chunk's results before the arrival below
        done++;
        __syncthreads();  // sc / sm_out are reused by the next chunk
    }
    if (done == 0) return;  // more splits than chunks
    if (threadIdx.x == 0) last = atomicAdd(&counters[t * n_head + h], done) + done == n_chunks;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (threadIdx.x == 0) counters[t * n_head + h] = 0;  // ready for the next layer / pass
    att_join<HD>(th_part, 0, 1, j_lo, j_hi, n_chunks, tok_first ? tok_first[t] : -1, out, q8,
                 q8_scales, (size_t)t * n_head * HD + h * HD);
    if (qk) att_finish_q8k<HD>(out, t, h, n_head, qk, qkh, sb_counters);
}

// Decode attention with the heads of a GQA group together: block (KV head, token, split)
// scores every query head that shares the KV head, so each chunk's keys and values are read
// once per block instead of once per query head, and the cell loads of a round are shared by
// the group's heads. The arithmetic of every (token, head) is attention_kernel's, sum for sum
// (a score's 32 lane partials, its butterfly; a weighted value's partial per cell % 32 in
// ascending cells, its butterfly; the same join), so both kernels give the CPU's bits and
// rf_attention picks whichever suits the shape. Within a chunk only the cells of the token's
// range [tok_lo, tok_hi) are visited: the others hold no cell of its sequence, and a skipped
// cell adds nothing to any sum, so no bit changes (many sequences of one step each read their
// own cells only).
//
// Layout: groups of 32 lanes (GqaShape); scores of GQA_CELLS cells per group per round (their
// keys' loads in flight together, each key row read once for the GM heads); weighted values
// with group = a slice of 4 or 8 output elements, lane = cell % 32, cells in flight together.
// The butterflies of a round's GM x GQA_CELLS scores, and of the GM x slice weighted values,
// run together by recursive halving (rf_butterfly32_many: the same sums with a fifth of the
// shuffles and additions of one butterfly each).
// 16 groups of 32 lanes. (1,024 threads, for 64 registers each and twice the warps in flight,
// measured slower: the state of four heads no longer fits, and spills.)
#define GQA_THREADS 512
template <int HD> struct GqaShape {
    static constexpr int groups = GQA_THREADS / 32;
    static constexpr int slice = HD / groups;  // output elements per group: 8 (HD 128), 4 (64)
};
#define GQA_CELLS 8  // cells per group per scoring round

template <int HD, int GM, typename T>
__global__ void __launch_bounds__(GQA_THREADS)
    attention_gqa_kernel(const float* q, int ld_q, const T* k_cache, const T* v_cache,
                         const int32_t* cell_pos, const uint64_t* cell_seqs,
                         const int32_t* n_cells_dev, const int32_t* tok_pos,
                         const int32_t* tok_seq, const int32_t* tok_lo, const int32_t* tok_hi,
                         const int32_t* tok_first, int n_head, int n_head_kv, int n_ctx,
                         int window, float scale, float* part, int32_t* counters, float* out,
                         int8_t* q8, float4* q8_scales, int8_t* qk, RfQ8KHead* qkh,
                         int32_t* sb_counters) {
    constexpr int GROUPS = GqaShape<HD>::groups, THREADS = GQA_THREADS;
    constexpr int PER_LANE = HD / 32;
    constexpr int SLICE = GqaShape<HD>::slice;
    constexpr int QUADS = SLICE / 4;
    // Cells whose values are in flight per lane: fewer for 8 heads, whose accumulators take
    // the registers.
    constexpr int CELLS_IN_FLIGHT = GM <= 4 ? 4 : 2;
    constexpr int LINE_ELEMS = 128 / (int)sizeof(T);
    constexpr int LINES = (HD + LINE_ELEMS - 1) / LINE_ELEMS;
    static_assert(HD % 32 == 0 && SLICE % 4 == 0 && GM <= JOIN_HEADS, "shape");
    __shared__ float sc[GM][ATT_CHUNK];  // each head's scores, then their exponentials
    __shared__ unsigned char svis[ATT_CHUNK];  // whether the token sees each cell of the chunk
    __shared__ float sm_max[GM][GROUPS];
    __shared__ float sm_sum[GM];
    __shared__ float sm_out[GM][HD];
    __shared__ bool last;
    const int kvh = blockIdx.x, t = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
    const int G = n_head / n_head_kv;  // heads in the group, 2..GM
    const int h0 = kvh * G;
    const int lane = threadIdx.x % 32, grp = threadIdx.x / 32;
    const int kv_dim = n_head_kv * HD;
    const int kv_off = kvh * HD;
    const int max_chunks = (n_ctx + ATT_CHUNK - 1) / ATT_CHUNK;
    const size_t head_stride = (size_t)max_chunks * (2 + HD);
    // (token, head h0)'s chunk results; the group's other heads follow (attention_kernel's
    // layout: (token, head, chunk), 2 + HD floats each).
    float* th_part = part + ((size_t)t * n_head + h0) * head_stride;

    const int n_cells = min(*n_cells_dev, n_ctx);
    const int lo = min(tok_lo[t], n_cells), hi = min(tok_hi[t], n_cells);
    const int j_lo = lo / ATT_CHUNK;
    const int j_hi = max((hi + ATT_CHUNK - 1) / ATT_CHUNK, j_lo + 1);
    const int n_chunks = j_hi - j_lo;
    // Call this block's cells into L2 while the queries are still being computed (as
    // attention_kernel; the cell range comes from metadata no kernel writes).
    for (int j = j_lo + z; j < j_hi; j += splits) {
        const int c_a = max(j * ATT_CHUNK, lo), c_b = min((j + 1) * ATT_CHUNK, hi);
        for (int i = threadIdx.x; i < (c_b - c_a) * 2 * LINES; i += THREADS) {
            const int c = c_a + i / (2 * LINES), r = i % (2 * LINES);
            const T* cache = r < LINES ? k_cache : v_cache;
            rf_prefetch_l2(rf_kv_addr(cache, (size_t)c, kv_dim, kv_off + (r % LINES) * LINE_ELEMS));
        }
    }
    rf_wait_previous();
    rf_release_next();

    const int pos = tok_pos[t];
    const uint64_t bit = 1ull << tok_seq[t];
    float qr[GM][PER_LANE];
#pragma unroll
    for (int g = 0; g < GM; g++)
#pragma unroll
        for (int e = 0; e < PER_LANE; e++)
            qr[g][e] = g < G ? q[(size_t)t * ld_q + (h0 + g) * HD + lane + 32 * e] : 0.0f;
    int done = 0;
    for (int j = j_lo + z; j < j_hi; j += splits) {
        const int c_lo = j * ATT_CHUNK;
        // The cells visited: [c_a, c_b); the value pass starts at the 32-cell boundary below
        // c_a so that lane = cell % 32 as in attention_kernel.
        const int c_a = max(c_lo, lo), c_b = min(c_lo + ATT_CHUNK, hi);
        const int c_a32 = c_lo + (c_a - c_lo) / 32 * 32;
        // Each cell's visibility once for the block (each lane of each group tested it alone).
        for (int c = c_a + threadIdx.x; c < c_b; c += THREADS)
            svis[c - c_lo] = (cell_seqs[c] & bit) != 0 && cell_pos[c] >= 0 &&
                             cell_pos[c] <= pos && (window == 0 || pos - cell_pos[c] < window);
        __syncthreads();
        // Each round's GM x GQA_CELLS scores are summed over the lanes together
        // (rf_butterfly32_many): a lane ends with the sums of value indices SC::owner(lane) + k,
        // index = head * GQA_CELLS + cell, so all of a lane's scores belong to head sc_head, and
        // SC_LANES neighbouring lanes share a head.
        using SC = RfHalved<GM * GQA_CELLS>;
        constexpr int SC_LANES = 32 / GM;
        const int sc_head = lane / SC_LANES;
        float mx = -INFINITY;  // the largest of sc_head's scores this group saw
        for (int c0 = c_a + grp * GQA_CELLS; c0 < c_b; c0 += GROUPS * GQA_CELLS) {
            float kr[GQA_CELLS][PER_LANE];
#pragma unroll
            for (int b = 0; b < GQA_CELLS; b++) {
                const int c = c0 + b;
                const bool vis = c < c_b && svis[c - c_lo] != 0;
                // 32-bit offsets: the host checks that the cache's rows fit them (gqa_launch).
#pragma unroll
                for (int e = 0; e < PER_LANE; e++)
                    kr[b][e] = vis ? rf_kv_at(k_cache, c, kv_dim, kv_off + lane + 32 * e) : 0.0f;
            }
            float p[GM * GQA_CELLS];  // [head][cell] lane partials, then their sums
#pragma unroll
            for (int g = 0; g < GM; g++)
#pragma unroll
                for (int b = 0; b < GQA_CELLS; b++) {
                    float s = 0.0f;
#pragma unroll
                    for (int e = 0; e < PER_LANE; e++) s = s + qr[g][e] * kr[b][e];
                    p[g * GQA_CELLS + b] = s;
                }
            rf_butterfly32_many<GM * GQA_CELLS>(p, lane);
#pragma unroll
            for (int k = 0; k < SC::held; k++) {
                const int c = c0 + (SC::owner(lane) + k) % GQA_CELLS;
                if (c >= c_b || sc_head >= G) continue;
                const bool vis = svis[c - c_lo] != 0;
                const float s = p[k] * scale;
                if (lane % SC::dup == 0) sc[sc_head][c - c_lo] = vis ? s : -INFINITY;
                if (vis) mx = fmaxf(mx, s);
            }
        }
#pragma unroll
        for (int o = SC_LANES / 2; o > 0; o /= 2) mx = fmaxf(mx, rf_shfl_xor(mx, o));
        if (lane % SC_LANES == 0) sm_max[sc_head][grp] = mx;
        __syncthreads();
        float m[GM];  // each head's largest score in the chunk (-inf: no visible cell)
#pragma unroll
        for (int g = 0; g < GM; g++) {
            m[g] = -INFINITY;
#pragma unroll
            for (int k = 0; k < GROUPS; k++) m[g] = fmaxf(m[g], sm_max[g][k]);
        }
        const int n_here = c_b - c_a;
        for (int i = threadIdx.x; i < GM * n_here; i += THREADS) {
            const int g = i / n_here, c = c_a + i % n_here;
            if (g >= G) continue;  // (not break: the loop stays unrolled)
            float mg = m[0];
#pragma unroll
            for (int k = 1; k < GM; k++)
                if (k == g) mg = m[k];
            const float s = sc[g][c - c_lo];
            if (s != -INFINITY) sc[g][c - c_lo] = rf_exp(s - mg);
        }
        __syncthreads();
        if (grp < G) {
            float sum = 0.0f;
            for (int c = c_a32 + lane; c < c_b; c += RF_LANES) {
                if (c < c_a) continue;
                const float e = sc[grp][c - c_lo];
                if (e != -INFINITY) sum = sum + e;
            }
            sum = rf_butterfly32(sum);
            if (lane == 0) sm_sum[grp] = sum;
        }
        // Weighted values: lane k holds partial k (cells = k mod 32) of this group's slice,
        // for every head; a cell's visibility is the same for all heads.
        float acc[GM * SLICE];  // [head][element of the slice]
#pragma unroll
        for (int i = 0; i < GM * SLICE; i++) acc[i] = 0.0f;
        const int v_off = kv_off + grp * SLICE;
        for (int c0 = c_a32 + lane; c0 < c_b; c0 += CELLS_IN_FLIGHT * RF_LANES) {
            float4 v[CELLS_IN_FLIGHT][QUADS];
            bool vis[CELLS_IN_FLIGHT];
#pragma unroll
            for (int b = 0; b < CELLS_IN_FLIGHT; b++) {
                const int c = c0 + b * RF_LANES;
                vis[b] = c >= c_a && c < c_b && sc[0][c - c_lo] != -INFINITY;
                if (vis[b]) {
#pragma unroll
                    for (int u = 0; u < QUADS; u++)
                        v[b][u] = rf_kv_at4(v_cache, c, kv_dim, v_off + 4 * u);
                }
            }
#pragma unroll
            for (int b = 0; b < CELLS_IN_FLIGHT; b++) {
                if (!vis[b]) continue;
                const int c = c0 + b * RF_LANES;
#pragma unroll
                for (int g = 0; g < GM; g++) {
                    if (g >= G) continue;  // (not break: the loop stays unrolled)
                    const float w = sc[g][c - c_lo];
                    float* a = acc + g * SLICE;
#pragma unroll
                    for (int u = 0; u < QUADS; u++) {
                        a[4 * u] = a[4 * u] + w * v[b][u].x;
                        a[4 * u + 1] = a[4 * u + 1] + w * v[b][u].y;
                        a[4 * u + 2] = a[4 * u + 2] + w * v[b][u].z;
                        a[4 * u + 3] = a[4 * u + 3] + w * v[b][u].w;
                    }
                }
            }
        }
        // All GM x SLICE sums at once; a lane ends with those of indices V::owner(lane) + k.
        using V = RfHalved<GM * SLICE>;
        rf_butterfly32_many<GM * SLICE>(acc, lane);
        if (lane % V::dup == 0) {
#pragma unroll
            for (int k = 0; k < V::held; k++) {
                const int idx = V::owner(lane) + k, g = idx / SLICE;
                if (g < G) sm_out[g][grp * SLICE + idx % SLICE] = acc[k];
            }
        }
        __syncthreads();
        if (n_chunks == 1) {
            // The whole context in one chunk: M = m, w = exp(0) = 1, joined as att_join.
            const size_t o_at = (size_t)t * n_head * HD + (size_t)h0 * HD;
            for (int i = threadIdx.x; i < G * HD; i += THREADS) {
                const int g = i / HD, e = i % HD;
                float mg = m[0];
#pragma unroll
                for (int k = 1; k < GM; k++)
                    if (k == g) mg = m[k];
                const float w = rf_exp(mg - mg);
                const float total = 0.0f + sm_sum[g] * w;
                const float o = 0.0f + sm_out[g][e] * w;
                att_store(out, q8, q8_scales, o_at + i, o * (1.0f / total));
            }
            if (qk)
                for (int g = 0; g < G; g++)
                    att_finish_q8k<HD>(out, t, h0 + g, n_head, qk, qkh, sb_counters);
            return;
        }
        for (int i = threadIdx.x; i < G * (2 + HD); i += THREADS) {
            const int g = i / (2 + HD), k = i % (2 + HD);
            float* pj = th_part + g * head_stride + (size_t)j * (2 + HD);
            float mg = m[0];
#pragma unroll
            for (int kk = 1; kk < GM; kk++)
                if (kk == g) mg = m[kk];
            pj[k] = k == 0 ? mg : k == 1 ? sm_sum[g] : sm_out[g][k - 2];
        }
        __threadfence();  // this chunk's results before the arrival below
        done++;
        __syncthreads();  // sc / sm_out are reused by the next chunk
    }
    if (done == 0) return;  // more splits than chunks
    int32_t* counter = &counters[t * n_head + h0];
    if (threadIdx.x == 0) last = atomicAdd(counter, done) + done == n_chunks;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (threadIdx.x == 0) *counter = 0;  // ready for the next layer / pass
    att_join<HD>(th_part, head_stride, G, j_lo, j_hi, n_chunks, tok_first ? tok_first[t] : -1,
                 out, q8, q8_scales, (size_t)t * n_head * HD + (size_t)h0 * HD);
    if (qk)
        for (int g = 0; g < G; g++) att_finish_q8k<HD>(out, t, h0 + g, n_head, qk, qkh, sb_counters);
}

// The device's multiprocessors (0 where it cannot say), asked once per device.
static int att_multiprocessors() {
    constexpr int MAX_DEVICES = 64;
    static std::atomic<int> count[MAX_DEVICES];  // 0: not asked yet
    int dev = 0;
    if (hipGetDevice(&dev) != hipSuccess || dev < 0 || dev >= MAX_DEVICES) return 0;
    int n = count[dev].load(std::memory_order_relaxed);
    if (n == 0) {
        hipDeviceProp_t p;
        n = hipGetDeviceProperties(&p, dev) == hipSuccess ? p.multiProcessorCount : -1;
        (void)hipGetLastError();
        count[dev].store(n, std::memory_order_relaxed);
    }
    return n;
}

// One head a block: for head size 128, 32 groups of 32 lanes (1,024 threads, 64 registers: one
// block per multiprocessor) where the launch fits one wave of the card; past that, the narrow
// shape, 16 groups with 8-element slices (two blocks per multiprocessor), so that the blocks of
// one token step still run in one wave. The sums are the same either way (a group's slice changes which lanes hold
// which outputs, not any sum's order). Llama-3-8B Q4_0 on an H100, generation tok/s with 16 vs
// 32 groups, same call: 8 sequences (256 blocks) 2,010 vs 1,912-1,922; one sequence (32 blocks)
// 426 vs 432-434; 4 sequences (128) 931 vs 959-986; 8 groups: 1,899 and 380. One sequence after
// a 2,048-token prompt (16 query heads x 8 chunks = 256 blocks): 345 vs 314. Other head sizes
// keep their one shape (unmeasured).
template <int HD, typename T>
static void launch_attention(dim3 grid, hipStream_t st, const float* q, int ld_q,
                             const T* k_cache, const T* v_cache, const int32_t* cell_pos,
                             const uint64_t* cell_seqs, const int32_t* n_cells,
                             const int32_t* tok_pos, const int32_t* tok_seq,
                             const int32_t* tok_lo, const int32_t* tok_hi,
                             const int32_t* tok_first, int n_head, int n_head_kv, int n_ctx,
                             int window, float scale, float* part, int32_t* counters, float* out,
                             int8_t* q8, float4* q8_scales, int8_t* qk, RfQ8KHead* qkh) {
    // The super-block counters follow the (token, head) ones.
    int32_t* sb_counters = counters + (size_t)grid.y * n_head;
#define RF_ATT_G(G)                                                                           \
    RF_LAUNCH_OVERLAPPED((attention_kernel<HD, T, (G)>), grid, dim3((G) * 32), 0, st, q, ld_q,\
                         k_cache, v_cache, cell_pos, cell_seqs, n_cells, tok_pos, tok_seq,     \
                         tok_lo, tok_hi, tok_first, n_head, n_head_kv, n_ctx, window, scale,   \
                         part, counters, out, q8, q8_scales, qk, qkh, sb_counters)
    // ROCMFORGE_ATT_GROUPS=16 or 32 forces either shape (to measure them on one device).
    static const int forced = [] {
        const char* e = getenv("ROCMFORGE_ATT_GROUPS");
        return e ? atoi(e) : 0;
    }();
    const bool wide = (int)(grid.x * grid.y * grid.z) > att_multiprocessors();
    if (AttNarrow<HD>::groups != AttShape<HD>::groups &&
        (forced == 16 || (forced != 32 && wide)))
        RF_ATT_G(AttNarrow<HD>::groups);
    else
        RF_ATT_G(AttShape<HD>::groups);
#undef RF_ATT_G
}

// attention_gqa_kernel for a group of `group` heads (2..8), HD 64 or 128.
template <int HD, typename T>
static void launch_attention_gqa(int group, dim3 grid, hipStream_t st, const float* q, int ld_q,
                                 const T* k_cache, const T* v_cache, const int32_t* cell_pos,
                                 const uint64_t* cell_seqs, const int32_t* n_cells,
                                 const int32_t* tok_pos, const int32_t* tok_seq,
                                 const int32_t* tok_lo, const int32_t* tok_hi,
                                 const int32_t* tok_first, int n_head, int n_head_kv, int n_ctx,
                                 int window, float scale, float* part, int32_t* counters,
                                 float* out, int8_t* q8, float4* q8_scales, int8_t* qk,
                                 RfQ8KHead* qkh) {
    int32_t* sb_counters = counters + (size_t)grid.y * n_head;
#define RF_ATT_GQA(GM)                                                                        \
    RF_LAUNCH_OVERLAPPED((attention_gqa_kernel<HD, GM, T>), grid, dim3(GQA_THREADS), 0, st, q, \
                         ld_q, k_cache, v_cache, cell_pos, cell_seqs, n_cells, tok_pos,        \
                         tok_seq, tok_lo, tok_hi, tok_first, n_head, n_head_kv, n_ctx, window,  \
                         scale, part, counters, out, q8, q8_scales, qk, qkh, sb_counters)
    if (group <= 4)
        RF_ATT_GQA(4);
    else
        RF_ATT_GQA(8);
#undef RF_ATT_GQA
}

// Whether attention_gqa_kernel serves the launch (otherwise attention_kernel, one head a
// block): a shape it has, and at least GQA_MIN_BLOCKS blocks. With fewer (short contexts, few
// sequences) the per-head kernel's group-times more blocks fill more of the card and finish
// sooner. Llama-3-8B Q4_0 on an H100, tok/s, per-head kernel vs this one at a threshold of 64:
// one token at 1,024 cells (8 blocks): 467 vs 420; 8 sequences (64 blocks): 1,067 vs 986;
// 32 sequences (256): 2,105 vs 2,373; one token after 4,096 (128): 259 vs 322; after 16,384
// (256): 116 vs 170.
#define GQA_MIN_BLOCKS 128
static bool gqa_launch(int n_head, int n_head_kv, int head_dim, int n, int splits, int n_ctx,
                       int kv_type) {
    const int group = n_head / n_head_kv;
    const long long kv_dim = (long long)n_head_kv * head_dim;
    // Its cell offsets are 32-bit: elements, or bytes of q8_0 blocks.
    const long long row = kv_type == RF_KV_Q8_0 ? kv_dim / 32 * RF_Q8_BLOCK_BYTES : kv_dim;
    return group >= 2 && group <= 8 && (head_dim == 64 || head_dim == 128) &&
           n_head_kv * n * splits >= GQA_MIN_BLOCKS && n_ctx * row < (1ll << 31);
}

extern "C" int rf_attention(const float* q, int ld_q, const void* k_cache, const void* v_cache,
                            int kv_type, const int32_t* cell_pos, const uint64_t* cell_seqs,
                            const int32_t* n_cells, const int32_t* tok_pos,
                            const int32_t* tok_seq, const int32_t* tok_lo,
                            const int32_t* tok_hi, const int32_t* tok_first, int n, int n_head,
                            int n_head_kv,
                            int head_dim, int n_ctx, int window, float scale, int splits,
                            float* part, int32_t* counters, float* out, int8_t* q8,
                            void* q8_scales, int8_t* qk, void* qk_heads, void* stream) {
    if (n <= 0 || n > RF_ATTENTION_MAX_TOKENS || n_ctx <= 0 || n_head % n_head_kv != 0 ||
        window < 0 || (qk && (q8 || !qk_heads || (n_head * head_dim) % 256 != 0)) ||
        splits < 1 || splits > ATT_MAX_SPLIT ||
        (kv_type != RF_KV_F32 && kv_type != RF_KV_F16 && kv_type != RF_KV_Q8_0) ||
        (kv_type == RF_KV_Q8_0 && head_dim % 32 != 0))
        return RF_ERR_SHAPE;
    const hipStream_t st = (hipStream_t)stream;
    float4* qs = (float4*)q8_scales;
    RfQ8KHead* qkh = (RfQ8KHead*)qk_heads;
    if (gqa_launch(n_head, n_head_kv, head_dim, n, splits, n_ctx, kv_type)) {
        const dim3 grid(n_head_kv, n, splits);
        const int group = n_head / n_head_kv;
#define RF_ATT_GQA_CASE(HD)                                                                   \
    if (kv_type == RF_KV_F16)                                                                 \
        launch_attention_gqa<HD>(group, grid, st, q, ld_q, (const rf_kv_f16*)k_cache,         \
                                 (const rf_kv_f16*)v_cache, cell_pos, cell_seqs, n_cells,     \
                                 tok_pos, tok_seq, tok_lo, tok_hi, tok_first, n_head,         \
                                 n_head_kv, n_ctx, window, scale, part, counters, out, q8,    \
                                 qs, qk, qkh);                                                 \
    else if (kv_type == RF_KV_Q8_0)                                                           \
        launch_attention_gqa<HD>(group, grid, st, q, ld_q, (const rf_kv_q8*)k_cache,          \
                                 (const rf_kv_q8*)v_cache, cell_pos, cell_seqs, n_cells,      \
                                 tok_pos, tok_seq, tok_lo, tok_hi, tok_first, n_head,         \
                                 n_head_kv, n_ctx, window, scale, part, counters, out, q8,    \
                                 qs, qk, qkh);                                                 \
    else                                                                                      \
        launch_attention_gqa<HD>(group, grid, st, q, ld_q, (const float*)k_cache,             \
                                 (const float*)v_cache, cell_pos, cell_seqs, n_cells,         \
                                 tok_pos, tok_seq, tok_lo, tok_hi, tok_first, n_head,         \
                                 n_head_kv, n_ctx, window, scale, part, counters, out, q8,    \
                                 qs, qk, qkh);
        if (head_dim == 64) {
            RF_ATT_GQA_CASE(64)
        } else {
            RF_ATT_GQA_CASE(128)
        }
#undef RF_ATT_GQA_CASE
        return (int)hipGetLastError();
    }
    const dim3 grid(n_head, n, splits);
#define RF_ATT_CASE(HD)                                                                     \
    case HD:                                                                                \
        if (kv_type == RF_KV_F16)                                                           \
            launch_attention<HD>(grid, st, q, ld_q, (const rf_kv_f16*)k_cache,              \
                                 (const rf_kv_f16*)v_cache, cell_pos, cell_seqs, n_cells,   \
                                 tok_pos, tok_seq, tok_lo, tok_hi, tok_first, n_head,       \
                                 n_head_kv, n_ctx, window, scale, part, counters, out, q8,  \
                                 qs, qk, qkh);                                               \
        else if (kv_type == RF_KV_Q8_0)                                                     \
            launch_attention<HD>(grid, st, q, ld_q, (const rf_kv_q8*)k_cache,               \
                                 (const rf_kv_q8*)v_cache, cell_pos, cell_seqs, n_cells,    \
                                 tok_pos, tok_seq, tok_lo, tok_hi, tok_first, n_head,       \
                                 n_head_kv, n_ctx, window, scale, part, counters, out, q8,  \
                                 qs, qk, qkh);                                               \
        else                                                                                \
            launch_attention<HD>(grid, st, q, ld_q, (const float*)k_cache,                  \
                                 (const float*)v_cache, cell_pos, cell_seqs, n_cells,       \
                                 tok_pos, tok_seq, tok_lo, tok_hi, tok_first, n_head,       \
                                 n_head_kv, n_ctx, window, scale, part, counters, out, q8,  \
                                 qs, qk, qkh);                                               \
        break;
    switch (head_dim) {
        RF_ATT_CASE(32)
        RF_ATT_CASE(64)
        RF_ATT_CASE(96)
        RF_ATT_CASE(128)
        RF_ATT_CASE(160)
        RF_ATT_CASE(192)
        RF_ATT_CASE(224)
        RF_ATT_CASE(256)
        default: return RF_ERR_SHAPE;  // head_dim a multiple of 32, at most 256
    }
#undef RF_ATT_CASE
    return (int)hipGetLastError();
}
