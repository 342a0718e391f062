//! Compute backends behind one interface, [`Executor`]: the CPU backend (always built) and the
//! GPU backend (HIP, with feature `rocm` or `cuda`), which [`gpu`] presents the same way
//! whether or not it is built in. What both share (the canonical arithmetic, RoPE tables,
//! attention chunking) lives in [`numerics`]; neither backend imports the other.

pub mod cpu;
pub mod gpu;
pub mod numerics;

/// GPU backend (HIP; on NVIDIA through the project's HIP-to-CUDA header).
#[cfg(any(feature = "rocm", feature = "cuda"))]
pub mod hip;

use crate::batch::Batch;
use crate::cancel::CancelFlag;
use crate::kv_cache::KvCache;
use crate::Result;

/// One context's compute: its KV cache storage, buffers and the forward pass. `api::Context`
/// drives it; sequence ids and positions reaching it were checked against the context.
pub trait Executor: Send {
    /// Evaluates `batch` (validated here too: ids, positions against the cache): keys and
    /// values go into the cache, the logits of tokens that asked for them into `logits`
    /// (n_out, n_vocab) in batch order. Returns each token's row in `logits`. Checks `cancel`
    /// before every layer and once more at the end. On any error the cache is as before.
    fn decode(
        &mut self,
        batch: &Batch,
        cancel: &CancelFlag,
        logits: &mut Vec<f32>,
    ) -> Result<Vec<Option<usize>>>;

    /// The cell bookkeeping: positions and sequences of every cell.
    fn kv(&self) -> &KvCache;

    fn kv_clear(&mut self);

    /// Removes positions `p0..p1` (p1 < 0: to the end) of `seq`, or of every sequence (None).
    fn kv_seq_remove(&mut self, seq: Option<u32>, p0: i32, p1: i32);

    /// Makes positions `p0..p1` of `src` also part of `dst` (cells shared, not copied).
    fn kv_seq_copy(&mut self, src: u32, dst: u32, p0: i32, p1: i32);

    fn kv_seq_keep(&mut self, seq: u32);

    /// The cache (all of it, or one sequence's cells) in `KvCache::save`'s format, which every
    /// backend reads and writes.
    fn kv_save(&self, seq: Option<u32>) -> Result<Vec<u8>>;

    /// Restores a blob from [`Self::kv_save`] of any backend; on error nothing changes.
    fn kv_restore(&mut self, bytes: &[u8], seq: Option<u32>) -> Result<()>;
}
