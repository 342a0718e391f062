//! Prompt attention (steps of many tokens): one task per tile of tokens and KV head, each key
//! and value row read once for every query row of the tile, each row's arithmetic exactly
//! the one [`super::attention`] defines (the same bits as the token alone).

#[cfg(target_arch = "x86_64")]
use super::dot32_avx2;
use super::{avx2_detected, avx512_detected, AttentionShape, CHUNK};
use crate::backend::cpu::matmul::SharedMut;
use crate::backend::cpu::threadpool::ThreadPool;
use crate::backend::numerics::{self, butterfly32, LANES};
use crate::kv_cache::HostKv;

/// Tokens per task of the prompt path: their query rows share each key and value row read.
pub(super) const TOKEN_TILE: usize = 8;

/// How many cells ahead of the key row being read the next key rows are prefetched into L1,
/// in decode spans (one token); the value rows go into L2 at the same time, and a leaf ahead
/// into L1 in the weighted sums. 8 left the key loads stalled on an AMD Zen 5 VM (tg128 after
/// 4,096 cells, SmolLM2, 1 thread: 32 ahead 26.7 tok/s, 64 28.7, 128 23.7; with the values
/// a leaf ahead, 8 -> 64: 25.8 -> 31.8, and 2 threads' tg64 45-48 -> 57-58).
const PREFETCH_AHEAD: usize = 64;

/// Consecutive tokens whose visible cells each extend the previous token's (the tokens of one
/// sequence under a causal mask), cut into tiles of at most [`TOKEN_TILE`]: the last token's
/// list holds every other token's as a prefix.
pub(super) fn prompt_tiles(visible: &[Vec<usize>]) -> Vec<std::ops::Range<usize>> {
    let mut tiles = Vec::new();
    let mut t0 = 0;
    for t in 1..=visible.len() {
        let extends =
            t < visible.len() && t - t0 < TOKEN_TILE && visible[t].starts_with(&visible[t - 1]);
        if !extends {
            tiles.push(t0..t);
            t0 = t;
        }
    }
    tiles
}

/// [`super::attention`] for prompt steps: one task per (token tile, KV head), every query row of the
/// tile (its tokens x the KV head's query heads) with the bits the canonical order gives it
/// alone (see [`super::attention`]), the key and value rows read once for all of them.
pub(super) fn attention_tiled(
    pool: &ThreadPool,
    kv: &HostKv,
    layer: usize,
    shape: AttentionShape,
    q: &[f32],
    visible: &[Vec<usize>],
    out: &mut [f32],
) {
    let AttentionShape {
        n_head,
        n_head_kv,
        head_dim,
        scale,
    } = shape;
    let q_dim = n_head * head_dim;
    let heads = n_head / n_head_kv;
    let tiles = prompt_tiles(visible);
    let n_tasks = tiles.len() * n_head_kv;
    let out = SharedMut::new(out);
    let isa = TileIsa::detect();
    let scratch = TileScratch::default;
    // The last tiles first (they see the most cells), as in `attention`.
    pool.run_chunks(n_tasks, &scratch, &|scratch, chunk| {
        let task = n_tasks - 1 - chunk;
        let (tile, kvh) = (&tiles[task / n_head_kv], task % n_head_kv);
        let mut lens = [0usize; TOKEN_TILE];
        for (len, t) in lens.iter_mut().zip(tile.clone()) {
            *len = visible[t].len();
        }
        let task = TileTask {
            kv,
            layer,
            q,
            q_dim,
            tokens: tile.clone(),
            h0: kvh * heads,
            heads,
            cells: &visible[tile.end - 1],
            lens: &lens[..tile.len()],
            kv_off: kvh * head_dim,
            head_dim,
            scale,
        };
        isa.run(&task, scratch);
        let rows = tile.len() * heads;
        let n_chunks = scratch.stats.len() / rows.max(1);
        let width = heads * head_dim;
        for (i, t) in tile.clone().enumerate() {
            // SAFETY: the heads of KV head `kvh` of token t belong to this task alone.
            let dst = unsafe { out.slice(t * q_dim + task.h0 * head_dim, width) };
            for (g, o) in dst.chunks_exact_mut(head_dim).enumerate() {
                let r = i * heads + g;
                let stats = (0..n_chunks).map(|j| scratch.stats[j * rows + r]);
                let partials = (0..n_chunks)
                    .map(|j| &scratch.partials[(j * rows + r) * head_dim..][..head_dim]);
                combine(stats, partials, o);
            }
        }
    });
}

