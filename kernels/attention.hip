// Attention over the KV cache for a few tokens at once (decode, and batches small enough for
// the mat-vec path), in the canonical order of kernels/numerics.h so that it reproduces the
// CPU's src/backend/cpu/attention.rs bit for bit: cell c is element c of every sum (the
// softmax denominator and each output element's weighted sum of values go to partial c % 32).
//
// Block (head, token), four phases over the cells: scores (one 32-lane group per cell, lanes
// over the head dimension) into a scratch row, their max, the exponentials with the partial
// denominators (32 threads), then the weighted values (thread per (partial, element)) and the
// butterfly that joins the partials. Cells are visible to a token when they hold the token's
// sequence at a position not after its own, so one kernel serves decode, small causal
// batches and several sequences in one batch.
#include "rf_kernels.h"
#include "arch.h"
#include "numerics.h"

#define ATT_THREADS 256
#define ATT_MAX_HEAD_DIM 256
#define ATT_PER_LANE (ATT_MAX_HEAD_DIM / 32)
#define ATT_GROUPS (ATT_THREADS / 32)
#define ATT_BATCH 4
#define ATT_SMEM_BYTES (48 * 1024 - 256)

// Writes v (element o of the output) and, when q8 is given, its int8 group quantization
// (numerics.h): the next product (the output projection) reads it directly. All 32 lanes of a
// group call this together (head_dim is a multiple of 32).
__device__ __forceinline__ void att_store(float* out, int8_t* q8, float4* q8_scales, size_t o,
                                          float v) {
    out[o] = v;
    if (q8) rf_quantize_group32(v, q8, q8_scales, o);
}

__global__ void attention_kernel(const float* q, int ld_q, const float* k_cache,
                                 const float* v_cache, const int32_t* cell_pos,
                                 const uint64_t* cell_seqs, const int32_t* n_cells_dev,
                                 const int32_t* tok_pos, const int32_t* tok_seq, int n_head,
                                 int n_head_kv, int head_dim, int n_ctx, float* scores,
                                 int scores_in_smem, float* out, int8_t* q8,
                                 float4* q8_scales) {
    rf_wait_previous();  // launched overlapped: nothing is read before the previous kernel ends
    rf_release_next();
    // (RF_LANES, head_dim) partial sums of values, then (n_ctx) scores if they fit.
    extern __shared__ float att_smem[];
    float* sm_part = att_smem;
    __shared__ float sm_max[ATT_GROUPS];
    __shared__ float sm_inv;
    const int h = blockIdx.x, t = blockIdx.y;
    const int lane = threadIdx.x % 32, grp = threadIdx.x / 32;
    const int kv_dim = n_head_kv * head_dim, q_dim = n_head * head_dim;
    const int kv_off = (h / (n_head / n_head_kv)) * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    // The cell count is read on the device so a captured graph stays valid as the cache grows.
    const int n_cells = min(*n_cells_dev, n_ctx);
    const int pos = tok_pos[t];
    const uint64_t bit = 1ull << tok_seq[t];
    // (n_cells): a visible cell's score, then its exponential; -inf marks a hidden cell.
    float* sc = scores_in_smem ? att_smem + RF_LANES * head_dim
                               : scores + ((size_t)t * n_head + h) * n_ctx;

    // Scores: q . k in canonical order (lane = element % 32), then * scale, as the CPU.
    float qr[ATT_PER_LANE];
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++) {
        const int e = lane + j * 32;
        qr[j] = e < head_dim ? q[(size_t)t * ld_q + h * head_dim + e] : 0.0f;
    }
    // ATT_BATCH cells per group at a time: their keys are all loaded before any is used, so
    // the loads overlap (the cache is usually out of L2 by the next token).
    float mx = -INFINITY;
    for (int c0 = grp * ATT_BATCH; c0 < n_cells; c0 += ATT_GROUPS * ATT_BATCH) {
        float kr[ATT_BATCH][ATT_PER_LANE];
        bool vis[ATT_BATCH];
#pragma unroll
        for (int b = 0; b < ATT_BATCH; b++) {
            const int c = c0 + b;
            vis[b] = false;
            if (c < n_cells) {
                const int cp = cell_pos[c];
                vis[b] = (cell_seqs[c] & bit) != 0 && cp >= 0 && cp <= pos;  // uniform per group
            }
            const float* kc = k_cache + (size_t)c * kv_dim + kv_off;
#pragma unroll
            for (int j = 0; j < ATT_PER_LANE; j++) {
                const int e = lane + j * 32;
                kr[b][j] = vis[b] && e < head_dim ? kc[e] : 0.0f;
            }
        }
#pragma unroll
        for (int b = 0; b < ATT_BATCH; b++) {
            const int c = c0 + b;
            if (c >= n_cells) break;
            if (!vis[b]) {
                if (lane == 0) sc[c] = -INFINITY;
                continue;
            }
            float p = 0.0f;
#pragma unroll
            for (int j = 0; j < ATT_PER_LANE; j++) {
                const int e = lane + j * 32;
                if (e < head_dim) p = p + qr[j] * kr[b][j];
            }
            p = rf_butterfly32(p) * scale;
            if (lane == 0) sc[c] = p;
            mx = fmaxf(mx, p);
        }
    }
    if (lane == 0) sm_max[grp] = mx;
    __syncthreads();

    // Exponentials and the denominator's 32 partials (cell c -> partial c % 32).
    if (grp == 0) {
        float big = -INFINITY;
#pragma unroll
        for (int g = 0; g < ATT_GROUPS; g++) big = fmaxf(big, sm_max[g]);
        float sum = 0.0f;
        for (int c = lane; c < n_cells; c += RF_LANES) {
            const float s = sc[c];
            if (s == -INFINITY) continue;
            const float e = rf_exp(s - big);
            sc[c] = e;
            sum = sum + e;
        }
        sum = rf_butterfly32(sum);
        if (lane == 0) sm_inv = 1.0f / sum;
    }
    __syncthreads();

    // Weighted values: thread per (partial k, four elements e..e+3), cells k, k + 32, ... in
    // order; 16-byte loads of the values, four cells' loads issued before they are used.
    const float inv = sm_inv;
    const int quads = head_dim / 4;
    for (int i = threadIdx.x; i < RF_LANES * quads; i += blockDim.x) {
        const int k = i / quads, e = 4 * (i % quads);
        const float* vc = v_cache + kv_off + e;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int c0 = k; c0 < n_cells; c0 += 4 * RF_LANES) {
            float4 v[4];
            float w[4];
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const int c = c0 + b * RF_LANES;
                w[b] = c < n_cells ? sc[c] : -INFINITY;
                if (w[b] != -INFINITY) v[b] = *(const float4*)(vc + (size_t)c * kv_dim);
            }
