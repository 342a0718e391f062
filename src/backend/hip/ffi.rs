//! Declarations of the kernel library's C entry points (kernels/rf_kernels.h). Every function
//! returns 0, a HIP/CUDA error code, or an RF_ERR_* code; `check` turns that into a Result.

use crate::kv_cache::KvType;
use std::ffi::{c_char, c_int, c_void};

pub const ACT_RMSNORM: c_int = 0;
pub const ACT_COPY: c_int = 1;
pub const ACT_SWIGLU: c_int = 2;
pub const ACT_GEGLU: c_int = 3;

/// HIP's and CUDA's "no device" and "no/old driver" codes: enumeration then finds no GPU.
pub const ERR_NO_DEVICE: c_int = 100;
pub const ERR_INSUFFICIENT_DRIVER: c_int = 35;
/// kernels/rf_errors.h: the GPU runtime library (AMD: libamdhip64) could not be opened.
pub const ERR_NO_RUNTIME: c_int = -1003;
/// kernels/rf_errors.h: the vendor BLAS library (cuBLAS / rocBLAS) could not be opened.
pub const ERR_NO_BLAS: c_int = -1004;
/// kernels/rf_errors.h: rf_matvec_pair has no one-launch kernel for these types or this width
/// (nothing launched; the parts run one by one).
pub const MATVEC_NOT_PAIRED: c_int = -1005;
/// CUDA's cudaErrorMemoryAllocation / HIP's hipErrorOutOfMemory.
pub const ERR_OUT_OF_MEMORY: [c_int; 2] = [2, 2];

/// kernels/rf_kernels.h's RfRopeKv: where a Q|K|V mat-vec puts its rotated results (the work
/// of rf_rope_kv done in the product's last step). Field for field the C struct.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RopeKv {
    pub rot: *const f32,
    pub tok_pos: *const i32,
    pub tok_cell: *const i32,
    pub tok_seq: *const i32,
    pub k_cache: *mut c_void,
    pub v_cache: *mut c_void,
    pub cell_pos: *mut i32,
    pub cell_seqs: *mut u64,
    pub q_dim: c_int,
    pub kv_dim: c_int,
    pub head_dim: c_int,
    pub out_offset: c_int,
    /// [`kv_type_id`] of the cache's element type.
    pub kv_type: c_int,
}
// The C side asserts the same size (kernels/matvec.hip).
const _: () = assert!(std::mem::size_of::<RopeKv>() == 88);

/// kernels/kv_cache.h's RF_KV_* id of a cache type (the same numbers as [`KvType::id`]).
pub fn kv_type_id(t: KvType) -> c_int {
    match t {
        KvType::F32 => 0,
        KvType::F16 => 1,
        KvType::Q8_0 => 8,
    }
}

/// Bytes of one Q8_K activation header on the device (kernels/quant.h's RfQ8KHead, which
/// asserts the same size): 16 i16 group sums, f32 d, padding to 48.
pub const Q8K_HEAD_BYTES: usize = 48;