/// What one query row took from one chunk of the split softmax: whether it sees a cell of
/// the chunk, the chunk's largest score `m_j` and the sum `l_j` of its exponentials (the
/// weighted values `o_j` are kept beside, in [`TileScratch::partials`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ChunkStat {
    pub seen: bool,
    pub max: f32,
    pub sum: f32,
}

/// One query row's output from its chunks in list order (the module documentation of
/// [`super`]): `M` the largest chunk max (= the largest score: `max` is exact), then per
/// chunk `w = exp(m_j - M)`, `L += l_j * w`, `O += o_j * w`, and `O * (1 / L)` into `out`.
pub(super) fn combine<'a>(
    stats: impl Iterator<Item = ChunkStat> + Clone,
    partials: impl Iterator<Item = &'a [f32]>,
    out: &mut [f32],
) {
    let max = stats
        .clone()
        .filter(|c| c.seen)
        .fold(f32::NEG_INFINITY, |m, c| m.max(c.max));
    let mut total = 0.0f32;
    out.fill(0.0);
    for (c, partial) in stats.zip(partials) {
        if !c.seen {
            continue;
        }
        let w = numerics::exp(c.max - max);
        total += c.sum * w;
        for (o, &x) in out.iter_mut().zip(partial) {
            *o += x * w;
        }
    }
    let inv = 1.0 / total;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// Which copy of [`attend_tile`] this CPU runs (and the ISA choice allows).
#[derive(Clone, Copy)]
pub(super) enum TileIsa {
    Avx512,
    Avx2,
    Scalar,
}

impl TileIsa {
    pub(super) fn detect() -> TileIsa {
        if avx512_detected() {
            TileIsa::Avx512
        } else if avx2_detected() {
            TileIsa::Avx2
        } else {
            TileIsa::Scalar
        }
    }

    /// [`attend_tile`] of `task` into `scratch.stats` / `scratch.partials`.
    pub(super) fn run(self, task: &TileTask, scratch: &mut TileScratch) {
        match self {
            // SAFETY: AVX-512 F, AVX2 and FMA were detected at run time.
            TileIsa::Avx512 => unsafe { attend_tile_avx512(task, scratch) },
            // SAFETY: AVX2 and FMA were detected at run time.
            TileIsa::Avx2 => unsafe { attend_tile_avx2(task, scratch) },
            TileIsa::Scalar => {
                let dot = numerics::dot;
                attend_tile(task, scratch, dots_by(dot), keys8_by(dot), exp_shifted)
            }
        }
    }
}

/// One task: tokens `tokens` and query heads `h0..h0 + heads`, all of KV head
/// `kv_off / head_dim`, over `cells` (in list order), of which token `tokens.start + i` sees
/// the first `lens[i]` (a prompt tile: each token's visible cells a prefix of the last one's;
/// a decode span: one token and a run of whole chunks of its cells). Query row
/// `r = (t - tokens.start) * heads + g` is token t, head h0 + g.
pub(super) struct TileTask<'a> {
    pub kv: &'a HostKv,
    pub layer: usize,
    /// (n_tokens, q_dim)
    pub q: &'a [f32],
    pub q_dim: usize,
    pub tokens: std::ops::Range<usize>,
    pub h0: usize,
    pub heads: usize,
    pub cells: &'a [usize],
    /// (tokens.len()), non-decreasing.
    pub lens: &'a [usize],
    pub kv_off: usize,
    pub head_dim: usize,
    pub scale: f32,
}

/// Per-thread scratch of [`attend_tile`], and its results.
#[derive(Default)]
pub(super) struct TileScratch {
    /// (n_chunks, rows): what each row took from each chunk of the task's cells, in order.
    pub stats: Vec<ChunkStat>,
    /// (n_chunks, rows, head_dim): the chunks' weighted values `o_j` (zeros where unseen).
    pub partials: Vec<f32>,
    /// (rows, cells of the last token): scores, then their exponentials.
    scores: Vec<f32>,
    /// (rows): the current chunk's max score.
    chunk_max: Vec<f32>,
    /// (rows, 6, head_dim): per row the pending sums of the butterfly, one per level (level
    /// 5 holds the finished chunk sum); `pending[r]` bit l says level l holds one.
    levels: Vec<f32>,
    pending: Vec<u8>,
    /// (CHUNK / LANES, head_dim): the value rows of one partial index in a chunk, widened.
    values: Vec<f32>,
    /// (LANES, CHUNK / LANES): the chunk's cell indices by partial index.
    by_lane: Vec<usize>,
    /// (rows, head_dim): the query rows; (rows): their dots with one key row.
    q_rows: Vec<f32>,
    dot_out: Vec<f32>,
    /// (8, head_dim): eight key rows widened (decode's scores).
    keys8: Vec<f32>,
    /// (head_dim): a key or value row widened.
    row: Vec<f32>,
}

