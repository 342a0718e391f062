//! The CPU backend's keys and values: per layer, one array each in the context's [`KvType`],
//! indexed by the cells of [`super::Cells`]: n_ctx cells for a global layer, the ring's cells
//! for a sliding-window layer of a model with a ring. Each array is head-major, (n_head_kv,
//! cells, head_dim): attention reads one KV head's rows over many cells, and with cell-major
//! rows (cells, kv_dim) each of its tasks read a head_dim slice at a stride of kv_dim, which
//! decode after thousands of cells spent most of its time waiting on. A q8_0 cache holds each
//! (head, cell) row as head_dim / 32 blocks of 34 bytes ([`KvType::Q8_0`]).

use super::KvType;
use crate::quant::formats::q8_0;
use crate::{Error, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;

/// Per layer: (its table's cells, kv_dim) elements of one type; for q8_0, (its table's cells,
/// kv_dim / 32 blocks of 34 bytes).
enum Layers {
    F32(Vec<Vec<f32>>),
    F16(Vec<Vec<f16>>),
    Q8_0(Vec<Vec<u8>>),
}

/// Elements of a q8_0 block, and its bytes: f16 scale, 32 x i8.
const Q8_BLOCK: usize = 32;
const Q8_BLOCK_BYTES: usize = 34;

pub struct HostKv {
    n_layer: usize,
    n_ctx: usize,
    /// Per layer: whether it lives in the ring (of `n_ring` cells) rather than the full table.
    in_ring: Vec<bool>,
    n_ring: usize,
    /// Width of one token's keys (or values) in a layer: n_head_kv * head_dim.
    kv_dim: usize,
    /// Width of one head's keys (or values): the rows of the head-major layout.
    head_dim: usize,
    keys: Layers,
    values: Layers,
}

impl HostKv {
    /// Zeroed storage, allocated lazily by the system (see `zeroed`), fallibly: one head of
    /// `kv_dim` (tests; [`Self::with_ring`] names the heads).
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, kv_type: KvType) -> Result<HostKv> {
        Self::with_ring(&vec![false; n_layer], n_ctx, 0, kv_dim, kv_dim, kv_type)
    }

    /// Storage for one layer per entry of `in_ring`: `n_ring` cells for those in the ring,
    /// `n_ctx` for the others; rows of `kv_dim` elements in heads of `head_dim`.
    pub fn with_ring(
        in_ring: &[bool],
        n_ctx: usize,
        n_ring: usize,
        kv_dim: usize,
        head_dim: usize,
        kv_type: KvType,
    ) -> Result<HostKv> {
        kv_type.check_head_dim(head_dim)?;
        if !kv_dim.is_multiple_of(head_dim) {
            return Err(Error::Unsupported(format!(
                "a KV row of {kv_dim} elements is not whole heads of {head_dim}"
            )));
        }
        let n_layer = in_ring.len();
        // What one row holds: kv_dim elements, or for q8_0 its blocks' bytes.
        let row_units = match kv_type {
            KvType::F32 | KvType::F16 => kv_dim,
            KvType::Q8_0 => kv_type.row_bytes(kv_dim).ok_or_else(|| {
                Error::Unsupported(format!(
                    "a q8_0 KV cache needs rows of whole 32-element blocks, not {kv_dim} elements"
                ))
            })?,
        };
        let elems = |rows: usize| {
            rows.checked_mul(row_units)
                .ok_or_else(|| Error::OutOfMemory(format!("KV cache of {rows} x {kv_dim}")))
        };
        let sizes: Vec<usize> = (in_ring.iter())
            .map(|&r| elems(if r { n_ring } else { n_ctx }))
            .collect::<Result<_>>()?;
        let unit = match kv_type {
            KvType::Q8_0 => "bytes of q8_0 blocks",
            KvType::F32 => "f32 elements",
            KvType::F16 => "f16 elements",
        };
        let oom = |what: &str, n: usize| {
            Error::OutOfMemory(format!(
                "KV cache {what}: a layer of {n} {unit} ({n_layer} layers)"
            ))
        };
        let alloc = |what: &str| -> Result<Layers> {
            Ok(match kv_type {
                KvType::F32 => Layers::F32(
                    (sizes.iter())
                        .map(|&n| zeroed::<f32>(n).ok_or_else(|| oom(what, n)))
                        .collect::<Result<_>>()?,
                ),
                KvType::F16 => Layers::F16(
                    (sizes.iter())
                        .map(|&n| zeroed::<f16>(n).ok_or_else(|| oom(what, n)))
                        .collect::<Result<_>>()?,
                ),
                // All-zero blocks: scale 0, quants 0, so an unwritten row reads as zeros.
                KvType::Q8_0 => Layers::Q8_0(
                    (sizes.iter())
                        .map(|&n| zeroed::<u8>(n).ok_or_else(|| oom(what, n)))
                        .collect::<Result<_>>()?,
                ),
            })
        };
        Ok(HostKv {
            n_layer,
            n_ctx,
            in_ring: in_ring.to_vec(),
            n_ring,
            kv_dim,
            head_dim,
            keys: alloc("keys")?,
            values: alloc("values")?,
        })
    }

    /// Bytes a cache of this shape needs (for memory estimates before allocating):
    /// `n_layer` layers of `n_ctx` cells and `n_ring_layer` of `n_ring` cells.
    pub fn bytes_needed(
        n_layer: usize,
        n_ctx: usize,
        n_ring_layer: usize,
        n_ring: usize,
        kv_dim: usize,
        kv_type: KvType,
    ) -> u64 {
        let cells = n_layer as u64 * n_ctx as u64 + n_ring_layer as u64 * n_ring as u64;
        // A q8_0 row of a kv_dim that is not whole blocks cannot be allocated at all; count it
        // as if rounded up (context creation refuses it with a clear error).
        let row = kv_type
            .row_bytes(kv_dim)
            .unwrap_or(kv_dim.div_ceil(Q8_BLOCK) * Q8_BLOCK_BYTES);
        2 * cells * row as u64
    }

    /// Bytes this cache holds (allocated, if not yet touched): the sum of its arrays' sizes.
    pub fn bytes(&self) -> u64 {
        // Values are shaped as the keys.
        let key_bytes: usize = match &self.keys {
            Layers::F32(k) => k.iter().map(|l| 4 * l.len()).sum(),
            Layers::F16(k) => k.iter().map(|l| 2 * l.len()).sum(),
            Layers::Q8_0(k) => k.iter().map(Vec::len).sum(),
        };
        2 * key_bytes as u64
    }

    /// Layers kept in the ring.
    pub fn n_ring_layer(&self) -> usize {
        self.in_ring.iter().filter(|&&r| r).count()
    }

    /// Cells of the ring (0 without one).
    pub fn n_ring(&self) -> usize {
        self.n_ring
    }

    pub fn kv_type(&self) -> KvType {
        match self.keys {
            Layers::F32(_) => KvType::F32,
            Layers::F16(_) => KvType::F16,
            Layers::Q8_0(_) => KvType::Q8_0,
        }
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

    /// Cells of `layer`'s table: the ring's or the full table's.
    #[inline(always)]
    fn cells_of(&self, layer: usize) -> usize {
        if self.in_ring[layer] {
            self.n_ring
        } else {
            self.n_ctx
        }
    }

    /// Where element `off` of `cell`'s row sits in `layer`'s array, for `off` the first
    /// element of a head: heads h of (cells, head_dim) one after another, so head h = off /
    /// head_dim begins at h * cells * head_dim = off * cells (no division).
    #[inline(always)]
    fn head_at(&self, layer: usize, cell: usize, off: usize) -> usize {
        debug_assert!(off.is_multiple_of(self.head_dim) && cell < self.cells_of(layer));
        off * self.cells_of(layer) + cell * self.head_dim
    }

    /// Keys of `cell` in `layer`, elements `off..off + len` of one head (`off` its first
    /// element, `len` at most head_dim), as f32: borrowed from an f32 cache, widened (exactly)
    /// into `buf` from an f16 or q8_0 one. `buf` holds at least `len` floats; for q8_0, `len`
    /// is a multiple of 32.
    #[inline(always)]
    pub fn key_f32<'a>(
        &'a self,
        layer: usize,
        cell: usize,
        off: usize,
        len: usize,
        buf: &'a mut [f32],
    ) -> &'a [f32] {
        debug_assert!(len <= self.head_dim);
        row_f32(&self.keys, layer, self.head_at(layer, cell, off), len, buf)
    }

    /// Values of `cell` in `layer`, as [`Self::key_f32`] reads keys.
    #[inline(always)]
    pub fn value_f32<'a>(
        &'a self,
        layer: usize,
        cell: usize,
        off: usize,
        len: usize,
        buf: &'a mut [f32],
    ) -> &'a [f32] {
        debug_assert!(len <= self.head_dim);
        row_f32(
            &self.values,
            layer,
            self.head_at(layer, cell, off),
            len,
            buf,
        )
    }

    /// Keys of `cell` in `layer`, elements `off..off + dst.len()` of one head, as f32 into
    /// `dst` (copied from an f32 cache, widened from an f16 or q8_0 one): [`Self::key_f32`]
    /// for a caller that keeps the row. Widening in place saves a copy, and the copy's wide
    /// loads had waited on the narrower stores of the widening (a store-forwarding stall on
    /// every row: 13 % of decode after 4,096 cells on Zen 5).
    #[inline(always)]
    pub fn key_into(&self, layer: usize, cell: usize, off: usize, dst: &mut [f32]) {
        debug_assert!(dst.len() <= self.head_dim);
        row_into(&self.keys, layer, self.head_at(layer, cell, off), dst)
    }

    /// Values of `cell` in `layer`, as [`Self::key_into`] reads keys.
    #[inline(always)]
    pub fn value_into(&self, layer: usize, cell: usize, off: usize, dst: &mut [f32]) {
        debug_assert!(dst.len() <= self.head_dim);
        row_into(&self.values, layer, self.head_at(layer, cell, off), dst)
    }

    /// Asks the CPU to start loading the keys of `cell` in `layer`, elements
    /// `off..off + len` of one head (as [`Self::key_f32`]), into L1 for a read a little later:
    /// the hardware prefetchers followed attention's rows poorly (when they were a kv_dim
    /// stride apart, the loads of the rows were half of decode time at 4,096 cells). A hint
    /// only: no effect on any value.
    #[inline(always)]
    pub fn prefetch_keys(&self, layer: usize, cell: usize, off: usize, len: usize) {
        prefetch_row(
            &self.keys,
            layer,
            self.head_at(layer, cell, off),
            len,
            false,
        );
    }

    /// [`Self::prefetch_keys`] for the values: into L1, or with `far` into L2 (a read after
    /// a few thousand more lines).
    #[inline(always)]
    pub fn prefetch_values(&self, layer: usize, cell: usize, off: usize, len: usize, far: bool) {
        prefetch_row(
            &self.values,
            layer,
            self.head_at(layer, cell, off),
            len,
            far,
        );
    }

    /// Keys of `cell` in `layer` as f32: (kv_dim).
    pub fn key(&self, layer: usize, cell: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.kv_dim];
        copy_out(&self.keys, layer, self.heads_of(layer, cell), &mut out);
        out
    }

    /// Values of `cell` in `layer` as f32: (kv_dim).
    pub fn value(&self, layer: usize, cell: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.kv_dim];
        copy_out(&self.values, layer, self.heads_of(layer, cell), &mut out);
        out
    }

    /// Writes one token's keys and values for `layer`, rounded to the cache's type.
    pub fn store(&mut self, layer: usize, cell: usize, key: &[f32], value: &[f32]) {
        let heads = self.heads_of(layer, cell);
        store_row(&mut self.keys, layer, heads, key);
        store_row(&mut self.values, layer, heads, value);
    }

    /// Where the heads of `cell`'s row sit in `layer`'s array.
    fn heads_of(&self, layer: usize, cell: usize) -> RowHeads {
        RowHeads {
            start: self.head_at(layer, cell, 0),
            stride: self.cells_of(layer) * self.head_dim,
            head_dim: self.head_dim,
        }
    }

    /// Keys and values of `cells` of the full table in the state layout: (cells, global
    /// layers, keys | values, kv_dim), widened to f32 (exactly: each is a value of the cache's
    /// type). With `ring`, of the ring's cells and layers.
    pub fn read_cells(&self, cells: &[usize], ring: bool) -> Vec<f32> {
        let d = self.kv_dim;
        let layers = self.layers_of(ring);
        let mut out = vec![0.0; cells.len() * layers.len() * 2 * d];
        for (&c, cell_out) in
            (cells.iter()).zip(out.chunks_exact_mut((layers.len() * 2 * d).max(1)))
        {
            for (&layer, kv) in layers.iter().zip(cell_out.chunks_exact_mut(2 * d)) {
                let (k, v) = kv.split_at_mut(d);
                let heads = self.heads_of(layer, c);
                copy_out(&self.keys, layer, heads, k);
                copy_out(&self.values, layer, heads, v);
            }
        }
        out
    }

    /// Writes `data` in [`Self::read_cells`]'s layout into `cells` (of the ring with `ring`).
    pub fn write_cells(&mut self, cells: &[usize], data: &[f32], ring: bool) {
        let d = self.kv_dim;
        let layers = self.layers_of(ring);
        debug_assert_eq!(data.len(), cells.len() * layers.len() * 2 * d);
        for (&c, cell_data) in cells
            .iter()
            .zip(data.chunks_exact((layers.len() * 2 * d).max(1)))
        {
            for (&layer, kv) in layers.iter().zip(cell_data.chunks_exact(2 * d)) {
                self.store(layer, c, &kv[..d], &kv[d..]);
            }
        }
    }

    /// The layers of the ring (`ring`) or of the full table, ascending.
    fn layers_of(&self, ring: bool) -> Vec<usize> {
        (0..self.n_layer)
            .filter(|&l| self.in_ring[l] == ring)
            .collect()
    }
}

