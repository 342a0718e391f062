//! One inference context on the GPU: its KV cache in device memory, a stream, scratch buffers,
//! the cells' bookkeeping, and the steps of a batch (the GPU twin of `crate::backend::cpu::decode`);
//! the kernels of one forward pass are queued by `forward`. The host waits once per step, for
//! the logits; single-token steps replay a captured graph of the whole pass.

mod forward;

use super::device::{check, set_device, Blas, DeviceBuffer, PinnedBuffer, Stream};
use super::ffi;
use super::model::GpuModel;
use crate::backend::numerics::{rope_table, ATTENTION_CHUNK};
use crate::batch::Batch;
use crate::cancel::CancelFlag;
use crate::kv_cache::{Cells, KvType, MAX_SEQUENCES};
use crate::{Error, Result};
use std::ffi::c_void;
use std::sync::Arc;

/// Largest batch the mat-vec kernels take (RF_MAX_MATVEC_TOKENS in matvec.hip).
const MATVEC_MAX_TOKENS: usize = 8;
/// Default range of step sizes whose quantized products run as int8 mat-mats (see
/// `GpuContext::matmul_q_min_tokens`), from H200 runs (Llama-3-8B shape, Q4_0, decode steps of
/// N sequences, generation tok/s): at 8 the mat-mat 1,111-1,117 vs the mat-vec 834; at 32 the
/// mat-mat 2,187 vs dequantization + BLAS 2,235; at 64 2,108 vs 3,205-3,414; prompts of 512
/// tokens 3,300 vs 23,000. Since the tree kernel in parts (kernels/matmul_q.hip) takes steps of
/// 17-64 tokens on NVIDIA, 64 sequences run it against BLAS at 3,641 vs 3,410 tok/s (Q4_0) and
/// 3,127 vs 3,078 (Q8_0) on an H100, so there steps of up to 64 tokens are int8 mat-mats, and
/// with them the CPU's bits; AMD keeps 32 (the staged kernel; 64-token blocks of it lost to
/// BLAS on NVIDIA).
const MATMUL_Q_MIN_TOKENS: usize = 4;
const MATMUL_Q_MAX_TOKENS: usize = if cfg!(feature = "rocm") { 32 } else { 64 };
/// The fewest blocks a mat-mat launch should have (several per multiprocessor), splitting each
/// output's sum into up to 16 parts to get there. H100, Llama-3-8B Q4_0, generation tok/s at
/// 8 / 16 / 32 sequences, two rounds: 512 blocks 942-948 / 1,609-1,633 / 2,132-2,147; 1,024:
/// 1,170 / 1,893-1,899 / 2,560-2,620; 2,048: 1,207-1,209 / 1,980-2,002 / 2,605-2,637; 4,096:
/// 1,214-1,218 / 2,079-2,081 / 2,639-2,643.
const MATMUL_Q_BLOCKS: usize = 4096;
/// Mat-mat steps up to this many tokens take the tree kernel (see `matmul_q_tree_max_tokens`).
/// H100, Llama-3-8B Q4_0, generation at 16 sequences: 2,795-2,839 tok/s against the staged
/// kernel's 2,082; at 24 and 32 sequences a form with four token tiles a block (one row tile)
/// gave 1,944 / 2,813 against 2,257 / 2,629, so longer steps stay with the staged kernel. On
/// AMD the tree kernel takes 8 tokens a block (two 16-token stages would not fit the LDS), so
/// steps of 9-16 would read the weights twice: they stay with the staged kernel (unmeasured).
/// Since the tree kernel splits longer steps into blocks of 8 positions (64 rows x 32 tokens a
/// block, kernels/matmul_q.hip), every int8 mat-mat step takes it on NVIDIA: H100, Q4_0, 32
/// sequences 3,435-3,440 tok/s against the staged kernel's 2,685 (Q8_0 2,941 vs 2,312).
const MATMUL_Q_TREE_MAX_TOKENS: usize = if cfg!(feature = "rocm") { 8 } else { 64 };
/// Tokens evaluated per step; longer batches run in several steps.
pub const MAX_STEP_TOKENS: usize = 512;
/// Most f16 elements dequantized at once for the BLAS path (128 MiB).
const DEQUANT_MAX_ELEMS: usize = 64 << 20;
/// Room for the quantized mat-mat's subtree sums (32 MiB): enough to split the products of
/// short matrices (up to 4,096 rows at 512 tokens in 4 parts) over more blocks.
const MATMUL_PART_FLOATS: usize = 8 << 20;
/// Batch metadata: twelve arrays of MAX_STEP_TOKENS ints (see `META_*`; the eighth holds the
/// cell counts).
const META_INTS: usize = 12 * MAX_STEP_TOKENS;
/// Where each array of the metadata starts, in units of MAX_STEP_TOKENS ints: token ids,
/// positions, cells, sequences, logit rows, and each token's range of cells [lo, hi) holding
/// every cell it can see (its sequence's lowest and highest cell + 1); then the cell counts
/// (the table's, then the ring's); then, for the sliding-window ring when the context has one,
/// each token's ring cell, range of ring cells, and the attention chunk its window's oldest
/// position lies in (the chunks are joined from there, wrapping, as the CPU joins them).
pub(super) const META_TOKENS: usize = 0;
pub(super) const META_POS: usize = 1;
pub(super) const META_CELL: usize = 2;
pub(super) const META_SEQ: usize = 3;
pub(super) const META_ROWS: usize = 4;
pub(super) const META_CELL_LO: usize = 5;
pub(super) const META_CELL_HI: usize = 6;
pub(super) const META_N_CELLS: usize = 7;
pub(super) const META_RING_CELL: usize = 8;
pub(super) const META_RING_LO: usize = 9;
pub(super) const META_RING_HI: usize = 10;
pub(super) const META_RING_FIRST: usize = 11;
/// Most tokens per launch of the split decode attention, whose chunk scratch is sized for
/// them: up to 64, fewer for long contexts (ATTENTION_PART_BYTES), never fewer than the
/// mat-vec's batches.
const ATTENTION_MAX_TOKENS: usize = 64;
const ATTENTION_PART_BYTES: usize = 64 << 20;
/// Logit rows a step reads back through page-locked memory (more go through pageable memory).
/// (a decode step of up to 64 sequences reads all its rows there: about 33 MB for a 128k
/// vocabulary, where pageable copies cost milliseconds), within PINNED_LOGIT_BYTES.
const PINNED_LOGIT_ROWS: usize = 64;
const PINNED_LOGIT_BYTES: usize = 64 << 20;
/// Most blocks per (token, head) sharing the chunks of a long context (kernels/attention.hip).
const ATTENTION_MAX_SPLIT: usize = 32;