/// [`attend_tile`] compiled for AVX2 (same operations, same bits).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_tile_avx2(task: &TileTask, scratch: &mut TileScratch) {
    // SAFETY (closure): this function runs only where AVX2 was detected.
    let exp = |x: &mut [f32], sub: f32| unsafe { exp_shifted_avx2(x, sub) };
    if task.head_dim.is_multiple_of(LANES) {
        // SAFETY (closures): as above.
        let dots = |qs: &[f32], k: &[f32], out: &mut [f32]| unsafe { dots8_avx2(qs, k, out) };
        let keys8 = |q: &[f32], keys: &[f32], out: &mut [f32; 8]| {
            // Dots of q with each key row: the same sums with the rows' roles swapped.
            // SAFETY: as above.
            unsafe { dots8_avx2(&keys[..8 * q.len()], q, out) }
        };
        attend_tile(task, scratch, dots, keys8, exp)
    } else {
        let dot = numerics::dot;
        attend_tile(task, scratch, dots_by(dot), keys8_by(dot), exp)
    }
}

/// [`dot32_avx2`] of each query row in `qs` (rows of `k.len()`, a multiple of 32) with `k`
/// into `out`: for head sizes 64 and 128 eight rows at a time, their last three butterfly
/// steps together ([`join8_ymm`]'s shuffles, AVX only) and no slice bounds in the loop
/// (as [`dots8_fixed_avx512`]); other sizes one [`dot32_avx2`] per row.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn dots8_avx2(qs: &[f32], k: &[f32], out: &mut [f32]) {
    // SAFETY (all three): the CPU features of this function.
    match k.len() {
        64 => unsafe { dots8_fixed_avx2::<64>(qs, k, out) },
        128 => unsafe { dots8_fixed_avx2::<128>(qs, k, out) },
        hd => {
            for (o, q) in out.iter_mut().zip(qs.chunks_exact(hd)) {
                *o = unsafe { dot32_avx2(q, k) };
            }
        }
    }
}

/// The shared loop of the fixed-width dots: `dot` (one row's dot up to its last three
/// butterfly steps, from the row's first float) for the rows of `qs` eight at a time, those
/// steps joined by [`join8_ymm`], and `tail` (a whole dot) for the rows left over.
///
/// # Safety
/// The CPU must support AVX; `qs.len() == out.len() * HD`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_by_eight<const HD: usize>(
    qs: &[f32],
    out: &mut [f32],
    dot: impl Fn(*const f32) -> std::arch::x86_64::__m256,
    tail: impl Fn(&[f32]) -> f32,
) {
    assert_eq!(qs.len(), out.len() * HD);
    let full = out.len() / 8;
    for b in 0..full {
        // SAFETY: rows 8b .. 8b + 8 of qs exist (asserted above).
        let q8 = unsafe { qs.as_ptr().add(8 * b * HD) };
        let v8 = std::array::from_fn(|j| dot(q8.wrapping_add(j * HD)));
        // SAFETY: the caller's CPU has AVX.
        unsafe { join8_ymm(v8, &mut out[8 * b..8 * b + 8]) };
    }
    for (o, q) in out[8 * full..]
        .iter_mut()
        .zip(qs[8 * full * HD..].chunks_exact(HD))
    {
        *o = tail(q);
    }
}

/// [`dots8_avx2`] for rows of HD: per row [`dot32_avx2`]'s four accumulators (lanes 8j..8j + 8
/// from +0.0, chunks of 32 in order) and its steps m = 16 and m = 8, then m = 4, 2, 1 for eight
/// rows at once.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots8_fixed_avx2<const HD: usize>(qs: &[f32], k: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(k.len() == HD && HD.is_multiple_of(LANES) && qs.len() == out.len() * HD);
    let kp = k.as_ptr();
    let dot = |qp: *const f32| {
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in 0..HD / LANES {
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: qp and kp hold HD floats; 32c + 8j + 8 <= HD.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(qp.add(32 * c + 8 * j)),
                        _mm256_loadu_ps(kp.add(32 * c + 8 * j)),
                    )
                };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(x, y));
            }
        }
        let v16 = [_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])];
        _mm256_add_ps(v16[0], v16[1])
    };
    // SAFETY (both): the CPU features of this function (join8_ymm needs AVX only).
    let tail = |q: &[f32]| unsafe { dot32_avx2(q, k) };
    unsafe { rows_by_eight::<HD>(qs, out, dot, tail) }
}
#[cfg(not(target_arch = "x86_64"))]
unsafe fn attend_tile_avx2(task: &TileTask, scratch: &mut TileScratch) {
    let dot = numerics::dot;
    attend_tile(task, scratch, dots_by(dot), keys8_by(dot), exp_shifted)
}

