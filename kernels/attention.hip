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

// Writes v (element o of the output) and, when q8 is given, its int8 group quantization with
// the same numerics as rf_act: the next product (the output projection) reads it directly.
// All 32 lanes of a group call this together (head_dim is a multiple of 32).
__device__ __forceinline__ void att_store(float* out, int8_t* q8, float4* q8_scales, size_t o,
                                          float v) {
    out[o] = v;
    if (!q8) return;
    const float amax = rf_group32_max(fabsf(v));
    const float qd = amax / 127.0f;
    const float qv = amax > 0.0f ? rintf(v * (127.0f / amax)) : 0.0f;
    const float qsum = rf_group32_sum(qv);
    q8[o] = (int8_t)qv;
    if ((threadIdx.x & 31) == 0)
        q8_scales[o / 32] = make_float4(__half2float(__float2half(qd)), qsum,
                                        __half2float(__float2half(qd * qsum)), 0.0f);
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
    const size_t part_bytes = (size_t)RF_LANES * head_dim * sizeof(float);
    const bool in_smem = part_bytes + (size_t)n_ctx * sizeof(float) <= ATT_SMEM_BYTES;
    const size_t smem = part_bytes + (in_smem ? (size_t)n_ctx * sizeof(float) : 0);
    RF_LAUNCH_OVERLAPPED(attention_kernel, dim3(n_head, n), dim3(ATT_THREADS), smem,
                       (hipStream_t)stream, q, ld_q, k_cache, v_cache, cell_pos, cell_seqs,
                       n_cells, tok_pos, tok_seq, n_head, n_head_kv, head_dim, n_ctx, scores,
                       (int)in_smem, out, q8, (float4*)q8_scales);
    return (int)hipGetLastError();
}