/// An instantiated graph of the single-token forward pass.
struct Graph(*mut c_void);

// SAFETY: the graph handle is only launched by the owning context, through &mut.
unsafe impl Send for Graph {}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: handle from rf_graph_end, destroyed once.
        unsafe {
            ffi::rf_graph_destroy(self.0);
        }
    }
}

struct Scratch {
    /// Residual stream: (step, n_embd) f32
    x: DeviceBuffer,
    /// Transformed activations for the next product: (step, width) f32
    xf: DeviceBuffer,
    /// The same as int8 groups: (step, width) i8 and (step, width / 32) f32 quadruples (see
    /// rf_act), for the mat-vec and the quantized mat-mat
    xq: DeviceBuffer,
    xs: DeviceBuffer,
    /// The same as Q8_K super-blocks for the K-quants: (8, width) i8 and (8, width / 256)
    /// headers of ffi::Q8K_HEAD_BYTES (see rf_act)
    xk: DeviceBuffer,
    xkh: DeviceBuffer,
    /// The same as f16 for BLAS: (step, width)
    x16: DeviceBuffer,
    /// (step, q_dim + 2 kv_dim)
    qkv: DeviceBuffer,
    /// (step, q_dim)
    attn: DeviceBuffer,
    /// (step, 2 n_ff)
    gate_up: DeviceBuffer,
    /// Chunk results of the split attention: (att_tokens, n_head,
    /// ceil(n_ctx / ATTENTION_CHUNK), 2 + head_dim) f32, and its arrival counters
    /// (att_tokens, n_head) i32 followed by the Q8_K output's super-block counters
    /// (att_tokens, q_dim / 256), zero between kernels
    att_part: DeviceBuffer,
    att_counters: DeviceBuffer,
    /// (step, n_vocab)
    logits: DeviceBuffer,
    /// Subtree sums of the quantized mat-mat when it splits its outputs' sums over blocks:
    /// (parts, step, rows) f32, up to MATMUL_PART_FLOATS
    mm_part: DeviceBuffer,
    /// f16 weights for BLAS: up to DEQUANT_MAX_ELEMS
    dequant: DeviceBuffer,
    dequant_elems: usize,
    /// tokens | positions | cells | sequences | logit rows: (5, step) i32, then the cell count
    meta: DeviceBuffer,
    /// Each token's RoPE rotations, (sin, cos) per pair, one table per RoPE of the model:
    /// (n_ropes, MAX_STEP_TOKENS, head_dim / 2)
    rope: DeviceBuffer,
    /// A block's output before its residual add, when the layer transforms it first (output
    /// bias, post-norms): (step, n_embd) f32; empty for models without such layers
    proj: DeviceBuffer,
}

