//! The CPU backend's keys and values: per layer, one (n_ctx, kv_dim) f32 array each, indexed
//! by the cells of [`super::Cells`].

use crate::{Error, Result};

pub struct HostKv {
    n_layer: usize,
    n_ctx: usize,
    /// Width of one token's keys (or values) in a layer: n_head_kv * head_dim.
    kv_dim: usize,
    /// Per layer: (n_ctx, kv_dim).
    keys: Vec<Vec<f32>>,
    /// Per layer: (n_ctx, kv_dim).
    values: Vec<Vec<f32>>,
}

impl HostKv {
    /// Zeroed storage, allocated lazily by the system (see `zeroed_f32`), fallibly.
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize) -> Result<HostKv> {
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
        Ok(HostKv {
            n_layer,
            n_ctx,
            kv_dim,
            keys: alloc("keys")?,
            values: alloc("values")?,
        })
    }

    /// Bytes a cache of this shape needs (for memory estimates before allocating).
    pub fn bytes_needed(n_layer: usize, n_ctx: usize, kv_dim: usize) -> u64 {
        2 * n_layer as u64 * n_ctx as u64 * kv_dim as u64 * std::mem::size_of::<f32>() as u64
    }

    pub fn n_layer(&self) -> usize {
        self.n_layer
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
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

    /// Keys and values of `cells` in the state layout: (cells, n_layer, keys | values, kv_dim).
    pub fn read_cells(&self, cells: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(cells.len() * self.n_layer * 2 * self.kv_dim);
        for &c in cells {
            for layer in 0..self.n_layer {
                out.extend_from_slice(self.key(layer, c));
                out.extend_from_slice(self.value(layer, c));
            }
        }
        out
    }

    /// Writes `data` in [`Self::read_cells`]'s layout into `cells`.
    pub fn write_cells(&mut self, cells: &[usize], data: &[f32]) {
        let d = self.kv_dim;
        debug_assert_eq!(data.len(), cells.len() * self.n_layer * 2 * d);
        for (&c, cell_data) in cells.iter().zip(data.chunks_exact(self.n_layer * 2 * d)) {
            for (layer, kv) in cell_data.chunks_exact(2 * d).enumerate() {
                self.store(layer, c, &kv[..d], &kv[d..]);
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
