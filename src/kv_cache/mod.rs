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
    /// [`Self::set_seq_regions`]).
    seq_stride: Option<usize>,
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
        })
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
        self.seq_stride = stride;
        Ok(())
    }

    /// Cells of sequence regions ([`Self::set_seq_regions`]): the region's cell for each token.
    fn allocate_in_regions(&mut self, stride: usize, tokens: &[(i32, u32)]) -> Result<Vec<usize>> {
        let mut found = Vec::with_capacity(tokens.len());
        for &(pos, seq) in tokens {
            let cell = seq as usize * stride + pos as usize;
            if pos as usize >= stride || self.cells[cell].pos >= 0 || found.contains(&cell) {
                return Err(Error::ContextFull(format!(
                    "position {pos} of sequence {seq} has no free cell in its region of {stride}"
                )));
            }
            found.push(cell);
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

    /// With sequence regions: the cells holding positions `0..n` of `src` and the cells of
    /// `dst`'s region at the same offsets, for a physical copy of the prefix ([`Self::claim`]
    /// after the keys and values are written). The copy has the bits `dst` would compute for
    /// those tokens in its own region, as regions are whole attention chunks apart.
    pub fn region_copy_cells(
        &self,
        src: u32,
        dst: u32,
        n: usize,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let Some(stride) = self.seq_stride else {
            return Err(Error::InvalidArgument(
                "a copy between sequence regions needs sequence regions".into(),
            ));
        };
        self.check_seq(src)?;
        self.check_seq(dst)?;
        if src == dst || n > stride {
            return Err(Error::InvalidArgument(format!(
                "cannot copy {n} positions from sequence {src} to {dst} (regions of {stride})"
            )));
        }
        let (mut from, mut to) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for p in 0..n {
            let (a, b) = (src as usize * stride + p, dst as usize * stride + p);
            if self.cells[a].pos != p as i32 || self.cells[a].seqs & (1u64 << src) == 0 {
                return Err(Error::InvalidArgument(format!(
                    "sequence {src} holds no position {p} to copy"
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
        Ok((from, to))
    }

    /// Gives `cells` to `seq` as its positions `0, 1, ...` (the targets of
    /// [`Self::region_copy_cells`], once their keys and values are written).
    pub fn claim(&mut self, seq: u32, cells: &[usize]) {
        for (p, &c) in cells.iter().enumerate() {
            self.cells[c] = Cell {
                pos: p as i32,
                seqs: 1u64 << seq,
            };
        }
    }

    /// Frees cells taken by `allocate` (used to roll back a batch that failed midway).
    pub fn release(&mut self, cells: &[usize]) {
        for &c in cells {
            self.cells[c] = FREE;
        }
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
        self.allocate(&placed)
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
    }
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
        assert_eq!(
            kv.region_copy_cells(0, 1, 2).unwrap(),
            (vec![0, 1], vec![4, 5])
        );
        // The source lacks position 3; the target's position 0 is taken; the same sequence;
        // longer than a region; no such sequence.
        assert!(kv.region_copy_cells(0, 1, 4).is_err());
        assert!(kv.region_copy_cells(0, 2, 1).is_err());
        assert!(kv.region_copy_cells(0, 0, 1).is_err());
        assert!(kv.region_copy_cells(0, 1, 5).is_err());
        assert!(kv.region_copy_cells(0, 3, 1).is_err());
        let (_, to) = kv.region_copy_cells(0, 1, 3).unwrap();
        kv.claim(1, &to);
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

    #[test]
    fn bad_sequence_counts_are_rejected() {
        assert!(Cells::new(4, 0).is_err());
        assert!(Cells::new(4, 65).is_err());
        assert!(cache().check_seq(4).is_err());
    }
}
