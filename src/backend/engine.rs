//! An executor with its cell table: what every evaluation does whatever the backend — check a
//! batch, place its tokens in cells, run the executor, give the cells back when it fails — and
//! the sequence edits. `api::Context` runs one of these; tests and benchmarks that drive a
//! backend directly use it too, so there is one copy of this logic.

use super::Executor;
use crate::batch::Batch;
use crate::cancel::CancelFlag;
use crate::kv_cache::{Cells, RegionCopy};
use crate::Result;

pub struct Engine<E: Executor + ?Sized> {
    cells: Cells,
    exec: Box<E>,
}

impl<E: Executor + ?Sized> Engine<E> {
    /// `exec` with an empty table of `n_ctx` cells for up to `n_seq_max` sequences (the
    /// executor must hold keys and values for `n_ctx` cells).
    pub fn new(exec: Box<E>, n_ctx: usize, n_seq_max: usize) -> Result<Engine<E>> {
        Self::with_cells(exec, Cells::new(n_ctx, n_seq_max)?)
    }

    /// `exec` with the empty table `cells` (with a ring: [`Cells::with_ring`]); the executor
    /// must hold keys and values for its cells, and for its ring's in the windowed layers.
    pub fn with_cells(exec: Box<E>, cells: Cells) -> Result<Engine<E>> {
        Ok(Engine { cells, exec })
    }

    pub fn cells(&self) -> &Cells {
        &self.cells
    }

    pub fn executor(&self) -> &E {
        &self.exec
    }

    pub fn executor_mut(&mut self) -> &mut E {
        &mut self.exec
    }

    /// Evaluates `batch` (see [`Executor::forward`]); on any error, cancellation included, the
    /// cache is as it was.
    pub fn decode(
        &mut self,
        batch: &Batch,
        n_vocab: usize,
        cancel: &CancelFlag,
        logits: &mut Vec<f32>,
    ) -> Result<Vec<Option<usize>>> {
        let placed = self.cells.place(batch, n_vocab)?;
        let result = self
            .exec
            .forward(batch, &placed, &self.cells, cancel, logits);
        if result.is_err() {
            self.cells.rollback(&placed);
            self.exec.cells_changed();
        } else if self.cells.ring().is_some() {
            // The ring's cells that left every window are free for the next step.
            self.cells.finish_step();
            self.exec.ring_advanced();
        }
        result
    }

    /// Applies an edit to the cell table and tells the executor.
    pub fn edit_cells(&mut self, edit: impl FnOnce(&mut Cells)) {
        edit(&mut self.cells);
        self.exec.cells_changed();
    }

    /// Copies the keys and values of cells `copy.from` into `copy.to` (and the ring's) and
    /// gives the targets to `seq` ([`Cells::region_copy_cells`] plans them). On an error the
    /// table is as it was (the target cells' keys and values may be partly written).
    pub fn copy_cells(&mut self, seq: u32, copy: &RegionCopy) -> Result<()> {
        let data = self.exec.read_cells(&copy.from)?;
        self.exec.write_cells(&copy.to, &data)?;
        if let Some(ring) = &copy.ring {
            let data = self.exec.read_ring_cells(&ring.from)?;
            self.exec.write_ring_cells(&ring.to, &data)?;
        }
        self.cells.claim(seq, copy);
        self.exec.cells_changed();
        Ok(())
    }

    /// Keys and values of `cells` (see [`Executor::read_cells`]).
    pub fn read_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        self.exec.read_cells(cells)
    }

    /// Keys and values of ring cells (see [`Executor::read_ring_cells`]).
    pub fn read_ring_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        self.exec.read_ring_cells(cells)
    }

    /// A restore planned on this table (`kv_cache::state::plan_restore`): keys and values
    /// first, then the bookkeeping, so a failed write (a GPU error) leaves the table as it was
    /// (the target cells' keys and values may then be partly overwritten).
    pub fn restore(&mut self, plan: &crate::kv_cache::state::Restore) -> Result<()> {
        self.exec.write_cells(&plan.targets, &plan.data)?;
        if let Some(ring) = &plan.ring {
            self.exec.write_ring_cells(&ring.targets, &ring.data)?;
        }
        self.cells.apply_restore(plan);
        self.exec.cells_changed();
        Ok(())
    }
}
