//! Saving and restoring the KV cache (whole, or one sequence) as bytes.
//!
//! Layout (little-endian): magic "RFKV", format version u32, n_layer u32, kv_dim u32,
//! n_cells u32, then per cell: pos i32, sequence mask u64, and for each layer the keys then the
//! values, kv_dim f32 each. A restored blob must match the cache's n_layer and kv_dim.

use super::{Cell, KvCache};
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"RFKV";
const VERSION: u32 = 1;
const HEADER: usize = 20;

impl KvCache {
    /// Bytes `save(seq)` will produce.
    pub fn state_size(&self, seq: Option<u32>) -> usize {
        self.state_size_for_width(seq, self.kv_dim)
    }

    /// Bytes `save(seq)` would produce for these cells with keys and values `kv_dim` wide (a
    /// GPU context's bookkeeping cache holds none itself).
    pub fn state_size_for_width(&self, seq: Option<u32>, kv_dim: usize) -> usize {
        let cells = self.cells_of(seq).count();
        HEADER + cells * (12 + 2 * self.n_layer * kv_dim * 4)
    }

    fn cells_of(&self, seq: Option<u32>) -> impl Iterator<Item = (usize, &Cell)> + '_ {
        let mask = seq.map_or(u64::MAX, |s| 1u64 << s);
        self.cells
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.pos >= 0 && c.seqs & mask != 0)
    }

    /// Serialises every used cell (`seq` None) or the cells of one sequence, which are saved
    /// as belonging to that sequence alone.
    pub fn save(&self, seq: Option<u32>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.state_size(seq));
        let cells: Vec<(usize, Cell)> = self.cells_of(seq).map(|(i, c)| (i, *c)).collect();
        out.extend_from_slice(MAGIC);
        for v in [
            VERSION,
            self.n_layer as u32,
            self.kv_dim as u32,
            cells.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (i, cell) in cells {
            let seqs = seq.map_or(cell.seqs, |s| 1u64 << s);
            out.extend_from_slice(&cell.pos.to_le_bytes());
            out.extend_from_slice(&seqs.to_le_bytes());
            for layer in 0..self.n_layer {
                for x in self.key(layer, i).iter().chain(self.value(layer, i)) {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        out
    }

    /// Restores a blob from `save`. With `seq` None the whole cache is replaced; with `Some(dst)`
    /// the saved cells are added as sequence `dst`, whose previous cells are dropped. On error
    /// the cache is unchanged.
    pub fn restore(&mut self, bytes: &[u8], seq: Option<u32>) -> Result<()> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid KV state: {why}"));
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(bad("not a ROCmForge KV state (bad magic or too short)"));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        if u32_at(4) != VERSION {
            return Err(bad(&format!(
                "format version {} (expected {VERSION})",
                u32_at(4)
            )));
        }
        let (n_layer, kv_dim, n_cells) =
            (u32_at(8) as usize, u32_at(12) as usize, u32_at(16) as usize);
        if n_layer != self.n_layer || kv_dim != self.kv_dim {
            return Err(bad(&format!(
                "saved for {n_layer} layers x {kv_dim}, this cache is {} x {}",
                self.n_layer, self.kv_dim
            )));
        }
        let cell_bytes = 12 + 2 * n_layer * kv_dim * 4;
        if (bytes.len() - HEADER) / cell_bytes != n_cells
            || !(bytes.len() - HEADER).is_multiple_of(cell_bytes)
        {
            return Err(bad("length does not match its cell count"));
        }
        if let Some(dst) = seq {
            self.check_seq(dst)?;
        }
        // Which cells will receive the saved ones: every cell for a whole restore, else the
        // free cells plus those only `dst` holds (they are dropped first).
        let mut target = Vec::with_capacity(n_cells);
        for (i, c) in self.cells.iter().enumerate() {
            let usable = match seq {
                None => true,
                Some(dst) => c.pos < 0 || c.seqs == 1u64 << dst,
            };
            if usable {
                target.push(i);
            }
        }
        if target.len() < n_cells {
            return Err(Error::ContextFull(format!(
                "state holds {n_cells} cells, only {} are available",
                target.len()
            )));
        }
        let mut parsed = Vec::with_capacity(n_cells);
        for k in 0..n_cells {
            let o = HEADER + k * cell_bytes;
            let pos = i32::from_le_bytes(bytes[o..o + 4].try_into().map_err(|_| bad("cell"))?);
            let seqs =
                u64::from_le_bytes(bytes[o + 4..o + 12].try_into().map_err(|_| bad("cell"))?);
            let seqs = match seq {
                Some(dst) => 1u64 << dst,
                None => seqs,
            };
            if !(0..=super::MAX_POSITION).contains(&pos)
                || seqs == 0
                || (self.n_seq_max < 64 && seqs >> self.n_seq_max != 0)
            {
                return Err(bad(&format!(
                    "cell {k} has position {pos} / sequences {seqs:#x}"
                )));
            }
            parsed.push((pos, seqs, o + 12));
        }
        match seq {
            None => self.clear(),
            Some(dst) => self.seq_remove(Some(dst), 0, -1),
        }
        for (&cell, &(pos, seqs, data)) in target.iter().zip(&parsed) {
            self.cells[cell] = Cell { pos, seqs };
            let mut o = data;
            for layer in 0..n_layer {
                let base = cell * kv_dim;
                for j in 0..kv_dim {
                    self.keys[layer][base + j] =
                        f32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or_default());
                    o += 4;
                }
                for j in 0..kv_dim {
                    self.values[layer][base + j] =
                        f32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or_default());
                    o += 4;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> KvCache {
        let mut kv = KvCache::new(2, 8, 3, 4).unwrap();
        let cells = kv.allocate(&[(0, 0), (1, 0), (0, 1)]).unwrap();
        for (n, &c) in cells.iter().enumerate() {
            for layer in 0..2 {
                let k = [n as f32, layer as f32, 1.0];
                let v = [-(n as f32), 2.0, layer as f32];
                kv.store(layer, c, &k, &v);
            }
        }
        kv
    }

    #[test]
    fn whole_state_round_trips() {
        let kv = filled();
        let blob = kv.save(None);
        assert_eq!(blob.len(), kv.state_size(None));
        let mut other = KvCache::new(2, 8, 3, 4).unwrap();
        other.restore(&blob, None).unwrap();
        let mut v = Vec::new();
        other.visible_cells(0, 5, &mut v);
        assert_eq!(v.len(), 2);
        assert_eq!(other.key(1, v[1]), &[1.0, 1.0, 1.0]);
        assert_eq!(other.value(0, v[1]), &[-1.0, 2.0, 0.0]);
        assert_eq!(other.seq_pos_max(1), Some(0));
    }

    #[test]
    fn one_sequence_restores_into_another_id() {
        let kv = filled();
        let blob = kv.save(Some(0));
        let mut other = filled();
        other.restore(&blob, Some(3)).unwrap();
        assert_eq!(other.seq_pos_max(3), Some(1));
        assert_eq!(other.used(), 5);
    }

    #[test]
    fn corrupt_or_mismatched_states_are_rejected_and_change_nothing() {
        let kv = filled();
        let blob = kv.save(None);
        let mut other = KvCache::new(2, 8, 3, 4).unwrap();
        assert!(other.restore(&blob[..blob.len() - 1], None).is_err());
        assert!(other.restore(b"nope", None).is_err());
        let mut wrong = KvCache::new(3, 8, 3, 4).unwrap();
        assert!(wrong.restore(&blob, None).is_err());
        let mut small = KvCache::new(2, 2, 3, 4).unwrap();
        assert!(matches!(
            small.restore(&blob, None),
            Err(Error::ContextFull(_))
        ));
        assert_eq!(other.used(), 0);
        // A position past the limit (found by fuzzing: an eval after it overflowed i32).
        for pos in [super::super::MAX_POSITION + 1, i32::MAX, -5] {
            let mut bad = blob.clone();
            bad[HEADER..HEADER + 4].copy_from_slice(&pos.to_le_bytes());
            let e = other.restore(&bad, None).unwrap_err().to_string();
            assert!(e.contains(&format!("position {pos}")), "{e}");
        }
        assert_eq!(other.used(), 0);
    }
}
