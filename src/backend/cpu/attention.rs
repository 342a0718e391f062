//! Grouped-query attention of a batch of queries over the KV cache (CPU).
//!
//! The softmax is split over chunks of [`CHUNK`] cache cells (cells `256 j .. 256 j + 256`),
//! the GPU's unit of work per block, so long contexts spread over the whole GPU and both
//! backends still compute the same bits. For each chunk `j` with a visible cell: its largest
//! score `m_j`, the exponentials `e_c = exp(s_c - m_j)`, their sum `l_j` and the weighted
//! values `o_j = sum e_c v_c` (both in canonical order, cell `c` into partial `c % 32`). Then,
//! chunks ascending with `M` the largest score and `w_j = exp(m_j - M)`: `L += l_j w_j`,
//! `O += o_j w_j`; the output is `O * (1 / L)`.

use super::matmul::SharedMut;
use super::threadpool::ThreadPool;
use crate::backend::numerics::{self, butterfly32, LANES};
use crate::kv_cache::HostKv;

mod prompt;
use prompt::attention_tiled;

/// Cache cells per chunk of the split softmax.
pub use crate::backend::numerics::ATTENTION_CHUNK as CHUNK;

/// Shapes of one attention call.
#[derive(Clone, Copy)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Scores are `q . k * scale` (usually `1 / √head_dim`).
    pub scale: f32,
}

/// `out[t, h] = softmax(q[t, h] . K[visible(t)] * scale) . V[visible(t)]` for each token `t`
/// and query head `h`; query head h reads KV head `h / (n_head / n_head_kv)`.
/// `q`, `out`: (n_tokens, n_head * head_dim); `visible[t]`: the cache cells token t attends
/// to, ascending, or (a sliding-window ring) ascending rotated to start at a chunk boundary:
/// chunks are combined in list order.
///
/// Sums follow the canonical order of [`numerics`] with the cache cell index as the element
/// index: cell `c` adds into partial `c % 32` (the softmax denominator, and each output
/// element's weighted sum of values), so the GPU's decode kernel gets the same bits whichever
/// cells are masked out.
pub fn attention(
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
    let group = n_head / n_head_kv;
    // Prompt steps: tasks of a tile of tokens and one KV head's group of query heads, so each
    // key and value row is read (and widened) once for the tile; in decode one head per task,
    // so that a few KV heads still spread over every thread. Each head's arithmetic is the
    // same either way.
    // Up to head size 128, where it was measured (SmolLM2's 64: Q6_K pp512 1 thread 290 -> 408
    // tok/s with the tiled kernels). At Gemma 3's 256 (4 query heads per KV head) a tile's
    // per-row carries no longer stay in cache and the tiles lost to one token per task: 270M
    // pp512 on 2 threads 387 vs 616 tok/s, attention 69 % of the step.
    let prompt = visible.len() * n_head_kv >= 4 * pool.n_threads() && head_dim <= 128;
    if prompt {
        attention_tiled(pool, kv, layer, shape, q, visible, out);
        return;
    }
    let heads = 1;
    let tasks_per_token = n_head / heads;
    let n_tasks = visible.len() * tasks_per_token;
    let out = SharedMut::new(out);
    let avx2 = avx2_detected();
    // One chunk per (token, heads) task, claimed by the threads (ThreadPool::run_chunks), the
    // last tokens first: under a causal mask they see the most cells, so taking them first
    // leaves the small tasks to even out the threads' ends. Each thread's scratch: the
    // scores and the softmax state of each head, (heads, LANES, head_dim) per-partial
    // weighted sums of values, and one key or value row widened to f32 (for caches stored
    // narrower).
    let scratch = || {
        (
            (Vec::<f32>::new(), vec![0.0f32; 3 * heads]),
            vec![0.0f32; heads * LANES * head_dim],
            vec![0.0f32; head_dim],
        )
    };
    pool.run_chunks(n_tasks, &scratch, &|(scores, partial_out, row), chunk| {
        let task = n_tasks - 1 - chunk;
        let (t, h) = (task / tasks_per_token, task % tasks_per_token * heads);
        let kv_off = (h / group) * head_dim;
        let task = Task {
            kv,
            layer,
            q_rows: &q[t * q_dim + h * head_dim..][..heads * head_dim],
            heads,
            cells: &visible[t],
            kv_off,
            head_dim,
            scale,
        };
        // SAFETY: task (t, h) is claimed by exactly one thread, and so are its heads' output
        // slices.
        let dst = unsafe { out.slice(t * q_dim + h * head_dim, heads * head_dim) };
        if avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            unsafe { attend_avx2(&task, scores, partial_out, row, dst) };
        } else {
            attend(&task, scores, partial_out, row, dst, numerics::dot);
        }
    });
}

