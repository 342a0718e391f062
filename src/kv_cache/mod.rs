//! The key/value cache: one pool of cells shared by all sequences of a context.
//!
//! A cell holds the keys and values of one token for every layer, its position, and the set of
//! sequences it belongs to (a bit mask, so copying a sequence's prefix to another sequence shares
//! cells instead of duplicating them). A token of sequence `s` at position `p` attends to every
//! cell that belongs to `s` with position `<= p`.
//!
//! [`Cells`] is the bookkeeping (allocation, positions, sequence edits), one per context and
//! the same for every backend; the keys and values live with the backend that computes them
//! ([`HostKv`] for the CPU, device buffers for the GPU), stored as the context's [`KvType`].
//! [`state`] serialises both in one format.
//!
//! Sliding-window layers (Gemma 3: five of every six) need only the last `window` positions of
//! each sequence, so a model with such layers gets a second, smaller table for them, the ring
//! ([`Cells::ring`], llama.cpp's iSWA cache): every token takes a cell in both tables, and once
//! a step is done the ring's cells that fell out of every sequence's window are freed
//! ([`Cells::finish_step`]). Global layers keep the full table. Which ring cell a token gets
//! is decided here alone, so every backend attends over the same cell indices.

mod host;
mod kv_type;
pub mod state;

pub use host::HostKv;
pub use kv_type::KvType;

use crate::{Error, Result};

/// Sequences per context are limited by the 64-bit membership mask.
pub const MAX_SEQUENCES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    /// Position in its sequences, or -1 when the cell is free.
    pos: i32,
    /// Bit s set: the cell belongs to sequence s.
    seqs: u64,
}

const FREE: Cell = Cell { pos: -1, seqs: 0 };

/// The largest token position. RoPE angles are computed from the position as an f32, which
/// holds every integer exactly only below 2^24; past it neighbouring positions would share
/// angles, and sequence arithmetic near `i32::MAX` would wrap.
pub const MAX_POSITION: i32 = (1 << 24) - 1;

/// The cell table: which cells hold which positions of which sequences.
#[derive(Clone)]
pub struct Cells {
    n_seq_max: usize,
    cells: Vec<Cell>,
    /// Where the next search for free cells starts (keeps allocation O(n) amortised).
    search_from: usize,
    /// When set, sequence `s` keeps position `p` in cell `s * stride + p` (see
    /// [`Self::set_seq_regions`]); in a ring, cell `s * stride + p % stride`.
    seq_stride: Option<usize>,
    /// On a ring: the window its layers need (the largest of the model's windows): a sequence
    /// whose last position is `m` keeps the cells of positions `m - window + 1 ..= m`.
    window: Option<usize>,
    /// The ring of the windowed layers (None: every layer uses this table).
    ring: Option<Box<Cells>>,
    /// On a ring: its cells for the tokens of the step in flight, in batch order (from
    /// [`Self::place`] to [`Self::finish_step`] or [`Self::rollback`]).
    step: Vec<usize>,
}

impl Cells {
    /// `n_ctx` free cells for up to `n_seq_max` sequences.
    pub fn new(n_ctx: usize, n_seq_max: usize) -> Result<Cells> {
        if n_seq_max == 0 || n_seq_max > MAX_SEQUENCES {
            return Err(Error::InvalidArgument(format!(
                "max sequences must be 1..={MAX_SEQUENCES}, got {n_seq_max}"
            )));
        }
        Ok(Cells {
            n_seq_max,
            cells: vec![FREE; n_ctx],
            search_from: 0,
            seq_stride: None,
            window: None,
            ring: None,
            step: Vec::new(),
        })
    }

    /// [`Self::new`] with a ring of `ring_cells` cells for layers whose window is at most
    /// `window` (see [`ring_cells`] for its size). The ring needs room, per sequence, for a
    /// window plus one step's tokens; that is the caller's sizing to get right, and a step that
    /// finds no free ring cell fails with ContextFull like a full table.
    pub fn with_ring(
        n_ctx: usize,
        n_seq_max: usize,
        ring_cells: usize,
        window: usize,
    ) -> Result<Cells> {
        if window == 0 || ring_cells == 0 {
            return Err(Error::InvalidArgument(format!(
                "a ring of {ring_cells} cells for a window of {window}"
            )));
        }
        let mut ring = Cells::new(ring_cells, n_seq_max)?;
        ring.window = Some(window);
        let mut cells = Cells::new(n_ctx, n_seq_max)?;
        cells.ring = Some(Box::new(ring));
        Ok(cells)
    }

