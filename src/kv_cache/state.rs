//! Saving and restoring the KV cache (whole, or one sequence) as bytes, in one format for every
//! backend: the cells come from [`Cells`], the keys and values from whichever backend holds
//! them (read and written per cell, so a one-sequence save moves only that sequence's cells).
//!
//! Layout (little-endian): magic "RFKV", format version u32, n_layer u32, kv_dim u32, cache
//! type u32 ([`KvType::id`]), n_cells u32, then per cell: pos i32, sequence mask u64, and for
//! each of the n_layer layers the keys then the values, one row of kv_dim elements each in the
//! cache's type ([`KvType::row_bytes`]: f32, f16 bits, or for q8_0 kv_dim / 32 blocks of an
//! f16 scale and 32 i8). Versions 3 and 4 follow with the ring of the sliding-window layers
//! ([`Cells::ring`]): n_ring_layer u32, n_ring_cells u32 and the ring's cells in the same
//! layout with n_ring_layer layers (0 and 0 for a model without a ring; with one, n_layer
//! counts the global layers only). A restored blob must match the cache's layer counts,
//! kv_dim and type: a state saved with another cache type is refused rather than converted,
//! so a restore always gives back the very values that were saved (the bits too: a q8_0 row
//! quantized again from its widened values is the same row, see [`KvType::encode_row`]).
//! Version 4 added the q8_0 type, whose rows are block-sized rather than element-sized; f32
//! and f16 states are laid out as in version 3, which still restores, as version 2 (no ring
//! part) does into a cache without a ring; version 1, before the cache type was recorded,
//! held f32s and is refused.

use super::{Cell, Cells, KvType, MAX_POSITION};
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"RFKV";
const VERSION: u32 = 4;
/// The last version without q8_0 rows (otherwise the same layout).
const VERSION_NO_Q8: u32 = 3;
/// The last version without the ring part.
const VERSION_NO_RING: u32 = 2;
const HEADER: usize = 24;
/// n_ring_layer and n_ring_cells.
const RING_HEADER: usize = 8;

/// The geometry of a cache's keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Layers whose keys and values live in the full table.
    pub n_layer: usize,
    /// Layers whose keys and values live in the ring (0 without one).
    pub n_ring_layer: usize,
    pub kv_dim: usize,
    pub kv_type: KvType,
}

impl Geometry {
    /// Elements of one cell of the full table: every layer's keys then values.
    pub fn floats_per_cell(&self) -> usize {
        self.n_layer * 2 * self.kv_dim
    }

    /// Elements of one ring cell.
    pub fn floats_per_ring_cell(&self) -> usize {
        self.n_ring_layer * 2 * self.kv_dim
    }

    /// Bytes of one stored row of kv_dim elements. A q8_0 cache of a kv_dim that is not whole
    /// blocks is never created (context creation refuses it); counted as if rounded up.
    fn row_bytes(&self) -> usize {
        self.kv_type
            .row_bytes(self.kv_dim)
            .unwrap_or(self.kv_dim.div_ceil(32) * 34)
    }

    fn cell_bytes(&self, layers: usize) -> usize {
        12 + layers * 2 * self.row_bytes()
    }

    /// Bytes a save of `n_cells` cells of the full table and `n_ring_cells` of the ring takes.
    pub fn state_size(&self, n_cells: usize, n_ring_cells: usize) -> usize {
        HEADER
            + n_cells * self.cell_bytes(self.n_layer)
            + RING_HEADER
            + n_ring_cells * self.cell_bytes(self.n_ring_layer)
    }
}

/// One table's part of a save: which cells, and their keys and values in the per-cell layout
/// (cells, layers, keys | values, kv_dim).
#[derive(Clone, Copy)]
pub struct Part<'a> {
    pub cells: &'a [usize],
    pub data: &'a [f32],
}

/// Serialises `cells` (from [`Cells::of_seq`]) with their keys and values `data` in the
/// per-cell layout (cells, n_layer, keys | values, kv_dim), for a cache without a ring. With
/// `seq` Some, every cell is saved as belonging to that sequence alone.
pub fn save(
    table: &Cells,
    cells: &[usize],
    seq: Option<u32>,
    g: Geometry,
    data: &[f32],
) -> Vec<u8> {
    let empty = Part {
        cells: &[],
        data: &[],
    };
    save_with_ring(table, seq, g, Part { cells, data }, empty)
}

