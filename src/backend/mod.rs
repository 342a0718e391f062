//! Compute backends behind one interface, [`Executor`]: the CPU backend (always built) and the
//! GPU backend (HIP, with feature `rocm` or `cuda`), which [`gpu`] presents the same way
//! whether or not it is built in. What both share (the canonical arithmetic, RoPE tables,
//! attention chunking) lives in [`numerics`]; neither backend imports the other.

pub mod cpu;
mod engine;
pub mod gpu;
pub mod numerics;

/// GPU backend (HIP; on NVIDIA through the project's HIP-to-CUDA header).
#[cfg(any(feature = "rocm", feature = "cuda"))]
pub mod hip;

pub use engine::Engine;

/// What both backends run beyond plain llama ([`Feature`]), decode bit-identical between them:
/// each backend's `RUNS` list (a model using anything else is refused at load). Missing:
/// attention logit soft-capping.
pub const FAMILY_FEATURES: &[Feature] = &[
    Feature::NeoxRope,
    Feature::PerLayerRope,
    Feature::GeGlu,
    Feature::QkvBias,
    Feature::OutputBias,
    Feature::QkNorm,
    Feature::PostAttentionNorm,
    Feature::PostFfnNorm,
    Feature::EmbeddingScale,
    Feature::SlidingWindow,
    Feature::FinalLogitSoftcap,
    Feature::AttentionScale,
    Feature::ContextRopeFactors,
    Feature::RopeAttnFactor,
];

use crate::batch::Batch;
use crate::cancel::CancelFlag;
use crate::kv_cache::Cells;
use crate::model::Feature;
use crate::Result;

/// One context's compute: its keys and values, buffers and the forward pass. `api::Context`
/// owns the cell table ([`Cells`]) and does what every backend shares: validating a batch,
/// placing its tokens in cells, rolling back a failed one, sequence edits and the state format.
pub trait Executor: Send {
    /// Runs `batch`, whose tokens were placed in `new_cells` (already recorded in `cells`):
    /// keys and values go into those cells, the logits of tokens that asked for them into
    /// `logits` (n_out, n_vocab) in batch order. Returns each token's row in `logits`. Checks
    /// `cancel` before every layer and once more at the end. On error nothing is in flight
    /// any more, and the caller releases `new_cells`.
    fn forward(
        &mut self,
        batch: &Batch,
        new_cells: &[usize],
        cells: &Cells,
        cancel: &CancelFlag,
        logits: &mut Vec<f32>,
    ) -> Result<Vec<Option<usize>>>;

    /// The cell table changed other than by `forward` (sequence edits, a rollback, a restore).
    fn cells_changed(&mut self);

    /// A step's end freed the sliding-window ring's cells that left every window
    /// ([`Cells::finish_step`]), and nothing else changed. A backend whose attention masks
    /// cells by the window needs nothing new (a freed cell's old position is out of every
    /// window that could see it); the default treats it as any change.
    fn ring_advanced(&mut self) {
        self.cells_changed();
    }

    /// Keys and values of `cells`: (cells, n_layer, keys | values, kv_dim) f32, the state
    /// format's per-cell layout. Only these cells move (from the device, on a GPU).
    fn read_cells(&self, cells: &[usize]) -> Result<Vec<f32>>;

    /// Writes `data` in [`Self::read_cells`]'s layout into `cells`.
    fn write_cells(&mut self, cells: &[usize], data: &[f32]) -> Result<()>;

    /// Bytes of keys and values this context allocated (host arrays or device buffers), where
    /// the backend counts them.
    fn kv_bytes(&self) -> Option<u64> {
        None
    }

    /// [`Self::read_cells`] for cells of the sliding-window layers' ring ([`Cells::ring`]):
    /// (cells, windowed layers, keys | values, kv_dim). A backend that keeps no ring has none
    /// to read (its contexts are created without one).
    fn read_ring_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        no_ring(cells).map(|()| Vec::new())
    }

    /// Writes `data` in [`Self::read_ring_cells`]'s layout into ring cells `cells`.
    fn write_ring_cells(&mut self, cells: &[usize], _data: &[f32]) -> Result<()> {
        no_ring(cells)
    }
}

/// What a backend without a sliding-window ring answers when asked for ring cells.
fn no_ring(cells: &[usize]) -> Result<()> {
    if cells.is_empty() {
        Ok(())
    } else {
        Err(crate::Error::Unsupported(
            "this backend keeps no sliding-window ring".into(),
        ))
    }
}