/// Prefetches the lines of elements `off..off + len` of `cell`'s row in `layer` (into L1, or
/// with `far` into L2).
#[inline(always)]
fn prefetch_row(l: &Layers, layer: usize, at: usize, len: usize, far: bool) {
    let (p, bytes): (*const u8, usize) = match l {
        Layers::F32(v) => (v[layer][at..at + len].as_ptr().cast(), 4 * len),
        Layers::F16(v) => (v[layer][at..at + len].as_ptr().cast(), 2 * len),
        Layers::Q8_0(v) => {
            let (start, bytes) = (q8_bytes(at), q8_bytes(len));
            (v[layer][start..start + bytes].as_ptr(), bytes)
        }
    };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        for line in (0..bytes).step_by(64) {
            // SAFETY: prefetches never fault; the addresses lie inside the row anyway.
            unsafe {
                if far {
                    _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(line).cast());
                } else {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast());
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes, far);
}

/// Bytes of q8_0 blocks holding `elems` elements (a multiple of 32): a q8_0 layer's element
/// index, at a block boundary, to its byte index.
#[inline(always)]
fn q8_bytes(elems: usize) -> usize {
    elems / Q8_BLOCK * Q8_BLOCK_BYTES
}

/// `len` elements of `layer` from element `at` (inside one head's row), as f32.
#[inline(always)]
fn row_f32<'a>(
    layers: &'a Layers,
    layer: usize,
    at: usize,
    len: usize,
    buf: &'a mut [f32],
) -> &'a [f32] {
    match layers {
        Layers::F32(l) => &l[layer][at..at + len],
        Layers::F16(_) | Layers::Q8_0(_) => {
            row_into(layers, layer, at, &mut buf[..len]);
            &buf[..len]
        }
    }
}

