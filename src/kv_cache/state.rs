//! Saving and restoring the KV cache (whole, or one sequence) as bytes, in one format for every
//! backend: the cells come from [`Cells`], the keys and values from whichever backend holds
//! them (read and written per cell, so a one-sequence save moves only that sequence's cells).
//!
//! Layout (little-endian): magic "RFKV", format version u32, n_layer u32, kv_dim u32, cache
//! type u32 ([`KvType::id`]), n_cells u32, then per cell: pos i32, sequence mask u64, and for
//! each layer the keys then the values, kv_dim elements each in the cache's type (f32, or f16
//! bits). A restored blob must match the cache's n_layer, kv_dim and type: a state saved with
//! another cache type is refused rather than converted, so a restore always gives back the
//! very bits that were saved (version 1, before the cache type was recorded, held f32s).

use super::{Cell, Cells, KvType, MAX_POSITION};
use crate::{Error, Result};
use half::f16;

const MAGIC: &[u8; 4] = b"RFKV";
const VERSION: u32 = 2;
const HEADER: usize = 24;

/// The geometry of a cache's keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub n_layer: usize,
    pub kv_dim: usize,
    pub kv_type: KvType,
}

impl Geometry {
    /// Elements of one cell: every layer's keys then values.
    pub fn floats_per_cell(&self) -> usize {
        self.n_layer * 2 * self.kv_dim
    }

    fn cell_bytes(&self) -> usize {
        12 + self.floats_per_cell() * self.kv_type.elem_bytes()
    }

    /// Bytes a save of `n_cells` cells takes.
    pub fn state_size(&self, n_cells: usize) -> usize {
        HEADER + n_cells * self.cell_bytes()
    }
}

