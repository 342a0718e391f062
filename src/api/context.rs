//! A context: KV cache, worker threads and buffers for evaluating batches with one model.

use super::memory::{check_host_fits, MemoryEstimate, RingPlan};
use super::Model;
use crate::backend::cpu::CpuContext;
use crate::backend::{gpu, Engine, Executor};
use crate::batch::{Batch, MAX_POSITION};
use crate::cancel::CancelFlag;
use crate::kv_cache::state::{self, Geometry};
use crate::kv_cache::{Cells, KvType};
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ContextParams {
    /// KV cache cells shared by all sequences; 0 = the model's training context length.
    pub n_ctx: usize,
    /// Most tokens one `decode` call may carry.
    pub n_batch: usize,
    /// Independent sequences the context can hold (1..=64).
    pub n_seq_max: usize,
    /// Compute threads; 0 = the machine's available parallelism.
    pub n_threads: usize,
    /// How the KV cache stores keys and values (f16 by default, as llama.cpp).
    pub cache_type: KvType,
    /// Sliding-window layers keep a cell for every token, as global layers do (llama.cpp's
    /// `swa_full`), instead of a ring of their window ([`crate::kv_cache::Cells::ring`]).
    pub swa_full: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 4096,
            n_batch: 512,
            n_seq_max: 1,
            n_threads: 0,
            cache_type: KvType::default(),
            swa_full: false,
        }
    }
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub struct Context {
    model: Model,
    params: ContextParams,
    /// The cell table and where the context computes: the CPU with its keys and values,
    /// threads and buffers, or a GPU context (keys, values and buffers on the device).
    engine: Engine<dyn Executor>,
    /// Logits of the last batch's tokens that asked for them: (n_out, n_vocab).
    logits: Vec<f32>,
    /// For each token of the last batch, its row in `logits` (empty after a failed batch).
    logit_rows: Vec<Option<usize>>,
    /// Tokens in the last batch that succeeded; 0 after a failed batch or a state restore.
    last_batch_len: usize,
    cancel: Arc<CancelFlag>,
}

/// Cells per sequence as llama.cpp counts them to choose RoPE factors (Phi-3's short or long):
/// it pads the context, then each sequence's share, to a multiple of 256 (llama-context.cpp),
/// so a model gets the same rotation in both engines for the same context parameters.
fn n_ctx_seq(n_ctx: usize, n_seq_max: usize) -> usize {
    let pad = |n: usize| n.div_ceil(256) * 256;
    pad(pad(n_ctx) / n_seq_max.max(1))
}

/// Largest context we accept, a guard against absurd sizes coming through the C API.
const MAX_CTX: usize = 1 << 22;