/// The row of `len = dst.len()` elements at `at` into `dst`: copied from f32, widened from f16
/// or q8_0 (`at` and `len` whole q8_0 blocks).
#[inline(always)]
fn row_into(layers: &Layers, layer: usize, at: usize, dst: &mut [f32]) {
    let len = dst.len();
    match layers {
        Layers::F32(l) => dst.copy_from_slice(&l[layer][at..at + len]),
        Layers::F16(l) => widen_f16(&l[layer][at..at + len], dst),
        Layers::Q8_0(l) => {
            debug_assert!(at.is_multiple_of(Q8_BLOCK) && len.is_multiple_of(Q8_BLOCK));
            let start = q8_bytes(at);
            widen_q8_0(&l[layer][start..start + q8_bytes(len)], dst);
        }
    }
}

/// Where one cell's row lies in a head-major layer: head h's elements at
/// `start + h * stride ..` (head_dim of them).
#[derive(Clone, Copy)]
struct RowHeads {
    start: usize,
    stride: usize,
    head_dim: usize,
}

impl RowHeads {
    /// (head's first element in the layer, its elements' range in the row) per head of a row
    /// of `kv_dim`.
    fn pieces(self, kv_dim: usize) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
        (0..kv_dim / self.head_dim).map(move |h| {
            (
                self.start + h * self.stride,
                h * self.head_dim..(h + 1) * self.head_dim,
            )
        })
    }
}