pub struct GpuContext {
    model: Arc<GpuModel>,
    /// The captured single-token forward pass (destroyed before the buffers it uses).
    graph: Option<Graph>,
    /// Blocks per (token, head) of the attention in the captured graph.
    graph_splits: usize,
    /// Blocks per (token, head) of the attention for the current step: one per 256-cell chunk
    /// of the widest token's cell range, at most ATTENTION_MAX_SPLIT.
    att_splits: usize,
    /// Tokens per launch of the split attention (its scratch's size).
    att_tokens: usize,
    /// The current step's attention: the split (decode) kernel, in the CPU's arithmetic, when
    /// no sequence has more than MATVEC_MAX_TOKENS tokens in the step (decode steps of many
    /// sequences); else the tiled kernel, which reads each cache chunk once per tile.
    att_tiled: bool,
    /// Capture graphs for single-token steps (ROCMFORGE_GPU_GRAPHS=0 turns this off).
    use_graphs: bool,
    /// Steps of more than MATVEC_MAX_TOKENS and at most this many tokens run the quantized
    /// products as int8 mat-mats; longer ones dequantize to f16 for BLAS
    /// (ROCMFORGE_MATMUL_Q_MAX_TOKENS, default MATMUL_Q_MAX_TOKENS).
    matmul_q_max_tokens: usize,
    /// Steps of at least this many tokens (and at most matmul_q_max_tokens) run the quantized
    /// products as int8 mat-mats, shorter ones as mat-vecs (ROCMFORGE_MATMUL_Q_MIN_TOKENS,
    /// default MATMUL_Q_MIN_TOKENS; at least 2).
    matmul_q_min_tokens: usize,
    /// ROCMFORGE_MATMUL_Q_PARTS: force the split of the mat-mat's sums (1, 2, 4, 8 or 16;
    /// tuning).
    matmul_q_parts: Option<usize>,
    /// ROCMFORGE_MATMUL_Q_BLOCKS: the fewest blocks a mat-mat launch should have before its
    /// sums are split further (default MATMUL_Q_BLOCKS; tuning).
    matmul_q_blocks: usize,
    /// Mat-mat steps of at most this many tokens take the tree kernel (kernels/matmul_q.hip:
    /// whole trees up to 16 tokens, subtrees of 8 positions joined beyond), longer ones the
    /// staged kernel
    /// (ROCMFORGE_MATMUL_Q_TREE_MAX_TOKENS, default MATMUL_Q_TREE_MAX_TOKENS; 0: never).
    matmul_q_tree_max_tokens: usize,
    /// ROCMFORGE_MATMUL_Q_TREE_ROWS: force its tiles of 16 rows per team (1 or 2; tuning).
    matmul_q_tree_rows: Option<usize>,
    // Declared before the buffers so it is destroyed (after a final sync) before they are freed.
    blas: Blas,
    stream: Stream,
    /// Cells in the cache.
    n_ctx: usize,
    /// Per RoPE of the model, its frequencies for this context's cells per sequence
    /// (`GpuModel::rope_tables`).
    rope_inv_freq: Vec<Vec<f32>>,
    /// The device's cell table (`cell_pos`, `cell_seqs`) is stale: re-upload it from the
    /// context's [`Cells`] at the next step. Forward steps keep it current themselves (the
    /// kernels that store keys and values also record their cells).
    cells_dirty: bool,
    /// How keys and values are stored (rounded when written, as the CPU's cache rounds them).
    kv_type: KvType,
    /// Per layer: whether its keys and values live in the sliding-window ring.
    in_ring: Vec<bool>,
    /// Per layer: (n_ctx, or the ring's cells, kv_dim) elements of `kv_type`
    k_cache: Vec<DeviceBuffer>,
    v_cache: Vec<DeviceBuffer>,
    /// (n_ctx) i32 and (n_ctx) u64
    cell_pos: DeviceBuffer,
    cell_seqs: DeviceBuffer,
    /// The ring's table, the same way, when the context has one: (cells, i32 and u64 arrays).
    ring: Option<(usize, DeviceBuffer, DeviceBuffer)>,
    s: Scratch,
    /// Page-locked staging for each step's uploads: metadata (META_INTS i32), then RoPE
    /// rotations (n_ropes, MAX_STEP_TOKENS, head_dim / 2) (sin, cos) f32 pairs. Every step ends with a
    /// stream sync, so the next step may overwrite it.
    staging: PinnedBuffer,
    /// Page-locked landing place of the logits: (up to PINNED_LOGIT_ROWS, n_vocab) f32
    logit_staging: PinnedBuffer,
    /// Host copies whose asynchronous uploads finish before the step returns.
    host_meta: Vec<i32>,
    /// Staging for `s.rope`: the rotations of one step, computed on the host.
    host_rope: Vec<f32>,
    host_rope_pair: Vec<(f32, f32)>,
}

