// The Q|K|V product's RoPE epilogue, shared by the mat-vec (kernels/matvec.hip) and the tree
// mat-mat (kernels/matmul_q.hip): each RoPE pair of a token's sums rotated and stored where
// rf_rope_kv (kernels/rope_kv.hip) stores them, so a product that ends with it saves that
// kernel's launch and gives the same bits.
#pragma once
#include "rf_kernels.h"
#include "numerics.h"
#include "kv_cache.h"

static_assert(sizeof(RfRopeKv) == 88, "RfRopeKv: 8 pointers, 5 ints, padding (ffi.rs mirrors it)");

// Token t's sums a, b of rows `row` (even) and row + 1 of the Q|K|V product, one RoPE pair:
// rotated by rf_rope_rotate and stored where rf_rope_kv stores them (queries to y, keys and
// values rounded to the cache's type into their cells).
__device__ __forceinline__ void rf_store_rope_pair(const RfRopeKv& rk, int row, int t, float a,
                                                   float b, float* y, int ldy) {
    const int gi = rk.out_offset + row;  // row of the whole Q|K|V output
    const int half = rk.head_dim / 2;
    const size_t cell = (size_t)rk.tok_cell[t];
    if (gi >= rk.q_dim + rk.kv_dim) {
        const size_t o = cell * rk.kv_dim + (gi - rk.q_dim - rk.kv_dim);
        rf_kv_store(rk.v_cache, rk.kv_type, o, a);
        rf_kv_store(rk.v_cache, rk.kv_type, o + 1, b);
        return;
    }
    const bool is_q = gi < rk.q_dim;
    const int j = is_q ? gi : gi - rk.q_dim;  // element of q or k
    const float2 r = ((const float2*)rk.rot)[(size_t)t * half + (j / 2) % half];
    if (is_q) {
        rf_rope_rotate(a, b, r, y + (size_t)t * ldy + row);
    } else {
        float kr[2];
        rf_rope_rotate(a, b, r, kr);
        rf_kv_store(rk.k_cache, rk.kv_type, cell * rk.kv_dim + j, kr[0]);
        rf_kv_store(rk.k_cache, rk.kv_type, cell * rk.kv_dim + j + 1, kr[1]);
    }
}

// The first block of the product's first part records each token's cell (position, sequence).
__device__ __forceinline__ void rf_note_cells(const RfRopeKv& rk, int n) {
    if (rk.out_offset == 0 && blockIdx.x == 0 && threadIdx.x < n) {
        const int t = threadIdx.x;
        rk.cell_pos[rk.tok_cell[t]] = rk.tok_pos[t];
        rk.cell_seqs[rk.tok_cell[t]] = 1ull << rk.tok_seq[t];
    }
}