/// `dst = f32(src)`, exact (every f16 is an f32), so every path gives the same bits. Attention
/// widens each key and value row it reads (64-128 elements) with this: `half`'s slice
/// conversion, which checks the CPU and calls a helper per 8 elements, took a fifth of a
/// 512-token prompt step; an inline F16C loop costs one `vcvtph2ps` per 8.
#[inline(always)]
fn widen_f16(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX-512F and F16C were detected just above (a CPU with the first has the
            // second, but a virtual machine's flags need not say so).
            unsafe { widen_f16_avx512(src, dst) };
            return;
        }
        if std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx")
        {
            // SAFETY: F16C and AVX were detected just above.
            unsafe { widen_f16c(src, dst) };
            return;
        }
    }
    src.convert_to_f32_slice(dst);
}

/// [`widen_f16`] with F16C: 8 elements per instruction, the tail one by one.
///
/// # Safety
/// The CPU must support AVX and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn widen_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::{_mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: elements i..i + 8 lie inside both slices (i + 8 <= n).
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for (d, s) in dst[i..n].iter_mut().zip(&src[i..n]) {
        *d = s.to_f32();
    }
}

/// [`widen_f16`] with AVX-512: 16 elements per conversion, so each 64-byte row piece is one
/// store, which the attention kernels' 64-byte loads of the row can take straight from the
/// store buffer (loads spanning two 32-byte stores waited for them to reach L1).
///
/// # Safety
/// The CPU must support AVX-512F and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx,f16c")]
unsafe fn widen_f16_avx512(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::{_mm256_loadu_si256, _mm512_cvtph_ps, _mm512_storeu_ps};
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: elements i..i + 16 lie inside both slices (i + 16 <= n).
        unsafe {
            let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
        }
        i += 16;
    }
    // SAFETY: the caller's contract: F16C, and AVX with AVX-512F.
    unsafe { widen_f16c(&src[i..n], &mut dst[i..n]) };
}

