//! Matrix products of packed (quantized) weights with a batch of activation rows.
//!
//! The activations are quantized once into the weight type's "activation type" (Q8_1 for Q4_1,
//! Q8_0 for Q4_0/Q8_0, f16 for F16 ...), exactly as llama.cpp does, then each weight row is dotted
//! with the packed activation rows by the row kernels of `crate::quant::dot`. Weights never get
//! an f32 copy: they are read from the model mapping.
//!
//! Work split: weight rows are divided among threads. Within a thread, rows go in blocks small
//! enough to stay in L1 while groups of four tokens stream past them, so in prompt processing a
//! weight block is read from memory once per token group instead of once per token.
//!
//! Steps of at least [`GEMM_MIN_TOKENS`] tokens take the tiled kernels of
//! `crate::quant::dot::gemm` where the weight type has one: a panel of 16 (or 8) rows is
//! unpacked once per token tile and every token of the tile passes it. Both paths give every
//! product the canonical bits, so a token's results never depend on the step it came in.

use super::threadpool::{ThreadPool, CHUNKS_PER_THREAD};
use crate::quant::dot::gemm::{
    act_meta, act_meta_k, gemm_kernels_for, takes_activations, takes_activations_k, ActMeta,
    GemmArgs, GemmKernels, KMeta,
};
use crate::quant::dot::{kernels_for, DotKernels};
use crate::quant::{activation_type, quantize_activations, GgmlType};
use crate::{Error, Result};

/// A 2-D weight in its packed on-disk form. Row `r` is `data[r * row_bytes ..][..row_bytes]`.
#[derive(Clone, Copy)]
pub struct PackedMatrix<'a> {
    pub data: &'a [u8],
    pub ty: GgmlType,
    /// Output features.
    pub rows: usize,
    /// Input features (elements per row).
    pub cols: usize,
    pub row_bytes: usize,
    pub kernels: &'static DotKernels,
    /// The tiled kernel for prompt steps, where the type has one on this CPU.
    pub gemm: Option<&'static GemmKernels>,
}

impl<'a> PackedMatrix<'a> {
    pub fn new(data: &'a [u8], ty: GgmlType, rows: usize, cols: usize) -> Result<Self> {
        let row_bytes = ty.row_bytes(cols as u64).ok_or_else(|| {
            Error::InvalidModel(format!("{cols} columns are not whole {ty} blocks"))
        })? as usize;
        if data.len() != row_bytes * rows {
            return Err(Error::InvalidModel(format!(
                "weight of {rows}x{cols} {ty} needs {} bytes, has {}",
                row_bytes * rows,
                data.len()
            )));
        }
        let kernels = kernels_for(ty).ok_or_else(|| Error::UnsupportedTensorType {
            tensor: String::from("(matrix)"),
            ty: ty.name().to_string(),
        })?;
        Ok(PackedMatrix {
            data,
            ty,
            rows,
            cols,
            row_bytes,
            kernels,
            gemm: gemm_kernels_for(ty),
        })
    }

    fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// Activation rows quantized into one activation type. Buffer: (n_rows, row_bytes).
#[derive(Default)]
pub struct PackedActivations {
    ty: Option<GgmlType>,
    cols: usize,
    row_bytes: usize,
    n_rows: usize,
    buf: Vec<u8>,
    /// Per 32-element block of each row (n_rows, cols / 32), for the tiled kernels: filled
    /// by `pack` for steps of at least [`GEMM_MIN_TOKENS`] rows whose type has them.
    meta: Vec<ActMeta>,
    /// The same per 256-element super-block (n_rows, cols / 256), for Q8_K rows.
    kmeta: Vec<KMeta>,
    has_meta: bool,
}

impl PackedActivations {
    /// Quantizes `x` (n_rows, cols) for weights of type `weight_ty`, in parallel over rows.
    /// Steps of `min_tokens` rows or more (at least [`GEMM_MIN_TOKENS`]) get the tiled
    /// kernels' metadata: the engine passes [`gemm_min_tokens`]; tests pin it, so that they
    /// cover the same path on every CPU.
    pub fn pack(
        &mut self,
        pool: &ThreadPool,
        weight_ty: GgmlType,
        x: &[f32],
        n_rows: usize,
        cols: usize,
        min_tokens: usize,
    ) -> Result<()> {
        debug_assert_eq!(x.len(), n_rows * cols);
        let act_ty = activation_type(weight_ty).ok_or_else(|| Error::UnsupportedTensorType {
            tensor: String::from("(matrix)"),
            ty: weight_ty.name().to_string(),
        })?;
        let row_bytes = act_ty.row_bytes(cols as u64).ok_or_else(|| {
            Error::InvalidModel(format!("{cols} columns are not whole {act_ty} blocks"))
        })? as usize;
        self.ty = Some(act_ty);
        self.cols = cols;
        self.row_bytes = row_bytes;
        self.n_rows = n_rows;
        self.buf.resize(n_rows * row_bytes, 0);
        // Block metadata only where the tiled kernels may read it (never in decode).
        let nb = cols / 32;
        let nsb = cols / 256;
        let prompt = n_rows >= min_tokens.max(GEMM_MIN_TOKENS);
        let blocks32 = prompt && cols.is_multiple_of(32) && takes_activations(act_ty);
        let blocks256 = prompt && cols.is_multiple_of(256) && takes_activations_k(act_ty);
        self.has_meta = blocks32 || blocks256;
        self.meta
            .resize(if blocks32 { n_rows * nb } else { 0 }, ActMeta::default());
        self.kmeta
            .resize(if blocks256 { n_rows * nsb } else { 0 }, KMeta::default());
        let out = SharedMut::new(&mut self.buf);
        let meta = SharedMut::new(&mut self.meta);
        let kmeta = SharedMut::new(&mut self.kmeta);
        let failed = std::sync::Mutex::new(None);
        pool.for_each_range(n_rows, &|rows| {
            for r in rows {
                // SAFETY: each row index is visited by exactly one thread; rows are disjoint.
                let dst = unsafe { out.slice(r * row_bytes, row_bytes) };
                if let Err(e) = quantize_activations(act_ty, &x[r * cols..(r + 1) * cols], dst) {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
                if blocks32 {
                    // SAFETY: as above, row r's metadata belongs to this thread alone.
                    act_meta(act_ty, dst, unsafe { meta.slice(r * nb, nb) });
                }
                if blocks256 {
                    // SAFETY: as above.
                    act_meta_k(act_ty, dst, unsafe { kmeta.slice(r * nsb, nsb) });
                }
            }
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The activation type these rows were packed for (None before the first `pack`).
    pub fn packed_type(&self) -> Option<GgmlType> {
        self.ty
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.buf[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// Rows of weights processed together while token groups stream past (fits L1 for d<=4096).
const ROW_BLOCK: usize = 8;

/// Steps of this many tokens or more use the tiled kernels (where the weight type has one).
/// Measured on the Sapphire Rapids-class VM (SmolLM2 Q8_0, 1 thread, `rocmforge_bench -p`):
/// with the tiled kernels pp4 / pp8 / pp16 ran at 109 / 213 / 197 tok/s, with the row
/// kernels 51 / 99 / 139; pp2 was no faster (56 against 66), and decode keeps the row kernels.
pub const GEMM_MIN_TOKENS: usize = 4;

/// The same on AMD processors. There the per-step unpacking of the weight panels costs more
/// than on Intel (first with `vpgatherdd`, several times slower on AMD, now with loads and
/// transposes, the next panel prefetched), and below about 8 tokens it outweighs what the
/// tiles save. Zen 5 (2-core VM, 2 threads, `rocmforge_bench batched -npp 128 -ntg 64`,
/// generation tok/s for 4 / 8 / 16 sequences, tiled from 4 / 8 / 32 tokens): Q8_0 323-333 /
/// 359-362 / 358-359, 437-452 / 428-445 / 364-381, 567-581 / 555-573 / 386-414; Q4_1 340-393 /
/// 349-412 / 357-401, 450-484 / 450-497 / 373-412, 611-664 / 598-678 / 393-436. (With the
/// gathers, 16 tokens had been the break-even.)
pub const GEMM_MIN_TOKENS_AMD: usize = 8;

/// The step size from which products take the tiled kernels on this machine:
/// `ROCMFORGE_GEMM_MIN_TOKENS` if set (at least 2; tuning), else [`GEMM_MIN_TOKENS_AMD`] on
/// AMD processors and [`GEMM_MIN_TOKENS`] elsewhere. Either way the bits are the same (the
/// tiled kernels give the row kernels' sums).
pub fn gemm_min_tokens() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("ROCMFORGE_GEMM_MIN_TOKENS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or_else(
                || {
                    if cpu_is_amd() {
                        GEMM_MIN_TOKENS_AMD
                    } else {
                        GEMM_MIN_TOKENS
                    }
                },
                |n| n.max(2),
            )
    })
}

/// Whether the processor's vendor string (CPUID leaf 0) is AMD's.
fn cpu_is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid(0);
        let vendor: Vec<u8> = [r.ebx, r.edx, r.ecx]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One product of a fused group: a weight and the buffer (n_tokens, w.rows) it writes.
pub struct MatmulTarget<'w, 'o> {
    pub w: PackedMatrix<'w>,
    pub out: &'o mut [f32],
}

/// `out[t * w.rows + r] = dot(w.row(r), acts.row(t))` for all tokens t and rows r.
pub fn matmul(pool: &ThreadPool, w: &PackedMatrix<'_>, acts: &PackedActivations, out: &mut [f32]) {
    matmul_fused(pool, &mut [MatmulTarget { w: *w, out }], acts);
}

/// Several products of the same activations (Q, K and V; gate and up) in one dispatch: the
/// rows of all weights are split among the threads as if they were one matrix, which halves
/// the hand-offs per layer in decode. Every weight must take `acts`' activation type.
pub fn matmul_fused(
    pool: &ThreadPool,
    targets: &mut [MatmulTarget<'_, '_>],
    acts: &PackedActivations,
) {
    let n_tokens = acts.n_rows;
    let outs: Vec<SharedMut<f32>> = targets
        .iter_mut()
        .map(|t| {
            debug_assert_eq!(acts.cols, t.w.cols);
            debug_assert_eq!(activation_type(t.w.ty), acts.ty);
            assert!(
                t.out.len() >= n_tokens * t.w.rows,
                "matmul output buffer too small"
            );
            SharedMut::new(t.out)
        })
        .collect();
    let weights: Vec<PackedMatrix<'_>> = targets.iter().map(|t| t.w).collect();
    let total_rows: usize = weights.iter().map(|w| w.rows).sum();
    // Chunks of whole 4-row tiles, claimed by the threads (see ThreadPool::run_chunks).
    // Prompt steps: whole 16-row panels of the tiled kernels.
    let align = if acts.has_meta { 16 } else { 4 };
    let n_chunks = (pool.n_threads() * CHUNKS_PER_THREAD).min(total_rows.div_ceil(align));
    let chunk_rows = total_rows.div_ceil(n_chunks.max(1)).next_multiple_of(align);
    let n_chunks = total_rows.div_ceil(chunk_rows.max(1));
    // Each thread's scratch for the tiled kernels: the unpacked panel and its results.
    let scratch = || (Vec::<u8>::new(), Vec::<f32>::new());
    pool.run_chunks(n_chunks, &scratch, &|scratch, chunk| {
        let mine = chunk * chunk_rows..((chunk + 1) * chunk_rows).min(total_rows);
        // Walk the weights, intersecting each one's global row range with ours.
        let mut first_row = 0;
        for (w, out) in weights.iter().zip(&outs) {
            let (lo, hi) = (mine.start.max(first_row), mine.end.min(first_row + w.rows));
            if lo < hi {
                let rows = lo - first_row..hi - first_row;
                match w.gemm {
                    Some(g) if acts.has_meta => {
                        rows_times_tokens_tiled(w, g, acts, out, rows, scratch)
                    }
                    _ => rows_times_tokens(w, acts, out, rows, n_tokens),
                }
            }
            first_row += w.rows;
        }
    });
}

/// The products of weight rows `rows` with every token, written to `out` (n_tokens, w.rows).
fn rows_times_tokens(
    w: &PackedMatrix<'_>,
    acts: &PackedActivations,
    out: &SharedMut<f32>,
    rows: std::ops::Range<usize>,
    n_tokens: usize,
) {
    // Tokens in tiles whose packed activations stay in the core's L2 cache while this
    // thread's rows pass over them: with a whole batch of many prompts (thousands of tokens,
    // megabytes of activations) every row block would otherwise stream them from memory.
    // Tiles start at multiples of 4, so the groups of four are those of an untiled pass (and
    // a product's bits never depend on its group anyway).
    let tile = (TOKEN_TILE_BYTES / acts.row_bytes.max(1)).max(4) / 4 * 4;
    let mut tile_start = 0;
    while tile_start < n_tokens {
        let tile_end = (tile_start + tile).min(n_tokens);
        rows_times_token_tile(w, acts, out, rows.clone(), tile_start..tile_end);
        tile_start = tile_end;
    }
}

/// [`rows_times_tokens`] by the tiled kernel `g`: per token tile, the rows in panels of
/// `g.panel`, each unpacked once and passed by every token of the tile.
fn rows_times_tokens_tiled(
    w: &PackedMatrix<'_>,
    g: &GemmKernels,
    acts: &PackedActivations,
    out: &SharedMut<f32>,
    rows: std::ops::Range<usize>,
    (panel_scratch, results): &mut (Vec<u8>, Vec<f32>),
) {
    // Per-token metadata of the kernel's kind: per 32-element block or per super-block.
    let (nb, nsb) = if acts.kmeta.is_empty() {
        (acts.cols / 32, 0)
    } else {
        (0, acts.cols / 256)
    };
    let tile = (PANEL_TOKEN_TILE_BYTES / acts.row_bytes.max(1)).max(4);
    let mut t0 = 0;
    while t0 < acts.n_rows {
        let t1 = (t0 + tile).min(acts.n_rows);
        let mut r0 = rows.start;
        while r0 < rows.end {
            let n_rows = g.panel.min(rows.end - r0);
            let args = GemmArgs {
                n: w.cols,
                w: &w.data[r0 * w.row_bytes..],
                row_bytes: w.row_bytes,
                rows: n_rows,
                acts: &acts.buf[t0 * acts.row_bytes..t1 * acts.row_bytes],
                act_row_bytes: acts.row_bytes,
                meta: &acts.meta[t0 * nb..t1 * nb],
                kmeta: &acts.kmeta[t0 * nsb..t1 * nsb],
                n_tokens: t1 - t0,
            };
            results.resize((t1 - t0) * g.panel, 0.0);
            // The next panel of this thread's rows, fetched while this one is unpacked.
            let next = r0 + n_rows..(r0 + n_rows + g.panel).min(rows.end);
            prefetch_bytes(&w.data[next.start * w.row_bytes..next.end * w.row_bytes]);
            (g.run)(&args, results, panel_scratch);
            for t in t0..t1 {
                // SAFETY: the calling thread owns output columns `rows` of this weight
                // exclusively (row ranges of different threads are disjoint).
                let dst = unsafe { out.slice(t * w.rows + r0, n_rows) };
                let src = &results[(t - t0) * g.panel..][..n_rows];
                // Whole panels as fixed-size copies (a few vector moves): a `memcpy` call
                // per token and panel took 4 % of a prompt step.
                match (
                    <&mut [f32; 16]>::try_from(&mut *dst),
                    <&[f32; 16]>::try_from(src),
                ) {
                    (Ok(d), Ok(s)) => *d = *s,
                    _ => dst.copy_from_slice(src),
                }
            }
            r0 += n_rows;
        }
        t0 = t1;
    }
}

/// Asks the cache hierarchy for `bytes` ahead of their use: the next panel's rows while the
/// kernel unpacks and multiplies this one. A panel's rows are a few hundred bytes each, too
/// short for the hardware prefetchers to pick up, so without it every panel's unpacking
/// waited on memory (Zen 5, 2 threads, SmolLM2 Q8_0, generation of 16 sequences in one step:
/// 459-461 -> 581-587 tok/s; 4 sequences through the tiled kernels 174-184 -> 320-333).
fn prefetch_bytes(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch reads nothing architecturally and never faults; SSE is part of
        // x86-64's baseline.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<{ _MM_HINT_T0 }>(line.as_ptr().cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Bytes of packed activations one token tile of [`rows_times_tokens`] holds: well inside
/// the L2 cache of the x86 and Arm cores we run on (1 to 2 MiB), beside the rows passing.
const TOKEN_TILE_BYTES: usize = 256 << 10;

/// Bytes of packed activations one token tile of [`rows_times_tokens_tiled`] holds. Every
/// panel is unpacked once per tile, so a larger tile unpacks less often; the tile is read once
/// per panel, from L2 or L3. On Zen 5 (1 MiB L2), an 8B-shaped Q4_K_M file: pp64 27 -> 32
/// tok/s at 1 thread and pp256 53 -> 66 at 2 threads against 256 KiB (512 KiB between);
/// SmolLM2's prompts unchanged.
const PANEL_TOKEN_TILE_BYTES: usize = 1 << 20;

/// [`rows_times_tokens`] for the tokens of one tile.
fn rows_times_token_tile(
    w: &PackedMatrix<'_>,
    acts: &PackedActivations,
    out: &SharedMut<f32>,
    rows: std::ops::Range<usize>,
    tokens: std::ops::Range<usize>,
) {
    let write = |t: usize, r: usize, v: f32| {
        // SAFETY: the calling thread owns output columns `rows` of this weight exclusively
        // (row ranges of different threads are disjoint); the index is bounds-checked inside.
        unsafe { out.write(t * w.rows + r, v) }
    };
    let n_tokens = tokens.end;
    if n_tokens - tokens.start < 4 {
        prefetch_start(w, rows.clone());
    }
    let mut block_start = rows.start;
    while block_start < rows.end {
        let block_end = (block_start + ROW_BLOCK).min(rows.end);
        let mut t = tokens.start;
        while t + 4 <= n_tokens {
            let group = [
                acts.row(t),
                acts.row(t + 1),
                acts.row(t + 2),
                acts.row(t + 3),
            ];
            let mut sums = [0.0f32; 4];
            for r in block_start..block_end {
                (w.kernels.four)(w.cols, w.row(r), group, &mut sums);
                for (i, &s) in sums.iter().enumerate() {
                    write(t + i, r, s);
                }
            }
            t += 4;
        }
        // Tokens left over (all of them in decode): four weight rows per call.
        for t in t..n_tokens {
            let a = acts.row(t);
            let mut r = block_start;
            while r + 4 <= block_end {
                let rows = [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)];
                let mut sums = [0.0f32; 4];
                (w.kernels.rows4)(w.cols, rows, a, &mut sums);
                for (i, &s) in sums.iter().enumerate() {
                    write(t, r + i, s);
                }
                r += 4;
            }
            for r in r..block_end {
                write(t, r, (w.kernels.one)(w.cols, w.row(r), a));
            }
        }
        block_start = block_end;
    }
}

/// Decode: requests the first bytes of rows `rows` that the row kernels' own prefetching
/// (which runs [`crate::quant::dot::PREFETCH_AHEAD_BYTES`] ahead of the tile being read) does
/// not cover, so a thread's range of rows does not begin at memory latency. Into L2: a burst
/// of this many lines into L1 would wait for its fill buffers.
#[inline]
fn prefetch_start(w: &PackedMatrix<'_>, rows: std::ops::Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::quant::dot::PREFETCH_AHEAD_BYTES;
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let bytes = (rows.len() * w.row_bytes).min(PREFETCH_AHEAD_BYTES as usize);
        let start = w.data[rows.start * w.row_bytes..].as_ptr();
        for line in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults; the address lies inside `w.data` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(start.wrapping_add(line).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (w, rows);
}

/// A mutable buffer that several threads write at disjoint indices.
pub(crate) struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: access goes through `unsafe` methods whose callers guarantee disjoint indices.
unsafe impl<T: Send> Sync for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub(crate) fn new(buf: &mut [T]) -> Self {
        SharedMut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// # Safety
    /// No other thread may access index `i` concurrently.
    pub(crate) unsafe fn write(&self, i: usize, v: T) {
        assert!(i < self.len);
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe { self.ptr.add(i).write(v) }
    }

    /// # Safety
    /// No other thread may access `start..start+len` concurrently while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len);
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled path (every step of GEMM_MIN_TOKENS tokens or more, Q4_0 here) over rows
    /// that are not whole panels, split between threads, two products fused: the bits of the
    /// one-row, one-token kernel.
    #[test]
    fn tiled_products_give_the_bits_of_one_product_at_a_time() {
        let (cols, n_tokens) = (576, 9);
        let ty = GgmlType::Q4_0;
        let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
        let mut seed = 11u32;
        let mut byte = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        // Random quants; scales set to small finite f16 values (0x1000 .. 0x13FF).
        let mut weight = |rows: usize| -> Vec<u8> {
            let mut data: Vec<u8> = (0..rows * row_bytes).map(|_| byte()).collect();
            for block in data.chunks_exact_mut(18) {
                block[1] = 0x10 | (block[1] & 0x03);
            }
            data
        };
        let (wa, wb) = (weight(37), weight(20));
        let a = PackedMatrix::new(&wa, ty, 37, cols).unwrap();
        let b = PackedMatrix::new(&wb, ty, 20, cols).unwrap();
        #[cfg(target_arch = "x86_64")]
        assert!(a.gemm.is_some() || !std::is_x86_feature_detected!("avx2"));
        let x: Vec<f32> = (0..n_tokens * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.02)
            .collect();
        let pool = ThreadPool::new(2).unwrap();
        let mut acts = PackedActivations::default();
        acts.pack(&pool, ty, &x, n_tokens, cols, GEMM_MIN_TOKENS)
            .unwrap();
        let (mut out_a, mut out_b) = (vec![f32::NAN; n_tokens * 37], vec![f32::NAN; n_tokens * 20]);
        matmul_fused(
            &pool,
            &mut [
                MatmulTarget {
                    w: a,
                    out: &mut out_a,
                },
                MatmulTarget {
                    w: b,
                    out: &mut out_b,
                },
            ],
            &acts,
        );
        for (w, out) in [(&a, &out_a), (&b, &out_b)] {
            for t in 0..n_tokens {
                for r in 0..w.rows {
                    let want = (w.kernels.one)(cols, w.row(r), acts.row(t));
                    assert_eq!(
                        out[t * w.rows + r].to_bits(),
                        want.to_bits(),
                        "token {t}, row {r}"
                    );
                }
            }
        }
    }

    /// Rows wide enough that a token tile holds only 120 tokens (tiled kernels) or 28 (row
    /// kernels, where the CPU has no tiled one), and 250 tokens: three tiles, or nine with 2
    /// tokens left over from the groups of four. Every product must be the bits of the
    /// one-row, one-token kernel.
    #[test]
    fn token_tiles_give_the_bits_of_one_product_at_a_time() {
        let (rows, cols, n_tokens) = (12, 8192, 250);
        let ty = GgmlType::Q8_0;
        let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
        assert_eq!(
            PANEL_TOKEN_TILE_BYTES / row_bytes,
            120,
            "the test needs three tiles"
        );
        assert_eq!(TOKEN_TILE_BYTES / row_bytes / 4 * 4, 28);
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        // Q8_0 weights are Q8_0 activations' format: quantize random rows with it.
        let mut data = vec![0u8; rows * row_bytes];
        for r in 0..rows {
            let x: Vec<f32> = (0..cols).map(|_| rnd()).collect();
            quantize_activations(ty, &x, &mut data[r * row_bytes..][..row_bytes]).unwrap();
        }
        let w = PackedMatrix::new(&data, ty, rows, cols).unwrap();
        let x: Vec<f32> = (0..n_tokens * cols).map(|_| rnd()).collect();
        let pool = ThreadPool::new(2).unwrap();
        let mut acts = PackedActivations::default();
        acts.pack(&pool, ty, &x, n_tokens, cols, GEMM_MIN_TOKENS)
            .unwrap();
        let mut out = vec![f32::NAN; n_tokens * rows];
        matmul(&pool, &w, &acts, &mut out);
        for t in 0..n_tokens {
            for r in 0..rows {
                let want = (w.kernels.one)(cols, w.row(r), acts.row(t));
                assert_eq!(
                    out[t * rows + r].to_bits(),
                    want.to_bits(),
                    "token {t}, row {r}"
                );
            }
        }
    }
}