/// Serialises `cells` (from [`Cells::of_seq`]) with their keys and values `data` in the
/// per-cell layout (cells, n_layer, keys | values, kv_dim). With `seq` Some, every cell is saved
/// as belonging to that sequence alone.
pub fn save(
    table: &Cells,
    cells: &[usize],
    seq: Option<u32>,
    g: Geometry,
    data: &[f32],
) -> Vec<u8> {
    debug_assert_eq!(data.len(), cells.len() * g.floats_per_cell());
    let mut out = Vec::with_capacity(g.state_size(cells.len()));
    out.extend_from_slice(MAGIC);
    for v in [
        VERSION,
        g.n_layer as u32,
        g.kv_dim as u32,
        g.kv_type.id(),
        cells.len() as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (&c, floats) in cells
        .iter()
        .zip(data.chunks_exact(g.floats_per_cell().max(1)))
    {
        let (pos, seqs) = table.cell(c);
        let seqs = seq.map_or(seqs, |s| 1u64 << s);
        out.extend_from_slice(&pos.to_le_bytes());
        out.extend_from_slice(&seqs.to_le_bytes());
        // The values were read from a cache of this type, so narrowing them is exact.
        match g.kv_type {
            KvType::F32 => floats
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            KvType::F16 => floats
                .iter()
                .for_each(|&x| out.extend_from_slice(&f16::from_f32(x).to_le_bytes())),
        }
    }
    out
}

/// A checked restore, not yet applied: which cells receive which saved cells, and their keys and
/// values in the per-cell layout.
pub struct Restore {
    pub targets: Vec<usize>,
    saved: Vec<Cell>,
    pub data: Vec<f32>,
    seq: Option<u32>,
}

/// Parses `bytes` and checks them against this table and geometry. With `seq` None the whole
/// cache is to be replaced; with `Some(dst)` the saved cells become sequence `dst`, whose
/// previous cells are dropped. Nothing changes here: apply with [`Cells::apply_restore`] once
/// the keys and values were written into `targets`.
pub fn plan_restore(table: &Cells, bytes: &[u8], seq: Option<u32>, g: Geometry) -> Result<Restore> {
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
    let (n_layer, kv_dim, n_cells) = (u32_at(8) as usize, u32_at(12) as usize, u32_at(20) as usize);
    if n_layer != g.n_layer || kv_dim != g.kv_dim {
        return Err(bad(&format!(
            "saved for {n_layer} layers x {kv_dim}, this cache is {} x {}",
            g.n_layer, g.kv_dim
        )));
    }
    let saved_type = u32_at(16);
    if saved_type != g.kv_type.id() {
        let name = KvType::from_id(saved_type)
            .map_or(format!("unknown ({saved_type})"), |t| t.name().to_string());
        return Err(bad(&format!(
            "saved from a KV cache of type {name}, this context's cache is {} (create the \
             context with the cache type the state was saved with)",
            g.kv_type
        )));
    }
    let cell_bytes = g.cell_bytes();
    if (bytes.len() - HEADER) / cell_bytes != n_cells
        || !(bytes.len() - HEADER).is_multiple_of(cell_bytes)
    {
        return Err(bad("length does not match its cell count"));
    }
    if let Some(dst) = seq {
        table.check_seq(dst)?;
    }
    let mut saved = Vec::with_capacity(n_cells);
    let mut data = Vec::with_capacity(n_cells * g.floats_per_cell());
    for k in 0..n_cells {
        let o = HEADER + k * cell_bytes;
        let pos = i32::from_le_bytes(bytes[o..o + 4].try_into().map_err(|_| bad("cell"))?);
        let seqs = u64::from_le_bytes(bytes[o + 4..o + 12].try_into().map_err(|_| bad("cell"))?);
        let seqs = seq.map_or(seqs, |dst| 1u64 << dst);
        let n_seq_max = table.n_seq_max;
        if !(0..=MAX_POSITION).contains(&pos)
            || seqs == 0
            || (n_seq_max < 64 && seqs >> n_seq_max != 0)
        {
            return Err(bad(&format!(
                "cell {k} has position {pos} / sequences {seqs:#x}"
            )));
        }
        saved.push(Cell { pos, seqs });
        let elems = &bytes[o + 12..o + cell_bytes];
        match g.kv_type {
            KvType::F32 => data.extend(
                elems
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            KvType::F16 => data.extend(
                elems
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
    }
    let targets = match table.seq_stride {
        Some(stride) => region_targets(table, &saved, seq, stride)?,
        None => {
            // Every cell for a whole restore, else the free cells plus those only `dst` holds
            // (they are dropped first).
            let targets: Vec<usize> = (table.cells.iter().enumerate())
                .filter(|(_, c)| match seq {
                    None => true,
                    Some(dst) => c.pos < 0 || c.seqs == 1u64 << dst,
                })
                .map(|(i, _)| i)
                .take(n_cells)
                .collect();
            if targets.len() < n_cells {
                return Err(Error::ContextFull(format!(
                    "state holds {n_cells} cells, only {} are available",
                    targets.len()
                )));
            }
            targets
        }
    };
    Ok(Restore {
        targets,
        saved,
        data,
        seq,
    })
}

/// With sequence regions ([`Cells::set_seq_regions`]) a restored cell goes where its sequence
/// would have computed it: position `p` of sequence `s` to cell `s * stride + p`, so the
/// restored sequence continues with the bits it had (attention sums by cell chunks). A cell
/// shared by several sequences has no such place and is refused, as is a position past the
/// region or (into `dst`) a cell another sequence holds.
fn region_targets(
    table: &Cells,
    saved: &[Cell],
    seq: Option<u32>,
    stride: usize,
) -> Result<Vec<usize>> {
    let mut targets = Vec::with_capacity(saved.len());
    let mut taken = std::collections::HashSet::new();
    for c in saved {
        if c.seqs.count_ones() != 1 {
            return Err(Error::InvalidArgument(format!(
                "invalid KV state for sequence regions: a cell of sequences {:#x} (shared cells \
                 have no region)",
                c.seqs
            )));
        }
        let s = c.seqs.trailing_zeros() as usize;
        let cell = s * stride + c.pos as usize;
        if c.pos as usize >= stride || !taken.insert(cell) {
            return Err(Error::ContextFull(format!(
                "position {} of sequence {s} does not fit its region of {stride} cells",
                c.pos
            )));
        }
        if let Some(dst) = seq {
            let held = table.cells[cell];
            if held.pos >= 0 && held.seqs != 1u64 << dst {
                return Err(Error::ContextFull(format!(
                    "cell {cell} of sequence {dst}'s region is held by sequences {:#x}",
                    held.seqs
                )));
            }
        }
        targets.push(cell);
    }
    Ok(targets)
}

impl Cells {
    /// The bookkeeping half of a restore planned by [`plan_restore`] on this table.
    pub fn apply_restore(&mut self, plan: &Restore) {
        match plan.seq {
            None => self.clear(),
            Some(dst) => self.seq_remove(Some(dst), 0, -1),
        }
        for (&cell, &saved) in plan.targets.iter().zip(&plan.saved) {
            self.cells[cell] = saved;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::HostKv;

    const G: Geometry = Geometry {
        n_layer: 2,
        kv_dim: 3,
        kv_type: KvType::F32,
    };

    fn geometry(kv_type: KvType) -> Geometry {
        Geometry { kv_type, ..G }
    }

    fn filled_with(kv_type: KvType) -> (Cells, HostKv) {
        let mut cells = Cells::new(8, 4).unwrap();
        let mut kv = HostKv::new(2, 8, 3, kv_type).unwrap();
        let placed = cells.allocate(&[(0, 0), (1, 0), (0, 1)]).unwrap();
        for (n, &c) in placed.iter().enumerate() {
            for layer in 0..2 {
                // 0.1 is not an f16: the saved bits show which type was stored.
                let k = [n as f32, layer as f32, 1.0 + 0.1 * n as f32];
                let v = [-(n as f32), 2.0, layer as f32];
                kv.store(layer, c, &k, &v);
            }
        }
        (cells, kv)
    }

    fn filled() -> (Cells, HostKv) {
        filled_with(KvType::F32)
    }

    fn save_of(cells: &Cells, kv: &HostKv, seq: Option<u32>) -> Vec<u8> {
        let which = cells.of_seq(seq);
        let g = geometry(kv.kv_type());
        save(cells, &which, seq, g, &kv.read_cells(&which))
    }

    fn restore(cells: &mut Cells, kv: &mut HostKv, blob: &[u8], seq: Option<u32>) -> Result<()> {
        let plan = plan_restore(cells, blob, seq, geometry(kv.kv_type()))?;
        kv.write_cells(&plan.targets, &plan.data);
        cells.apply_restore(&plan);
        Ok(())
    }

    #[test]
    fn whole_state_round_trips_with_each_cache_type() {
        for kv_type in KvType::ALL {
            let (cells, kv) = filled_with(kv_type);
            let blob = save_of(&cells, &kv, None);
            assert_eq!(blob.len(), geometry(kv_type).state_size(3));
            assert_eq!(blob.len(), HEADER + 3 * (12 + 12 * kv_type.elem_bytes()));
            let (mut other, mut okv) = (
                Cells::new(8, 4).unwrap(),
                HostKv::new(2, 8, 3, kv_type).unwrap(),
            );
            restore(&mut other, &mut okv, &blob, None).unwrap();
            let mut v = Vec::new();
            other.visible_cells(0, 5, &mut v);
            assert_eq!(v.len(), 2);
            assert_eq!(okv.key(1, v[1]), kv.key(1, v[1]));
            assert_eq!(okv.key(1, v[1])[..2], [1.0, 1.0]);
            assert_eq!(okv.value(0, v[1]), vec![-1.0, 2.0, 0.0]);
            assert_eq!(other.seq_pos_max(1), Some(0));
            // Every cached bit came back: a second save is the same blob.
            assert_eq!(save_of(&other, &okv, None), blob, "{kv_type}");
        }
        let (_, f32_kv) = filled_with(KvType::F32);
        let (_, f16_kv) = filled_with(KvType::F16);
        assert_ne!(
            f32_kv.key(0, 1)[2],
            f16_kv.key(0, 1)[2],
            "1.1 rounds in f16"
        );
    }

    #[test]
    fn with_sequence_regions_a_restored_cell_goes_to_its_region() {
        let regions = || {
            let mut cells = Cells::new(12, 3).unwrap();
            cells.set_seq_regions(Some(4)).unwrap();
            (cells, HostKv::new(2, 12, 3, KvType::F32).unwrap())
        };
        let (mut cells, mut kv) = regions();
        let placed = cells.allocate(&[(0, 1), (1, 1), (0, 2)]).unwrap();
        assert_eq!(placed, [4, 5, 8]);
        for (n, &c) in placed.iter().enumerate() {
            kv.store(0, c, &[n as f32; 3], &[1.0; 3]);
        }
        // Sequence 1 into sequence 0: its region's cells 0 and 1.
        let blob = save_of(&cells, &kv, Some(1));
        let plan = plan_restore(&cells, &blob, Some(0), G).unwrap();
        assert_eq!(plan.targets, [0, 1]);
        restore(&mut cells, &mut kv, &blob, Some(0)).unwrap();
        assert_eq!(kv.key(0, 1), kv.key(0, 5));
        // The whole cache into a fresh context keeps every cell in its region.
        let whole = save_of(&cells, &kv, None);
        let (mut other, mut okv) = regions();
        restore(&mut other, &mut okv, &whole, None).unwrap();
        assert_eq!(other.of_seq(None), [0, 1, 4, 5, 8]);
        assert_eq!(save_of(&other, &okv, None), whole);
        // A position past the region does not fit.
        let (mut wide, wkv) = (
            Cells::new(12, 3).unwrap(),
            HostKv::new(2, 12, 3, KvType::F32).unwrap(),
        );
        wide.allocate(&[(0, 0), (5, 0)]).unwrap();
        let long = save_of(&wide, &wkv, Some(0));
        let e = plan_restore(&other, &long, Some(2), G).err().unwrap();
        assert!(matches!(e, Error::ContextFull(_)), "{e}");
        // A cell shared by two sequences has no region.
        wide.seq_copy(0, 1, 0, 1);
        let shared = save_of(&wide, &wkv, None);
        let e = plan_restore(&regions().0, &shared, None, G).err().unwrap();
        assert!(e.to_string().contains("shared cells"), "{e}");
    }

    #[test]
    fn a_state_of_another_cache_type_is_refused() {
        let (cells, kv) = filled_with(KvType::F16);
        let blob = save_of(&cells, &kv, None);
        let other = Cells::new(8, 4).unwrap();
        let e = plan_restore(&other, &blob, None, geometry(KvType::F32))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("type f16") && e.contains("is f32"), "{e}");
        let mut old = blob.clone();
        old[4..8].copy_from_slice(&1u32.to_le_bytes());
        let e = plan_restore(&other, &old, None, geometry(KvType::F16))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("version 1"), "{e}");
    }

    #[test]
    fn one_sequence_restores_into_another_id() {
        let (cells, kv) = filled();
        let blob = save_of(&cells, &kv, Some(0));
        let (mut other, mut okv) = filled();
        restore(&mut other, &mut okv, &blob, Some(3)).unwrap();
        assert_eq!(other.seq_pos_max(3), Some(1));
        assert_eq!(other.used(), 5);
    }

    #[test]
    fn corrupt_or_mismatched_states_are_rejected_and_change_nothing() {
        let (cells, kv) = filled();
        let blob = save_of(&cells, &kv, None);
        let other = Cells::new(8, 4).unwrap();
        assert!(plan_restore(&other, &blob[..blob.len() - 1], None, G).is_err());
        assert!(plan_restore(&other, b"nope", None, G).is_err());
        let wrong = Geometry { n_layer: 3, ..G };
        assert!(plan_restore(&other, &blob, None, wrong).is_err());
        let small = Cells::new(2, 4).unwrap();
        assert!(matches!(
            plan_restore(&small, &blob, None, G),
            Err(Error::ContextFull(_))
        ));
        // A position past the limit (found by fuzzing: an eval after it overflowed i32).
        for pos in [MAX_POSITION + 1, i32::MAX, -5] {
            let mut bad = blob.clone();
            bad[HEADER..HEADER + 4].copy_from_slice(&pos.to_le_bytes());
            let e = plan_restore(&other, &bad, None, G)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(&format!("position {pos}")), "{e}");
        }
        assert_eq!(other.used(), 0);
    }
}