/// The dots of the query row `q` with 8 key rows (`keys`: (8, q.len())) into `out`, one `dot`
/// each.
#[inline(always)]
fn keys8_by(dot: impl Fn(&[f32], &[f32]) -> f32) -> impl Fn(&[f32], &[f32], &mut [f32; 8]) {
    move |q, keys, out| {
        for (o, k) in out.iter_mut().zip(keys.chunks_exact(q.len())) {
            *o = dot(q, k);
        }
    }
}

/// The dots of consecutive query rows (`qs`: rows of `k.len()`) with `k` into `out`, one
/// `dot` each.
#[inline(always)]
fn dots_by(dot: impl Fn(&[f32], &[f32]) -> f32) -> impl Fn(&[f32], &[f32], &mut [f32]) {
    move |qs, k, out| {
        for (o, q) in out.iter_mut().zip(qs.chunks_exact(k.len())) {
            *o = dot(q, k);
        }
    }
}

/// [`attend_tile`] with the score dots in zmm registers ([`dot32_avx512`]; same bits).
///
/// # Safety
/// The CPU must support AVX-512 F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn attend_tile_avx512(task: &TileTask, scratch: &mut TileScratch) {
    // SAFETY (closure): this function runs only where AVX2 was detected.
    let exp = |x: &mut [f32], sub: f32| unsafe { exp_shifted_avx2(x, sub) };
    if task.head_dim.is_multiple_of(LANES) {
        // SAFETY (closure): this function runs only where AVX-512 F was detected.
        let dots = |qs: &[f32], k: &[f32], out: &mut [f32]| unsafe { dots8_avx512(qs, k, out) };
        // SAFETY (closure): as above.
        let keys8 = |q: &[f32], keys: &[f32], out: &mut [f32; 8]| unsafe {
            dots_keys8_avx512(q, keys, out)
        };
        attend_tile(task, scratch, dots, keys8, exp)
    } else {
        let dot = numerics::dot;
        attend_tile(task, scratch, dots_by(dot), keys8_by(dot), exp)
    }
}
#[cfg(not(target_arch = "x86_64"))]
unsafe fn attend_tile_avx512(task: &TileTask, scratch: &mut TileScratch) {
    let dot = numerics::dot;
    attend_tile(task, scratch, dots_by(dot), keys8_by(dot), exp_shifted)
}

/// The canonical dot of `a` and `b` (one length, a multiple of 32) as [`dot32_avx512`] forms
/// it, stopped at 8 lanes: its butterfly's steps m = 16 and m = 8 done, m = 4, 2, 1 left to
/// [`join8_ymm`]. Inlined into AVX-512 code only.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot_to8_avx512(a: &[f32], b: &[f32]) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 2];
    for (qc, kc) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for (h, acc_h) in acc.iter_mut().enumerate() {
            // SAFETY: chunks of 32 elements: 16h..16h + 16 is inside both; the caller runs
            // where AVX-512 F was detected.
            let (x, y) = unsafe {
                (
                    _mm512_loadu_ps(qc.as_ptr().add(16 * h)),
                    _mm512_loadu_ps(kc.as_ptr().add(16 * h)),
                )
            };
            *acc_h = _mm512_add_ps(*acc_h, _mm512_mul_ps(x, y));
        }
    }
    let v16 = _mm512_add_ps(acc[0], acc[1]);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v16)));
    _mm256_add_ps(_mm512_castps512_ps256(v16), hi)
}

/// The last three butterfly steps (m = 4, 2, 1) of eight dots at once ([`dot_to8_avx512`]'s),
/// through shuffles that pair the same lanes, so each sum is [`dot32_avx512`]'s; `out[j]` is
/// dot j's. (One dot at a time, the tail was a dependency chain per dot.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn join8_ymm(v8: [std::arch::x86_64::__m256; 8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    // m = 4: [a.lo | b.lo] + [a.hi | b.hi] for the dot pairs (0, 1), (2, 3), ...
    let v4: [__m256; 4] = std::array::from_fn(|p| {
        let (a, b) = (v8[2 * p], v8[2 * p + 1]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    });
    // m = 2: lanes i + (i + 2) of dots (0, 2) and (1, 3) ... -> [d0 d0 d2 d2 | d1 d1 d3 d3]
    let v2: [__m256; 2] = std::array::from_fn(|p| {
        let (a, b) = (v4[2 * p], v4[2 * p + 1]);
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b01_00_01_00>(a, b),
            _mm256_shuffle_ps::<0b11_10_11_10>(a, b),
        )
    });
    // m = 1: lane 0 + lane 1 -> [d0 d2 d4 d6 | d1 d3 d5 d7].
    let v1 = _mm256_add_ps(
        _mm256_shuffle_ps::<0b10_00_10_00>(v2[0], v2[1]),
        _mm256_shuffle_ps::<0b11_01_11_01>(v2[0], v2[1]),
    );
    let mut lanes = [0.0f32; 8];
    // SAFETY: 8 writable floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v1) };
    for (j, o) in out.iter_mut().take(8).enumerate() {
        *o = lanes[(j % 2) * 4 + j / 2];
    }
}

