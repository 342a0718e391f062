//! Grouped-query attention of a batch of queries over the KV cache (CPU).

use super::matmul::SharedMut;
use super::threadpool::ThreadPool;
use crate::backend::numerics::{self, butterfly32, LANES};
use crate::kv_cache::KvCache;

/// Shapes of one attention call.
#[derive(Clone, Copy)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

/// `out[t, h] = softmax(q[t, h] . K[visible(t)] / sqrt(d)) . V[visible(t)]` for each token `t`
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
    kv: &KvCache,
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
    } = shape;
    let q_dim = n_head * head_dim;
    let group = n_head / n_head_kv;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let n_tasks = visible.len() * n_head;
    let out = SharedMut::new(out);
    let n_threads = pool.n_threads();
    pool.run(&|index, _| {
        // Tasks (token t, head h) are dealt out round-robin on t + h, not in contiguous ranges:
        // under a causal mask later tokens see more cells, so contiguous ranges would leave the
        // last thread most of the work in prompt processing; with one token, heads alternate.
        let tasks =
            (0..n_tasks).filter(|task| (task / n_head + task % n_head) % n_threads == index);
        let mut scores: Vec<f32> = Vec::new();
        // (LANES, head_dim): per-partial weighted sums of values.
        let mut partial_out: Vec<f32> = vec![0.0; LANES * head_dim];
        for task in tasks {
            let (t, h) = (task / n_head, task % n_head);
            let kv_off = (h / group) * head_dim;
            let q_row = &q[t * q_dim + h * head_dim..][..head_dim];
            let cells = &visible[t];
            scores.clear();
            scores.extend(cells.iter().map(|&c| {
                numerics::dot(q_row, &kv.key(layer, c)[kv_off..kv_off + head_dim]) * scale
            }));
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sums = [0.0f32; LANES];
            for (&c, s) in cells.iter().zip(scores.iter_mut()) {
                *s = numerics::exp(*s - max);
                sums[c % LANES] += *s;
            }
            let inv = 1.0 / butterfly32(sums);
            partial_out.fill(0.0);
            for (&c, &e) in cells.iter().zip(&scores) {
                let p = e * inv;
                let v = &kv.value(layer, c)[kv_off..kv_off + head_dim];
                let acc = &mut partial_out[(c % LANES) * head_dim..][..head_dim];
                for (a, &x) in acc.iter_mut().zip(v) {
                    *a += p * x;
                }
            }
            // SAFETY: task (t, h) is owned by exactly one thread, and so is its output slice.
            let dst = unsafe { out.slice(t * q_dim + h * head_dim, head_dim) };
            for (e, o) in dst.iter_mut().enumerate() {
                *o = butterfly32(std::array::from_fn(|k| partial_out[k * head_dim + e]));
            }
        }
    });
}