impl GpuContext {
    /// A context of `n_ctx` cells, `n_ctx_seq` of them per sequence (which picks RoPE factors
    /// as the CPU backend does), its keys and values stored as `kv_type`. With `ring` (the
    /// cells of [`Cells::ring`]), the sliding-window layers keep only that many cells.
    pub fn new(
        model: Arc<GpuModel>,
        n_ctx: usize,
        n_ctx_seq: usize,
        kv_type: KvType,
        ring: Option<usize>,
    ) -> Result<GpuContext> {
        let hp = &model.hparams;
        crate::backend::gpu::check_kv_type(kv_type, hp.head_dim)?;
        set_device(model.device)?;
        if n_ctx == 0 || n_ctx > i32::MAX as usize {
            return Err(Error::InvalidArgument(format!("context size {n_ctx}")));
        }
        let stream = Stream::new()?;
        let blas = Blas::new(&stream)?;
        let f = std::mem::size_of::<f32>();
        let step = MAX_STEP_TOKENS;
        let (d, q, kvd, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let width = d.max(ff).max(q);
        if ring.is_some_and(|r| r == 0 || r > n_ctx) {
            return Err(Error::InvalidArgument(format!(
                "a sliding-window ring of {ring:?} cells in a context of {n_ctx}"
            )));
        }
        let mut windows = hp.layers.iter().filter_map(|l| l.window);
        let first_window = windows.next();
        if ring.is_some() && windows.any(|w| Some(w) != first_window) {
            // The chunk order of a ring layer's sums depends on its window, and the step's
            // metadata carries one order per token.
            return Err(Error::Unsupported(
                "a sliding-window ring on the GPU for layers with different windows".into(),
            ));
        }
        let in_ring: Vec<bool> = (hp.layers.iter())
            .map(|l| ring.is_some() && l.window.is_some())
            .collect();
        let mut k_cache = Vec::with_capacity(hp.n_layer);
        let mut v_cache = Vec::with_capacity(hp.n_layer);
        for &r in &in_ring {
            let cells = if r { ring.unwrap_or(n_ctx) } else { n_ctx };
            // Rows of whole elements, or of whole q8_0 blocks (check_kv_type above).
            let row = kv_type.row_bytes(kvd).ok_or_else(|| {
                Error::Unsupported(format!("a {kv_type} KV cache with rows of {kvd}"))
            })?;
            let bytes = cells * row;
            k_cache.push(DeviceBuffer::zeroed(bytes, "KV cache keys", &stream)?);
            v_cache.push(DeviceBuffer::zeroed(bytes, "KV cache values", &stream)?);
        }
        let dequant_elems = model.max_matrix_elems.min(DEQUANT_MAX_ELEMS);
        let rope_inv_freq = model.rope_tables(n_ctx_seq).to_vec();
        let n_ropes = rope_inv_freq.len();
        let rope_table_bytes = MAX_STEP_TOKENS * hp.head_dim * f;
        let transformed_residual =
            (hp.layers.iter()).any(|l| l.out_bias || l.post_attn_norm || l.post_ffn_norm);
        let att_token_bytes = hp.n_head * n_ctx.div_ceil(ATTENTION_CHUNK) * (2 + hp.head_dim) * f;
        let att_tokens =
            (ATTENTION_PART_BYTES / att_token_bytes).clamp(MATVEC_MAX_TOKENS, ATTENTION_MAX_TOKENS);
        let s = Scratch {
            x: DeviceBuffer::new(step * d * f, "residual stream")?,
            xf: DeviceBuffer::new(step * width * f, "activations")?,
            xq: DeviceBuffer::new(step * width, "int8 activations")?,
            xs: DeviceBuffer::new(step * width / 32 * 4 * f, "activation scales")?,
            xk: DeviceBuffer::new(MATVEC_MAX_TOKENS * width, "Q8_K activations")?,
            xkh: DeviceBuffer::new(
                MATVEC_MAX_TOKENS * width.div_ceil(256) * ffi::Q8K_HEAD_BYTES,
                "Q8_K activation headers",
            )?,
            x16: DeviceBuffer::new(step * width * 2, "f16 activations")?,
            qkv: DeviceBuffer::new(step * (q + 2 * kvd) * f, "QKV")?,
            attn: DeviceBuffer::new(step * q * f, "attention output")?,
            gate_up: DeviceBuffer::new(step * 2 * ff * f, "gate/up")?,
            att_part: DeviceBuffer::new(att_tokens * att_token_bytes, "attention chunk results")?,
            att_counters: DeviceBuffer::zeroed(
                att_tokens * (hp.n_head + q.div_ceil(256)) * 4,
                "attention counters",
                &stream,
            )?,
            logits: DeviceBuffer::new(step * hp.n_vocab * f, "logits")?,
            mm_part: DeviceBuffer::new(MATMUL_PART_FLOATS * f, "mat-mat subtree sums")?,
            dequant: DeviceBuffer::new(dequant_elems * 2, "dequantized weights")?,
            dequant_elems,
            meta: DeviceBuffer::new(META_INTS * 4, "batch metadata")?,
            rope: DeviceBuffer::new(n_ropes * rope_table_bytes, "RoPE rotations")?,
            proj: DeviceBuffer::new(
                if transformed_residual {
                    step * d * f
                } else {
                    0
                },
                "block outputs",
            )?,
        };
        let staging = PinnedBuffer::new(
            META_INTS * 4 + n_ropes * rope_table_bytes,
            "batch metadata staging",
        )?;
        let logit_rows = (PINNED_LOGIT_BYTES / (hp.n_vocab * 4)).clamp(1, PINNED_LOGIT_ROWS);
        let logit_staging = PinnedBuffer::new(logit_rows * hp.n_vocab * 4, "logits")?;
        let cell_pos = DeviceBuffer::new(n_ctx * 4, "cell positions")?;
        let cell_seqs = DeviceBuffer::new(n_ctx * 8, "cell sequences")?;
        let ring = match ring {
            Some(r) => Some((
                r,
                DeviceBuffer::new(r * 4, "ring cell positions")?,
                DeviceBuffer::new(r * 8, "ring cell sequences")?,
            )),
            None => None,
        };
        stream.sync("creating the GPU context")?;
        Ok(GpuContext {
            model,
            graph: None,
            graph_splits: 0,
            att_splits: 1,
            att_tokens,
            att_tiled: false,
            use_graphs: std::env::var("ROCMFORGE_GPU_GRAPHS").map_or(true, |v| v != "0"),
            matmul_q_max_tokens: env_usize("ROCMFORGE_MATMUL_Q_MAX_TOKENS")
                .unwrap_or(MATMUL_Q_MAX_TOKENS),
            matmul_q_min_tokens: env_usize("ROCMFORGE_MATMUL_Q_MIN_TOKENS")
                .unwrap_or(MATMUL_Q_MIN_TOKENS)
                .max(2),
            matmul_q_parts: env_usize("ROCMFORGE_MATMUL_Q_PARTS")
                .filter(|p| forward::MATMUL_Q_PARTS.contains(p)),
            matmul_q_blocks: env_usize("ROCMFORGE_MATMUL_Q_BLOCKS").unwrap_or(MATMUL_Q_BLOCKS),
            // 0 is a value here (never the tree kernel), not an unset variable.
            matmul_q_tree_max_tokens: std::env::var("ROCMFORGE_MATMUL_Q_TREE_MAX_TOKENS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(MATMUL_Q_TREE_MAX_TOKENS),
            matmul_q_tree_rows: env_usize("ROCMFORGE_MATMUL_Q_TREE_ROWS")
                .filter(|r| [1, 2].contains(r)),
            blas,
            stream,
            n_ctx,
            rope_inv_freq,
            cells_dirty: true,
            kv_type,
            in_ring,
            k_cache,
            v_cache,
            cell_pos,
            cell_seqs,
            ring,
            s,
            staging,
            logit_staging,
            host_meta: Vec::new(),
            host_rope: Vec::new(),
            host_rope_pair: Vec::new(),
        })
    }

    pub fn model(&self) -> &Arc<GpuModel> {
        &self.model
    }

    /// Benchmark aid: replays the captured single-token pass `n` times back to back (same
    /// token, same cache cell) and waits once; returns the seconds taken. This is the GPU's
    /// own time per token, without the host's share (reading logits back, sampling, the next
    /// batch's metadata). Needs one single-token `decode` first (which captures the pass).
    pub fn replay_decode_graph(&mut self, n: usize) -> Result<f64> {
        let Some(g) = &self.graph else {
            return Err(Error::InvalidArgument(
                "no captured single-token pass yet: decode one token first".into(),
            ));
        };
        self.stream.sync("before replay")?;
        let t = std::time::Instant::now();
        for _ in 0..n {
            // SAFETY: the graph was captured from this context's buffers, which it owns.
            check(
                unsafe { ffi::rf_graph_launch(g.0, self.stream.raw()) },
                "decode graph",
            )?;
        }
        self.stream.sync("after replay")?;
        Ok(t.elapsed().as_secs_f64())
    }

    fn run(
        &mut self,
        batch: &Batch,
        new_cells: &[usize],
        cells: &Cells,
        cancel: &CancelFlag,
        logits: &mut Vec<f32>,
    ) -> Result<Vec<Option<usize>>> {
        let n = batch.len();
        let mut out_index = vec![None; n];
        logits.clear();
        let mut n_out = 0;
        let mut start = 0;
        while start < n {
            let end = (start + MAX_STEP_TOKENS).min(n);
            let rows: Vec<usize> = (start..end).filter(|&t| batch.logits[t]).collect();
            let step = Step {
                batch,
                range: start..end,
                new_cells,
                cells,
                rows: &rows,
            };
            self.step(step, cancel, logits)?;
            for &t in &rows {
                out_index[t] = Some(n_out);
                n_out += 1;
            }
            start = end;
        }
        Ok(out_index)
    }

    /// One step of at most MAX_STEP_TOKENS tokens through every layer; appends the logits of
    /// `rows` (absolute batch indices) to `logits`. Single-token steps replay a captured graph
    /// of the whole forward pass (one launch per token) once it exists.
    #[allow(clippy::too_many_arguments)]
    fn step(&mut self, step: Step<'_>, cancel: &CancelFlag, logits: &mut Vec<f32>) -> Result<()> {
        let Step {
            batch,
            range,
            new_cells,
            cells: table,
            rows,
        } = step;
        let cells = new_cells;
        let n = range.len();
        let n_vocab = self.model.hparams.n_vocab;

        // Batch metadata (META_*), each array `step` long, and the numbers of cache cells.
        let m = MAX_STEP_TOKENS;
        let n_cells = table.extent().max(1);
        let (seq_lo, seq_hi) = seq_bounds(table, n_cells);
        // The same for the ring.
        let ring = table.ring().filter(|_| self.ring.is_some());
        let ring_n_cells = ring.map_or(1, |r| r.extent().max(1));
        let (ring_lo, ring_hi) = match ring {
            Some(r) => seq_bounds(r, ring_n_cells),
            None => ([usize::MAX; MAX_SEQUENCES], [0; MAX_SEQUENCES]),
        };
        let mut window_cells = Vec::new();
        let mut seq_tokens = [0usize; MAX_SEQUENCES];
        let mut widest = 1;
        self.host_meta.clear();
        self.host_meta.resize(META_INTS, 0);
        for (i, t) in range.clone().enumerate() {
            let seq = batch.seq[t] as usize;
            let (lo, hi) = (seq_lo[seq].min(cells[t]), seq_hi[seq].max(cells[t] + 1));
            self.host_meta[META_TOKENS * m + i] = batch.tokens[t] as i32;
            self.host_meta[META_POS * m + i] = batch.pos[t];
            self.host_meta[META_CELL * m + i] = cells[t] as i32;
            self.host_meta[META_SEQ * m + i] = seq as i32;
            self.host_meta[META_CELL_LO * m + i] = lo as i32;
            self.host_meta[META_CELL_HI * m + i] = hi as i32;
            seq_tokens[seq] += 1;
            widest = widest.max(hi.div_ceil(ATTENTION_CHUNK) - lo / ATTENTION_CHUNK);
            if let Some(r) = ring {
                let cell = r.step_cells()[t];
                let (lo, hi) = (ring_lo[seq].min(cell), ring_hi[seq].max(cell + 1));
                // The chunk the token's sums start at, in the ring's own order (the chunk of
                // the window's oldest position first); one for all layers, the model's windows
                // being one size (checked when the context is made).
                let window = r.window().unwrap_or(1);
                r.window_cells(
                    batch.seq[t],
                    batch.pos[t],
                    window,
                    ATTENTION_CHUNK,
                    &mut window_cells,
                );
                let first = window_cells.first().map_or(cell, |&c| c) / ATTENTION_CHUNK;
                self.host_meta[META_RING_CELL * m + i] = cell as i32;
                self.host_meta[META_RING_LO * m + i] = lo as i32;
                self.host_meta[META_RING_HI * m + i] = hi as i32;
                self.host_meta[META_RING_FIRST * m + i] = first as i32;
                widest = widest.max(hi.div_ceil(ATTENTION_CHUNK) - lo / ATTENTION_CHUNK);
            }
        }
        for (k, &t) in rows.iter().enumerate() {
            self.host_meta[META_ROWS * m + k] = (t - range.start) as i32;
        }
        self.host_meta[META_N_CELLS * m] = n_cells as i32;
        self.host_meta[META_N_CELLS * m + 1] = ring_n_cells as i32;
        self.att_splits = widest.clamp(1, ATTENTION_MAX_SPLIT);
        self.att_tiled = seq_tokens.iter().any(|&k| k > MATVEC_MAX_TOKENS);
        let (meta_bytes, rope_bytes) = self.staging.as_mut_slice().split_at_mut(META_INTS * 4);
        for (dst, v) in meta_bytes.chunks_exact_mut(4).zip(&self.host_meta) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        // RoPE rotations by the CPU backend's own function: the GPU applies the same bits.
        // Table r of the model's RoPEs starts at r * rope_table_floats (MAX_STEP_TOKENS rows).
        let half = self.model.hparams.head_dim / 2;
        let rope_table_floats = MAX_STEP_TOKENS * 2 * half;
        self.host_rope.clear();
        for (r, inv_freq) in self.rope_inv_freq.iter().enumerate() {
            self.host_rope.resize(r * rope_table_floats, 0.0);
            let factor = self.model.hparams.ropes[r].attn_factor;
            for t in range.clone() {
                rope_table(
                    batch.pos[t] as f32,
                    inv_freq,
                    factor,
                    &mut self.host_rope_pair,
                );
                self.host_rope
                    .extend(self.host_rope_pair.iter().flat_map(|&(s, c)| [s, c]));
            }
        }
        for (dst, v) in rope_bytes.chunks_exact_mut(4).zip(&self.host_rope) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        let (meta_bytes, rope_bytes) = self.staging.as_slice().split_at(META_INTS * 4);
        self.s
            .meta
            .upload(0, meta_bytes, &self.stream, "batch metadata")?;
        self.s.rope.upload(
            0,
            &rope_bytes[..self.host_rope.len() * 4],
            &self.stream,
            "RoPE rotations",
        )?;
        if self.cells_dirty {
            let tables = [
                Some((table, self.n_ctx, &self.cell_pos, &self.cell_seqs)),
                (ring.zip(self.ring.as_ref())).map(|(r, (n, pos, seqs))| (r, *n, pos, seqs)),
            ];
            for (t, n, pos_buf, seqs_buf) in tables.into_iter().flatten() {
                let pos: Vec<u8> = (0..n).flat_map(|c| t.cell(c).0.to_le_bytes()).collect();
                let seqs: Vec<u8> = (0..n).flat_map(|c| t.cell(c).1.to_le_bytes()).collect();
                pos_buf.upload(0, &pos, &self.stream, "cell positions")?;
                seqs_buf.upload(0, &seqs, &self.stream, "cell sequences")?;
                // The host bytes must outlive the asynchronous copies.
                self.stream.sync("uploading cell table")?;
            }
            self.cells_dirty = false;
        }

        if n == 1 && rows.len() == 1 && self.use_graphs {
            cancel.check()?;
            // The graph is captured again when the cache grows past another chunk (its
            // attention launch has one block per chunk, up to ATTENTION_MAX_SPLIT).
            if self.graph.is_none() || self.graph_splits != self.att_splits {
                self.graph = None;
                self.graph = Some(self.capture_decode_graph()?);
                self.graph_splits = self.att_splits;
            }
            if let Some(g) = &self.graph {
                // SAFETY: the graph was captured from this context's buffers, which it owns.
                check(
                    unsafe { ffi::rf_graph_launch(g.0, self.stream.raw()) },
                    "decode graph",
                )?;
            }
        } else {
            self.enqueue_forward(n, rows.len(), Some(cancel))?;
        }

        if rows.is_empty() {
            return self.stream.sync("finishing the batch");
        }
        let old = logits.len();
        let n_floats = rows.len() * n_vocab;
        let n_bytes = n_floats * 4;
        if n_bytes <= self.logit_staging.len() {
            let staged = &mut self.logit_staging.as_mut_slice()[..n_bytes];
            self.s
                .logits
                .download(staged, &self.stream, "reading logits")?;
            // One memcpy into the vector's spare room (no zero fill first: tens of MB a step
            // with many sequences).
            logits.reserve(n_floats);
            // SAFETY: `reserve` made room for n_floats more f32 after `old`; the staged bytes
            // are n_floats f32 (any bit pattern is a valid f32) and do not overlap the vector;
            // the length grows only after they are written.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    staged.as_ptr(),
                    logits.as_mut_ptr().add(old) as *mut u8,
                    n_bytes,
                );
                logits.set_len(old + n_floats);
            }
            return Ok(());
        }
        logits.resize(old + n_floats, 0.0);
        let dst = &mut logits[old..];
        // SAFETY: f32 slice viewed as bytes for the copy; every bit pattern is a valid f32.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, dst.len() * 4) };
        self.s
            .logits
            .download(bytes, &self.stream, "reading logits")
    }