/// One token's attention for `heads` consecutive query heads of one KV head.
struct Task<'a> {
    kv: &'a HostKv,
    layer: usize,
    /// (heads, head_dim)
    q_rows: &'a [f32],
    heads: usize,
    cells: &'a [usize],
    kv_off: usize,
    head_dim: usize,
    scale: f32,
}

/// AVX2 + FMA, unless `ROCMFORGE_CPU_ISA=scalar` asks for the reference code everywhere.
#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    use crate::quant::dot::{isa_choice, Isa, IsaChoice};
    isa_choice() != IsaChoice::Forced(Isa::Scalar)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}
#[cfg(not(target_arch = "x86_64"))]
fn avx2_detected() -> bool {
    false
}

/// AVX-512 F besides AVX2 and FMA, where the ISA choice allows the AVX-512 table.
#[cfg(target_arch = "x86_64")]
fn avx512_detected() -> bool {
    use crate::quant::dot::{isa_choice, Isa};
    avx2_detected() && isa_choice().allows(Isa::Avx512) && is_x86_feature_detected!("avx512f")
}
#[cfg(not(target_arch = "x86_64"))]
fn avx512_detected() -> bool {
    false
}

/// [`attend`] compiled for AVX2: the same operations in the same order (Rust never fuses a
/// multiply and an add), on wider vectors, so the same bits.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(
    task: &Task,
    scores: &mut (Vec<f32>, Vec<f32>),
    partial_out: &mut [f32],
    row: &mut [f32],
    out: &mut [f32],
) {
    if task.head_dim.is_multiple_of(LANES) {
        // SAFETY (closure): this function runs only where AVX2 was detected.
        let dot = |q: &[f32], k: &[f32]| unsafe { dot32_avx2(q, k) };
        attend(task, scores, partial_out, row, out, dot)
    } else {
        attend(task, scores, partial_out, row, out, numerics::dot)
    }
}

/// `numerics::dot(q, k)` for rows of a multiple of 32 elements, written out for AVX2: the
/// compiler's version of the generic loop shuffled the 32 lane sums through xmm registers
/// and took half of the attention time. Lanes 8j..8j + 8 in `acc[j]`; per 32 elements one
/// rounded multiply and one add per lane (never fused); then the butterfly m = 16 .. 1.
///
/// # Safety
/// The CPU must support AVX2; `q.len() == k.len()`, a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot32_avx2(q: &[f32], k: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert!(q.len() == k.len() && q.len().is_multiple_of(LANES));
    let mut acc = [_mm256_setzero_ps(); 4];
    for (qc, kc) in q.chunks_exact(LANES).zip(k.chunks_exact(LANES)) {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: chunks of 32 elements: 8j..8j + 8 is inside both.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(qc.as_ptr().add(8 * j)),
                    _mm256_loadu_ps(kc.as_ptr().add(8 * j)),
                )
            };
            *a = _mm256_add_ps(*a, _mm256_mul_ps(x, y));
        }
    }
    let v16 = [_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])];
    let v8 = _mm256_add_ps(v16[0], v16[1]);
    let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8));
    let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)))
}
#[cfg(not(target_arch = "x86_64"))]
unsafe fn attend_avx2(
    task: &Task,
    scores: &mut (Vec<f32>, Vec<f32>),
    partial_out: &mut [f32],
    row: &mut [f32],
    out: &mut [f32],
) {
    attend(task, scores, partial_out, row, out, numerics::dot)
}