/// [`dot32_avx512`] of each query row in `qs` (rows of `k.len()`, a multiple of 32) with `k`
/// into `out`, 8 rows at a time ([`join8_ymm`]).
///
/// # Safety
/// The CPU must support AVX-512 F and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub(super) unsafe fn dots8_avx512(qs: &[f32], k: &[f32], out: &mut [f32]) {
    // SAFETY (all three): the CPU features of this function.
    match k.len() {
        64 => unsafe { dots8_fixed_avx512::<64>(qs, k, out) },
        128 => unsafe { dots8_fixed_avx512::<128>(qs, k, out) },
        _ => unsafe { dots8_any_avx512(qs, k, out) },
    }
}

/// [`dots8_avx512`] for any width (a multiple of 32).
///
/// # Safety
/// The CPU must support AVX-512 F and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn dots8_any_avx512(qs: &[f32], k: &[f32], out: &mut [f32]) {
    let hd = k.len();
    for (q8, o8) in qs.chunks_exact(8 * hd).zip(out.chunks_exact_mut(8)) {
        // SAFETY (both): the CPU features of this function.
        let v8 = std::array::from_fn(|j| unsafe { dot_to8_avx512(&q8[j * hd..][..hd], k) });
        unsafe { join8_ymm(v8, o8) };
    }
    let done = out.len() / 8 * 8;
    for (o, q) in out[done..].iter_mut().zip(qs[done * hd..].chunks_exact(hd)) {
        // SAFETY: the CPU features of this function.
        *o = unsafe { dot32_avx512(q, k) };
    }
}

/// [`dots8_avx512`] for rows of HD (64 or 128): the key row's HD / 16 vectors loaded once and
/// kept in registers for every query row, and no slice bounds in the loop (the generic form
/// spent more of prompt attention on its iterators' checks than on the products). Each dot is
/// [`dot_to8_avx512`]'s, sum for sum: lanes j and 16 + j of each chunk of 32 into two
/// accumulators from +0.0, chunks in order.
///
/// # Safety
/// The CPU must support AVX-512 F and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn dots8_fixed_avx512<const HD: usize>(qs: &[f32], k: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(k.len() == HD && HD.is_multiple_of(LANES) && HD <= 128 && qs.len() == out.len() * HD);
    let kp = k.as_ptr();
    // SAFETY: HD floats at kp; chunk c's halves at 32c and 32c + 16.
    let kv: [[__m512; 2]; 4] = std::array::from_fn(|c| {
        if c < HD / LANES {
            unsafe {
                [
                    _mm512_loadu_ps(kp.add(32 * c)),
                    _mm512_loadu_ps(kp.add(32 * c + 16)),
                ]
            }
        } else {
            [_mm512_setzero_ps(); 2]
        }
    });
    let dot = |qp: *const f32| {
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for (c, kc) in kv.iter().enumerate().take(HD / LANES) {
            // SAFETY: qp holds HD floats (the caller's row); 32c + 16 + 16 <= HD.
            let (x0, x1) = unsafe {
                (
                    _mm512_loadu_ps(qp.add(32 * c)),
                    _mm512_loadu_ps(qp.add(32 * c + 16)),
                )
            };
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(x0, kc[0]));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(x1, kc[1]));
        }
        let v16 = _mm512_add_ps(a0, a1);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v16)));
        _mm256_add_ps(_mm512_castps512_ps256(v16), hi)
    };
    // SAFETY (both): the CPU features of this function (join8_ymm needs AVX only).
    let tail = |q: &[f32]| unsafe { dot32_avx512(q, k) };
    unsafe { rows_by_eight::<HD>(qs, out, dot, tail) }
}

/// [`dot32_avx512`] of the query row `q` with 8 key rows (`keys`: (8, q.len())) into `out`:
/// decode scores 8 cells at a time when a task has fewer than 8 query rows. These are
/// [`dots8_avx512`]'s dots with the rows' roles swapped (the products commute, so the bits are
/// the same), the query row kept in registers for head sizes 64 and 128.
///
/// # Safety
/// The CPU must support AVX-512 F and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub(super) unsafe fn dots_keys8_avx512(q: &[f32], keys: &[f32], out: &mut [f32; 8]) {
    // SAFETY: the CPU features of this function.
    unsafe { dots8_avx512(&keys[..8 * q.len()], q, out) }
}