    /// Records the single-token forward pass (metadata read from device memory) as a graph.
    fn capture_decode_graph(&self) -> Result<Graph> {
        // SAFETY: capture records the work queued on our stream between begin and end.
        check(
            unsafe { ffi::rf_graph_begin(self.stream.raw()) },
            "starting graph capture",
        )?;
        let queued = self.enqueue_forward(1, 1, None);
        let mut exec = std::ptr::null_mut();
        // SAFETY: ends the capture begun above, whatever happened in between.
        let ended = check(
            unsafe { ffi::rf_graph_end(self.stream.raw(), &mut exec) },
            "finishing graph capture",
        );
        queued?;
        ended?;
        Ok(Graph(exec))
    }
}

/// Each sequence's lowest and highest cell + 1 among the first `n_cells` of `table`: a token
/// sees no cell outside them.
fn seq_bounds(table: &Cells, n_cells: usize) -> ([usize; MAX_SEQUENCES], [usize; MAX_SEQUENCES]) {
    let (mut lo, mut hi) = ([usize::MAX; MAX_SEQUENCES], [0usize; MAX_SEQUENCES]);
    for c in 0..n_cells {
        let (pos, mut seqs) = table.cell(c);
        if pos < 0 {
            continue;
        }
        while seqs != 0 {
            let s = seqs.trailing_zeros() as usize;
            seqs &= seqs - 1;
            lo[s] = lo[s].min(c);
            hi[s] = c + 1;
        }
    }
    (lo, hi)
}