/// Softmax-weighted values of one token's `heads` query heads into `out` (heads, head_dim),
/// chunk by chunk as the module documentation defines, each head exactly as if alone; the
/// heads share the reads of each key and value row. `scores`: scratch (the heads' scores,
/// and per head its max, running total and current chunk max); `partial_out`: (heads, LANES,
/// head_dim) scratch; `row`: (head_dim) scratch. Keys and values are read widened to f32 from
/// the cache's type, so the arithmetic is the same for every cache type; only the stored
/// values differ. `dot` is [`numerics::dot`] or a copy of it with the same bits.
#[inline(always)]
fn attend(
    task: &Task,
    (scores, state): &mut (Vec<f32>, Vec<f32>),
    partial_out: &mut [f32],
    row: &mut [f32],
    out: &mut [f32],
    dot: impl Fn(&[f32], &[f32]) -> f32,
) {
    let Task {
        kv,
        layer,
        q_rows,
        heads,
        cells,
        kv_off,
        head_dim,
        scale,
    } = *task;
    let n = cells.len();
    // Plain loops, not iterator chains: this must inline into the AVX2 copy of the function.
    // scores: (heads, n); state: (3, heads) = max, total, chunk max.
    scores.clear();
    scores.resize(heads * n, 0.0);
    for (i, &c) in cells.iter().enumerate() {
        let k = kv.key_f32(layer, c, kv_off, head_dim, row);
        for g in 0..heads {
            scores[g * n + i] = dot(&q_rows[g * head_dim..][..head_dim], k) * scale;
        }
    }
    let (max, rest) = state.split_at_mut(heads);
    let (total, chunk_max) = rest.split_at_mut(heads);
    for g in 0..heads {
        max[g] = scores[g * n..][..n]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        total[g] = 0.0;
    }
    out.fill(0.0);
    let mut i0 = 0;
    while i0 < n {
        let chunk = cells[i0] / CHUNK;
        let mut i1 = i0 + 1;
        while i1 < n && cells[i1] / CHUNK == chunk {
            i1 += 1;
        }
        for g in 0..heads {
            let chunk_scores = &mut scores[g * n + i0..g * n + i1];
            chunk_max[g] = chunk_scores
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            for s in chunk_scores.iter_mut() {
                *s = numerics::exp(*s - chunk_max[g]);
            }
        }
        weighted_values(task, i0..i1, scores, partial_out, row);
        for g in 0..heads {
            let mut sums = [0.0f32; LANES];
            for (&c, &e) in cells[i0..i1].iter().zip(&scores[g * n + i0..g * n + i1]) {
                sums[c % LANES] += e;
            }
            let chunk_sum = butterfly32(sums);
            let w = numerics::exp(chunk_max[g] - max[g]);
            total[g] += chunk_sum * w;
            let partial = &partial_out[g * LANES * head_dim..][..head_dim];
            for (o, &x) in out[g * head_dim..][..head_dim].iter_mut().zip(partial) {
                *o += x * w;
            }
        }
        i0 = i1;
    }
    for g in 0..heads {
        let inv = 1.0 / total[g];
        for o in out[g * head_dim..][..head_dim].iter_mut() {
            *o *= inv;
        }
    }
}