/// [`save`] of the full table's `global` cells and the ring's `ring` cells.
pub fn save_with_ring(
    table: &Cells,
    seq: Option<u32>,
    g: Geometry,
    global: Part,
    ring: Part,
) -> Vec<u8> {
    debug_assert_eq!(global.data.len(), global.cells.len() * g.floats_per_cell());
    debug_assert_eq!(ring.data.len(), ring.cells.len() * g.floats_per_ring_cell());
    let mut out = Vec::with_capacity(g.state_size(global.cells.len(), ring.cells.len()));
    out.extend_from_slice(MAGIC);
    for v in [
        VERSION,
        g.n_layer as u32,
        g.kv_dim as u32,
        g.kv_type.id(),
        global.cells.len() as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    write_cells(&mut out, table, seq, g, global, g.floats_per_cell());
    out.extend_from_slice(&(g.n_ring_layer as u32).to_le_bytes());
    out.extend_from_slice(&(ring.cells.len() as u32).to_le_bytes());
    if let Some(r) = table.ring() {
        write_cells(&mut out, r, seq, g, ring, g.floats_per_ring_cell());
    }
    out
}

fn write_cells(
    out: &mut Vec<u8>,
    table: &Cells,
    seq: Option<u32>,
    g: Geometry,
    part: Part,
    per_cell: usize,
) {
    for (k, &c) in part.cells.iter().enumerate() {
        let (pos, seqs) = table.cell(c);
        let seqs = seq.map_or(seqs, |s| 1u64 << s);
        out.extend_from_slice(&pos.to_le_bytes());
        out.extend_from_slice(&seqs.to_le_bytes());
        let floats = &part.data[k * per_cell..(k + 1) * per_cell];
        // The values were read from a cache of this type, so narrowing them is exact.
        let row_bytes = g.row_bytes();
        for row in floats.chunks_exact(g.kv_dim.max(1)) {
            let at = out.len();
            out.resize(at + row_bytes, 0);
            g.kv_type.encode_row(row, &mut out[at..]);
        }
    }
}

/// A checked restore, not yet applied: which cells receive which saved cells, and their keys and
/// values in the per-cell layout; `ring`, the same for the ring.
pub struct Restore {
    pub targets: Vec<usize>,
    saved: Vec<Cell>,
    pub data: Vec<f32>,
    seq: Option<u32>,
    pub ring: Option<Box<Restore>>,
}

/// Parses `bytes` and checks them against this table and geometry. With `seq` None the whole
/// cache is to be replaced; with `Some(dst)` the saved cells become sequence `dst`, whose
/// previous cells are dropped. Nothing changes here: apply with [`Cells::apply_restore`] once
/// the keys and values were written into `targets` (and the ring's).
pub fn plan_restore(table: &Cells, bytes: &[u8], seq: Option<u32>, g: Geometry) -> Result<Restore> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid KV state: {why}"));
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(bad("not a ROCmForge KV state (bad magic or too short)"));
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let version = u32_at(4);
    let known = version == VERSION
        || version == VERSION_NO_Q8
        || (version == VERSION_NO_RING && g.n_ring_layer == 0);
    if !known {
        return Err(bad(&format!(
            "format version {version} (expected {VERSION} or {VERSION_NO_Q8}{})",
            if g.n_ring_layer == 0 {
                " or 2"
            } else {
                "; 2 has no ring part and this model keeps a sliding-window ring"
            }
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
    if version < VERSION && saved_type == KvType::Q8_0.id() {
        return Err(bad(&format!(
            "format version {version} cannot hold a q8_0 cache (version {VERSION} added it)"
        )));
    }
    if saved_type != g.kv_type.id() {
        let name = KvType::from_id(saved_type)
            .map_or(format!("unknown ({saved_type})"), |t| t.name().to_string());
        return Err(bad(&format!(
            "saved from a KV cache of type {name}, this context's cache is {} (create the \
             context with the cache type the state was saved with)",
            g.kv_type
        )));
    }
    if let Some(dst) = seq {
        table.check_seq(dst)?;
    }
    let global_end = (n_cells as u64)
        .checked_mul(g.cell_bytes(g.n_layer) as u64)
        .and_then(|b| usize::try_from(b).ok())
        .and_then(|b| b.checked_add(HEADER))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| bad("length does not match its cell count"))?;
    let mut plan = plan_part(
        table,
        &bytes[HEADER..global_end],
        n_cells,
        g.n_layer,
        seq,
        g,
    )?;
    let rest = &bytes[global_end..];
    if version == VERSION_NO_RING {
        if !rest.is_empty() {
            return Err(bad("length does not match its cell count"));
        }
        return Ok(plan);
    }
    if rest.len() < RING_HEADER {
        return Err(bad("truncated before its ring part"));
    }
    let ring_u32 = |o: usize| u32::from_le_bytes([rest[o], rest[o + 1], rest[o + 2], rest[o + 3]]);
    let (n_ring_layer, n_ring_cells) = (ring_u32(0) as usize, ring_u32(4) as usize);
    if n_ring_layer != g.n_ring_layer {
        return Err(bad(&format!(
            "saved with {n_ring_layer} sliding-window layers in a ring, this cache keeps {}",
            g.n_ring_layer
        )));
    }
    let ring_bytes = &rest[RING_HEADER..];
    let ring_cell_bytes = g.cell_bytes(g.n_ring_layer) as u64;
    if ring_bytes.len() as u64 != n_ring_cells as u64 * ring_cell_bytes {
        return Err(bad("length does not match its ring's cell count"));
    }
    match table.ring() {
        Some(ring) => {
            let r = plan_part(ring, ring_bytes, n_ring_cells, g.n_ring_layer, seq, g)?;
            plan.ring = Some(Box::new(r));
        }
        None if n_ring_cells == 0 => {}
        None => return Err(bad("ring cells for a cache without a ring")),
    }
    Ok(plan)
}

/// The restore of one table's section: `n_cells` cells of `layers` layers in `bytes`.
fn plan_part(
    table: &Cells,
    bytes: &[u8],
    n_cells: usize,
    layers: usize,
    seq: Option<u32>,
    g: Geometry,
) -> Result<Restore> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid KV state: {why}"));
    let cell_bytes = g.cell_bytes(layers);
    debug_assert_eq!(bytes.len(), n_cells * cell_bytes);
    let mut saved = Vec::with_capacity(n_cells);
    let mut data = Vec::with_capacity(n_cells * layers * 2 * g.kv_dim);
    for k in 0..n_cells {
        let o = k * cell_bytes;
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
        let rows = &bytes[o + 12..o + cell_bytes];
        for row in rows.chunks_exact(g.row_bytes().max(1)) {
            let at = data.len();
            data.resize(at + g.kv_dim, 0.0);
            g.kv_type.decode_row(row, &mut data[at..]);
        }
    }
    let targets = match table.seq_stride {
        Some(stride) => region_targets(table, &saved, seq, stride)?,
        None if table.window.is_some() && ring_targets(table, &saved, seq).is_some() => {
            ring_targets(table, &saved, seq).unwrap_or_default()
        }
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
                    "state holds {n_cells} cells, only {} are available{}",
                    targets.len(),
                    if table.window.is_some() {
                        " in the sliding-window ring"
                    } else {
                        ""
                    }
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
        ring: None,
    })
}

/// In a ring without regions, each cell where [`Cells::allocate`] would have put it (position
/// `p` at cell `p % n_cells`), so a restored lone sequence continues with the bits it had;
/// None when two cells want one place or a place is held by another sequence.
fn ring_targets(table: &Cells, saved: &[Cell], seq: Option<u32>) -> Option<Vec<usize>> {
    let n = table.cells.len();
    let mut taken = std::collections::HashSet::new();
    (saved.iter())
        .map(|c| {
            let cell = c.pos as usize % n;
            let held = table.cells[cell];
            let usable = match seq {
                None => true,
                Some(dst) => held.pos < 0 || held.seqs == 1u64 << dst,
            };
            (usable && taken.insert(cell)).then_some(cell)
        })
        .collect()
}

/// With sequence regions ([`Cells::set_seq_regions`]) a restored cell goes where its sequence
/// would have computed it: position `p` of sequence `s` to cell `s * stride + p` (in a ring,
/// `p % stride`), so the restored sequence continues with the bits it had (attention sums by
/// cell chunks). A cell shared by several sequences has no such place and is refused, as is a
/// position past the region or (into `dst`) a cell another sequence holds.
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
        let s = c.seqs.trailing_zeros();
        let cell = table.region_cell(stride, c.pos, s);
        let Some(cell) = cell.filter(|&cell| taken.insert(cell)) else {
            return Err(Error::ContextFull(format!(
                "position {} of sequence {s} does not fit its region of {stride} cells",
                c.pos
            )));
        };
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
        self.apply_part(plan);
    }

    fn apply_part(&mut self, plan: &Restore) {
        for (&cell, &saved) in plan.targets.iter().zip(&plan.saved) {
            self.cells[cell] = saved;
        }
        if let (Some(ring), Some(rp)) = (&mut self.ring, &plan.ring) {
            ring.apply_part(rp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::HostKv;

    const G: Geometry = Geometry {
        n_layer: 2,
        n_ring_layer: 0,
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

    /// The geometry of `kv`.
    fn geometry_of(kv: &HostKv) -> Geometry {
        Geometry {
            n_layer: kv.n_layer() - kv.n_ring_layer(),
            n_ring_layer: kv.n_ring_layer(),
            kv_dim: kv.kv_dim(),
            kv_type: kv.kv_type(),
        }
    }

    fn save_of(cells: &Cells, kv: &HostKv, seq: Option<u32>) -> Vec<u8> {
        let which = cells.of_seq(seq);
        let ring = cells.ring().map_or(Vec::new(), |r| r.of_seq(seq));
        let (data, ring_data) = (kv.read_cells(&which, false), kv.read_cells(&ring, true));
        let part = |cells, data| Part { cells, data };
        let (global, ring) = (part(&which, &data), part(&ring, &ring_data));
        save_with_ring(cells, seq, geometry_of(kv), global, ring)
    }

    fn restore(cells: &mut Cells, kv: &mut HostKv, blob: &[u8], seq: Option<u32>) -> Result<()> {
        let plan = plan_restore(cells, blob, seq, geometry_of(kv))?;
        kv.write_cells(&plan.targets, &plan.data, false);
        if let Some(r) = &plan.ring {
            kv.write_cells(&r.targets, &r.data, true);
        }
        cells.apply_restore(&plan);
        Ok(())
    }

    #[test]
    fn a_ring_round_trips_apart_from_the_global_layers() {
        // Layer 0 global (16 cells), layer 1 in a ring of 4 cells keeping windows of 2.
        let fresh = || {
            let cells = Cells::with_ring(16, 2, 4, 2).unwrap();
            let kv = HostKv::with_ring(&[false, true], 16, 4, 3, 1, KvType::F16).unwrap();
            (cells, kv)
        };
        let (mut cells, mut kv) = fresh();
        let tokens = [(0, 0), (1, 0), (2, 0), (0, 1)];
        let global = cells.allocate(&tokens).unwrap();
        let ring = cells.ring.as_mut().unwrap().allocate(&tokens).unwrap();
        for (n, (&g, &r)) in global.iter().zip(&ring).enumerate() {
            kv.store(0, g, &[n as f32; 3], &[0.5; 3]);
            kv.store(1, r, &[-(n as f32); 3], &[0.25; 3]);
        }
        cells.finish_step();
        assert_eq!(
            cells.ring().unwrap().used(),
            3,
            "position 0 of sequence 0 left"
        );
        let blob = save_of(&cells, &kv, None);
        let g = geometry_of(&kv);
        assert_eq!(blob.len(), g.state_size(4, 3));
        let (mut other, mut okv) = fresh();
        restore(&mut other, &mut okv, &blob, None).unwrap();
        // Two sequences wanted ring cell 0 (position 0 of each), so the cells may lie in
        // another order: compare what each holds.
        let contents = |cells: &Cells, kv: &HostKv| {
            let ring = cells.ring().unwrap();
            let mut v: Vec<(i32, u64, Vec<f32>)> = (ring.of_seq(None).into_iter())
                .map(|c| (ring.cell(c).0, ring.cell(c).1, kv.read_cells(&[c], true)))
                .collect();
            v.sort_by_key(|a| (a.0, a.1));
            v
        };
        assert_eq!(contents(&other, &okv), contents(&cells, &kv));
        assert_eq!(other.attendable_from(0), Some(1));
        // One sequence into another id, in both tables.
        let one = save_of(&cells, &kv, Some(0));
        restore(&mut other, &mut okv, &one, Some(1)).unwrap();
        assert_eq!(other.ring().unwrap().seq_pos_max(1), Some(2));
        assert_eq!(other.seq_pos_min(1), Some(0));
        // A cache without a ring (or with another) refuses it, and a ring refuses version 2.
        let e = plan_restore(
            &Cells::new(16, 2).unwrap(),
            &blob,
            None,
            Geometry {
                n_ring_layer: 0,
                ..g
            },
        );
        assert!(e.is_err());
        let mut v2 = blob.clone();
        v2[4..8].copy_from_slice(&2u32.to_le_bytes());
        let e = plan_restore(&other, &v2, None, g)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sliding-window ring"), "{e}");
    }

    #[test]
    fn a_version_2_state_restores_into_a_cache_without_a_ring() {
        let (cells, kv) = filled();
        let blob = save_of(&cells, &kv, None);
        // Version 2 was version 3 without the ring part.
        let mut v2 = blob[..blob.len() - RING_HEADER].to_vec();
        v2[4..8].copy_from_slice(&2u32.to_le_bytes());
        let (mut other, mut okv) = (
            Cells::new(8, 4).unwrap(),
            HostKv::new(2, 8, 3, KvType::F32).unwrap(),
        );
        restore(&mut other, &mut okv, &v2, None).unwrap();
        assert_eq!(save_of(&other, &okv, None), blob);
        // Version 3 without its ring part is truncated.
        assert!(plan_restore(&other, &blob[..blob.len() - 1], None, G).is_err());
    }

    #[test]
    fn whole_state_round_trips_with_each_element_cache_type() {
        for kv_type in [KvType::F32, KvType::F16] {
            let (cells, kv) = filled_with(kv_type);
            let blob = save_of(&cells, &kv, None);
            assert_eq!(blob.len(), geometry(kv_type).state_size(3, 0));
            let row = kv_type.row_bytes(3).unwrap();
            assert_eq!(blob.len(), HEADER + 3 * (12 + 4 * row) + RING_HEADER);
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

    /// A q8_0 cache (rows of whole blocks: kv_dim 64) saves its blocks, 34 bytes per 32
    /// elements, and a restore gives back the same bytes and values; a version 3 blob (the
    /// layout before q8_0) cannot claim the type, while an f16 one still restores.
    #[test]
    fn a_q8_0_state_holds_its_blocks_and_round_trips() {
        let g = Geometry {
            kv_dim: 64,
            kv_type: KvType::Q8_0,
            ..G
        };
        let fresh = || {
            (
                Cells::new(8, 2).unwrap(),
                HostKv::new(2, 8, 64, KvType::Q8_0).unwrap(),
            )
        };
        let (mut cells, mut kv) = fresh();
        let placed = cells.allocate(&[(0, 0), (1, 0), (0, 1)]).unwrap();
        for (n, &c) in placed.iter().enumerate() {
            for layer in 0..2 {
                let k: Vec<f32> = (0..64)
                    .map(|i| (i as f32 - 20.0) * 0.37 + n as f32)
                    .collect();
                let v: Vec<f32> = (0..64)
                    .map(|i| ((i * 7 + layer) % 13) as f32 * 1e-3)
                    .collect();
                kv.store(layer, c, &k, &v);
            }
        }
        let blob = save_of(&cells, &kv, None);
        assert_eq!(blob.len(), HEADER + 3 * (12 + 4 * 2 * 34) + RING_HEADER);
        assert_eq!(blob.len(), g.state_size(3, 0));
        assert_eq!(&blob[4..8], &4u32.to_le_bytes());
        // The first cell's first row: layer 0's keys as the cache quantized them.
        let mut row = vec![0u8; 2 * 34];
        KvType::Q8_0.encode_row(&kv.key(0, cells.of_seq(None)[0]), &mut row);
        assert_eq!(&blob[HEADER + 12..][..68], &row[..]);
        let (mut other, mut okv) = fresh();
        restore(&mut other, &mut okv, &blob, None).unwrap();
        for &c in &placed {
            for layer in 0..2 {
                assert_eq!(okv.key(layer, c), kv.key(layer, c));
                assert_eq!(okv.value(layer, c), kv.value(layer, c));
            }
        }
        assert_eq!(save_of(&other, &okv, None), blob);
        let mut v3 = blob.clone();
        v3[4..8].copy_from_slice(&3u32.to_le_bytes());
        let e = plan_restore(&other, &v3, None, g)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("version 3") && e.contains("q8_0"), "{e}");
        // Into an f16 cache: refused by type, naming both.
        let e = plan_restore(
            &other,
            &blob,
            None,
            Geometry {
                kv_type: KvType::F16,
                ..g
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("type q8_0") && e.contains("is f16"), "{e}");
        let (f16_cells, f16_kv) = filled_with(KvType::F16);
        let mut f16_v3 = save_of(&f16_cells, &f16_kv, None);
        f16_v3[4..8].copy_from_slice(&3u32.to_le_bytes());
        plan_restore(
            &Cells::new(8, 4).unwrap(),
            &f16_v3,
            None,
            geometry(KvType::F16),
        )
        .unwrap();
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