extern "C" {
    pub fn rf_error_string(code: c_int) -> *const c_char;
    pub fn rf_device_count(count: *mut c_int) -> c_int;
    pub fn rf_device_info(
        device: c_int,
        name: *mut c_char,
        arch: *mut c_char,
        total: *mut usize,
        free: *mut usize,
    ) -> c_int;
    pub fn rf_set_device(device: c_int) -> c_int;
    pub fn rf_host_alloc(ptr: *mut *mut c_void, bytes: usize) -> c_int;
    pub fn rf_host_free(ptr: *mut c_void) -> c_int;
    pub fn rf_malloc(ptr: *mut *mut c_void, bytes: usize) -> c_int;
    pub fn rf_free(ptr: *mut c_void) -> c_int;
    pub fn rf_stream_create(stream: *mut *mut c_void) -> c_int;
    pub fn rf_stream_destroy(stream: *mut c_void) -> c_int;
    pub fn rf_stream_sync(stream: *mut c_void) -> c_int;
    pub fn rf_memcpy_h2d(
        dst: *mut c_void,
        src: *const c_void,
        bytes: usize,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_memcpy_d2h(
        dst: *mut c_void,
        src: *const c_void,
        bytes: usize,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_memset(dst: *mut c_void, value: c_int, bytes: usize, s: *mut c_void) -> c_int;
    pub fn rf_measure_copy(
        dst: *mut c_void,
        src: *const c_void,
        bytes: usize,
        iters: c_int,
        s: *mut c_void,
        ms: *mut f32,
    ) -> c_int;

    pub fn rf_embed(
        ty: c_int,
        table: *const c_void,
        rows: c_int,
        cols: c_int,
        tokens: *const i32,
        n: c_int,
        scale: f32,
        out: *mut f32,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_act(
        mode: c_int,
        input: *const f32,
        w: *const f32,
        eps: f32,
        d: c_int,
        n: c_int,
        row_map: *const i32,
        out_f32: *mut f32,
        out_f16: *mut c_void,
        f16_from_q8: c_int,
        q8: *mut i8,
        q8_scales: *mut c_void,
        qk: *mut i8,
        qk_heads: *mut c_void,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_residual(
        x: *mut f32,
        proj: *const f32,
        bias: *const f32,
        w: *const f32,
        eps: f32,
        d: c_int,
        n: c_int,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_softcap(x: *mut f32, count: usize, cap: f32, s: *mut c_void) -> c_int;
    pub fn rf_matvec(
        ty: c_int,
        w: *const c_void,
        rows: c_int,
        cols: c_int,
        x: *const f32,
        xq: *const i8,
        xq_scales: *const c_void,
        n: c_int,
        y: *mut f32,
        ldy: c_int,
        accumulate: c_int,
        rope_kv: *const RopeKv,
        s: *mut c_void,
    ) -> c_int;
    /// rf_matvec for two K-quant matrices of one width in one launch (`w0` rows, then `w1`
    /// rows, into `y0` / `y1`; `rope0` / `rope1` both null or both set, as rf_matvec's).
    /// MATVEC_NOT_PAIRED when no kernel takes this pair of types or this width.
    pub fn rf_matvec_pair(
        ty0: c_int,
        w0: *const c_void,
        rows0: c_int,
        y0: *mut f32,
        rope0: *const RopeKv,
        ty1: c_int,
        w1: *const c_void,
        rows1: c_int,
        y1: *mut f32,
        rope1: *const RopeKv,
        cols: c_int,
        xq: *const i8,
        xq_heads: *const c_void,
        n: c_int,
        ldy: c_int,
        accumulate: c_int,
        s: *mut c_void,
    ) -> c_int;
    /// Whether rf_matmul_q takes weights of this type (the blocks-of-32 int8 types).
    pub fn rf_matmul_q_supported(ty: c_int) -> c_int;
    /// y (+)= x . Wᵀ for n tokens of int8 activations (rf_act's), in the mat-vec's exact
    /// arithmetic; `parts` 2 or 4 splits each output's canonical sum over that many blocks,
    /// whose subtree sums go through `part` ((parts, n, rows) f32).
    pub fn rf_matmul_q(
        ty: c_int,
        w: *const c_void,
        rows: c_int,
        cols: c_int,
        xq: *const i8,
        xq_scales: *const c_void,
        n: c_int,
        y: *mut f32,
        ldy: c_int,
        accumulate: c_int,
        parts: c_int,
        part: *mut f32,
        s: *mut c_void,
    ) -> c_int;
    /// The same product by the tree kernel (kernels/matmul_q.hip): teams that each own one
    /// position of every output's canonical tree; up to 16 tokens 32 teams a block,
    /// `row_tiles` (1 or 2; 1 on AMD) tiles of 16 rows and 8 or 16 tokens; longer steps
    /// (NVIDIA) 64 rows x 32 tokens over 8 or 16 positions, the subtree sums through `part`
    /// (`part_floats` floats) and a join. `rope_kv` (nullable): Q|K|V rotated and stored as
    /// rf_matvec's (not accumulated).
    pub fn rf_matmul_q_tree(
        ty: c_int,
        w: *const c_void,
        rows: c_int,
        cols: c_int,
        xq: *const i8,
        xq_scales: *const c_void,
        n: c_int,
        y: *mut f32,
        ldy: c_int,
        accumulate: c_int,
        row_tiles: c_int,
        part: *mut f32,
        part_floats: usize,
        rope_kv: *const RopeKv,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_dequant_f16(
        ty: c_int,
        w: *const c_void,
        rows: c_int,
        row0: c_int,
        n_rows: c_int,
        cols: c_int,
        out: *mut c_void,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_repack(
        ty: c_int,
        src: *const c_void,
        n_groups: usize,
        dst: *mut c_void,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_rope_kv(
        q: *mut f32,
        k: *const f32,
        v: *const f32,
        ld: c_int,
        n: c_int,
        n_head: c_int,
        n_head_kv: c_int,
        head_dim: c_int,
        rot: *const f32,
        tok_pos: *const i32,
        tok_cell: *const i32,
        tok_seq: *const i32,
        k_cache: *mut c_void,
        v_cache: *mut c_void,
        kv_type: c_int,
        cell_pos: *mut i32,
        cell_seqs: *mut u64,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_qkv_post(
        qkv: *mut f32,
        ld: c_int,
        n: c_int,
        n_head: c_int,
        n_head_kv: c_int,
        head_dim: c_int,
        bias: *const f32,
        q_norm: *const f32,
        k_norm: *const f32,
        eps: f32,
        neox: c_int,
        rot: *const f32,
        tok_pos: *const i32,
        tok_cell: *const i32,
        tok_seq: *const i32,
        k_cache: *mut c_void,
        v_cache: *mut c_void,
        kv_type: c_int,
        cell_pos: *mut i32,
        cell_seqs: *mut u64,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_attention(
        q: *const f32,
        ld_q: c_int,
        k_cache: *const c_void,
        v_cache: *const c_void,
        kv_type: c_int,
        cell_pos: *const i32,
        cell_seqs: *const u64,
        n_cells: *const i32,
        tok_pos: *const i32,
        tok_seq: *const i32,
        tok_lo: *const i32,
        tok_hi: *const i32,
        tok_first: *const i32,
        n: c_int,
        n_head: c_int,
        n_head_kv: c_int,
        head_dim: c_int,
        n_ctx: c_int,
        window: c_int,
        scale: f32,
        splits: c_int,
        part: *mut f32,
        counters: *mut i32,
        out: *mut f32,
        q8: *mut i8,
        q8_scales: *mut c_void,
        qk: *mut i8,
        qk_heads: *mut c_void,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_attention_prefill(
        q: *const f32,
        ld_q: c_int,
        k_cache: *const c_void,
        v_cache: *const c_void,
        kv_type: c_int,
        cell_pos: *const i32,
        cell_seqs: *const u64,
        n_cells: *const i32,
        tok_pos: *const i32,
        tok_seq: *const i32,
        tok_lo: *const i32,
        tok_hi: *const i32,
        n: c_int,
        n_head: c_int,
        n_head_kv: c_int,
        head_dim: c_int,
        window: c_int,
        scale: f32,
        out: *mut f32,
        s: *mut c_void,
    ) -> c_int;
    pub fn rf_graph_begin(s: *mut c_void) -> c_int;
    pub fn rf_graph_end(s: *mut c_void, exec: *mut *mut c_void) -> c_int;
    pub fn rf_graph_launch(exec: *mut c_void, s: *mut c_void) -> c_int;
    pub fn rf_graph_destroy(exec: *mut c_void) -> c_int;
    /// `host_result`: 3 ints, filled with [checks made, checks failed, wave size].
    pub fn rf_wave_check(host_result: *mut c_int) -> c_int;
    pub fn rf_blas_unavailable_reason() -> *const c_char;
    pub fn rf_blas_create(handle: *mut *mut c_void, s: *mut c_void) -> c_int;
    pub fn rf_blas_destroy(handle: *mut c_void) -> c_int;
    pub fn rf_gemm_f16(
        handle: *mut c_void,
        w_f16: *const c_void,
        rows: c_int,
        cols: c_int,
        x_f16: *const c_void,
        n: c_int,
        y: *mut f32,
        ldy: c_int,
        accumulate: c_int,
    ) -> c_int;
}