/// [`super::dot32_avx2`] in zmm registers: lanes 16j..16j + 16 in `acc[j]`, so the butterfly's
/// first step (m = 16) is one vector add and the rest is [`super::dot32_avx2`]'s.
///
/// # Safety
/// The CPU must support AVX-512 F and AVX2; `q.len() == k.len()`, a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub(super) unsafe fn dot32_avx512(q: &[f32], k: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert!(q.len() == k.len() && q.len().is_multiple_of(LANES));
    // SAFETY: the CPU features of this function.
    let v8 = unsafe { dot_to8_avx512(q, k) };
    let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8));
    let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)))
}

/// `x[i] = numerics::exp(x[i] - sub)` for every element.
#[inline(always)]
fn exp_shifted(xs: &mut [f32], sub: f32) {
    for x in xs {
        *x = numerics::exp(*x - sub);
    }
}

/// [`exp_shifted`] 8 elements at a time: the operations of `numerics::exp` in its order
/// (separate multiplies and adds, never fused), so the same bits. The scalar loop was a
/// fifth of prompt attention.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn exp_shifted_avx2(xs: &mut [f32], sub: f32) {
    use numerics::{EXP_MAX, EXP_MIN, LN2_HI, LN2_LO, LOG2_E, ROUND_MAGIC};
    use std::arch::x86_64::*;
    let c = _mm256_set1_ps;
    let mut chunks = xs.chunks_exact_mut(8);
    for x8 in &mut chunks {
        // SAFETY: 8 floats at x8.
        let x = _mm256_sub_ps(unsafe { _mm256_loadu_ps(x8.as_ptr()) }, c(sub));
        // `f32::max(x, EXP_MIN)` is EXP_MIN for a NaN x, as `maxps` gives its second operand.
        let x = _mm256_min_ps(_mm256_max_ps(x, c(EXP_MIN)), c(EXP_MAX));
        let magic = c(ROUND_MAGIC);
        let n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, c(LOG2_E)), magic), magic);
        let r = _mm256_sub_ps(
            _mm256_sub_ps(x, _mm256_mul_ps(n, c(LN2_HI))),
            _mm256_mul_ps(n, c(LN2_LO)),
        );
        let mut p = c(1.0 / 5040.0);
        for k in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm256_add_ps(_mm256_mul_ps(p, r), c(k));
        }
        // n is a whole number in -126..=127, so truncation is `as i32`.
        let bits = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(x8.as_mut_ptr(), _mm256_mul_ps(p, scale)) };
    }
    exp_shifted(chunks.into_remainder(), sub);
}

/// `acc[d] = Σ_j es[j] * values[j * stride + d]` for 8S elements, cells in order, each sum
/// from +0.0 (one rounded multiply and one add per term): the S vectors of 8 stay in
/// registers while the cells pass. Rows wider than 128 go through it in slices of 64.
#[inline(always)]
fn weighted_sum<const S: usize>(es: &[f32], values: &[f32], stride: usize, acc: &mut [f32]) {
    let width = 8 * S;
    let mut sum = [[0.0f32; 8]; S];
    for (j, &e) in es.iter().enumerate() {
        let v = &values[j * stride..][..width];
        for (s8, v8) in sum.iter_mut().zip(v.chunks_exact(8)) {
            for (s, &x) in s8.iter_mut().zip(v8) {
                *s += e * x;
            }
        }
    }
    for (a8, s8) in acc.chunks_exact_mut(8).zip(&sum) {
        *<&mut [f32; 8]>::try_from(a8).expect("chunks of 8") = *s8;
    }
}

