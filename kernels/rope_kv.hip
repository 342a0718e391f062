// RoPE on queries and keys (rotating adjacent pairs, as GGUF llama weights expect), fused with
// the KV cache write and the cell bookkeeping the attention kernel reads.
#include "rf_kernels.h"
#include "arch.h"
#include "numerics.h"
#include "kv_cache.h"
#include <type_traits>

// T: the cache's element type (kv_cache.h); keys and values are rounded to it when stored.
template <typename T>
__global__ void rope_kv_kernel(float* q, const float* k, const float* v, int ld, int n_head,
                               int n_head_kv, int head_dim, const float2* rot,
                               const int32_t* tok_pos, const int32_t* tok_cell,
                               const int32_t* tok_seq, T* k_cache, T* v_cache,
                               int32_t* cell_pos, uint64_t* cell_seqs) {
    rf_wait_previous();  // launched overlapped: nothing is read before the previous kernel ends
    rf_release_next();
    const int t = blockIdx.x;
    const int half = head_dim / 2;
    const int q_dim = n_head * head_dim, kv_dim = n_head_kv * head_dim;
    const size_t cell = (size_t)tok_cell[t];
    // The token's rotations (sin, cos) per pair, shared by every head: computed on the host by
    // the CPU backend's own function (numerics::sin_cos), so they are its bits.
    const float2* tr = rot + (size_t)t * half;
    float* qt = q + (size_t)t * ld;
    for (int p = blockIdx.y * blockDim.x + threadIdx.x; p < q_dim / 2; p += gridDim.y * blockDim.x) {
        rf_rope_rotate(qt[2 * p], qt[2 * p + 1], tr[p % half], qt + 2 * p);
    }
    const float* kt = k + (size_t)t * ld;
    const float* vt = v + (size_t)t * ld;
    T* kc = k_cache + cell * kv_dim;
    T* vc = v_cache + cell * kv_dim;
    for (int p = blockIdx.y * blockDim.x + threadIdx.x; p < kv_dim / 2;
         p += gridDim.y * blockDim.x) {
        float kr[2];
        rf_rope_rotate(kt[2 * p], kt[2 * p + 1], tr[p % half], kr);
        rf_kv_put(kc + 2 * p, kr[0]);
        rf_kv_put(kc + 2 * p + 1, kr[1]);
        rf_kv_put(vc + 2 * p, vt[2 * p]);
        rf_kv_put(vc + 2 * p + 1, vt[2 * p + 1]);
    }
    if (threadIdx.x == 0 && blockIdx.y == 0) {
        cell_pos[cell] = tok_pos[t];
        cell_seqs[cell] = 1ull << tok_seq[t];
    }
}

extern "C" int rf_rope_kv(float* q, const float* k, const float* v, int ld, int n, int n_head,
                          int n_head_kv, int head_dim, const float* rot,
                          const int32_t* tok_pos, const int32_t* tok_cell,
                          const int32_t* tok_seq, void* k_cache, void* v_cache, int kv_type,
                          int32_t* cell_pos, uint64_t* cell_seqs, void* stream) {
    if (n <= 0 || head_dim % 2 != 0) return RF_ERR_SHAPE;
    // Several blocks per token: single-token decode should not run on one block.
    const int slices = (n_head * head_dim / 2 + RF_BLOCK - 1) / RF_BLOCK;
    const dim3 grid(n, slices);
    const hipStream_t st = (hipStream_t)stream;
    const float2* r = (const float2*)rot;
    switch (kv_type) {
        case RF_KV_F32:
            RF_LAUNCH_OVERLAPPED(rope_kv_kernel<float>, grid, dim3(RF_BLOCK), 0, st, q, k, v, ld,
                                 n_head, n_head_kv, head_dim, r, tok_pos, tok_cell, tok_seq,
                                 (float*)k_cache, (float*)v_cache, cell_pos, cell_seqs);
            break;
        case RF_KV_F16:
            RF_LAUNCH_OVERLAPPED(rope_kv_kernel<rf_kv_f16>, grid, dim3(RF_BLOCK), 0, st, q, k, v,
                                 ld, n_head, n_head_kv, head_dim, r, tok_pos, tok_cell, tok_seq,
                                 (rf_kv_f16*)k_cache, (rf_kv_f16*)v_cache, cell_pos, cell_seqs);
            break;
        default: return RF_ERR_SHAPE;  // an unknown cache type, or q8_0 (rf_qkv_post's)
    }
    return (int)hipGetLastError();
}