    /// The windowed layers' table, when the model has one (see the module documentation).
    pub fn ring(&self) -> Option<&Cells> {
        self.ring.as_deref()
    }

    /// On a ring: the window it keeps per sequence.
    pub fn window(&self) -> Option<usize> {
        self.window
    }

    /// On a ring: its cells for the tokens of the step in flight, in batch order (the global
    /// table's are those [`Self::place`] returned).
    pub fn step_cells(&self) -> &[usize] {
        &self.step
    }

    pub fn n_ctx(&self) -> usize {
        self.cells.len()
    }

    pub fn n_seq_max(&self) -> usize {
        self.n_seq_max
    }

    /// Cells in use.
    pub fn used(&self) -> usize {
        self.cells.iter().filter(|c| c.pos >= 0).count()
    }

    pub fn check_seq(&self, seq: u32) -> Result<()> {
        if (seq as usize) < self.n_seq_max {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "sequence id {seq} out of range (context has {} sequences)",
                self.n_seq_max
            )))
        }
    }

    /// Gives each sequence its own region of `stride` cells: position `p` of sequence `s` goes
    /// to cell `s * stride + p` (None: any free cell). Attention sums over cells in chunks of
    /// cell indices, so a token's result depends on where its sequence's cells lie; with
    /// regions whose stride is a multiple of the attention chunk, a sequence computes the same
    /// bits whatever other sequences share the context (the continuous-batching scheduler
    /// relies on it), as if it were alone in cells `0..`.
    pub fn set_seq_regions(&mut self, stride: Option<usize>) -> Result<()> {
        if let Some(st) = stride {
            if st == 0 || st.saturating_mul(self.n_seq_max) > self.cells.len() {
                return Err(Error::InvalidArgument(format!(
                    "{} regions of {st} cells do not fit in {} cells",
                    self.n_seq_max,
                    self.cells.len()
                )));
            }
        }
        if let Some(ring) = &mut self.ring {
            // Each sequence gets an equal share of the ring (sized as whole attention chunks
            // per sequence by `ring_cells`), a ring of its own inside it.
            let share = ring.cells.len() / ring.n_seq_max;
            ring.set_seq_regions(stride.map(|_| share))?;
        }
        self.seq_stride = stride;
        Ok(())
    }

    /// With regions, the cell of position `pos` of `seq`: its region's cell `pos` (a ring:
    /// `pos % stride`), or None past a (non-ring) region.
    fn region_cell(&self, stride: usize, pos: i32, seq: u32) -> Option<usize> {
        let p = pos as usize;
        match self.window {
            Some(_) => Some(seq as usize * stride + p % stride),
            None => (p < stride).then_some(seq as usize * stride + p),
        }
    }

    /// Cells of sequence regions ([`Self::set_seq_regions`]): the region's cell for each token.
    fn allocate_in_regions(&mut self, stride: usize, tokens: &[(i32, u32)]) -> Result<Vec<usize>> {
        let mut found = Vec::with_capacity(tokens.len());
        for &(pos, seq) in tokens {
            let cell = self.region_cell(stride, pos, seq);
            match cell {
                Some(cell) if self.cells[cell].pos < 0 && !found.contains(&cell) => {
                    found.push(cell)
                }
                _ => {
                    return Err(Error::ContextFull(format!(
                        "position {pos} of sequence {seq} has no free cell in its region of \
                         {stride}"
                    )))
                }
            }
        }
        for (&cell, &(pos, seq)) in found.iter().zip(tokens) {
            self.cells[cell] = Cell {
                pos,
                seqs: 1u64 << seq,
            };
        }
        Ok(found)
    }

    /// Takes `n` free cells for new tokens, or fails with ContextFull taking none.
    pub fn allocate(&mut self, tokens: &[(i32, u32)]) -> Result<Vec<usize>> {
        if let Some(stride) = self.seq_stride {
            return self.allocate_in_regions(stride, tokens);
        }
        if self.window.is_some() {
            return self.allocate_ring(tokens);
        }
        let n = tokens.len();
        let n_ctx = self.cells.len();
        let mut found = Vec::with_capacity(n);
        for step in 0..n_ctx {
            if found.len() == n {
                break;
            }
            let i = (self.search_from + step) % n_ctx;
            if self.cells[i].pos < 0 {
                found.push(i);
            }
        }
        if found.len() < n {
            return Err(Error::ContextFull(format!(
                "{n} new tokens need cells but only {} of {n_ctx} are free",
                found.len(),
            )));
        }
        for (&cell, &(pos, seq)) in found.iter().zip(tokens) {
            self.cells[cell] = Cell {
                pos,
                seqs: 1u64 << seq,
            };
        }
        if let Some(&last) = found.last() {
            self.search_from = (last + 1) % n_ctx;
        }
        Ok(found)
    }

    /// A ring without regions: position `p` goes to cell `p % n_cells` when that is free (it
    /// always is for a lone sequence, the ring holding a window plus a step), else to the
    /// next free cell. Keeping positions where a lone sequence's own ring region would put
    /// them gives the same attention chunks, so the same bits, as the full table
    /// (see `rotate_to_oldest_chunk` in the CPU backend), also after a state restore.
    fn allocate_ring(&mut self, tokens: &[(i32, u32)]) -> Result<Vec<usize>> {
        let n_cells = self.cells.len();
        let mut found: Vec<usize> = Vec::with_capacity(tokens.len());
        let mut next = self.search_from;
        for &(pos, seq) in tokens {
            let preferred = pos as usize % n_cells;
            let free = |c: usize, found: &[usize]| self.cells[c].pos < 0 && !found.contains(&c);
            let cell = if free(preferred, &found) {
                Some(preferred)
            } else {
                let c = (0..n_cells)
                    .map(|k| (next + k) % n_cells)
                    .find(|&c| free(c, &found));
                if let Some(c) = c {
                    next = (c + 1) % n_cells;
                }
                c
            };
            let Some(cell) = cell else {
                return Err(Error::ContextFull(format!(
                    "position {pos} of sequence {seq} finds no free cell in the sliding-window \
                     ring of {n_cells}"
                )));
            };
            found.push(cell);
        }
        for (&cell, &(pos, seq)) in found.iter().zip(tokens) {
            self.cells[cell] = Cell {
                pos,
                seqs: 1u64 << seq,
            };
        }
        self.search_from = next;
        Ok(found)
    }

    /// With sequence regions: the cells holding positions `first..n` of `src` and the cells of
    /// `dst`'s region for the same positions, for a physical copy of the prefix
    /// ([`Self::claim`] after the keys and values are written). `first` is 0, or on a ring the
    /// oldest position a token at `n` still attends to. The copy has the bits `dst` would
    /// compute for those tokens in its own region, as regions are whole attention chunks apart.
    pub fn region_copy_cells(&self, src: u32, dst: u32, n: usize) -> Result<RegionCopy> {
        let Some(stride) = self.seq_stride else {
            return Err(Error::InvalidArgument(
                "a copy between sequence regions needs sequence regions".into(),
            ));
        };
        self.check_seq(src)?;
        self.check_seq(dst)?;
        let first = self.window.map_or(0, |w| (n + 1).saturating_sub(w));
        if src == dst || (self.window.is_none() && n > stride) || n > MAX_POSITION as usize {
            return Err(Error::InvalidArgument(format!(
                "cannot copy {n} positions from sequence {src} to {dst} (regions of {stride})"
            )));
        }
        let (mut from, mut to) = (Vec::with_capacity(n - first), Vec::with_capacity(n - first));
        for p in first..n {
            let (a, b) = (
                src as usize * stride + p % stride,
                dst as usize * stride + p % stride,
            );
            if self.cells[a].pos != p as i32 || self.cells[a].seqs & (1u64 << src) == 0 {
                return Err(Error::InvalidArgument(format!(
                    "sequence {src} holds no position {p} to copy{}",
                    if self.window.is_some() {
                        " (it left the window ring)"
                    } else {
                        ""
                    }
                )));
            }
            if self.cells[b].pos >= 0 {
                return Err(Error::InvalidArgument(format!(
                    "the cell for position {p} of sequence {dst} is in use"
                )));
            }
            from.push(a);
            to.push(b);
        }
        let ring = match &self.ring {
            Some(r) => Some(Box::new(r.region_copy_cells(src, dst, n)?)),
            None => None,
        };
        Ok(RegionCopy {
            from,
            to,
            first: first as i32,
            ring,
        })
    }

    /// Gives `copy.to` to `seq` as its positions `copy.first, ...` (the targets of
    /// [`Self::region_copy_cells`], once their keys and values are written), in the ring too.
    pub fn claim(&mut self, seq: u32, copy: &RegionCopy) {
        for (p, &c) in (copy.first..).zip(&copy.to) {
            self.cells[c] = Cell {
                pos: p,
                seqs: 1u64 << seq,
            };
        }
        if let (Some(ring), Some(rc)) = (&mut self.ring, &copy.ring) {
            ring.claim(seq, rc);
        }
    }

    /// Frees cells taken by `allocate` (used to roll back a batch that failed midway).
    pub fn release(&mut self, cells: &[usize]) {
        for &c in cells {
            self.cells[c] = FREE;
        }
    }

    /// Undoes [`Self::place`]: frees `placed` and the ring's cells of the step.
    pub fn rollback(&mut self, placed: &[usize]) {
        self.release(placed);
        if let Some(ring) = &mut self.ring {
            let step = std::mem::take(&mut ring.step);
            ring.release(&step);
        }
    }

    /// Ends a step that succeeded: the ring drops, from each sequence, the cells out of its
    /// window (positions `<= last - window`). Not before the step is done: its first tokens
    /// still attend to cells that its last token no longer needs.
    pub fn finish_step(&mut self) {
        if let Some(ring) = &mut self.ring {
            ring.step.clear();
            ring.prune();
        }
    }

    /// On a ring: removes every cell's sequences for which it is out of the window.
    fn prune(&mut self) {
        let Some(window) = self.window else { return };
        let mut last = [i32::MIN; MAX_SEQUENCES];
        for c in self.cells.iter().filter(|c| c.pos >= 0) {
            let mut m = c.seqs;
            while m != 0 {
                let s = m.trailing_zeros() as usize;
                last[s] = last[s].max(c.pos);
                m &= m - 1;
            }
        }
        for c in self.cells.iter_mut().filter(|c| c.pos >= 0) {
            let mut m = c.seqs;
            while m != 0 {
                let s = m.trailing_zeros() as usize;
                if i64::from(c.pos) <= i64::from(last[s]) - window as i64 {
                    c.seqs &= !(1u64 << s);
                }
                m &= m - 1;
            }
            if c.seqs == 0 {
                *c = FREE;
            }
        }
    }

    /// Whether a token of `seq` at `pos` would find in the ring every position of its window
    /// that the global table holds (always true without a ring). False once a sequence edit
    /// went back past what the ring kept (a tail removed after the ring moved on): the caller
    /// must then evaluate that sequence again from [`Self::seq_pos_min`] of the ring's
    /// view, as llama.cpp's server does, rather than attend to a shorter window.
    pub fn window_intact(&self, seq: u32, pos: i32) -> bool {
        let Some(ring) = &self.ring else { return true };
        let Some(window) = ring.window else {
            return true;
        };
        let lo = (i64::from(pos) - window as i64 + 1).max(0);
        let bit = 1u64 << seq;
        let count = |t: &Cells| {
            (t.cells.iter())
                .filter(|c| {
                    c.seqs & bit != 0 && i64::from(c.pos) >= lo && c.pos < pos && c.pos >= 0
                })
                .count()
        };
        count(ring) == count(self)
    }

    /// Cells a token of `seq` at `pos` attends to, in cell order.
    pub fn visible_cells(&self, seq: u32, pos: i32, out: &mut Vec<usize>) {
        out.clear();
        let bit = 1u64 << seq;
        for (i, c) in self.cells.iter().enumerate() {
            if c.seqs & bit != 0 && c.pos >= 0 && c.pos <= pos {
                out.push(i);
            }
        }
    }

    /// (position, sequence mask) of `cell`; position -1 when it is free.
    pub fn cell(&self, cell: usize) -> (i32, u64) {
        (self.cells[cell].pos, self.cells[cell].seqs)
    }

    /// One past the last cell in use (the cells a kernel must scan); 0 when all are free.
    pub fn extent(&self) -> usize {
        self.cells
            .iter()
            .rposition(|c| c.pos >= 0)
            .map_or(0, |i| i + 1)
    }

    /// The cells in use that belong to `seq` (any sequence for None), in cell order.
    pub fn of_seq(&self, seq: Option<u32>) -> Vec<usize> {
        let mask = seq.map_or(u64::MAX, |s| 1u64 << s);
        (self.cells.iter().enumerate())
            .filter(|(_, c)| c.pos >= 0 && c.seqs & mask != 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// A batch's tokens placed in free cells after checking them against this table: ids in
    /// range, positions in range and after what each sequence holds. The preamble of every
    /// evaluation, whatever the backend; undo it with [`Self::release`].
    pub fn place(&mut self, batch: &crate::batch::Batch, n_vocab: usize) -> Result<Vec<usize>> {
        batch.validate(n_vocab, self.n_seq_max)?;
        batch.check_positions(self)?;
        let placed: Vec<(i32, u32)> = (batch.pos.iter().copied())
            .zip(batch.seq.iter().copied())
            .collect();
        if self.ring.is_some() {
            let mut first = [i32::MAX; MAX_SEQUENCES];
            for &(pos, seq) in &placed {
                first[seq as usize] = first[seq as usize].min(pos);
            }
            for (seq, &pos) in first.iter().enumerate() {
                if pos != i32::MAX && !self.window_intact(seq as u32, pos) {
                    return Err(Error::InvalidArgument(format!(
                        "sequence {seq} at position {pos}: the sliding-window cache no longer \
                         holds the window before it (a tail was removed after the window moved \
                         past it); remove the sequence from position {} on and evaluate it again",
                        self.attendable_from(seq as u32).unwrap_or(0)
                    )));
                }
            }
        }
        let cells = self.allocate(&placed)?;
        if let Some(ring) = &mut self.ring {
            match ring.allocate(&placed) {
                Ok(r) => ring.step = r,
                Err(e) => {
                    self.release(&cells);
                    return Err(e);
                }
            }
        }
        Ok(cells)
    }

    /// The smallest position of `seq` every layer still holds: in a model with a ring, the
    /// oldest position the ring kept (llama.cpp's `seq_pos_min` of an iSWA cache). A caller
    /// that removed a sequence's tail can continue at `p` only when the window before `p`
    /// is there ([`Self::window_intact`]).
    pub fn attendable_from(&self, seq: u32) -> Option<i32> {
        match &self.ring {
            Some(r) => r.seq_pos_min(seq),
            None => self.seq_pos_min(seq),
        }
    }

    /// Largest position held for `seq`, if any.
    pub fn seq_pos_max(&self, seq: u32) -> Option<i32> {
        let bit = 1u64 << seq;
        self.cells
            .iter()
            .filter(|c| c.seqs & bit != 0)
            .map(|c| c.pos)
            .max()
    }

    /// Smallest position held for `seq`, if any.
    pub fn seq_pos_min(&self, seq: u32) -> Option<i32> {
        let bit = 1u64 << seq;
        self.cells
            .iter()
            .filter(|c| c.seqs & bit != 0)
            .map(|c| c.pos)
            .min()
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.cells.fill(FREE);
        self.search_from = 0;
        self.step.clear();
        if let Some(r) = &mut self.ring {
            r.clear();
        }
    }

    /// Removes positions `p0..p1` (p1 < 0: to the end) from `seq`, or from every sequence when
    /// `seq` is None. Cells left without a sequence become free.
    pub fn seq_remove(&mut self, seq: Option<u32>, p0: i32, p1: i32) {
        let mask = seq.map_or(u64::MAX, |s| 1u64 << s);
        let p1 = if p1 < 0 { i32::MAX } else { p1 };
        for c in self.cells.iter_mut() {
            if c.pos >= p0.max(0) && c.pos < p1 {
                c.seqs &= !mask;
                if c.seqs == 0 {
                    *c = FREE;
                }
            }
        }
        if let Some(r) = &mut self.ring {
            r.seq_remove(seq, p0, p1);
        }
    }

    /// Makes positions `p0..p1` of `src` also belong to `dst` (shared cells, no copy).
    pub fn seq_copy(&mut self, src: u32, dst: u32, p0: i32, p1: i32) {
        let (s, d) = (1u64 << src, 1u64 << dst);
        let p1 = if p1 < 0 { i32::MAX } else { p1 };
        for c in self.cells.iter_mut() {
            if c.seqs & s != 0 && c.pos >= p0.max(0) && c.pos < p1 {
                c.seqs |= d;
            }
        }
        if let Some(r) = &mut self.ring {
            r.seq_copy(src, dst, p0, p1);
        }
    }

    /// Drops every sequence but `seq`.
    pub fn seq_keep(&mut self, seq: u32) {
        let bit = 1u64 << seq;
        for c in self.cells.iter_mut() {
            c.seqs &= bit;
            if c.seqs == 0 {
                *c = FREE;
            }
        }
        if let Some(r) = &mut self.ring {
            r.seq_keep(seq);
        }
    }
}

/// A planned copy between sequence regions ([`Cells::region_copy_cells`]): cells `from` of the
/// source hold positions `first..` and go to cells `to` of the target; `ring`, the same for
/// the windowed layers' table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCopy {
    pub from: Vec<usize>,
    pub to: Vec<usize>,
    pub first: i32,
    pub ring: Option<Box<RegionCopy>>,
}