/// `dst = d * q` per q8_0 block of `src` (whole blocks, `dst.len()` = 32 per block), exact:
/// an f16 scale (11 significant bits) times an integer of at most 8 bits fits f32's 24, so
/// every path gives the same bits as the reference decoder ([`q8_0::dequantize`]), and a GPU
/// widening the same way reproduces them.
#[inline(always)]
fn widen_q8_0(src: &[u8], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX-512F and F16C were detected just above.
            unsafe { widen_q8_0_avx512(src, dst) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX2 and F16C were detected just above.
            unsafe { widen_q8_0_avx2(src, dst) };
            return;
        }
    }
    q8_0::dequantize(src, dst);
}

/// The f32 value of the f16 scale at the start of a q8_0 block (`blk` holds at least 2 bytes).
///
/// # Safety
/// The CPU must support F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c")]
unsafe fn block_scale(blk: &[u8]) -> f32 {
    use std::arch::x86_64::{_mm_cvtph_ps, _mm_cvtsi32_si128, _mm_cvtss_f32};
    let bits = u16::from_le_bytes([blk[0], blk[1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// [`widen_q8_0`] with AVX-512: per block, two sign extensions of 16 quants to i32, two
/// conversions to f32, two products with the broadcast scale.
///
/// # Safety
/// The CPU must support AVX-512F and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn widen_q8_0_avx512(src: &[u8], dst: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_cvtepi32_ps, _mm512_cvtepi8_epi32, _mm512_mul_ps, _mm512_set1_ps, _mm512_storeu_ps,
        _mm_loadu_si128,
    };
    for (blk, out) in (src.chunks_exact(Q8_BLOCK_BYTES)).zip(dst.chunks_exact_mut(Q8_BLOCK)) {
        // SAFETY: F16C is enabled on this function; blk has 34 bytes.
        let d = _mm512_set1_ps(unsafe { block_scale(blk) });
        for half in 0..2 {
            // SAFETY: bytes 2 + 16 * half .. + 16 lie inside the 34-byte block, and
            // out[16 * half..][..16] inside its 32 floats.
            unsafe {
                let q = _mm_loadu_si128(blk.as_ptr().add(2 + 16 * half).cast());
                let f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * half), _mm512_mul_ps(f, d));
            }
        }
    }
}

/// [`widen_q8_0`] with AVX2: 8 quants per sign extension, conversion and product.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn widen_q8_0_avx2(src: &[u8], dst: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32, _mm256_mul_ps, _mm256_set1_ps, _mm256_storeu_ps,
        _mm_loadl_epi64,
    };
    for (blk, out) in (src.chunks_exact(Q8_BLOCK_BYTES)).zip(dst.chunks_exact_mut(Q8_BLOCK)) {
        // SAFETY: F16C is enabled on this function; blk has 34 bytes.
        let d = _mm256_set1_ps(unsafe { block_scale(blk) });
        for k in 0..4 {
            // SAFETY: bytes 2 + 8k .. + 8 lie inside the 34-byte block, and out[8k..][..8]
            // inside its 32 floats.
            unsafe {
                let q = _mm_loadl_epi64(blk.as_ptr().add(2 + 8 * k).cast());
                let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * k), _mm256_mul_ps(f, d));
            }
        }
    }
}

/// `cell`'s row (of `kv_dim` elements) in `layer`, widened to f32 into `out` (`kv_dim` long).
fn copy_out(layers: &Layers, layer: usize, heads: RowHeads, out: &mut [f32]) {
    let hd = heads.head_dim;
    for (at, range) in heads.pieces(out.len()) {
        let out = &mut out[range];
        match layers {
            Layers::F32(l) => out.copy_from_slice(&l[layer][at..at + hd]),
            Layers::F16(l) => l[layer][at..at + hd].convert_to_f32_slice(out),
            Layers::Q8_0(l) => {
                KvType::Q8_0.decode_row(&l[layer][q8_bytes(at)..][..q8_bytes(hd)], out)
            }
        }
    }
}