/// For each head g, `sum e_c v_c` over cells `range` (weights `scores[g * cells.len() + i]`)
/// into `partial_out[g * LANES * head_dim..][..head_dim]`: cell c into partial row c % 32,
/// cells ascending, then the rows joined in butterfly order. `row`: (head_dim) scratch.
#[inline(always)]
fn weighted_values(
    task: &Task,
    range: std::ops::Range<usize>,
    scores: &[f32],
    partial_out: &mut [f32],
    row: &mut [f32],
) {
    let Task {
        kv,
        layer,
        heads,
        cells,
        kv_off,
        head_dim,
        ..
    } = *task;
    let n = cells.len();
    // Only the partials some cell feeds are written; the others are zero.
    let mut touched = 0u32;
    for i in range {
        let c = cells[i];
        let k = c % LANES;
        let fresh = touched & (1 << k) == 0;
        touched |= 1 << k;
        let v = kv.value_f32(layer, c, kv_off, head_dim, row);
        for g in 0..heads {
            let e = scores[g * n + i];
            let acc = &mut partial_out[(g * LANES + k) * head_dim..][..head_dim];
            if fresh {
                acc.fill(0.0);
            }
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += e * x;
            }
        }
    }
    // The butterfly over the partials, element-wise, one row of head_dim at a time:
    // row k += row k + m for m = 16 .. 1 (the order of numerics::butterfly32). A row no
    // cell fed is zero, and adding zero changes nothing (no partial is ever -0.0), so
    // such rows are skipped rather than cleared.
    for g in 0..heads {
        let partial_out = &mut partial_out[g * LANES * head_dim..][..LANES * head_dim];
        let mut touched = touched;
        let mut m = LANES / 2;
        while m > 0 {
            for k in 0..m {
                if touched & (1 << (k + m)) == 0 {
                    continue;
                }
                let (lo, hi) = partial_out.split_at_mut((k + m) * head_dim);
                let (dst, src) = (&mut lo[k * head_dim..][..head_dim], &hi[..head_dim]);
                if touched & (1 << k) == 0 {
                    dst.copy_from_slice(src);
                    touched |= 1 << k;
                } else {
                    for (a, &b) in dst.iter_mut().zip(src) {
                        *a += b;
                    }
                }
            }
            m /= 2;
        }
        if touched & 1 == 0 {
            partial_out[..head_dim].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "x86_64")]
    use super::prompt::{dot32_avx512, dots8_avx512, exp_shifted_avx2};
    use super::prompt::{prompt_tiles, TOKEN_TILE};
    use super::*;
    use crate::kv_cache::KvType;

    /// The canonical definition written out plainly, element by element.
    fn reference(
        kv: &HostKv,
        shape: AttentionShape,
        q: &[f32],
        visible: &[Vec<usize>],
    ) -> Vec<f32> {
        let hd = shape.head_dim;
        let group = shape.n_head / shape.n_head_kv;
        let scale = shape.scale;
        let mut out = vec![0.0; visible.len() * shape.n_head * hd];
        for (t, cells) in visible.iter().enumerate() {
            for h in 0..shape.n_head {
                let kv_off = (h / group) * hd;
                let q_row = &q[(t * shape.n_head + h) * hd..][..hd];
                let s: Vec<f32> = cells
                    .iter()
                    .map(|&c| numerics::dot(q_row, &kv.key(0, c)[kv_off..][..hd]) * scale)
                    .collect();
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0.0f32;
                let mut acc = vec![0.0f32; hd];
                for chunk in 0..=cells.last().map_or(0, |&c| c / CHUNK) {
                    let idx: Vec<usize> = (0..cells.len())
                        .filter(|&i| cells[i] / CHUNK == chunk)
                        .collect();
                    if idx.is_empty() {
                        continue;
                    }
                    let m = idx.iter().map(|&i| s[i]).fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = idx.iter().map(|&i| numerics::exp(s[i] - m)).collect();
                    let mut sums = [0.0f32; LANES];
                    for (&i, &x) in idx.iter().zip(&e) {
                        sums[cells[i] % LANES] += x;
                    }
                    let w = numerics::exp(m - max);
                    total += butterfly32(sums) * w;
                    for (d, a) in acc.iter_mut().enumerate() {
                        let mut partials = [0.0f32; LANES];
                        for (&i, &x) in idx.iter().zip(&e) {
                            partials[cells[i] % LANES] += x * kv.value(0, cells[i])[kv_off + d];
                        }
                        *a += butterfly32(partials) * w;
                    }
                }
                let inv = 1.0 / total;
                for (d, a) in acc.iter().enumerate() {
                    out[(t * shape.n_head + h) * hd + d] = a * inv;
                }
            }
        }
        out
    }

    #[test]
    fn attention_follows_the_canonical_order_bit_for_bit() {
        for kv_type in KvType::ALL {
            canonical_order_with(kv_type, None, 64);
        }
    }

    /// Prompt steps in tiles of tokens: tokens whose visible cells extend the previous
    /// token's (causal prompts, with gaps in the cells) share key and value reads; tiles cut
    /// where a token's list does not extend the last one's (a second sequence), lengths
    /// ending inside and at the edges of chunks and of the 32 partials. Each token's output
    /// must keep the bits of the definition.
    #[test]
    fn tiled_prompt_attention_keeps_each_tokens_bits() {
        let seen: Vec<usize> = (0..700).filter(|c| c % 7 != 3).collect();
        let lens = [
            1, 2, 30, 31, 32, 33, 219, 220, 221, 250, 400, 401, 402, 403, 500, 599,
        ];
        let mut visible: Vec<Vec<usize>> = lens.iter().map(|&l| seen[..l].to_vec()).collect();
        // A second sequence, then the first again: both cut the tiles.
        visible.extend((0..5).map(|l| (300..301 + 40 * l).collect::<Vec<usize>>()));
        visible.extend((0..3).map(|l| seen[..10 + l].to_vec()));
        assert!(prompt_tiles(&visible).iter().any(|t| t.len() == TOKEN_TILE));
        for kv_type in KvType::ALL {
            canonical_order_with(kv_type, Some(visible.clone()), 64);
        }
        // Rows of other lengths: 128 (its own register path), 40 (the general one).
        canonical_order_with(KvType::ALL[0], Some(visible.clone()), 128);
        canonical_order_with(KvType::ALL[0], Some(visible), 40);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_has_the_bits_of_the_scalar_one() {
        if !avx2_detected() {
            return;
        }
        let mut x: Vec<f32> = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            -87.0,
            -87.5,
            88.0,
            88.5,
            1e-30,
            -1e-30,
            f32::MAX,
            f32::MIN,
        ];
        let mut seed = 99u32;
        x.extend((0..4000).map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f32::from_bits(seed) // every exponent, sign and NaN payload
        }));
        x.extend((0..4001).map(|i| (i as f32 - 3000.0) * 0.037));
        for sub in [0.0, 1.5, -3.25, 40.0] {
            let mut got = x.clone();
            // SAFETY: AVX2 was detected above.
            unsafe { exp_shifted_avx2(&mut got, sub) };
            for (g, &v) in got.iter().zip(&x) {
                let want = numerics::exp(v - sub);
                assert_eq!(g.to_bits(), want.to_bits(), "exp({v} - {sub})");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_dots_have_the_bits_of_the_canonical_one() {
        let mut seed = 5u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 10f32.powi((seed % 7) as i32 - 3)
        };
        for len in [32, 64, 128, 96] {
            for _ in 0..200 {
                let q: Vec<f32> = (0..len).map(|_| rnd()).collect();
                let k: Vec<f32> = (0..len).map(|_| rnd()).collect();
                let want = numerics::dot(&q, &k).to_bits();
                if avx2_detected() {
                    // SAFETY: AVX2 and FMA detected.
                    assert_eq!(unsafe { dot32_avx2(&q, &k) }.to_bits(), want);
                }
                if avx512_detected() {
                    // SAFETY: AVX-512 F, AVX2 and FMA detected.
                    assert_eq!(unsafe { dot32_avx512(&q, &k) }.to_bits(), want);
                }
            }
            // Rows of 8 at once and a tail: row j with k gives the single dot's bits.
            for rows in [1, 7, 8, 9, 17, 24] {
                let qs: Vec<f32> = (0..rows * len).map(|_| rnd()).collect();
                let k: Vec<f32> = (0..len).map(|_| rnd()).collect();
                if avx512_detected() {
                    let mut out = vec![f32::NAN; rows];
                    // SAFETY: AVX-512 F, AVX2 and FMA detected.
                    unsafe { dots8_avx512(&qs, &k, &mut out) };
                    for (j, o) in out.iter().enumerate() {
                        let want = numerics::dot(&qs[j * len..][..len], &k);
                        assert_eq!(o.to_bits(), want.to_bits(), "{rows} rows, row {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn prompt_tiles_follow_the_prefix_chains() {
        let v = |r: std::ops::Range<usize>| r.collect::<Vec<usize>>();
        let visible = vec![v(0..1), v(0..2), v(5..6), v(5..8), v(0..3), v(0..3)];
        assert_eq!(prompt_tiles(&visible), vec![0..2, 2..4, 4..6]);
        let long: Vec<Vec<usize>> = (1..20).map(|l| v(0..l)).collect();
        assert_eq!(prompt_tiles(&long), vec![0..8, 8..16, 16..19]);
        assert!(prompt_tiles(&[]).is_empty());
    }

    /// The reference reads the cache widened to f32, so this also checks that a narrow cache
    /// changes only the stored values, never the arithmetic. `visible`: the tokens' cells
    /// (a default mix when None).
    fn canonical_order_with(kv_type: KvType, visible: Option<Vec<Vec<usize>>>, head_dim: usize) {
        let shape = AttentionShape {
            n_head: 6,
            n_head_kv: 2,
            head_dim,
            scale: 0.125,
        };
        let kv_dim = shape.n_head_kv * shape.head_dim;
        let n_ctx = 700; // three chunks of the split softmax
        let mut kv = HostKv::new(1, n_ctx, kv_dim, kv_type).unwrap();
        let mut seed = 12345u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        };
        for c in 0..n_ctx {
            let k: Vec<f32> = (0..kv_dim).map(|_| rnd()).collect();
            // Values over many magnitudes, so that the order of their sums shows in the bits.
            let v: Vec<f32> = (0..kv_dim)
                .map(|_| rnd() * 10f32.powf(rnd() * 2.0))
                .collect();
            kv.store(0, c, &k, &v);
        }
        // Visible sets with gaps, fewer and more cells than the 32 partials, cells whose
        // partial index repeats, sets over one, two and three chunks, one with an empty chunk
        // in the middle and one across a chunk boundary.
        let visible: Vec<Vec<usize>> = visible.unwrap_or_else(|| {
            vec![
                vec![0],
                (0..20).collect(),
                (0..n_ctx).filter(|c| c % 3 != 1).collect(),
                (5..n_ctx).step_by(7).collect(),
                vec![31, 32, 63, 64, 95],
                (0..10).chain(600..610).collect(),
                (250..270).collect(),
            ]
        });
        // Large queries: scores spread over several units, so the weights span many magnitudes.
        let q: Vec<f32> = (0..visible.len() * shape.n_head * shape.head_dim)
            .map(|_| rnd() * 3.0)
            .collect();
        let want = reference(&kv, shape, &q, &visible);
        // 4 threads: too few tasks for the prompt path, so the decode path runs too.
        for threads in [1, 2, 3, 4] {
            let pool = ThreadPool::new(threads).unwrap();
            let mut got = vec![f32::NAN; want.len()];
            attention(&pool, &kv, 0, shape, &q, &visible, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "element {i} with {threads} threads, {kv_type} cache"
                );
            }
        }
    }
}