/// `dst = src` for rows of equal length; the usual head sizes as fixed-size copies (a few
/// vector moves: the `memmove` calls took 6 % of a prompt step).
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    match (
        <&mut [f32; 64]>::try_from(&mut *dst),
        <&[f32; 64]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

/// The 5-bit reversal of `s`: the partial index whose sum is the s-th leaf of the butterfly
/// (partials 0, 16, 8, 24, 4, ...: `butterfly32` adds partial k + 16 into k first, then k + 8
/// into k, and so on, so leaves in this order combine as a binary counter carries).
fn leaf(s: usize) -> usize {
    (s as u32).reverse_bits() as usize >> (u32::BITS - 5)
}

/// Every query row of `task`, chunk by chunk, into `scratch.stats` and `scratch.partials`,
/// each with the bits the canonical order gives it alone (the module documentation of
/// [`super`]; [`combine`] finishes a row). Scores: each key row is read once and dotted with
/// every row whose token sees it. Weighted values: instead of 32 partial rows per query row, the cells
/// of one partial index `k` (cells c with c % 32 == k, ascending) are summed into one row and
/// then merged at once into the butterfly, leaves in [`leaf`] order: the same additions in
/// the same order as 32 partial rows summed cell by cell and then joined by the butterfly (a
/// partial no cell feeds is skipped either way), with each value row read once per chunk for
/// all query rows.
#[inline(always)]
fn attend_tile(
    task: &TileTask,
    s: &mut TileScratch,
    dots: impl Fn(&[f32], &[f32], &mut [f32]),
    dots_keys8: impl Fn(&[f32], &[f32], &mut [f32; 8]),
    exp_shifted: impl Fn(&mut [f32], f32),
) {
    let TileTask {
        kv,
        layer,
        q,
        q_dim,
        ref tokens,
        h0,
        heads,
        cells,
        lens,
        kv_off,
        head_dim: hd,
        scale,
    } = *task;
    let TileScratch {
        stats,
        partials,
        scores,
        chunk_max,
        levels,
        pending,
        values,
        by_lane,
        q_rows,
        dot_out,
        keys8,
        row,
    } = s;
    let n_tok = tokens.len();
    let rows = n_tok * heads;
    let n = cells.len();
    // Cells seen by row r: the first len(r) of `cells`.
    let len = |r: usize| lens[r / heads];
    row.resize(hd, 0.0);
    scores.clear();
    scores.resize(rows * n, 0.0);
    // The tile's query rows, contiguous: (rows, hd).
    q_rows.clear();
    for t in tokens.clone() {
        q_rows.extend_from_slice(&q[t * q_dim + h0 * hd..][..heads * hd]);
    }
    dot_out.resize(rows, 0.0);
    // Decode with fewer than 8 query rows (a GQA group of 1 token): 8 cells at a time, each
    // row dotted with the 8 key rows at once (the same sums, and no per-dot reduction chain).
    let mut i_start = 0;
    if n_tok == 1 && rows < 8 {
        keys8.resize(8 * hd, 0.0);
        while i_start + 8 <= n {
            for (j, &c) in cells[i_start..i_start + 8].iter().enumerate() {
                if let Some(&ahead) = cells.get(i_start + j + PREFETCH_AHEAD) {
                    kv.prefetch_keys(layer, ahead, kv_off, hd);
                    kv.prefetch_values(layer, ahead, kv_off, hd, true);
                }
                kv.key_into(layer, c, kv_off, &mut keys8[j * hd..][..hd]);
            }
            for r in 0..rows {
                let mut out8 = [0.0f32; 8];
                dots_keys8(&q_rows[r * hd..][..hd], keys8, &mut out8);
                for (sc, &d) in scores[r * n + i_start..][..8].iter_mut().zip(&out8) {
                    *sc = d * scale;
                }
            }
            i_start += 8;
        }
    }
    let mut first = 0; // the first token that sees cell i (lists grow along the tile)
    for (i, &c) in cells.iter().enumerate().skip(i_start) {
        while lens[first] <= i {
            first += 1;
        }
        if let Some(&ahead) = cells.get(i + PREFETCH_AHEAD).filter(|_| n_tok == 1) {
            kv.prefetch_keys(layer, ahead, kv_off, hd);
            kv.prefetch_values(layer, ahead, kv_off, hd, true);
        }
        let k = kv.key_f32(layer, c, kv_off, hd, row);
        let r0 = first * heads;
        dots(&q_rows[r0 * hd..], k, &mut dot_out[r0..]);
        for (r, &d) in dot_out.iter().enumerate().skip(r0) {
            scores[r * n + i] = d * scale;
        }
    }
    chunk_max.clear();
    chunk_max.resize(rows, 0.0);
    stats.clear();
    partials.clear();
    levels.resize(rows * 6 * hd, 0.0);
    pending.clear();
    pending.resize(rows, 0);
    values.resize(CHUNK / LANES * hd, 0.0);
    by_lane.resize(CHUNK, 0);
    let mut i0 = 0;
    while i0 < n {
        let chunk = cells[i0] / CHUNK;
        let mut i1 = i0 + 1;
        while i1 < n && cells[i1] / CHUNK == chunk {
            i1 += 1;
        }
        // Rows that see a cell of this chunk see cells[i0..min(i1, len)].
        for r in 0..rows {
            let end = i1.min(len(r));
            if end <= i0 {
                continue;
            }
            let chunk_scores = &mut scores[r * n + i0..r * n + end];
            chunk_max[r] = chunk_scores
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            exp_shifted(chunk_scores, chunk_max[r]);
            pending[r] = 0;
        }
        // The chunk's cells by partial index, ascending (at most CHUNK / LANES each: the
        // cells are distinct and inside one chunk).
        let mut fill = [0usize; LANES];
        for (i, &c) in cells.iter().enumerate().take(i1).skip(i0) {
            let k = c % LANES;
            by_lane[k * (CHUNK / LANES) + fill[k]] = i;
            fill[k] += 1;
        }
        for leaf_index in 0..LANES {
            let lane = leaf(leaf_index);
            if n_tok == 1 && leaf_index + 1 < LANES {
                // Decode: the next leaf's value rows into L1 while this leaf is summed.
                let next = leaf(leaf_index + 1);
                for &i in &by_lane[next * (CHUNK / LANES)..][..fill[next]] {
                    kv.prefetch_values(layer, cells[i], kv_off, hd, false);
                }
            }
            // This partial's cells, their value rows widened once.
            let cells_of_lane = &by_lane[lane * (CHUNK / LANES)..][..fill[lane]];
            for (j, &i) in cells_of_lane.iter().enumerate() {
                kv.value_into(layer, cells[i], kv_off, &mut values[j * hd..][..hd]);
            }
            for r in 0..rows {
                let nr = len(r);
                if i1.min(nr) <= i0 {
                    continue;
                }
                // This leaf ends at level `top` (a carry per trailing one bit): its sum is
                // built in that level's row directly, the lower levels held in `below`.
                let top = leaf_index.trailing_ones() as usize;
                let (below, rest) = levels[r * 6 * hd..][..6 * hd].split_at_mut(top * hd);
                let dst = &mut rest[..hd];
                // The partial's sum over the row's first m cells: +0.0, then each e * v
                // added, 8 elements at a time held in registers across the cells.
                let m = cells_of_lane.iter().take_while(|&&i| i < nr).count();
                let mut fed = m > 0;
                if fed {
                    let mut es = [0.0f32; CHUNK / LANES];
                    for (e, &i) in es.iter_mut().zip(cells_of_lane.iter()) {
                        *e = scores[r * n + i];
                    }
                    let es = &es[..m];
                    match hd {
                        64 => weighted_sum::<8>(es, values, hd, dst),
                        128 => weighted_sum::<16>(es, values, hd, dst),
                        // Other widths in slices (Gemma 3's 256, Phi-3's 96): the scalar loop
                        // below made prompt attention at 256 2x slower than one head per task.
                        _ if hd.is_multiple_of(64) => {
                            for (b, d64) in dst.chunks_exact_mut(64).enumerate() {
                                weighted_sum::<8>(es, &values[64 * b..], hd, d64);
                            }
                        }
                        _ if hd.is_multiple_of(32) => {
                            for (b, d32) in dst.chunks_exact_mut(32).enumerate() {
                                weighted_sum::<4>(es, &values[32 * b..], hd, d32);
                            }
                        }
                        _ => {
                            for (d, a) in dst.iter_mut().enumerate() {
                                let mut sum = 0.0f32;
                                for (j, &e) in es.iter().enumerate() {
                                    sum += e * values[j * hd + d];
                                }
                                *a = sum;
                            }
                        }
                    }
                }
                // Carry through the butterfly's levels: at level l, a pending sum (partial
                // k) and this one (partial k + 2^(4 - l)) add, an absent one is skipped.
                for level in 0..top {
                    let bit = 1u8 << level;
                    if pending[r] & bit != 0 {
                        let held = &below[level * hd..][..hd];
                        if fed {
                            for (a, &h) in dst.iter_mut().zip(held) {
                                *a += h; // held + this: IEEE addition commutes
                            }
                        } else {
                            copy_row(dst, held);
                            fed = true;
                        }
                        pending[r] &= !bit;
                    }
                }
                if fed {
                    pending[r] |= 1 << top;
                }
            }
        }
        for r in 0..rows {
            let end = i1.min(len(r));
            if end <= i0 {
                stats.push(ChunkStat::default());
                partials.resize(partials.len() + hd, 0.0);
                continue;
            }
            let mut sums = [0.0f32; LANES];
            for (&c, &e) in cells[i0..end].iter().zip(&scores[r * n + i0..r * n + end]) {
                sums[c % LANES] += e;
            }
            stats.push(ChunkStat {
                seen: true,
                max: chunk_max[r],
                sum: butterfly32(sums),
            });
            // Level 5 holds the chunk's weighted values (a row that sees a cell of the chunk
            // feeds at least one partial).
            partials.extend_from_slice(&levels[(r * 6 + 5) * hd..][..hd]);
        }
        i0 = i1;
    }
}