/// Cells of the ring for layers with windows of at most `window` tokens, in a context of
/// `n_ctx` cells, `n_seq_max` sequences and steps of at most `n_batch` tokens; None when a ring
/// would save nothing (every layer then uses the full table, the window a position mask).
///
/// Each sequence gets a share of whole attention chunks (`chunk` cells), enough for:
/// - `window + n_batch` cells: a sequence keeps `window` positions between steps and may take
///   a whole step's tokens (a prompt chunk, in the scheduler too);
/// - the chunks one token's window touches in the full table (`ceil((window - 1) / chunk) +
///   1`), each landing in a ring chunk of its own: position `p` at cell `p % share`, so a
///   window's chunks hold the positions the full table's would, and attention summed from
///   the oldest chunk has the full table's bits.
///
/// Whole chunks per sequence also let a sequence in its own region of the ring compute the
/// same bits whatever its neighbours do, as the full table's regions. llama.cpp sizes its ring
/// `window * n_seq + n_ubatch` rounded to 256 (shared by the sequences); ours costs up to
/// `n_batch * (n_seq - 1)` cells more for that isolation.
pub fn ring_cells(
    window: usize,
    n_ctx: usize,
    n_seq_max: usize,
    n_batch: usize,
    chunk: usize,
) -> Option<usize> {
    let held = (window.checked_add(n_batch)?).div_ceil(chunk);
    let touched = window.saturating_sub(1).div_ceil(chunk) + 1;
    let share = held.max(touched).checked_mul(chunk)?;
    let cells = share.checked_mul(n_seq_max)?;
    (cells < n_ctx).then_some(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cells {
        Cells::new(8, 4).unwrap()
    }

    #[test]
    fn sequence_regions_place_position_p_of_sequence_s_at_s_times_stride_plus_p() {
        let mut kv = cache();
        kv.set_seq_regions(Some(4)).unwrap_err();
        let mut kv = Cells::new(8, 2).unwrap();
        kv.set_seq_regions(Some(4)).unwrap();
        assert_eq!(kv.allocate(&[(0, 1), (1, 1), (0, 0)]).unwrap(), [4, 5, 0]);
        assert!(matches!(kv.allocate(&[(4, 0)]), Err(Error::ContextFull(_))));
        assert!(matches!(kv.allocate(&[(1, 1)]), Err(Error::ContextFull(_))));
        assert_eq!(kv.used(), 3);
    }

    #[test]
    fn a_prefix_copies_into_the_same_offsets_of_another_region() {
        let mut kv = Cells::new(12, 3).unwrap();
        kv.allocate(&[(0, 0), (1, 0), (2, 0)]).unwrap();
        // Only with regions.
        assert!(kv.region_copy_cells(0, 1, 2).is_err());
        let mut kv = Cells::new(12, 3).unwrap();
        kv.set_seq_regions(Some(4)).unwrap();
        kv.allocate(&[(0, 0), (1, 0), (2, 0), (0, 2)]).unwrap();
        let copy = kv.region_copy_cells(0, 1, 2).unwrap();
        assert_eq!(
            (copy.from, copy.to, copy.first),
            (vec![0, 1], vec![4, 5], 0)
        );
        // The source lacks position 3; the target's position 0 is taken; the same sequence;
        // longer than a region; no such sequence.
        assert!(kv.region_copy_cells(0, 1, 4).is_err());
        assert!(kv.region_copy_cells(0, 2, 1).is_err());
        assert!(kv.region_copy_cells(0, 0, 1).is_err());
        assert!(kv.region_copy_cells(0, 1, 5).is_err());
        assert!(kv.region_copy_cells(0, 3, 1).is_err());
        let copy = kv.region_copy_cells(0, 1, 3).unwrap();
        kv.claim(1, &copy);
        let mut v = Vec::new();
        kv.visible_cells(1, 9, &mut v);
        assert_eq!(v, [4, 5, 6]);
        assert_eq!(kv.cell(6), (2, 1 << 1));
        assert_eq!(kv.seq_pos_max(1), Some(2));
    }

    #[test]
    fn allocation_fails_whole_when_full() {
        let mut kv = cache();
        let cells = kv.allocate(&[(0, 0); 6]).unwrap();
        assert_eq!(cells.len(), 6);
        assert!(matches!(
            kv.allocate(&[(6, 0); 3]),
            Err(Error::ContextFull(_))
        ));
        assert_eq!(kv.used(), 6);
        kv.release(&cells[..2]);
        assert_eq!(kv.allocate(&[(7, 1); 4]).unwrap().len(), 4);
    }

    #[test]
    fn visibility_follows_sequence_and_position() {
        let mut kv = cache();
        kv.allocate(&[(0, 0), (1, 0), (2, 0), (0, 1)]).unwrap();
        let mut v = Vec::new();
        kv.visible_cells(0, 1, &mut v);
        assert_eq!(v, vec![0, 1]);
        kv.visible_cells(1, 5, &mut v);
        assert_eq!(v, vec![3]);
        kv.seq_copy(0, 2, 0, 2);
        kv.visible_cells(2, 9, &mut v);
        assert_eq!(v, vec![0, 1]);
        kv.seq_remove(Some(0), 1, -1);
        kv.visible_cells(0, 9, &mut v);
        assert_eq!(v, vec![0]);
        // cell 1 still belongs to sequence 2, so it is not freed
        assert_eq!(kv.used(), 3);
        assert_eq!(kv.seq_pos_max(2), Some(1));
        kv.seq_keep(1);
        assert_eq!(kv.used(), 1);
        assert_eq!(kv.seq_pos_max(0), None);
    }

    /// Places tokens as a step does (both tables) and ends the step.
    fn step(kv: &mut Cells, tokens: &[(i32, u32)]) -> (Vec<usize>, Vec<usize>) {
        let global = kv.allocate(tokens).unwrap();
        let ring = kv.ring.as_mut().unwrap().allocate(tokens).unwrap();
        kv.finish_step();
        (global, ring)
    }

    fn ring_visible(kv: &Cells, seq: u32, pos: i32) -> Vec<i32> {
        let mut v = Vec::new();
        let ring = kv.ring().unwrap();
        ring.visible_cells(seq, pos, &mut v);
        let mut p: Vec<i32> = v.iter().map(|&c| ring.cell(c).0).collect();
        p.sort_unstable();
        p
    }

    #[test]
    fn the_ring_keeps_each_sequence_s_window_and_frees_the_rest_after_the_step() {
        // Window 3, ring of 6 cells, 2 sequences.
        let mut kv = Cells::with_ring(16, 2, 6, 3).unwrap();
        let (_, r) = step(&mut kv, &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]);
        // All five were in the step (its first tokens attend to the oldest); after it only
        // positions 2..=4 stay.
        assert_eq!(r, [0, 1, 2, 3, 4]);
        assert_eq!(ring_visible(&kv, 0, 9), [2, 3, 4]);
        assert_eq!(kv.used(), 5, "the global table keeps every position");
        // Freed cells are reused: position 5 and 6 wrap around.
        let (_, r) = step(&mut kv, &[(5, 0), (6, 0)]);
        assert_eq!(r, [5, 0]);
        assert_eq!(ring_visible(&kv, 0, 9), [4, 5, 6]);
        // A shared cell stays while one of its sequences still needs it.
        kv.seq_copy(0, 1, 0, -1);
        step(&mut kv, &[(7, 0), (8, 0), (9, 0)]);
        assert_eq!(ring_visible(&kv, 0, 99), [7, 8, 9]);
        assert_eq!(ring_visible(&kv, 1, 99), [4, 5, 6]);
        kv.seq_keep(0);
        assert_eq!(kv.ring().unwrap().used(), 3);
        kv.clear();
        assert_eq!(kv.ring().unwrap().used(), 0);
        // A full ring fails the step whole, the global table's cells included.
        let mut kv = Cells::with_ring(16, 1, 4, 3).unwrap();
        let batch = crate::batch::Batch::for_sequence(&[1; 5], 0, 0);
        assert!(matches!(kv.place(&batch, 8), Err(Error::ContextFull(_))));
        assert_eq!((kv.used(), kv.ring().unwrap().used()), (0, 0));
        let placed = kv
            .place(&crate::batch::Batch::for_sequence(&[1; 4], 0, 0), 8)
            .unwrap();
        assert_eq!(
            kv.step_cells(),
            &[] as &[usize],
            "the step's cells are the ring's"
        );
        assert_eq!(kv.ring().unwrap().step_cells(), [0, 1, 2, 3]);
        kv.rollback(&placed);
        assert_eq!((kv.used(), kv.ring().unwrap().used()), (0, 0));
    }

    #[test]
    fn a_tail_removed_behind_the_ring_is_refused_until_evaluated_again() {
        let mut kv = Cells::with_ring(32, 1, 16, 3).unwrap();
        let batch = crate::batch::Batch::for_sequence(&[1; 10], 0, 0);
        kv.place(&batch, 8).unwrap();
        kv.finish_step();
        assert_eq!(kv.attendable_from(0), Some(7));
        assert_eq!(kv.seq_pos_min(0), Some(0));
        // Continuing at 10 or 9 is fine; at 8 the ring lacks position 6.
        assert!(kv.window_intact(0, 10) && kv.window_intact(0, 9));
        assert!(!kv.window_intact(0, 8));
        assert!(kv.window_intact(0, 0), "position 0 needs nothing before it");
        kv.seq_remove(Some(0), 8, -1);
        let e = kv
            .place(&crate::batch::Batch::for_sequence(&[1], 8, 0), 8)
            .unwrap_err();
        assert!(e.to_string().contains("evaluate it again"), "{e}");
        // Removing the whole sequence and evaluating again works.
        kv.seq_remove(Some(0), 0, -1);
        kv.place(&crate::batch::Batch::for_sequence(&[1; 9], 0, 0), 8)
            .unwrap();
    }

    #[test]
    fn ring_regions_wrap_each_sequence_in_its_share_and_copy_the_window() {
        // Two sequences, window 3, ring shares of 5 cells (a window and two tokens).
        let mut kv = Cells::with_ring(32, 2, 10, 3).unwrap();
        kv.set_seq_regions(Some(16)).unwrap();
        let (g, r) = step(&mut kv, &[(0, 1), (1, 1), (2, 1)]);
        assert_eq!((g, r), (vec![16, 17, 18], vec![5, 6, 7]));
        step(&mut kv, &[(3, 1), (4, 1)]);
        let (_, r) = step(&mut kv, &[(5, 1), (6, 1)]);
        assert_eq!(r, [5, 6], "position 5 of sequence 1: 5 + 5 % 5");
        assert_eq!(ring_visible(&kv, 1, 9), [4, 5, 6]);
        // A copy of 7 positions: the ring copies the two a token at 7 still sees.
        let copy = kv.region_copy_cells(1, 0, 7).unwrap();
        assert_eq!((copy.from.len(), copy.to[0], copy.first), (7, 0, 0));
        let ring = copy.ring.as_deref().unwrap();
        assert_eq!(
            (&ring.from, &ring.to, ring.first),
            (&vec![5, 6], &vec![0, 1], 5)
        );
        kv.claim(0, &copy);
        assert_eq!(ring_visible(&kv, 0, 9), [5, 6]);
        assert!(kv.window_intact(0, 7));
        // A prefix the ring moved past cannot be copied.
        kv.seq_remove(Some(0), 0, -1);
        assert!(kv.region_copy_cells(1, 0, 3).is_err());
    }

    #[test]
    fn the_ring_is_sized_per_sequence_in_whole_chunks_and_only_when_smaller() {
        assert_eq!(ring_cells(512, 8192, 1, 512, 256), Some(1024));
        // A window of 16 can touch two chunks of the full table: two chunks, not one.
        assert_eq!(ring_cells(16, 8192, 1, 16, 256), Some(512));
        assert_eq!(ring_cells(512, 8192, 1, 1, 256), Some(768));
        assert_eq!(ring_cells(512, 8192, 2, 100, 256), Some(2 * 768));
        assert_eq!(ring_cells(512, 1024, 1, 512, 256), None);
        assert_eq!(ring_cells(4096, 8192, 4, 512, 256), None);
    }

    #[test]
    fn bad_sequence_counts_are_rejected() {
        assert!(Cells::new(4, 0).is_err());
        assert!(Cells::new(4, 65).is_err());
        assert!(cache().check_seq(4).is_err());
    }
}
