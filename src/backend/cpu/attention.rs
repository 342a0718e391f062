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
#[cfg(target_arch = "x86_64")]
use crate::backend::numerics::LANES;
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
/// Sums follow the canonical order of [`crate::backend::numerics`] with the cache cell index as the element
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
        n_head_kv,
        head_dim,
        ..
    } = shape;
    // Prompt steps: tasks of a tile of tokens and one KV head's group of query heads, so each
    // key and value row is read (and widened) once for the tile; otherwise (decode) tasks of
    // spans of chunks of one token's cells (`attention_split`). Each head's arithmetic is the
    // same either way.
    // Tiles up to head size 256, where they were measured (SmolLM2's 64: Q6_K pp512 1 thread
    // 290 -> 408 tok/s; Gemma 3 270M's 256: pp512 2 threads 657 -> 866 tok/s). At 256 they
    // had lost to one token per task until the weighted sums of values had a vector path for
    // that width (2026-12-05).
    let prompt = visible.len() * n_head_kv >= 4 * pool.n_threads() && head_dim <= 256;
    if prompt {
        attention_tiled(pool, kv, layer, shape, q, visible, out);
        return;
    }
    attention_split(pool, kv, layer, shape, q, visible, out);
}

/// Decode steps (and prompts of heads too large for the tiles): one task per (token, KV
/// head, span of whole chunks of the token's cells), each computing its chunks' `m_j`, `l_j`
/// and `o_j` for the KV head's query heads at once (each key and value row read once for
/// all of them, [`prompt::TileIsa`]); then one task per (token, KV head) joins the chunks in
/// list order ([`prompt::combine`]). The chunks are the softmax's units, so splitting at
/// their edges leaves every sum as the definition orders it, and a long cache spreads over
/// every thread however few KV heads the model has.
fn attention_split(
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
    // starts[t]: the list index where each chunk of token t's cells begins, then the end.
    let starts: Vec<Vec<usize>> = visible
        .iter()
        .map(|cells| {
            let mut s: Vec<usize> = (0..cells.len())
                .filter(|&i| i == 0 || cells[i] / CHUNK != cells[i - 1] / CHUNK)
                .collect();
            s.push(cells.len());
            s
        })
        .collect();
    // chunk_base[t]: token t's first chunk in the (chunk, KV head, head) result arrays.
    let mut chunk_base = Vec::with_capacity(visible.len() + 1);
    chunk_base.push(0usize);
    for s in &starts {
        chunk_base.push(chunk_base.last().unwrap() + s.len() - 1);
    }
    let n_chunks = *chunk_base.last().unwrap();
    // Spans of `span` chunks: about 4 tasks per thread overall (a few per thread even out
    // their ends), never less than a chunk.
    let want = (4 * pool.n_threads()).div_ceil((visible.len() * n_head_kv).max(1));
    let max_chunks = starts.iter().map(|s| s.len() - 1).max().unwrap_or(0);
    let span = max_chunks.div_ceil(want).max(1);
    // tasks: (token, first chunk of the span), for every KV head.
    let spans: Vec<(usize, usize)> = starts
        .iter()
        .enumerate()
        .flat_map(|(t, s)| (0..s.len() - 1).step_by(span).map(move |j| (t, j)))
        .collect();
    let entries = n_chunks * n_head_kv * heads;
    let mut stats = vec![prompt::ChunkStat::default(); entries];
    let mut partials = vec![0.0f32; entries * head_dim];
    {
        let (stats_out, partials_out) = (SharedMut::new(&mut stats), SharedMut::new(&mut partials));
        let isa = prompt::TileIsa::detect();
        let n_tasks = spans.len() * n_head_kv;
        pool.run_chunks(n_tasks, &prompt::TileScratch::default, &|scratch, task| {
            let ((t, j0), kvh) = (spans[task / n_head_kv], task % n_head_kv);
            let s = &starts[t];
            let j1 = (j0 + span).min(s.len() - 1);
            let cells = &visible[t][s[j0]..s[j1]];
            let lens = [cells.len()];
            let tile = prompt::TileTask {
                kv,
                layer,
                q,
                q_dim,
                tokens: t..t + 1,
                h0: kvh * heads,
                heads,
                cells,
                lens: &lens,
                kv_off: kvh * head_dim,
                head_dim,
                scale,
            };
            isa.run(&tile, scratch);
            // Chunk j of token t, KV head kvh: entries (base + j) * n_head_kv + kvh, one per
            // query head of the group.
            for (jj, j) in (j0..j1).enumerate() {
                let at = ((chunk_base[t] + j) * n_head_kv + kvh) * heads;
                // SAFETY: chunk j of token t and KV head kvh belong to this task alone.
                let (st, pa) = unsafe {
                    (
                        stats_out.slice(at, heads),
                        partials_out.slice(at * head_dim, heads * head_dim),
                    )
                };
                st.copy_from_slice(&scratch.stats[jj * heads..][..heads]);
                pa.copy_from_slice(&scratch.partials[jj * heads * head_dim..][..heads * head_dim]);
            }
        });
    }
    let out = SharedMut::new(out);
    let n_tasks = visible.len() * n_head_kv;
    pool.run_chunks(n_tasks, &|| (), &|_, task| {
        let (t, kvh) = (task / n_head_kv, task % n_head_kv);
        let chunks = chunk_base[t]..chunk_base[t + 1];
        for g in 0..heads {
            let entry = move |j: usize| (j * n_head_kv + kvh) * heads + g;
            let h = kvh * heads + g;
            // SAFETY: head h of token t belongs to this task alone.
            let dst = unsafe { out.slice(t * q_dim + h * head_dim, head_dim) };
            prompt::combine(
                chunks.clone().map(|j| stats[entry(j)]),
                chunks
                    .clone()
                    .map(|j| &partials[entry(j) * head_dim..][..head_dim]),
                dst,
            );
        }
    });
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
#[cfg(test)]
mod tests {
    #[cfg(target_arch = "x86_64")]
    use super::prompt::{dot32_avx512, dots8_avx2, dots8_avx512, exp_shifted_avx2};
    use super::prompt::{prompt_tiles, TOKEN_TILE};
    use super::*;
    use crate::backend::numerics::{self, butterfly32, LANES};
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
                // Chunks in list order (a ring's list starts at a chunk boundary, rotated).
                let mut order: Vec<usize> = cells.iter().map(|&c| c / CHUNK).collect();
                order.dedup();
                for chunk in order {
                    let idx: Vec<usize> = (0..cells.len())
                        .filter(|&i| cells[i] / CHUNK == chunk)
                        .collect();
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
        // Rows of other lengths: 128 (its own register path), 256 and 96 (slices of 64 and
        // 32 in the weighted values), 40 (the general one).
        canonical_order_with(KvType::ALL[0], Some(visible.clone()), 128);
        canonical_order_with(KvType::ALL[0], Some(visible.clone()), 256);
        canonical_order_with(KvType::ALL[0], Some(visible.clone()), 96);
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
                let check = |out: &[f32], isa: &str| {
                    for (j, o) in out.iter().enumerate() {
                        let want = numerics::dot(&qs[j * len..][..len], &k);
                        assert_eq!(o.to_bits(), want.to_bits(), "{isa}: {rows} rows, row {j}");
                    }
                };
                if avx2_detected() {
                    let mut out = vec![f32::NAN; rows];
                    // SAFETY: AVX2 and FMA detected.
                    unsafe { dots8_avx2(&qs, &k, &mut out) };
                    check(&out, "avx2");
                }
                if avx512_detected() {
                    let mut out = vec![f32::NAN; rows];
                    // SAFETY: AVX-512 F, AVX2 and FMA detected.
                    unsafe { dots8_avx512(&qs, &k, &mut out) };
                    check(&out, "avx512");
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
        let mut kv =
            HostKv::with_ring(&[false], n_ctx, 0, kv_dim, shape.head_dim, kv_type).unwrap();
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
                // A ring's rotated list: chunk 2, then chunks 0 and 1.
                (512..690).chain(3..500).collect(),
            ]
        });
        // Large queries: scores spread over several units, so the weights span many magnitudes.
        let q: Vec<f32> = (0..visible.len() * shape.n_head * shape.head_dim)
            .map(|_| rnd() * 3.0)
            .collect();
        let want = reference(&kv, shape, &q, &visible);
        // Both paths on every list (whichever `attention` picks): the prompt tiles, and the
        // spans of chunks, of one chunk (many threads) up to the whole list (one thread).
        type Path =
            fn(&ThreadPool, &HostKv, usize, AttentionShape, &[f32], &[Vec<usize>], &mut [f32]);
        let paths: [(&str, Path); 3] = [
            ("attention", attention),
            ("tiled", attention_tiled),
            ("split", attention_split),
        ];
        for threads in [1, 2, 3, 4, 16] {
            let pool = ThreadPool::new(threads).unwrap();
            for (name, path) in paths {
                let mut got = vec![f32::NAN; want.len()];
                path(&pool, &kv, 0, shape, &q, &visible, &mut got);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{name}: element {i} with {threads} threads, {kv_type} cache"
                    );
                }
            }
        }
    }
}