impl Context {
    pub fn new(model: &Model, params: ContextParams) -> Result<Context> {
        let hp = model.hparams();
        let mut params = params;
        if params.n_ctx == 0 {
            params.n_ctx = hp.n_ctx_train;
        }
        if params.n_ctx > MAX_CTX {
            return Err(Error::InvalidArgument(format!(
                "context length {} exceeds the limit {MAX_CTX}",
                params.n_ctx
            )));
        }
        if params.n_batch == 0 {
            return Err(Error::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        params.n_batch = params.n_batch.min(params.n_ctx);
        if params.n_threads == 0 {
            params.n_threads = default_threads();
        }
        if params.n_threads > 1024 {
            return Err(Error::InvalidArgument(format!(
                "{} threads is more than the limit 1024",
                params.n_threads
            )));
        }
        let ring = RingPlan::new(hp, params.n_ctx, &params);
        let exec = Self::executor(model, &params, ring)?;
        let cells = match ring {
            Some(r) => Cells::with_ring(params.n_ctx, params.n_seq_max, r.cells, r.window)?,
            None => Cells::new(params.n_ctx, params.n_seq_max)?,
        };
        let engine = Engine::with_cells(exec, cells)?;
        Ok(Context {
            model: model.clone(),
            params,
            engine,
            logits: Vec::new(),
            logit_rows: Vec::new(),
            last_batch_len: 0,
            cancel: Arc::new(CancelFlag::new()),
        })
    }

    fn executor(
        model: &Model,
        params: &ContextParams,
        ring: Option<RingPlan>,
    ) -> Result<Box<dyn Executor>> {
        if let Some(weights) = model.gpu() {
            return gpu::new_context(
                weights,
                params.n_ctx,
                n_ctx_seq(params.n_ctx, params.n_seq_max),
                params.cache_type,
                ring.map(|r| r.cells),
            );
        }
        // Refused before anything is allocated when the host cannot hold it filled; the cache
        // itself is then allocated lazily (pages arrive as cells are used).
        let estimate = MemoryEstimate::new(model.hparams(), model.size_bytes(), params);
        check_host_fits(
            estimate.context_bytes(),
            &format!(
                "a context of {} cells ({} KV cache, {} working buffers)",
                params.n_ctx,
                human(estimate.kv_cache_bytes),
                human(estimate.compute_bytes)
            ),
        )?;
        Ok(Box::new(CpuContext::new(
            Arc::clone(model.loaded()),
            params.n_ctx,
            n_ctx_seq(params.n_ctx, params.n_seq_max),
            params.n_threads,
            params.cache_type,
            ring.map(|r| r.cells),
        )?))
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The cache bookkeeping: cells, positions, sequences.
    pub fn cells(&self) -> &Cells {
        self.engine.cells()
    }

    fn geometry(&self) -> Geometry {
        let hp = self.model.hparams();
        let n_ring_layer = match self.cells().ring() {
            Some(_) => hp.layers.iter().filter(|l| l.window.is_some()).count(),
            None => 0,
        };
        Geometry {
            n_layer: hp.n_layer - n_ring_layer,
            n_ring_layer,
            kv_dim: hp.kv_dim(),
            kv_type: self.params.cache_type,
        }
    }

    /// Cells of the ring a save of `seq` (None: every sequence) holds.
    fn ring_of_seq(&self, seq: Option<u32>) -> Vec<usize> {
        self.cells().ring().map_or(Vec::new(), |r| r.of_seq(seq))
    }

    /// The cache serialised (`kv_cache::state`): cells from the table, keys and values read
    /// from the backend (from the device on a GPU: only those cells), so either backend
    /// restores either's state.
    fn kv_state(&self, seq: Option<u32>) -> Result<Vec<u8>> {
        let which = self.cells().of_seq(seq);
        let data = self.engine.read_cells(&which)?;
        let ring = self.ring_of_seq(seq);
        let ring_data = self.engine.read_ring_cells(&ring)?;
        Ok(state::save_with_ring(
            self.cells(),
            seq,
            self.geometry(),
            state::Part {
                cells: &which,
                data: &data,
            },
            state::Part {
                cells: &ring,
                data: &ring_data,
            },
        ))
    }

    pub fn params(&self) -> &ContextParams {
        &self.params
    }

    /// Evaluates a batch (at most `n_batch` tokens). On error the KV cache is unchanged.
    pub fn decode(&mut self, batch: &Batch) -> Result<()> {
        if batch.len() > self.params.n_batch {
            return Err(Error::InvalidArgument(format!(
                "batch of {} tokens exceeds the context's batch size {}",
                batch.len(),
                self.params.n_batch
            )));
        }
        self.logit_rows.clear();
        self.last_batch_len = 0;
        // A cancel is consumed by the check that honours it (inside the executors); one that
        // arrives after their last check stays pending for the next call, so none is lost.
        let n_vocab = self.model.hparams().n_vocab;
        self.logit_rows = self
            .engine
            .decode(batch, n_vocab, &self.cancel, &mut self.logits)?;
        self.last_batch_len = batch.len();
        Ok(())
    }

    /// Appends `tokens` to sequence `seq` (after its last position), in chunks of `n_batch`,
    /// keeping the logits of the last token. On error the sequence holds the positions it
    /// held before; with a sliding-window ring, chunks that succeeded may have moved its
    /// window on, so it may no longer continue ([`Self::kv_seq_can_continue_at`]), as with
    /// llama.cpp's ring.
    pub fn eval(&mut self, tokens: &[u32], seq: u32) -> Result<()> {
        self.cells().check_seq(seq)?;
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to evaluate".into()));
        }
        let start = self.cells().seq_pos_max(seq).map_or(0, |p| p + 1);
        let last = start as i64 + tokens.len() as i64 - 1;
        if last > MAX_POSITION as i64 {
            return Err(Error::InvalidArgument(format!(
                "{} tokens after position {} would pass the largest position {MAX_POSITION}",
                tokens.len(),
                start - 1
            )));
        }
        let mut pos = start;
        for (i, chunk) in tokens.chunks(self.params.n_batch).enumerate() {
            let last_chunk = (i + 1) * self.params.n_batch >= tokens.len();
            let mut batch = Batch::for_sequence(chunk, pos, seq);
            if !last_chunk {
                batch.logits.fill(false);
            }
            if let Err(e) = self.decode(&batch) {
                self.kv_seq_remove(Some(seq), start, -1)?;
                return Err(e);
            }
            pos += chunk.len() as i32;
        }
        Ok(())
    }

    /// Logits after the token at `batch_index` of the last batch, if it asked for them.
    pub fn logits(&self, batch_index: usize) -> Option<&[f32]> {
        let n_vocab = self.model.hparams().n_vocab;
        let row = (*self.logit_rows.get(batch_index)?)?;
        self.logits.get(row * n_vocab..(row + 1) * n_vocab)
    }

    /// Logits of the last token of the last batch that asked for logits.
    pub fn last_logits(&self) -> Option<&[f32]> {
        let n_vocab = self.model.hparams().n_vocab;
        let row = self.logit_rows.iter().rev().find_map(|r| *r)?;
        self.logits.get(row * n_vocab..(row + 1) * n_vocab)
    }

    /// Tokens in the last batch that succeeded (0 after a failed one or a state restore):
    /// tells an out-of-range batch index from one whose logits were not asked for.
    pub fn last_batch_len(&self) -> usize {
        self.last_batch_len
    }

    /// A flag any thread may raise to stop the running (or next) `decode` with `Cancelled`.
    pub fn cancel_handle(&self) -> Arc<CancelFlag> {
        Arc::clone(&self.cancel)
    }

    pub fn kv_clear(&mut self) {
        self.engine.edit_cells(Cells::clear);
    }

    /// Removes positions `p0..p1` (p1 < 0: to the end) of `seq`, or of every sequence (None).
    pub fn kv_seq_remove(&mut self, seq: Option<u32>, p0: i32, p1: i32) -> Result<()> {
        if let Some(s) = seq {
            self.cells().check_seq(s)?;
        }
        self.engine.edit_cells(|c| c.seq_remove(seq, p0, p1));
        Ok(())
    }

    /// Makes positions `p0..p1` of `src` also part of `dst` (cells are shared, not copied).
    pub fn kv_seq_copy(&mut self, src: u32, dst: u32, p0: i32, p1: i32) -> Result<()> {
        self.cells().check_seq(src)?;
        self.cells().check_seq(dst)?;
        self.engine.edit_cells(|c| c.seq_copy(src, dst, p0, p1));
        Ok(())
    }

    /// With sequence regions ([`Self::set_seq_regions`]): copies positions `0..n` of `src` into
    /// `dst`'s own region (keys and values copied, not shared), where they have the bits `dst`
    /// would compute for the same tokens itself. `dst` must hold none of those positions.
    pub fn kv_seq_copy_into_region(&mut self, src: u32, dst: u32, n: usize) -> Result<()> {
        let copy = self.cells().region_copy_cells(src, dst, n)?;
        self.engine.copy_cells(dst, &copy)
    }

    pub fn kv_seq_keep(&mut self, seq: u32) -> Result<()> {
        self.cells().check_seq(seq)?;
        self.engine.edit_cells(|c| c.seq_keep(seq));
        Ok(())
    }

    /// Places each sequence's tokens in its own region of `stride` cells (see
    /// [`Cells::set_seq_regions`]); only while the cache is empty.
    pub fn set_seq_regions(&mut self, stride: Option<usize>) -> Result<()> {
        if self.cells().used() > 0 {
            return Err(Error::InvalidArgument(
                "sequence regions can only be set on an empty cache".into(),
            ));
        }
        let mut result = Ok(());
        self.engine
            .edit_cells(|c| result = c.set_seq_regions(stride));
        result
    }

    /// Largest position of `seq` in the cache.
    pub fn kv_seq_pos_max(&self, seq: u32) -> Option<i32> {
        self.cells().seq_pos_max(seq)
    }

    /// Smallest position of `seq` every layer still holds (with a sliding-window ring, the
    /// oldest the ring kept; llama.cpp's `seq_pos_min`).
    pub fn kv_seq_pos_min(&self, seq: u32) -> Option<i32> {
        self.cells().attendable_from(seq)
    }

    /// Whether `seq` can continue at `pos` (after removing its positions from `pos` on): with
    /// a sliding-window ring, false when the ring no longer holds the window before `pos`;
    /// the sequence must then be evaluated again (see [`Cells::window_intact`]).
    pub fn kv_seq_can_continue_at(&self, seq: u32, pos: i32) -> bool {
        self.cells().window_intact(seq, pos)
    }

    /// Bytes of keys and values this context allocated (host arrays or device buffers).
    pub fn kv_bytes(&self) -> Option<u64> {
        self.engine.executor().kv_bytes()
    }
}

fn human(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

/// Context state blobs: n_logits u32 LE, that many f32 LE (the last logits row, whole-context
/// saves only), then the KV cache blob (`KvCache::save`), then a CRC-32 (IEEE) u32 LE of every
/// byte before it, so a corrupted blob or file is reported instead of restoring wrong (even
/// non-finite) keys and values.
impl Context {
    /// Bytes [`Self::state_save`] will produce.
    pub fn state_size(&self, seq: Option<u32>) -> usize {
        let n_cells = self.cells().of_seq(seq).len();
        let n_ring = self.ring_of_seq(seq).len();
        4 + self.saved_logits(seq).len() * 4
            + self.geometry().state_size(n_cells, n_ring)
            + STATE_CHECKSUM_BYTES
    }

    /// The largest blob this context can restore: every cell used, logits included. Reads of
    /// state files stop there, so a hostile path (a device, a huge file) cannot exhaust memory.
    pub fn state_size_max(&self) -> usize {
        let n_vocab = self.model.hparams().n_vocab;
        let n_ring = self.cells().ring().map_or(0, Cells::n_ctx);
        4 + n_vocab * 4
            + self.geometry().state_size(self.params.n_ctx, n_ring)
            + STATE_CHECKSUM_BYTES
    }

    /// The last logits travel with a whole-context save, so generation can resume right after
    /// a restore; a per-sequence save holds only that sequence's cache.
    fn saved_logits(&self, seq: Option<u32>) -> &[f32] {
        match seq {
            None => self.last_logits().unwrap_or(&[]),
            Some(_) => &[],
        }
    }

    /// Saves the whole context (`seq` None) or one sequence.
    pub fn state_save(&self, seq: Option<u32>) -> Result<Vec<u8>> {
        if let Some(s) = seq {
            self.cells().check_seq(s)?;
        }
        let logits = self.saved_logits(seq);
        let mut out = Vec::new();
        out.try_reserve_exact(self.state_size(seq))
            .map_err(|_| Error::OutOfMemory(format!("{} bytes of state", self.state_size(seq))))?;
        out.extend_from_slice(&(logits.len() as u32).to_le_bytes());
        for x in logits {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&self.kv_state(seq)?);
        let checksum = crc32fast::hash(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        Ok(out)
    }

    /// Restores a blob from [`Self::state_save`]: the whole context, or into sequence `seq`
    /// (replacing it). On error the context is unchanged.
    pub fn state_restore(&mut self, bytes: &[u8], seq: Option<u32>) -> Result<()> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid context state: {why}"));
        let split = bytes
            .len()
            .checked_sub(STATE_CHECKSUM_BYTES)
            .ok_or_else(|| bad("too short"))?;
        let (bytes, trailer) = bytes.split_at(split);
        let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(bytes);
        if stored != computed {
            return Err(bad(&format!(
                "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the blob \
                 is corrupted, truncated or not a ROCmForge state"
            )));
        }
        let head: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("too short"))?;
        let n_logits = u32::from_le_bytes(head) as usize;
        let n_vocab = self.model.hparams().n_vocab;
        if n_logits != 0 && n_logits != n_vocab {
            return Err(bad(&format!(
                "{n_logits} logits saved, the model has {n_vocab}"
            )));
        }
        let kv_start = 4 + n_logits * 4;
        let (logit_bytes, kv) = (
            bytes
                .get(4..kv_start)
                .ok_or_else(|| bad("truncated logits"))?,
            &bytes[kv_start..],
        );
        let plan = state::plan_restore(self.cells(), kv, seq, self.geometry())?;
        self.engine.restore(&plan)?;
        self.last_batch_len = 0;
        if seq.is_none() {
            self.logits = logit_bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            self.logit_rows = if n_logits == 0 {
                Vec::new()
            } else {
                vec![Some(0)]
            };
        }
        Ok(())
    }

    /// [`Self::state_save`] into a file at `path` (created or truncated).
    pub fn state_save_file(&self, path: &Path, seq: Option<u32>) -> Result<()> {
        let blob = self.state_save(seq)?;
        std::fs::write(path, blob).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// [`Self::state_restore`] from a file written by [`Self::state_save_file`]. Reads at most
    /// [`Self::state_size_max`] bytes, whatever the path names.
    pub fn state_restore_file(&mut self, path: &Path, seq: Option<u32>) -> Result<()> {
        let limit = self.state_size_max();
        let blob = crate::fileio::read_regular(path, limit as u64, usize::MAX, &mut |_| Ok(()))?;
        self.state_restore(&blob, seq)
    }
}

/// The CRC-32 trailer of a state blob.
const STATE_CHECKSUM_BYTES: usize = 4;