/// A positive integer from the environment (tuning knobs).
fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok().filter(|&v| v > 0)
}

/// One step of a batch: its tokens `range`, their cells, the table, the rows wanting logits.
struct Step<'a> {
    batch: &'a Batch,
    range: std::ops::Range<usize>,
    new_cells: &'a [usize],
    cells: &'a Cells,
    rows: &'a [usize],
}

/// Maximal runs of consecutive cell indices in `cells` (which is in cell order or not): each
/// `(first cell, position in cells, length)`, so that a run moves in one copy per layer.
fn runs(cells: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &c) in cells.iter().enumerate() {
        match out.last_mut() {
            Some((first, _, len)) if *first + *len == c => *len += 1,
            _ => out.push((c, i, 1)),
        }
    }
    out
}

impl crate::backend::Executor for GpuContext {
    fn forward(
        &mut self,
        batch: &Batch,
        new_cells: &[usize],
        cells: &Cells,
        cancel: &CancelFlag,
        logits: &mut Vec<f32>,
    ) -> Result<Vec<Option<usize>>> {
        set_device(self.model.device)?;
        // A cancel that came while the device worked is honoured too (the work is dropped).
        let result = self
            .run(batch, new_cells, cells, cancel, logits)
            .and_then(|rows| cancel.check().map(|()| rows));
        if result.is_err() {
            // Wait for queued work before the buffers are reused; the caller frees the cells.
            let _ = self.stream.sync("rolling back a failed batch");
            self.cells_dirty = true;
        }
        result
    }

