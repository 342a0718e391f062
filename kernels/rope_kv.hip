// RoPE on queries and keys (rotating adjacent pairs, as GGUF llama weights expect), fused with
// the KV cache write and the cell bookkeeping the attention kernel reads.
#include "rf_kernels.h"
#include "arch.h"
#include "numerics.h"
#include "kv_cache.h"

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
        default: return RF_ERR_SHAPE;  // an unknown cache type
    }
    return (int)hipGetLastError();
}