/// Rounds `row` (of `kv_dim` elements) to the cache's type as `cell`'s row in `layer`: f16 by
/// round-to-nearest-even, as the GPU's `__float2half` (kernels/kv_cache.h), so both backends
/// cache the same bits; q8_0 by [`KvType::encode_row`], llama.cpp's CPU rule.
fn store_row(layers: &mut Layers, layer: usize, heads: RowHeads, row: &[f32]) {
    let hd = heads.head_dim;
    for (at, range) in heads.pieces(row.len()) {
        let row = &row[range];
        match layers {
            Layers::F32(l) => l[layer][at..at + hd].copy_from_slice(row),
            Layers::F16(l) => l[layer][at..at + hd].convert_from_f32_slice(row),
            // Blocks never straddle heads (head_dim is whole blocks), so each head's blocks
            // are the ones the whole row would be cut into.
            Layers::Q8_0(l) => {
                KvType::Q8_0.encode_row(row, &mut l[layer][q8_bytes(at)..][..q8_bytes(hd)])
            }
        }
    }
}

/// Element types whose all-zero bit pattern is a valid value (0.0).
///
/// # Safety
/// Implementors must be plain data for which all-zero bytes are a valid value.
unsafe trait ZeroBits: Copy {}
// SAFETY: 0x00000000 is the f32 value +0.0.
unsafe impl ZeroBits for f32 {}
// SAFETY: f16 is a transparent u16; 0x0000 is the f16 value +0.0.
unsafe impl ZeroBits for f16 {}
// SAFETY: a byte; 0 is a valid u8 (and an all-zero q8_0 block is scale 0, quants 0).
unsafe impl ZeroBits for u8 {}