    fn cells_changed(&mut self) {
        self.cells_dirty = true;
    }

    /// Nothing to upload: the attention kernels mask cells by the window, and a freed ring
    /// cell's old position is out of every window that could see it until a step stores a
    /// token there (which records the cell's new position on the device itself).
    fn ring_advanced(&mut self) {}

    fn read_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        self.read_layers(cells, false)
    }

    fn write_cells(&mut self, cells: &[usize], data: &[f32]) -> Result<()> {
        self.write_layers(cells, data, false)
    }

    fn kv_bytes(&self) -> Option<u64> {
        let bufs = self.k_cache.iter().chain(&self.v_cache);
        Some(bufs.map(|b| b.len_bytes() as u64).sum())
    }

    fn read_ring_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        self.read_layers(cells, true)
    }

    fn write_ring_cells(&mut self, cells: &[usize], data: &[f32]) -> Result<()> {
        self.write_layers(cells, data, true)
    }
}

impl GpuContext {
    /// Bytes of one cached row (kv_dim elements of the cache's type: whole elements or q8_0
    /// blocks, see `new`).
    fn row_bytes(&self) -> usize {
        let kv_dim = self.model.hparams.kv_dim();
        self.kv_type.row_bytes(kv_dim).unwrap_or(0)
    }

    /// The layers whose keys and values live in the ring (`ring`) or in the full table.
    fn layers_of(&self, ring: bool) -> Vec<usize> {
        (0..self.in_ring.len())
            .filter(|&il| self.in_ring[il] == ring)
            .collect()
    }