// ---- The general form for the other families: Q/K/V biases, QK-norm and NEOX RoPE before
// the cache write, each as the CPU's forward pass does it (src/backend/cpu/forward.rs):
// biases added to q, k and v (ops::add_bias_rows), then each head of q and k RMS-normalised
// with its weights (ops::rms_norm_heads_in_place: the head's sum of squares in canonical
// order, lane = element % 32), then the rotation of pairs (2i, 2i + 1) or, NEOX, (i, i + hd/2)
// (ops::rope_neox_in_place). A 32-lane team per head segment of a token's row (q heads, k
// heads, v heads in the row's order; grid (token, segments / teams per block)), each lane
// owning the elements i = lane (mod 32) of it, so the biases and the norm need no exchange but
// the butterfly; the rotation reads its pairs back from the team's slice of shared memory.
// One block per token taking the heads in turn ran 12 us per decode token on the H200
// (Qwen2.5-7B shape: 36 heads of 128, 28 layers: a tenth of the token's kernel time).
#define QKV_POST_TEAMS (RF_BLOCK / 32)
#define QKV_POST_MAX_HEAD 256  // GpuModel::check refuses larger heads

template <typename T>
__global__ void qkv_post_kernel(float* qkv, int ld, int n_head, int n_head_kv, int head_dim,
                                const float* bias, const float* q_norm, const float* k_norm,
                                float eps, int neox, const float2* rot, const int32_t* tok_pos,
                                const int32_t* tok_cell, const int32_t* tok_seq, T* k_cache,
                                T* v_cache, int32_t* cell_pos, uint64_t* cell_seqs) {
    __shared__ float heads[QKV_POST_TEAMS][QKV_POST_MAX_HEAD];
    rf_wait_previous();  // launched overlapped: nothing is read before the previous kernel ends
    rf_release_next();
    const int t = blockIdx.x;
    const int half = head_dim / 2;
    const int kv_dim = n_head_kv * head_dim;
    const int lane = threadIdx.x % 32, team = threadIdx.x / 32;
    // Segment s: q head s (s < n_head), k head s - n_head, then the v heads.
    const int s = blockIdx.y * QKV_POST_TEAMS + team;
    const bool live = s < n_head + 2 * n_head_kv;  // uniform over the team
    const bool is_q = s < n_head, is_k = !is_q && s < n_head + n_head_kv;
    float* x = qkv + (size_t)t * ld + (size_t)s * head_dim;
    float* h = heads[team];
    const size_t cell = (size_t)tok_cell[t];
    if (live) {
        const float* b = bias ? bias + (size_t)s * head_dim : nullptr;
        const float* w = q_norm ? (is_q ? q_norm : is_k ? k_norm : nullptr) : nullptr;
        float ss = 0.0f;
        for (int i = lane; i < head_dim; i += 32) {
            float v = x[i];
            if (b) v = v + b[i];
            h[i] = v;
            ss = ss + v * v;
        }
        if (w) {
            ss = rf_butterfly32(ss);
            const float scale = 1.0f / sqrtf(ss / (float)head_dim + eps);
            for (int i = lane; i < head_dim; i += 32) h[i] = h[i] * scale * w[i];
        }
        // The row keeps k and v as the rotation and the cache receive them (q: rotated below).
        if (!is_q)
            for (int i = lane; i < head_dim; i += 32) x[i] = h[i];
    }
    __syncthreads();  // a team's pairs cross its lanes
    constexpr bool q8 = std::is_same<T, rf_kv_q8>::value;
    if (live && (is_q || is_k)) {
        // The rotations are shared by every head: the CPU backend's own sin/cos.
        const float2* tr = rot + (size_t)t * half;
        T* kc = q8 ? nullptr : k_cache + cell * kv_dim + (size_t)(s - n_head) * head_dim;
        for (int j = lane; j < half; j += 32) {
            const int a = neox ? j : 2 * j, b = neox ? j + half : 2 * j + 1;
            float out[2];
            rf_rope_rotate(h[a], h[b], tr[j], out);
            if (is_q) {
                x[a] = out[0];
                x[b] = out[1];
            } else if constexpr (q8) {
                h[a] = out[0];  // this lane's own pair: quantized by blocks below
                h[b] = out[1];
            } else {
                rf_kv_put(kc + a, out[0]);
                rf_kv_put(kc + b, out[1]);
            }
        }
    } else if (live) {
        if constexpr (!q8) {
            T* vc = v_cache + cell * kv_dim + (size_t)(s - n_head - n_head_kv) * head_dim;
            for (int i = lane; i < head_dim; i += 32) rf_kv_put(vc + i, h[i]);
        }
    }
    if constexpr (q8) {
        // A q8_0 row is quantized 32 elements at a time (the host checks head_dim % 32 == 0),
        // from the rotated keys / the values the team holds.
        __syncthreads();
        if (live && !is_q) {
            const int head = is_k ? s - n_head : s - n_head - n_head_kv;
            T* cache = is_k ? k_cache : v_cache;
            for (int e0 = 0; e0 < head_dim; e0 += 32)
                rf_kv_store_q8_block(cache, cell, kv_dim, head * head_dim + e0, h[e0 + lane],
                                     lane);
        }
    }
    if (threadIdx.x == 0 && blockIdx.y == 0) {
        cell_pos[cell] = tok_pos[t];
        cell_seqs[cell] = 1ull << tok_seq[t];
    }
}