/// `n` zero elements, or `None` when the allocation fails. Zeroed memory from the allocator: a
/// large buffer comes as fresh pages the kernel zero-fills on first touch, so a big cache costs
/// nothing until cells are used (no loop writing every page up front).
fn zeroed<T: ZeroBits>(n: usize) -> Option<Vec<T>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    // SAFETY: the layout has a non-zero size (n > 0 and T is not zero-sized: f32, f16, u8).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` was allocated by the global allocator with the layout of `n` T's, and all-zero
    // bits are a valid T (ZeroBits), so all `n` elements are initialised.
    Some(unsafe { Vec::from_raw_parts(p, n, n) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::kv_type::tests::floats;

    #[test]
    fn f16_cache_rounds_to_nearest_even_and_reads_back_exactly() {
        let mut kv = HostKv::new(1, 2, 4, KvType::F16).unwrap();
        // 1 + 2^-11 is halfway between 1 and the next f16 (1 + 2^-10): ties go to even (1.0);
        // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties go to 1 + 2^-9.
        let k = [
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            70000.0,
            -0.1,
        ];
        kv.store(0, 1, &k, &[0.5; 4]);
        let got = kv.key(0, 1);
        assert_eq!(got[0], 1.0);
        assert_eq!(got[1], 1.0 + 2f32.powi(-9));
        assert_eq!(got[2], f32::INFINITY, "past f16's range");
        assert_eq!(got[3], f16::from_f32(-0.1).to_f32());
        assert_ne!(got[3], -0.1);
        assert_eq!(kv.value(0, 1), vec![0.5; 4]);
        // A state round trip of already-rounded values changes nothing.
        let saved = kv.read_cells(&[1], false);
        let mut other = HostKv::new(1, 2, 4, KvType::F16).unwrap();
        other.write_cells(&[0], &saved, false);
        assert_eq!(other.key(0, 0), got);
        assert_eq!(kv.bytes(), 2 * 2 * 4 * 2);
    }

    #[test]
    fn q8_0_cache_holds_blocks_and_reads_heads_back_as_d_times_q() {
        // Two heads of 64: kv_dim 128, four blocks a row.
        let (n_ctx, kv_dim) = (5, 128);
        let mut kv = HostKv::with_ring(&[false, true], n_ctx, 3, kv_dim, 64, KvType::Q8_0).unwrap();
        assert_eq!(kv.kv_type(), KvType::Q8_0);
        assert_eq!(kv.bytes(), 2 * (5 + 3) * 4 * 34);
        assert_eq!(
            kv.bytes(),
            HostKv::bytes_needed(1, n_ctx, 1, 3, kv_dim, KvType::Q8_0)
        );
        let (k, v) = (floats(1, kv_dim, 3.0), floats(2, kv_dim, 0.01));
        kv.store(0, 4, &k, &v);
        let mut want_k = vec![0u8; 4 * 34];
        KvType::Q8_0.encode_row(&k, &mut want_k);
        let mut want = vec![0f32; kv_dim];
        KvType::Q8_0.decode_row(&want_k, &mut want);
        assert_eq!(kv.key(0, 4), want);
        assert_ne!(kv.key(0, 4), k, "quantized, not exact");
        let max_err = (k.iter().zip(&want)).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // Half a quantum, plus the f16 rounding of the scale (at most 127 quanta x 2^-11).
        assert!(max_err <= 3.0 / 127.0 * 0.57, "{max_err}");
        // The second head, as attention reads it.
        let mut buf = vec![0f32; 64];
        assert_eq!(kv.key_f32(0, 4, 64, 64, &mut buf), &want[64..]);
        assert_eq!(
            kv.value(0, 3),
            vec![0.0; kv_dim],
            "unwritten rows read as zeros"
        );
        // A copy through f32 (seq_cp, state save/restore) keeps the values.
        let saved = kv.read_cells(&[4], false);
        kv.write_cells(&[1], &saved, false);
        assert_eq!(kv.key(0, 1), want);
        assert_eq!(kv.value(0, 1), kv.value(0, 4));
        assert!(
            HostKv::new(1, 2, 40, KvType::Q8_0).is_err(),
            "40 is not whole blocks"
        );
    }

    /// The SIMD widenings give the reference decoder's bits, over scales of every magnitude
    /// (subnormal f16 ones too), quants of -128 and 127 and an odd number of blocks.
    #[test]
    fn every_q8_0_widening_has_the_reference_bits() {
        let n = 7 * 32;
        let mut bytes = Vec::new();
        for (b, x) in floats(3, 7 * 33, 1.0).chunks_exact(33).enumerate() {
            let d = f16::from_f32(x[0].abs() * 10f32.powi(b as i32 * 2 - 8));
            bytes.extend(d.to_le_bytes());
            bytes.extend(x[1..].iter().map(|v| (v * 127.0) as i8 as u8));
        }
        bytes[2] = 0x80; // -128
        bytes[3] = 0x7F;
        bytes[34] = 0x01; // a subnormal scale
        bytes[35] = 0x00;
        let mut want = vec![0f32; n];
        q8_0::dequantize(&bytes, &mut want);
        let mut got = vec![f32::NAN; n];
        widen_q8_0(&bytes, &mut got);
        assert_eq!(got, want);
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("f16c") {
                let mut got = vec![f32::NAN; n];
                // SAFETY: AVX2 and F16C were detected just above.
                unsafe { widen_q8_0_avx2(&bytes, &mut got) };
                assert_eq!(got, want, "avx2");
            }
            if has!("avx512f") && has!("f16c") {
                let mut got = vec![f32::NAN; n];
                // SAFETY: AVX-512F and F16C were detected just above.
                unsafe { widen_q8_0_avx512(&bytes, &mut got) };
                assert_eq!(got, want, "avx512");
            }
        }
    }

    /// Every f16 widening (the table's and the portable one) gives `half`'s exact f32 for
    /// every length's whole vectors and tail, specials and subnormals included.
    #[test]
    fn every_f16_widening_has_the_reference_bits() {
        let mut src: Vec<f16> = floats(5, 80, 3.0)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        src[0] = f16::INFINITY;
        src[1] = f16::NEG_INFINITY;
        src[2] = f16::from_bits(0x0001); // the smallest subnormal
        src[3] = f16::NEG_ZERO;
        src[17] = f16::MAX;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for n in [0, 1, 7, 8, 15, 16, 17, 33, 64, 80] {
            let want: Vec<f32> = src[..n].iter().map(|h| h.to_f32()).collect();
            let mut got = vec![f32::NAN; n];
            widen_f16(&src[..n], &mut got);
            assert_eq!(bits(&got), bits(&want), "n = {n}");
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx") && has!("f16c") {
                    let mut got = vec![f32::NAN; n];
                    // SAFETY: AVX and F16C were detected just above.
                    unsafe { widen_f16c(&src[..n], &mut got) };
                    assert_eq!(bits(&got), bits(&want), "f16c, n = {n}");
                }
                if has!("avx512f") && has!("f16c") {
                    let mut got = vec![f32::NAN; n];
                    // SAFETY: AVX-512F and F16C were detected just above.
                    unsafe { widen_f16_avx512(&src[..n], &mut got) };
                    assert_eq!(bits(&got), bits(&want), "avx512, n = {n}");
                }
            }
        }
    }

    /// Rows of three heads in a head-major table and a ring: each head's slice read back
    /// where attention reads it, whole rows by `key` / `value` and through the state layout.
    #[test]
    fn heads_of_every_cell_read_back_from_the_head_major_layout() {
        let (n_ctx, n_ring, hd) = (6, 4, 32);
        let kv_dim = 3 * hd;
        for kv_type in KvType::ALL {
            let mut kv =
                HostKv::with_ring(&[false, true], n_ctx, n_ring, kv_dim, hd, kv_type).unwrap();
            let row = |layer: usize, c: usize, salt: u64| {
                let mut r = floats(100 * layer as u64 + 10 * c as u64 + salt, kv_dim, 2.0);
                // Round to the cache's type, so reads compare exactly.
                let mut bytes = vec![0u8; kv_type.row_bytes(kv_dim).unwrap()];
                kv_type.encode_row(&r.clone(), &mut bytes);
                kv_type.decode_row(&bytes, &mut r);
                r
            };
            for layer in 0..2 {
                for c in 0..[n_ctx, n_ring][layer] {
                    kv.store(layer, c, &row(layer, c, 1), &row(layer, c, 2));
                }
            }
            let mut buf = vec![0f32; hd];
            for layer in 0..2 {
                for c in 0..[n_ctx, n_ring][layer] {
                    let (k, v) = (row(layer, c, 1), row(layer, c, 2));
                    assert_eq!(kv.key(layer, c), k, "{kv_type} layer {layer} cell {c}");
                    assert_eq!(kv.value(layer, c), v);
                    for h in 0..3 {
                        let want = &k[h * hd..][..hd];
                        assert_eq!(kv.key_f32(layer, c, h * hd, hd, &mut buf), want);
                        let want = &v[h * hd..][..hd];
                        assert_eq!(kv.value_f32(layer, c, h * hd, hd, &mut buf), want);
                        let mut into = vec![f32::NAN; hd];
                        kv.key_into(layer, c, h * hd, &mut into);
                        assert_eq!(into, k[h * hd..][..hd], "key_into");
                        kv.value_into(layer, c, h * hd, &mut into);
                        assert_eq!(into, want, "value_into");
                    }
                }
            }
            let saved = kv.read_cells(&[5, 2], false);
            assert_eq!(saved[..kv_dim], row(0, 5, 1)[..]);
            kv.write_cells(&[0, 1], &saved, false);
            assert_eq!(kv.key(0, 0), row(0, 5, 1));
            assert_eq!(kv.value(0, 1), row(0, 2, 2));
            assert_eq!(kv.key(1, 0), row(1, 0, 1), "the ring's cell 0 is untouched");
        }
        assert!(HostKv::with_ring(&[false], 4, 0, 96, 40, KvType::F16).is_err());
        assert!(HostKv::with_ring(&[false], 4, 0, 96, 48, KvType::Q8_0).is_err());
    }

    #[test]
    fn f32_cache_stores_exactly() {
        let mut kv = HostKv::new(2, 3, 2, KvType::F32).unwrap();
        kv.store(1, 2, &[-0.1, 3.0], &[1e-30, 7.5]);
        assert_eq!(kv.key(1, 2), vec![-0.1, 3.0]);
        assert_eq!(kv.value(1, 2), vec![1e-30, 7.5]);
        assert_eq!(kv.bytes(), 2 * 2 * 3 * 2 * 4);
    }

    #[test]
    fn ring_layers_hold_the_ring_s_cells_and_move_apart_from_the_others() {
        // Layers 0 and 2 global (5 cells), layer 1 in a ring of 2.
        let mut kv = HostKv::with_ring(&[false, true, false], 5, 2, 2, 1, KvType::F32).unwrap();
        assert_eq!(kv.bytes(), 2 * (5 + 2 + 5) * 2 * 4);
        assert_eq!(kv.bytes(), HostKv::bytes_needed(2, 5, 1, 2, 2, KvType::F32));
        assert_eq!(kv.n_ring_layer(), 1);
        kv.store(0, 4, &[1.0, 2.0], &[3.0, 4.0]);
        kv.store(2, 4, &[5.0, 6.0], &[7.0, 8.0]);
        kv.store(1, 1, &[9.0, 10.0], &[11.0, 12.0]);
        assert_eq!(
            kv.read_cells(&[4], false),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        assert_eq!(kv.read_cells(&[1], true), [9.0, 10.0, 11.0, 12.0]);
        kv.write_cells(&[0], &[-1.0, -2.0, -3.0, -4.0], true);
        assert_eq!(kv.key(1, 0), [-1.0, -2.0]);
        assert_eq!(
            kv.key(0, 0),
            [0.0, 0.0],
            "the global layers' cell 0 is untouched"
        );
    }
}
