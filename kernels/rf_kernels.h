// Host entry points of the kernels, called from Rust (src/backend/hip/ffi.rs mirrors this).
// Every function returns 0 on success, a HIP/CUDA error code (> 0), or one of the RF_ERR_*
// codes below; nothing aborts. Pointers are device pointers unless named `host_*`.
// Activations are row-major: (n_tokens, width). Weights are GGUF rows: (rows, cols) packed
// in 32-element groups of their type.
#pragma once
#include "hip_compat.h"
#include <stddef.h>
#include <stdint.h>

#include "rf_errors.h"

// Activation transform modes of rf_act.
#define RF_ACT_RMSNORM 0
#define RF_ACT_COPY 1
#define RF_ACT_SWIGLU 2
#define RF_ACT_GEGLU 3

#ifdef __cplusplus
extern "C" {
#endif

// ---- amd_runtime_loader.c (AMD only; CUDA's static runtime opens the driver itself)
#if defined(RF_PLATFORM_AMD)
// 0 once the HIP runtime is open, else RF_ERR_NO_RUNTIME; the reason stays readable.
int rf_runtime_open(void);
const char* rf_runtime_unavailable_reason(void);
#endif

// ---- runtime.hip
const char* rf_error_string(int code);
int rf_device_count(int* count);
// name: at least 256 bytes; arch: at least 64 bytes ("sm_90", "gfx90a", ...).
int rf_device_info(int device, char* name, char* arch, size_t* total_mem, size_t* free_mem);
int rf_set_device(int device);
int rf_malloc(void** ptr, size_t bytes);
int rf_free(void* ptr);
int rf_host_alloc(void** ptr, size_t bytes);
int rf_host_free(void* ptr);
int rf_stream_create(void** stream);
int rf_stream_destroy(void* stream);
int rf_stream_sync(void* stream);
int rf_memcpy_h2d(void* dst, const void* host_src, size_t bytes, void* stream);
int rf_memcpy_d2h(void* host_dst, const void* src, size_t bytes, void* stream);
int rf_memset(void* dst, int value, size_t bytes, void* stream);
int rf_last_error(void);
// Graph capture of the work queued on `stream` between begin and end (NVIDIA and AMD alike).
int rf_graph_begin(void* stream);
int rf_graph_end(void* stream, void** exec);
int rf_graph_launch(void* exec, void* stream);
int rf_graph_destroy(void* exec);

// ---- wave_check.hip
// Runs the cross-lane helpers of arch.h against exact values on the current device:
// host_result = [checks made, checks failed, the kernels' wave size (RF_WAVE)].
int rf_wave_check(int* host_result);
// Milliseconds spent by the GPU on `iters` device-to-device copies of `bytes` bytes.
int rf_measure_copy(void* dst, const void* src, size_t bytes, int iters, void* stream, float* ms);

// ---- embed.hip: out(n, cols) = rows `tokens[i]` of table(rows, cols) as f32.
// Each value is multiplied by `scale` (1: unchanged; Gemma scales by sqrt(cols)).
int rf_embed(int ty, const void* table, int rows, int cols, const int32_t* tokens, int n,
             float scale, float* out, void* stream);

// ---- act.hip: per row r of n: in(src_row(r), d) -> transform -> optional outputs.
// RMSNORM: x * rsqrt(mean(x^2) + eps) * w; COPY: x; SWIGLU / GEGLU: in has rows of 2*d
// (gate | up), result silu(gate) * up / gelu(gate) * up (tanh approximation). `row_map` (nullable) picks source rows. Outputs (each nullable):
// out_f32 (n, d), out_f16 (n, d), q8 values (n, d) int8 with q8 scales (n, d/32) float4
// (f16-rounded scale, sum of the 32 quantized values, f16(scale * sum), 0).
// f16_from_q8: out_f16 holds the int8-rounded values (what quantized weights are dotted with).
// qk / qk_heads (nullable together; d a multiple of 256): also the output's Q8_K activations,
// bit for bit the CPU's: quants (n, d) int8 and headers (n, d / 256) of kernels/quant.h's
// RfQ8KHead (48 bytes: 16 i16 group sums, f32 d), which the K-quants' mat-vec reads
// (rf_matvec's xq and xq_scales).
int rf_act(int mode, const float* in, const float* w, float eps, int d, int n,
           const int32_t* row_map, float* out_f32, void* out_f16, int f16_from_q8, int8_t* q8,
           void* q8_scales, int8_t* qk, void* qk_heads, void* stream);

// ---- matvec.hip: y(n, rows) (+)= x(n, cols) . W^T for n <= 8 tokens; y rows ldy apart. Quantized weights read
// the q8 activations (bit-identical to the CPU's dot products), float weights the f32 ones.
// accumulate: y += instead of y =.
// rope_kv (nullable): y is the fused Q|K|V output of attention's input projection and this
// launch computes its rows [out_offset, out_offset + rows); the results then go where
// rf_rope_kv would put them (rotated queries into y, rotated keys and the values into the
// cache cells of the batch's tokens, and the cells' bookkeeping), saving that kernel.

typedef struct RfRopeKv {
    const float* rot;         // (n, head_dim / 2) (sin, cos) pairs
    const int32_t* tok_pos;   // (n) token positions
    const int32_t* tok_cell;  // (n) cache cells
    const int32_t* tok_seq;   // (n) sequence ids
    void* k_cache;            // (n_ctx, kv_dim) of the cache's type (kv_cache.h)
    void* v_cache;            // (n_ctx, kv_dim) of the cache's type
    int32_t* cell_pos;        // (n_ctx)
    uint64_t* cell_seqs;      // (n_ctx)
    int q_dim, kv_dim, head_dim, out_offset;
    int kv_type;              // RF_KV_F32 / RF_KV_F16 (q8_0 rows are stored by rf_qkv_post)
} RfRopeKv;
int rf_matvec(int ty, const void* w, int rows, int cols, const float* x, const int8_t* xq,
              const void* xq_scales, int n, float* y, int ldy, int accumulate,
              const RfRopeKv* rope_kv, void* stream);
// ---- matmul_q.hip: y (+)= x . W^T for n tokens (any count) of int8 activations (rf_act's q8
// and scales), bit for bit the mat-vec's results; blocks-of-32 int8 types only
// (rf_matmul_q_supported). parts = 1, 2, 4, 8 or 16: how many blocks share each output's canonical
// sum (more blocks for short matrices), their subtree sums going through part (parts, n, rows).
int rf_matmul_q_supported(int ty);
int rf_matmul_q(int ty, const void* w, int rows, int cols, const int8_t* xq,
                const void* xq_scales, int n, float* y, int ldy, int accumulate, int parts,
                float* part, void* stream);
// The same products, as the mat-vec's bits too, by teams that each own one position of their
// outputs' trees: up to 16 tokens a block of 32 teams takes all 32 positions for `row_tiles` =
// 1 or 2 tiles of 16 rows and 8 tokens (steps of up to 8 tokens) or 16 (one and 8 on AMD; no
// scratch); longer steps (NVIDIA) take blocks of 64 rows x 32 tokens over 8 or 16 positions,
// their subtree sums going through part (at most part_floats floats: 4 or 2 x n x rows) and a
// join. Smaller shapes, else the staged kernel unsplit, where a device cannot give a block the
// stages' shared memory. rope_kv (nullable): the product is attention's Q|K|V, rotated and
// stored as by rf_matvec.
int rf_matmul_q_tree(int ty, const void* w, int rows, int cols, const int8_t* xq,
                     const void* xq_scales, int n, float* y, int ldy, int accumulate,
                     int row_tiles, float* part, size_t part_floats, const RfRopeKv* rope_kv,
                     void* stream);
// W (rows, cols) rows [row0, row0 + n_rows) as f16 into out (n_rows, cols).
int rf_dequant_f16(int ty, const void* w, int rows, int row0, int n_rows, int cols, void* out,
                   void* stream);
// Quantized weights in GGUF block order (src) -> the device layout of quant.h (dst, same size).
int rf_repack(int ty, const void* src, size_t n_groups, void* dst, void* stream);

// ---- rope_kv.hip: rotates q (n, n_head*hd) in place and k (n, n_head_kv*hd) by `rot`
// (n, hd/2) (sin, cos) pairs (rows of q, k
// and v are `ld` floats apart, so they may be column blocks of one fused QKV output), stores
// k and v into cell `tok_cell[t]` of the layer's caches (n_cells, n_head_kv*hd) and records
// the cell's position and sequence mask. The caches hold elements of `kv_type` (kv_cache.h:
// RF_KV_F32 / RF_KV_F16; q8_0 caches take rf_qkv_post), k and v rounded to it as the CPU's
// cache rounds them.
int rf_rope_kv(float* q, const float* k, const float* v, int ld, int n, int n_head, int n_head_kv,
               int head_dim, const float* rot, const int32_t* tok_pos,
               const int32_t* tok_cell, const int32_t* tok_seq, void* k_cache, void* v_cache,
               int kv_type, int32_t* cell_pos, uint64_t* cell_seqs, void* stream);

// ---- attention.hip: out(n, n_head*hd) = softmax(q . K^T * scale) . V over the cells
// [0, *n_cells) visible to each token (cell holds the token's sequence at a position not after
// its own, and with window > 0 less than `window` positions before it); n_cells lives in device memory so captured graphs stay valid. tok_lo / tok_hi
// (n): a range of cells holding every cell visible to the token (the host's per-sequence
// bounds), the only chunks scanned. Rows of q are `ld_q` floats apart; n <=
// RF_ATTENTION_MAX_TOKENS. The softmax is split over chunks of 256 cells, `splits` (1..32)
// blocks per (token, head) sharing them: `part` holds (n, n_head, ceil(n_ctx / 256), 2 + hd)
// floats of scratch, `counters` (n, n_head) int32 zeros (left zero). hd: a multiple of 32, at
// most 256. Bit-identical to the CPU backend's attention. q8 / q8_scales (nullable): also
// write the output quantized as rf_act would. qk / qk_heads (nullable; not with q8; n_head * hd
// a multiple of 256): write it as rf_act's Q8_K activations instead, `counters` then holding
// (n, n_head + n_head * hd / 256) int32 zeros. The caches hold elements of `kv_type`
// (kv_cache.h: f32, f16, or q8_0 blocks with hd a multiple of 32), widened to f32 as they
// are read. tok_first (nullable, n): the chunk each
// token's join starts at, wrapping within [tok_lo, tok_hi)'s chunks (a sliding-window ring's
// oldest position); null: ascending.
#define RF_ATTENTION_MAX_TOKENS 64
int rf_attention(const float* q, int ld_q, const void* k_cache, const void* v_cache, int kv_type,
                 const int32_t* cell_pos, const uint64_t* cell_seqs, const int32_t* n_cells,
                 const int32_t* tok_pos, const int32_t* tok_seq, const int32_t* tok_lo,
                 const int32_t* tok_hi, const int32_t* tok_first, int n, int n_head,
                 int n_head_kv, int head_dim, int n_ctx, int window, float scale, int splits,
                 float* part,
                 int32_t* counters, float* out, int8_t* q8, void* q8_scales, int8_t* qk,
                 void* qk_heads, void* stream);

// ---- attention_prefill.hip: the same result for many tokens, tiled (head_dim <= 128,
// n_head / n_head_kv <= 16); no split scratch needed.
int rf_attention_prefill(const float* q, int ld_q, const void* k_cache, const void* v_cache,
                         int kv_type, const int32_t* cell_pos, const uint64_t* cell_seqs,
                         const int32_t* n_cells, const int32_t* tok_pos, const int32_t* tok_seq,
                         const int32_t* tok_lo, const int32_t* tok_hi, int n, int n_head,
                         int n_head_kv, int head_dim, int window, float scale, float* out,
                         void* stream);

// ---- blas (cuBLAS / rocBLAS, opened at run time): y(n, rows) (+)= x(n, cols) . W^T with f16
// inputs, f32 output. rf_blas_create answers RF_ERR_NO_BLAS when the library cannot be opened;
// rf_blas_unavailable_reason then says why (NULL once it is open).
const char* rf_blas_unavailable_reason(void);
int rf_blas_create(void** handle, void* stream);
int rf_blas_destroy(void* handle);
int rf_gemm_f16(void* handle, const void* w_f16, int rows, int cols, const void* x_f16, int n,
                float* y, int ldy, int accumulate);

#ifdef __cplusplus
}
#endif
