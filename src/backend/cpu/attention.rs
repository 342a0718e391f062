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
/// to, ascending.
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
    let n_tasks = visible.len() * n_head;
    let out = SharedMut::new(out);
    let avx2 = avx2_detected();
    // One chunk per (token, head) task, claimed by the threads (ThreadPool::run_chunks), the
    // last tokens first: under a causal mask they see the most cells, so taking them first
    // leaves the small tasks to even out the threads' ends. Each thread's scratch: the
    // scores, (LANES, head_dim) per-partial weighted sums of values, and one key or value row
    // widened to f32 (for caches stored narrower).
    let scratch = || {
        (
            Vec::<f32>::new(),
            vec![0.0f32; LANES * head_dim],
            vec![0.0f32; head_dim],
        )
    };
    pool.run_chunks(n_tasks, &scratch, &|(scores, partial_out, row), chunk| {
        let task = n_tasks - 1 - chunk;
        let (t, h) = (task / n_head, task % n_head);
        let kv_off = (h / group) * head_dim;
        let task = Task {
            kv,
            layer,
            q_row: &q[t * q_dim + h * head_dim..][..head_dim],
            cells: &visible[t],
            kv_off,
            head_dim,
            scale,
        };
        // SAFETY: task (t, h) is claimed by exactly one thread, and so is its output slice.
        let dst = unsafe { out.slice(t * q_dim + h * head_dim, head_dim) };
        if avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            unsafe { attend_avx2(&task, scores, partial_out, row, dst) };
        } else {
            attend(&task, scores, partial_out, row, dst);
        }
    });
}

/// One (token, head) pair's attention.
struct Task<'a> {
    kv: &'a HostKv,
    layer: usize,
    q_row: &'a [f32],
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

/// [`attend`] compiled for AVX2: the same operations in the same order (Rust never fuses a
/// multiply and an add), on wider vectors, so the same bits.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(
    task: &Task,
    scores: &mut Vec<f32>,
    partial_out: &mut [f32],
    row: &mut [f32],
    out: &mut [f32],
) {
    attend(task, scores, partial_out, row, out)
}
#[cfg(not(target_arch = "x86_64"))]
unsafe fn attend_avx2(
    task: &Task,
    scores: &mut Vec<f32>,
    partial_out: &mut [f32],
    row: &mut [f32],
    out: &mut [f32],
) {
    attend(task, scores, partial_out, row, out)
}

/// Softmax-weighted values of one (token, head) into `out` (head_dim), chunk by chunk as the
/// module documentation defines. `scores`: scratch; `partial_out`: (LANES, head_dim) scratch;
/// `row`: (head_dim) scratch. Keys and values are read widened to f32 from the cache's type,
/// so the arithmetic is the same for every cache type; only the stored values differ.
#[inline(always)]
fn attend(
    task: &Task,
    scores: &mut Vec<f32>,
    partial_out: &mut [f32],
    row: &mut [f32],
    out: &mut [f32],
) {
    let Task {
        kv,
        layer,
        q_row,
        cells,
        kv_off,
        head_dim,
        scale,
    } = *task;
    // Plain loops, not iterator chains: this must inline into the AVX2 copy of the function.
    scores.clear();
    scores.resize(cells.len(), 0.0);
    for (s, &c) in scores.iter_mut().zip(cells) {
        *s = numerics::dot(q_row, kv.key_f32(layer, c, kv_off, head_dim, row)) * scale;
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    out.fill(0.0);
    let mut total = 0.0f32;
    let mut i0 = 0;
    while i0 < cells.len() {
        let chunk = cells[i0] / CHUNK;
        let mut i1 = i0 + 1;
        while i1 < cells.len() && cells[i1] / CHUNK == chunk {
            i1 += 1;
        }
        let (chunk_cells, chunk_scores) = (&cells[i0..i1], &mut scores[i0..i1]);
        let chunk_max = chunk_scores
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        for s in chunk_scores.iter_mut() {
            *s = numerics::exp(*s - chunk_max);
        }
        let mut sums = [0.0f32; LANES];
        for (&c, &e) in chunk_cells.iter().zip(chunk_scores.iter()) {
            sums[c % LANES] += e;
        }
        let chunk_sum = butterfly32(sums);
        weighted_values(task, chunk_cells, chunk_scores, partial_out, row);
        let w = numerics::exp(chunk_max - max);
        total += chunk_sum * w;
        for (o, &x) in out.iter_mut().zip(&partial_out[..head_dim]) {
            *o += x * w;
        }
        i0 = i1;
    }
    let inv = 1.0 / total;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// `sum e_c v_c` over `cells` into `partial_out[..head_dim]`: cell c into partial row c % 32,
/// cells ascending, then the rows joined in butterfly order. `row`: (head_dim) scratch.
#[inline(always)]
fn weighted_values(
    task: &Task,
    cells: &[usize],
    weights: &[f32],
    partial_out: &mut [f32],
    row: &mut [f32],
) {
    let Task {
        kv,
        layer,
        kv_off,
        head_dim,
        ..
    } = *task;
    // Only the partials some cell feeds are written; the others are zero.
    let mut touched = 0u32;
    for (&c, &e) in cells.iter().zip(weights.iter()) {
        let k = c % LANES;
        let acc = &mut partial_out[k * head_dim..][..head_dim];
        if touched & (1 << k) == 0 {
            touched |= 1 << k;
            acc.fill(0.0);
        }
        let v = kv.value_f32(layer, c, kv_off, head_dim, row);
        for (a, &x) in acc.iter_mut().zip(v) {
            *a += e * x;
        }
    }
    // The butterfly over the partials, element-wise, one row of head_dim at a time:
    // row k += row k + m for m = 16 .. 1 (the order of numerics::butterfly32). A row no
    // cell fed is zero, and adding zero changes nothing (no partial is ever -0.0), so
    // such rows are skipped rather than cleared.
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

#[cfg(test)]
mod tests {
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
            canonical_order_with(kv_type);
        }
    }

    /// The reference reads the cache widened to f32, so this also checks that a narrow cache
    /// changes only the stored values, never the arithmetic.
    fn canonical_order_with(kv_type: KvType) {
        let shape = AttentionShape {
            n_head: 6,
            n_head_kv: 2,
            head_dim: 64,
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
        let visible: Vec<Vec<usize>> = vec![
            vec![0],
            (0..20).collect(),
            (0..n_ctx).filter(|c| c % 3 != 1).collect(),
            (5..n_ctx).step_by(7).collect(),
            vec![31, 32, 63, 64, 95],
            (0..10).chain(600..610).collect(),
            (250..270).collect(),
        ];
        // Large queries: scores spread over several units, so the weights span many magnitudes.
        let q: Vec<f32> = (0..visible.len() * shape.n_head * shape.head_dim)
            .map(|_| rnd() * 3.0)
            .collect();
        let want = reference(&kv, shape, &q, &visible);
        for threads in [1, 2, 3] {
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