#pragma unroll
            for (int b = 0; b < 4; b++) {
                if (w[b] == -INFINITY) continue;
                const float p = w[b] * inv;
                acc.x = acc.x + p * v[b].x;
                acc.y = acc.y + p * v[b].y;
                acc.z = acc.z + p * v[b].z;
                acc.w = acc.w + p * v[b].w;
            }
        }
        float* dst = sm_part + k * head_dim + e;
        dst[0] = acc.x;
        dst[1] = acc.y;
        dst[2] = acc.z;
        dst[3] = acc.w;
    }
    __syncthreads();

    // The partials meet in butterfly order (v[k] += v[k + m], m = 16 .. 1), in place.
    for (int m = RF_LANES / 2; m > 0; m /= 2) {
        for (int i = threadIdx.x; i < m * head_dim; i += blockDim.x)
            sm_part[i] = sm_part[i] + sm_part[i + m * head_dim];
        __syncthreads();
    }
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x)
        att_store(out, q8, q8_scales, (size_t)t * q_dim + h * head_dim + e, sm_part[e]);
}

// The same attention for the common head sizes (64, 128), laid out for latency: a decode
// step reads a few hundred cells at most, so the time goes to dependent round trips, not
// bandwidth. Every 32-lane group scores ATT_CELLS cells per round with all their keys loaded
// first; the weighted values give each lane one partial (cell c -> lane c % 32) over a slice
// of four elements, with the loads of four cells in flight, and the partials meet in
// register butterflies instead of rounds through shared memory. Same sums in the same order
// as attention_kernel (and the CPU), so the same bits.
#define ATT_CELLS 4
template <int HD>
__global__ void __launch_bounds__(HD * 8)
    attention_hd_kernel(const float* q, int ld_q, const float* k_cache, const float* v_cache,
                        const int32_t* cell_pos, const uint64_t* cell_seqs,
                        const int32_t* n_cells_dev, const int32_t* tok_pos,
                        const int32_t* tok_seq, int n_head, int n_head_kv, int n_ctx,
                        float* scores, int scores_in_smem, float* out, int8_t* q8,
                        float4* q8_scales) {
    // One float4 of the output per group: HD / 4 groups (32 for HD 128, a 1024-thread block).
    // The work is latency-bound, so it is spread over as many groups as the head allows.
    constexpr int GROUPS = HD / 4, THREADS = GROUPS * 32;
    static_assert(HD % 32 == 0, "whole 32-lane groups over the head");
    constexpr int PER_LANE = HD / 32;          // key elements per lane
    constexpr int SLICE = HD / GROUPS;         // output elements per group
    constexpr int QUADS = SLICE / 4;
    constexpr int CELLS_IN_FLIGHT = 4;
    constexpr int LINES = HD * 4 / 128;  // 128-byte lines per cell's slice of K (and of V)
    extern __shared__ float att_smem[];  // (n_ctx) scores when they fit
    __shared__ float sm_max[GROUPS];
    __shared__ float sm_inv;
    __shared__ float sm_out[HD];
    const int h = blockIdx.x, t = blockIdx.y;
    const int lane = threadIdx.x % 32, grp = threadIdx.x / 32;
    const int kv_dim = n_head_kv * HD;
    const int kv_off = (h / (n_head / n_head_kv)) * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    // The cell count comes from the batch metadata (copied before the pass, never written by
    // a kernel), so the cache can be called into L2 while Q|K|V is still being computed: the
    // cache was evicted by the previous token's weights, and this takes its memory latency off
    // the critical path.
    const int n_cells = min(*n_cells_dev, n_ctx);
    for (int i = threadIdx.x; i < n_cells * 2 * LINES; i += THREADS) {
        const int c = i / (2 * LINES), r = i % (2 * LINES);
        const float* cache = r < LINES ? k_cache : v_cache;
        rf_prefetch_l2(cache + (size_t)c * kv_dim + kv_off + (r % LINES) * 32);
    }
    rf_wait_previous();  // nothing the previous kernel writes is read before it ends
    rf_release_next();
    const int pos = tok_pos[t];
    const uint64_t bit = 1ull << tok_seq[t];
    float* sc = scores_in_smem ? att_smem : scores + ((size_t)t * n_head + h) * n_ctx;

    float qr[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) qr[j] = q[(size_t)t * ld_q + h * HD + lane + 32 * j];
    float mx = -INFINITY;
    for (int c0 = grp * ATT_CELLS; c0 < n_cells; c0 += GROUPS * ATT_CELLS) {
        float kr[ATT_CELLS][PER_LANE];
        bool vis[ATT_CELLS];
#pragma unroll
        for (int b = 0; b < ATT_CELLS; b++) {
            const int c = c0 + b;
            vis[b] = c < n_cells && (cell_seqs[c] & bit) != 0 && cell_pos[c] >= 0 &&
                     cell_pos[c] <= pos;
            const float* kc = k_cache + (size_t)c * kv_dim + kv_off + lane;
#pragma unroll
            for (int j = 0; j < PER_LANE; j++) kr[b][j] = vis[b] ? kc[32 * j] : 0.0f;
        }
#pragma unroll
        for (int b = 0; b < ATT_CELLS; b++) {
            const int c = c0 + b;
            float p = 0.0f;
#pragma unroll
            for (int j = 0; j < PER_LANE; j++) p = p + qr[j] * kr[b][j];
            p = rf_butterfly32(p) * scale;
            if (lane == 0 && c < n_cells) sc[c] = vis[b] ? p : -INFINITY;
            if (vis[b]) mx = fmaxf(mx, p);
        }
    }
    if (lane == 0) sm_max[grp] = mx;
    __syncthreads();
    float big = -INFINITY;
#pragma unroll
    for (int g = 0; g < GROUPS; g++) big = fmaxf(big, sm_max[g]);
    for (int c = threadIdx.x; c < n_cells; c += THREADS) {
        const float s = sc[c];
        if (s != -INFINITY) sc[c] = rf_exp(s - big);
    }
    __syncthreads();
    // The denominator's partials (cell c -> partial c % 32), ascending, then the butterfly.
    if (grp == 0) {
        float sum = 0.0f;
        for (int c = lane; c < n_cells; c += RF_LANES) {
            const float e = sc[c];
            if (e != -INFINITY) sum = sum + e;
        }
        sum = rf_butterfly32(sum);
        if (lane == 0) sm_inv = 1.0f / sum;
    }
    __syncthreads();
    const float inv = sm_inv;
    // Weighted values: lane k holds partial k of this group's slice of elements.
    float acc[SLICE];
#pragma unroll
    for (int i = 0; i < SLICE; i++) acc[i] = 0.0f;
    const float* vbase = v_cache + kv_off + grp * SLICE;
    for (int c0 = lane; c0 < n_cells; c0 += CELLS_IN_FLIGHT * RF_LANES) {
        float4 v[CELLS_IN_FLIGHT][QUADS];
        float w[CELLS_IN_FLIGHT];
#pragma unroll
        for (int b = 0; b < CELLS_IN_FLIGHT; b++) {
            const int c = c0 + b * RF_LANES;
            w[b] = c < n_cells ? sc[c] : -INFINITY;
            if (w[b] != -INFINITY) {
#pragma unroll
                for (int u = 0; u < QUADS; u++)
                    v[b][u] = *(const float4*)(vbase + (size_t)c * kv_dim + 4 * u);
            }
        }
#pragma unroll
        for (int b = 0; b < CELLS_IN_FLIGHT; b++) {
            if (w[b] == -INFINITY) continue;
            const float p = w[b] * inv;
#pragma unroll
            for (int u = 0; u < QUADS; u++) {
                acc[4 * u] = acc[4 * u] + p * v[b][u].x;
                acc[4 * u + 1] = acc[4 * u + 1] + p * v[b][u].y;
                acc[4 * u + 2] = acc[4 * u + 2] + p * v[b][u].z;
                acc[4 * u + 3] = acc[4 * u + 3] + p * v[b][u].w;
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
    if (threadIdx.x < HD)
        att_store(out, q8, q8_scales, (size_t)t * n_head * HD + h * HD + threadIdx.x,
                  sm_out[threadIdx.x]);
}

extern "C" int rf_attention(const float* q, int ld_q, const float* k_cache, const float* v_cache,
                            const int32_t* cell_pos, const uint64_t* cell_seqs,
                            const int32_t* n_cells, const int32_t* tok_pos,
                            const int32_t* tok_seq, int n, int n_head, int n_head_kv, int head_dim,
                            int n_ctx, float* scores, float* out, int8_t* q8, void* q8_scales,
                            void* stream) {
    // head_dim a multiple of 32: att_store quantizes whole 32-lane groups.
    if (n <= 0 || head_dim > ATT_MAX_HEAD_DIM || head_dim % 32 != 0 || n_ctx <= 0 ||
        n_head % n_head_kv != 0)
        return RF_ERR_SHAPE;
    // Scores live in shared memory when the whole context fits next to the partials (48 KiB,
    // the limit every target grants without opting in); else in the `scores` scratch.
    const hipStream_t st = (hipStream_t)stream;
    if (head_dim == 64 || head_dim == 128) {
        const bool in_smem = (size_t)n_ctx * sizeof(float) <= ATT_SMEM_BYTES - 2048;
        const size_t smem = in_smem ? (size_t)n_ctx * sizeof(float) : 0;
        if (head_dim == 64)
            RF_LAUNCH_OVERLAPPED(attention_hd_kernel<64>, dim3(n_head, n), dim3(64 * 8),
                                 smem, st, q, ld_q, k_cache, v_cache, cell_pos, cell_seqs,
                                 n_cells, tok_pos, tok_seq, n_head, n_head_kv, n_ctx, scores,
                                 (int)in_smem, out, q8, (float4*)q8_scales);
        else
            RF_LAUNCH_OVERLAPPED(attention_hd_kernel<128>, dim3(n_head, n), dim3(128 * 8),
                                 smem, st, q, ld_q, k_cache, v_cache, cell_pos, cell_seqs,
                                 n_cells, tok_pos, tok_seq, n_head, n_head_kv, n_ctx, scores,
                                 (int)in_smem, out, q8, (float4*)q8_scales);
        return (int)hipGetLastError();
    }
    const size_t part_bytes = (size_t)RF_LANES * head_dim * sizeof(float);
    const bool in_smem = part_bytes + (size_t)n_ctx * sizeof(float) <= ATT_SMEM_BYTES;
    const size_t smem = part_bytes + (in_smem ? (size_t)n_ctx * sizeof(float) : 0);
    RF_LAUNCH_OVERLAPPED(attention_kernel, dim3(n_head, n), dim3(ATT_THREADS), smem, st, q, ld_q,
                         k_cache, v_cache, cell_pos, cell_seqs, n_cells, tok_pos, tok_seq, n_head, n_head_kv, head_dim, n_ctx, scores,
                       (int)in_smem, out, q8, (float4*)q8_scales);
    return (int)hipGetLastError();
}
