//! An executor with its cell table: what every evaluation does whatever the backend — check a
//! batch, place its tokens in cells, run the executor, give the cells back when it fails — and
//! the sequence edits. `api::Context` runs one of these; tests and benchmarks that drive a
//! backend directly use it too, so there is one copy of this logic.

use super::Executor;
use crate::batch::Batch;
use crate::cancel::CancelFlag;
use crate::kv_cache::Cells;
use crate::Result;

pub struct Engine<E: Executor + ?Sized> {
    cells: Cells,
    exec: Box<E>,
}

impl<E: Executor + ?Sized> Engine<E> {
    /// `exec` with an empty table of `n_ctx` cells for up to `n_seq_max` sequences (the
    /// executor must hold keys and values for `n_ctx` cells).
    pub fn new(exec: Box<E>, n_ctx: usize, n_seq_max: usize) -> Result<Engine<E>> {
        Ok(Engine {
            cells: Cells::new(n_ctx, n_seq_max)?,
            exec,
        })
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
            self.cells.release(&placed);
            self.exec.cells_changed();
        }
        result
    }

    /// Applies an edit to the cell table and tells the executor.
    pub fn edit_cells(&mut self, edit: impl FnOnce(&mut Cells)) {
        edit(&mut self.cells);
        self.exec.cells_changed();
    }

    /// Copies the keys and values of cells `from` into `to` and gives `to` to `seq` as its
    /// positions `0..` ([`Cells::region_copy_cells`] plans them). On an error the table is as
    /// it was (the target cells' keys and values may be partly written).
    pub fn copy_cells(&mut self, seq: u32, from: &[usize], to: &[usize]) -> Result<()> {
        let data = self.exec.read_cells(from)?;
        self.exec.write_cells(to, &data)?;
        self.cells.claim(seq, to);
        self.exec.cells_changed();
        Ok(())
    }

    /// Keys and values of `cells` (see [`Executor::read_cells`]).
    pub fn read_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        self.exec.read_cells(cells)
    }

    /// A restore planned on this table (`kv_cache::state::plan_restore`): keys and values
    /// first, then the bookkeeping, so a failed write (a GPU error) leaves the table as it was
    /// (the target cells' keys and values may then be partly overwritten).
    pub fn restore(&mut self, plan: &crate::kv_cache::state::Restore) -> Result<()> {
        self.exec.write_cells(&plan.targets, &plan.data)?;
        self.cells.apply_restore(plan);
        self.exec.cells_changed();
        Ok(())
    }
}