extern "C" int rf_qkv_post(float* qkv, int ld, int n, int n_head, int n_head_kv, int head_dim,
                           const float* bias, const float* q_norm, const float* k_norm,
                           float eps, int neox, const float* rot, const int32_t* tok_pos,
                           const int32_t* tok_cell, const int32_t* tok_seq, void* k_cache,
                           void* v_cache, int kv_type, int32_t* cell_pos, uint64_t* cell_seqs,
                           void* stream) {
    if (n <= 0 || head_dim % 2 != 0 || head_dim > QKV_POST_MAX_HEAD ||
        (q_norm == nullptr) != (k_norm == nullptr) || ld < (n_head + 2 * n_head_kv) * head_dim)
        return RF_ERR_SHAPE;
    const int segments = n_head + 2 * n_head_kv;
    const dim3 grid(n, (segments + QKV_POST_TEAMS - 1) / QKV_POST_TEAMS);
    const hipStream_t st = (hipStream_t)stream;
    const float2* r = (const float2*)rot;
    switch (kv_type) {
        case RF_KV_F32:
            RF_LAUNCH_OVERLAPPED(qkv_post_kernel<float>, grid, dim3(RF_BLOCK), 0, st, qkv, ld,
                                 n_head, n_head_kv, head_dim, bias, q_norm, k_norm, eps, neox,
                                 r, tok_pos, tok_cell, tok_seq, (float*)k_cache,
                                 (float*)v_cache, cell_pos, cell_seqs);
            break;
        case RF_KV_F16:
            RF_LAUNCH_OVERLAPPED(qkv_post_kernel<rf_kv_f16>, grid, dim3(RF_BLOCK), 0, st, qkv,
                                 ld, n_head, n_head_kv, head_dim, bias, q_norm, k_norm, eps,
                                 neox, r, tok_pos, tok_cell, tok_seq, (rf_kv_f16*)k_cache,
                                 (rf_kv_f16*)v_cache, cell_pos, cell_seqs);
            break;
        case RF_KV_Q8_0:
            if (head_dim % 32 != 0) return RF_ERR_SHAPE;
            RF_LAUNCH_OVERLAPPED(qkv_post_kernel<rf_kv_q8>, grid, dim3(RF_BLOCK), 0, st, qkv,
                                 ld, n_head, n_head_kv, head_dim, bias, q_norm, k_norm, eps,
                                 neox, r, tok_pos, tok_cell, tok_seq, (rf_kv_q8*)k_cache,
                                 (rf_kv_q8*)v_cache, cell_pos, cell_seqs);
            break;
        default: return RF_ERR_SHAPE;  // an unknown cache type
    }
    return (int)hipGetLastError();
}