    /// Downloads only `cells` of the layers in the ring (`ring`) or in the full table: per
    /// layer one copy per run of consecutive cells, widened to f32 (exactly); the layout of
    /// [`crate::backend::Executor::read_cells`] over those layers.
    fn read_layers(&self, cells: &[usize], ring: bool) -> Result<Vec<f32>> {
        set_device(self.model.device)?;
        let kv_dim = self.model.hparams.kv_dim();
        let layers = self.layers_of(ring);
        let per_cell = layers.len() * 2 * kv_dim;
        let rb = self.row_bytes();
        let mut out = vec![0f32; cells.len() * per_cell];
        let mut rows = Vec::new();
        for (first, at, len) in runs(cells) {
            for (il, &layer) in layers.iter().enumerate() {
                let (kb, vb) = (&self.k_cache[layer], &self.v_cache[layer]);
                for (half, buf) in [kb, vb].into_iter().enumerate() {
                    rows.resize(len * rb, 0u8);
                    let what = "reading cached keys and values";
                    buf.download_from(first * rb, &mut rows, &self.stream, what)?;
                    for (k, row) in rows.chunks_exact(rb.max(1)).enumerate() {
                        let o = (at + k) * per_cell + (il * 2 + half) * kv_dim;
                        // Exact widening, as the kernels read the cache.
                        self.kv_type.decode_row(row, &mut out[o..o + kv_dim]);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Uploads `data` ([`Self::read_layers`]'s layout) into `cells` of the layers in the ring
    /// (`ring`) or in the full table, a run of consecutive cells per copy and layer.
    fn write_layers(&mut self, cells: &[usize], data: &[f32], ring: bool) -> Result<()> {
        set_device(self.model.device)?;
        let kv_dim = self.model.hparams.kv_dim();
        let layers = self.layers_of(ring);
        let per_cell = layers.len() * 2 * kv_dim;
        if data.len() != cells.len() * per_cell {
            return Err(Error::InvalidArgument(format!(
                "{} floats for {} cells of {per_cell}",
                data.len(),
                cells.len()
            )));
        }
        // Staged per (run, layer, half); all copies are queued, then waited for once.
        let rb = self.row_bytes();
        let mut staged: Vec<Vec<u8>> = Vec::new();
        for (first, at, len) in runs(cells) {
            for (il, &layer) in layers.iter().enumerate() {
                let (kb, vb) = (&self.k_cache[layer], &self.v_cache[layer]);
                for (half, buf) in [kb, vb].into_iter().enumerate() {
                    let mut rows = vec![0u8; len * rb];
                    for (k, row) in rows.chunks_exact_mut(rb.max(1)).enumerate() {
                        let o = (at + k) * per_cell + (il * 2 + half) * kv_dim;
                        // Rounded as the kernels store them (round-to-nearest-even for f16).
                        self.kv_type.encode_row(&data[o..o + kv_dim], row);
                    }
                    buf.upload(
                        first * rb,
                        &rows,
                        &self.stream,
                        "writing cached keys and values",
                    )?;
                    staged.push(rows);
                }
            }
        }
        self.stream.sync("writing the KV cache")?;
        drop(staged);
        self.cells_dirty = true;
        Ok(())
    }
}
