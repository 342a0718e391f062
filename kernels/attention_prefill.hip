// Attention for many query tokens at once (prompt processing), tiled FlashAttention-style:
// block (KV head, tile of query tokens) holds the tile's queries for every query head that
// shares this KV head (GQA), and walks the cache in chunks of 32 cells staged in shared
// memory, keeping a running max / sum / weighted value sum per query row (online softmax).
// Each K/V chunk is read once per block instead of once per (token, head).
// Thread layout: groups of 32 lanes ("rows teams"); in the score step lane c scores cell c,
// in the value step lane e accumulates elements e, e + 32, ...
// Keys and values are read from the cache's element type T (kv_cache.h), widened to f32.
#include "rf_kernels.h"
#include "arch.h"
#include "kv_cache.h"

#define PF_CHUNK 32
#define PF_MAX_HD 128
#define PF_ROWS 16
#define PF_THREADS 256

template <typename T>
__global__ void attention_prefill_kernel(const float* q, int ld_q, const T* k_cache,
                                         const T* v_cache, const int32_t* cell_pos,
                                         const uint64_t* cell_seqs, const int32_t* n_cells_dev,
                                         const int32_t* tok_pos, const int32_t* tok_seq,
                                         const int32_t* tok_lo, const int32_t* tok_hi, int n,
                                         int n_head, int n_head_kv, int head_dim,
                                         int window, float scale, int tokens_per_block,
                                         float* out) {
    // +4: lane c reads row c with 16-byte loads, and the 8 lanes of a load phase hit
    // distinct banks.
    __shared__ __align__(16) float sk[PF_CHUNK][PF_MAX_HD + 4];
    __shared__ float sv[PF_CHUNK][PF_MAX_HD];
    __shared__ __align__(16) float sq[PF_ROWS][PF_MAX_HD];
    __shared__ int s_any;
    const int kvh = blockIdx.x;
    const int group = n_head / n_head_kv;
    const int t0 = blockIdx.y * tokens_per_block;
    const int n_rows = min(tokens_per_block, n - t0) * group;
    const int lane = threadIdx.x % 32, team = threadIdx.x / 32, n_teams = blockDim.x / 32;
    const int kv_dim = n_head_kv * head_dim, q_dim = n_head * head_dim;
    const int n_cells = *n_cells_dev;

    // Query row r: token t0 + r / group, head kvh * group + r % group.
    for (int i = threadIdx.x; i < n_rows * head_dim; i += blockDim.x) {
        const int r = i / head_dim, e = i % head_dim;
        const int t = t0 + r / group, h = kvh * group + r % group;
        sq[r][e] = q[(size_t)t * ld_q + h * head_dim + e] * scale;
    }
    // The tile's tokens see only cells in the union of their ranges [tok_lo, tok_hi): the
    // chunks outside it hold no visible cell and would change nothing (skipped alike below).
    // A row at p sees positions (p - window, p]: the tile, (min_pos - window, max_pos].
    int max_pos = -1, min_pos = 0x7fffffff, lo = n_cells, hi = 0;
    for (int r = 0; r < n_rows; r += group) {
        const int t = t0 + r / group;
        max_pos = max(max_pos, tok_pos[t]);
        min_pos = min(min_pos, tok_pos[t]);
        lo = min(lo, tok_lo[t]);
        hi = max(hi, tok_hi[t]);
    }
    hi = min(hi, n_cells);

    // Each team owns rows team and team + n_teams (n_teams = 8 with 256 threads: 16 rows).
    constexpr int MAXJ = PF_MAX_HD / 32;
    float m[2], l[2], acc[2][MAXJ];
    int pos[2];
    uint64_t bit[2];
#pragma unroll
    for (int k = 0; k < 2; k++) {
        m[k] = -INFINITY;
        l[k] = 0.0f;
        const int r = team + k * n_teams;
        const int t = t0 + min(r, max(n_rows - 1, 0)) / group;
        pos[k] = tok_pos[t];
        bit[k] = 1ull << tok_seq[t];
#pragma unroll
        for (int j = 0; j < MAXJ; j++) acc[k][j] = 0.0f;
    }

    for (int c0 = lo / PF_CHUNK * PF_CHUNK; c0 < hi; c0 += PF_CHUNK) {
        __syncthreads();  // previous chunk fully used (and sq written, first time)
        if (threadIdx.x == 0) s_any = 0;
        __syncthreads();
        // Stage K and V of the chunk; note whether any cell can be visible to the tile.
        for (int i = threadIdx.x; i < PF_CHUNK * head_dim; i += blockDim.x) {
            const int c = i / head_dim, e = i % head_dim;
            const int cell = c0 + c;
            float kv = 0.0f, vv = 0.0f;
            if (cell < n_cells) {
                kv = rf_kv_at(k_cache, (size_t)cell, kv_dim, kvh * head_dim + e);
                vv = rf_kv_at(v_cache, (size_t)cell, kv_dim, kvh * head_dim + e);
                if (e == 0 && cell_pos[cell] >= 0 && cell_pos[cell] <= max_pos &&
                    (window == 0 || min_pos - cell_pos[cell] < window))
                    s_any = 1;
            }
            sk[c][e] = kv;
            sv[c][e] = vv;
        }
        __syncthreads();
        if (!s_any) continue;
        const int cell = c0 + lane;
        const int cp = cell < n_cells ? cell_pos[cell] : -1;
        const uint64_t cs = cell < n_cells ? cell_seqs[cell] : 0;
        // Scores of both rows at once, four partial sums each (independent FMA chains).
        const int r0 = team, r1 = min(team + n_teams, PF_ROWS - 1);
        float s0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int e = 0; e < head_dim; e += 4) {
            const float4 kk = *(const float4*)&sk[lane][e];
            const float4 a = *(const float4*)&sq[r0][e];
            const float4 b = *(const float4*)&sq[r1][e];
            s0[0] = fmaf(a.x, kk.x, s0[0]); s0[1] = fmaf(a.y, kk.y, s0[1]);
            s0[2] = fmaf(a.z, kk.z, s0[2]); s0[3] = fmaf(a.w, kk.w, s0[3]);
            s1[0] = fmaf(b.x, kk.x, s1[0]); s1[1] = fmaf(b.y, kk.y, s1[1]);
            s1[2] = fmaf(b.z, kk.z, s1[2]); s1[3] = fmaf(b.w, kk.w, s1[3]);
        }
        float p[2];
        bool live[2];
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int r = team + k * n_teams;
            const float* sk4 = k == 0 ? s0 : s1;
            float s = (sk4[0] + sk4[1]) + (sk4[2] + sk4[3]);
            const bool vis = r < n_rows && cp >= 0 && cp <= pos[k] && (cs & bit[k]) != 0 &&
                             (window == 0 || pos[k] - cp < window);
            s = vis ? s : -INFINITY;
            const float cmax = rf_group32_max(s);
            live[k] = cmax != -INFINITY;  // uniform per team
            p[k] = 0.0f;
            if (!live[k]) continue;  // nothing visible to this row in the chunk
            const float m_new = fmaxf(m[k], cmax);
            const float corr = expf(m[k] - m_new);
            p[k] = vis ? expf(s - m_new) : 0.0f;
            l[k] = l[k] * corr + rf_group32_sum(p[k]);
#pragma unroll
            for (int j = 0; j < MAXJ; j++) acc[k][j] *= corr;
            m[k] = m_new;
        }
        // Weighted values of both rows together: 2 * MAXJ independent FMA chains.
        if (live[0] || live[1]) {
            for (int c = 0; c < PF_CHUNK; c++) {
                const float p0 = rf_shfl_group32(p[0], c), p1 = rf_shfl_group32(p[1], c);
#pragma unroll
                for (int j = 0; j < MAXJ; j++) {
                    const int e = lane + 32 * j;
                    if (e < head_dim) {
                        const float v = sv[c][e];
                        acc[0][j] = fmaf(p0, v, acc[0][j]);
                        acc[1][j] = fmaf(p1, v, acc[1][j]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const int r = team + k * n_teams;
        if (r >= n_rows) continue;
        const int t = t0 + r / group, h = kvh * group + r % group;
#pragma unroll
        for (int j = 0; j < MAXJ; j++) {
            const int e = lane + 32 * j;
            if (e < head_dim) out[(size_t)t * q_dim + h * head_dim + e] = l[k] > 0.0f ? acc[k][j] / l[k] : 0.0f;
        }
    }
}

extern "C" int rf_attention_prefill(const float* q, int ld_q, const void* k_cache,
                                    const void* v_cache, int kv_type, const int32_t* cell_pos,
                                    const uint64_t* cell_seqs, const int32_t* n_cells,
                                    const int32_t* tok_pos, const int32_t* tok_seq,
                                    const int32_t* tok_lo, const int32_t* tok_hi, int n,
                                    int n_head, int n_head_kv, int head_dim, int window,
                                    float scale, float* out, void* stream) {
    if (n <= 0 || head_dim > PF_MAX_HD || head_dim % 4 != 0 || n_head % n_head_kv != 0 ||
        window < 0 || (kv_type == RF_KV_Q8_0 && head_dim % 32 != 0))
        return RF_ERR_SHAPE;
    const int group = n_head / n_head_kv;
    if (group > PF_ROWS) return RF_ERR_SHAPE;
    const int tokens_per_block = PF_ROWS / group;
    const dim3 grid(n_head_kv, (n + tokens_per_block - 1) / tokens_per_block);
    const hipStream_t st = (hipStream_t)stream;
    switch (kv_type) {
        case RF_KV_F32:
            hipLaunchKernelGGL(attention_prefill_kernel<float>, grid, dim3(PF_THREADS), 0, st, q,
                               ld_q, (const float*)k_cache, (const float*)v_cache, cell_pos,
                               cell_seqs, n_cells, tok_pos, tok_seq, tok_lo, tok_hi, n, n_head,
                               n_head_kv, head_dim, window, scale, tokens_per_block, out);
            break;
        case RF_KV_F16:
            hipLaunchKernelGGL(attention_prefill_kernel<rf_kv_f16>, grid, dim3(PF_THREADS), 0, st,
                               q, ld_q, (const rf_kv_f16*)k_cache, (const rf_kv_f16*)v_cache,
                               cell_pos, cell_seqs, n_cells, tok_pos, tok_seq, tok_lo, tok_hi, n,
                               n_head, n_head_kv, head_dim, window, scale, tokens_per_block, out);
            break;
        case RF_KV_Q8_0:
            hipLaunchKernelGGL(attention_prefill_kernel<rf_kv_q8>, grid, dim3(PF_THREADS), 0, st,
                               q, ld_q, (const rf_kv_q8*)k_cache, (const rf_kv_q8*)v_cache,
                               cell_pos, cell_seqs, n_cells, tok_pos, tok_seq, tok_lo, tok_hi, n,
                               n_head, n_head_kv, head_dim, window, scale, tokens_per_block, out);
            break;
        default: return RF_ERR_SHAPE;  // an unknown cache type
    }
    return (int)hipGetLastError();
}
