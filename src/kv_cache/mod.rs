//! The key/value cache: one pool of cells shared by all sequences of a context.
//!
//! A cell holds the keys and values of one token for every layer, its position, and the set of
//! sequences it belongs to (a bit mask, so copying a sequence's prefix to another sequence shares
//! cells instead of duplicating them). A token of sequence `s` at position `p` attends to every
//! cell that belongs to `s` with position `<= p`.

mod state;

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

pub struct KvCache {
    n_layer: usize,
    n_ctx: usize,
    /// Width of one token's keys (or values) in a layer: n_head_kv * head_dim.
    kv_dim: usize,
    n_seq_max: usize,
    /// Per layer: (n_ctx, kv_dim).
    keys: Vec<Vec<f32>>,
    /// Per layer: (n_ctx, kv_dim).
    values: Vec<Vec<f32>>,
    cells: Vec<Cell>,
    /// Where the next search for free cells starts (keeps allocation O(n) amortised).
    search_from: usize,
}

impl KvCache {
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, n_seq_max: usize) -> Result<KvCache> {
        if n_seq_max == 0 || n_seq_max > MAX_SEQUENCES {
            return Err(Error::InvalidArgument(format!(
                "max sequences must be 1..={MAX_SEQUENCES}, got {n_seq_max}"
            )));
        }
        let per_layer = n_ctx
            .checked_mul(kv_dim)
            .ok_or_else(|| Error::OutOfMemory(format!("KV cache of {n_ctx} x {kv_dim}")))?;
        let alloc = |what: &str| -> Result<Vec<Vec<f32>>> {
            let mut layers = Vec::with_capacity(n_layer);
            for _ in 0..n_layer {
                layers.push(zeroed_f32(per_layer).ok_or_else(|| {
                    Error::OutOfMemory(format!(
                        "KV cache {what}: {n_layer} layers x {per_layer} floats"
                    ))
                })?);
            }
            Ok(layers)
        };
        Ok(KvCache {
            n_layer,
            n_ctx,
            kv_dim,
            n_seq_max,
            keys: alloc("keys")?,
            values: alloc("values")?,
            cells: vec![FREE; n_ctx],
            search_from: 0,
        })
    }

    /// Bytes a cache of this shape needs (for memory estimates before allocating).
    pub fn bytes_needed(n_layer: usize, n_ctx: usize, kv_dim: usize) -> u64 {
        2 * n_layer as u64 * n_ctx as u64 * kv_dim as u64 * std::mem::size_of::<f32>() as u64
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn n_seq_max(&self) -> usize {
        self.n_seq_max
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    pub fn n_layer(&self) -> usize {
        self.n_layer
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

    /// Takes `n` free cells for new tokens, or fails with ContextFull taking none.
    pub fn allocate(&mut self, tokens: &[(i32, u32)]) -> Result<Vec<usize>> {
        let n = tokens.len();
        let mut found = Vec::with_capacity(n);
        for step in 0..self.n_ctx {
            if found.len() == n {
                break;
            }
            let i = (self.search_from + step) % self.n_ctx;
            if self.cells[i].pos < 0 {
                found.push(i);
            }
        }
        if found.len() < n {
            return Err(Error::ContextFull(format!(
                "{n} new tokens need cells but only {} of {} are free",
                found.len(),
                self.n_ctx
            )));
        }
        for (&cell, &(pos, seq)) in found.iter().zip(tokens) {
            self.cells[cell] = Cell {
                pos,
                seqs: 1u64 << seq,
            };
        }
        if let Some(&last) = found.last() {
            self.search_from = (last + 1) % self.n_ctx;
        }
        Ok(found)
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

    /// An empty-handed copy of `other`'s cells (positions, sequences, allocation cursor) with
    /// room for keys and values of width `kv_dim`, all zero: what a GPU context fills from
    /// device memory to save its state.
    pub fn with_cells_of(other: &KvCache, kv_dim: usize) -> Result<KvCache> {
        let mut kv = KvCache::new(other.n_layer, other.n_ctx, kv_dim, other.n_seq_max)?;
        kv.copy_cells_from(other);
        Ok(kv)
    }

    /// Takes `other`'s cells (positions, sequences, allocation cursor); keys and values stay.
    /// Both caches must have the same number of cells.
    pub fn copy_cells_from(&mut self, other: &KvCache) {
        debug_assert_eq!(self.n_ctx, other.n_ctx);
        self.cells.clone_from(&other.cells);
        self.search_from = other.search_from;
    }

    /// (position, sequence mask) of `cell`; position -1 when it is free.
    pub fn cell(&self, cell: usize) -> (i32, u64) {
        (self.cells[cell].pos, self.cells[cell].seqs)
    }

    /// All keys and all values of `layer`: (n_ctx, kv_dim) each.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// The same, writable.
    pub fn layer_mut(&mut self, layer: usize) -> (&mut [f32], &mut [f32]) {
        (&mut self.keys[layer], &mut self.values[layer])
    }

    /// Keys of `cell` in `layer`: (kv_dim).
    pub fn key(&self, layer: usize, cell: usize) -> &[f32] {
        &self.keys[layer][cell * self.kv_dim..(cell + 1) * self.kv_dim]
    }

    /// Values of `cell` in `layer`: (kv_dim).
    pub fn value(&self, layer: usize, cell: usize) -> &[f32] {
        &self.values[layer][cell * self.kv_dim..(cell + 1) * self.kv_dim]
    }

    /// Writes one token's keys and values for `layer`.
    pub fn store(&mut self, layer: usize, cell: usize, key: &[f32], value: &[f32]) {
        let range = cell * self.kv_dim..(cell + 1) * self.kv_dim;
        self.keys[layer][range.clone()].copy_from_slice(key);
        self.values[layer][range].copy_from_slice(value);
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

/// `n` zero floats, or `None` when the allocation fails. Zeroed memory from the allocator: a
/// large buffer comes as fresh pages the kernel zero-fills on first touch, so a big cache costs
/// nothing until cells are used (no loop writing every page up front).
fn zeroed_f32(n: usize) -> Option<Vec<f32>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(n).ok()?;
    // SAFETY: the layout has a non-zero size (n > 0).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<f32>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` was allocated by the global allocator with the layout of `n` f32s, and all-zero
    // bits are the f32 value 0.0, so all `n` elements are initialised.
    Some(unsafe { Vec::from_raw_parts(p, n, n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> KvCache {
        KvCache::new(1, 8, 2, 4).unwrap()
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
        assert!(KvCache::new(1, 4, 2, 0).is_err());
        assert!(KvCache::new(1, 4, 2, 65).is_err());
        assert!(cache().check_seq(4).is_err());
    }
}
