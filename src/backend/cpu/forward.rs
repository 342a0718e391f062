//! The CPU forward pass over a batch, for every family: embeddings → N × (attention + gated
//! FFN) → logits, each layer as its [`crate::model::LayerSpec`] describes it; and the context
//! that runs it ([`CpuContext`], the CPU side of [`crate::backend::Executor`]).

use super::attention::{attention, AttentionShape};
use super::matmul::{gemm_min_tokens, matmul_fused, MatmulTarget, PackedActivations, PackedMatrix};
use super::ops::{
    add_bias_rows, add_in_place, gelu_mul_in_place, rms_norm, rms_norm_heads_in_place,
    rope_in_place, rope_neox_in_place, silu_mul_in_place, softcap_in_place,
};
use super::scratch::Scratch;
use super::ThreadPool;
use crate::backend::numerics::rope_table;
use crate::backend::Executor;
use crate::batch::Batch;
use crate::cancel::CancelFlag;
use crate::kv_cache::{Cells, HostKv, KvType};
use crate::model::{Activation, Feature, Hparams, LoadedModel, RopeStyle, WeightRef};
use crate::quant::activation_type;
use crate::Result;
use std::sync::Arc;

/// What this backend runs beyond plain llama ([`Feature`]): the families' features, as the
/// GPU; a model that uses anything else is refused at load ([`Hparams::check_backend`]).
pub const RUNS: &[Feature] = crate::backend::FAMILY_FEATURES;

/// A CPU context: keys and values in host memory, worker threads and per-batch buffers.
pub struct CpuContext {
    model: Arc<LoadedModel>,
    /// Cells per sequence (n_ctx / n_seq_max), which picks RoPE factors as llama.cpp does.
    n_ctx_seq: usize,
    kv: HostKv,
    pool: ThreadPool,
    scratch: Scratch,
}

impl CpuContext {
    /// Keys and values for `n_ctx` cells stored as `kv_type`, computed on `n_threads` threads;
    /// `n_ctx_seq` cells per sequence. With `ring` (the cells of [`Cells::ring`]), the
    /// sliding-window layers keep only that many cells.
    pub fn new(
        model: Arc<LoadedModel>,
        n_ctx: usize,
        n_ctx_seq: usize,
        n_threads: usize,
        kv_type: KvType,
        ring: Option<usize>,
    ) -> Result<CpuContext> {
        let hp = &model.hparams;
        hp.check_backend("CPU", RUNS)?;
        crate::quant::dot::check_isa_choice()?;
        kv_type.check_head_dim(hp.head_dim)?;
        let in_ring: Vec<bool> = (hp.layers.iter())
            .map(|l| ring.is_some() && l.window.is_some())
            .collect();
        let kv = HostKv::with_ring(
            &in_ring,
            n_ctx,
            ring.unwrap_or(0),
            hp.kv_dim(),
            hp.head_dim,
            kv_type,
        )?;
        let pool = ThreadPool::new(n_threads)
            .map_err(|e| crate::Error::OutOfMemory(format!("cannot start worker threads: {e}")))?;
        Ok(CpuContext {
            model,
            n_ctx_seq,
            kv,
            pool,
            scratch: Scratch::default(),
        })
    }

    /// The keys and values (tests compare them across backends).
    pub fn kv(&self) -> &HostKv {
        &self.kv
    }
}

impl Executor for CpuContext {
    fn forward(
        &mut self,
        batch: &Batch,
        new_cells: &[usize],
        cells: &Cells,
        cancel: &CancelFlag,
        logits: &mut Vec<f32>,
    ) -> Result<Vec<Option<usize>>> {
        let run = Run {
            model: &self.model,
            rope_inv_freq: self.model.rope_tables(self.n_ctx_seq),
            kv: &mut self.kv,
            cells,
            pool: &self.pool,
            s: &mut self.scratch,
        };
        // A cancel that came during the last layer is honoured too (the work is dropped), so
        // only one arriving after this point waits for the next call.
        run.layers(batch, new_cells, cancel, logits)
            .and_then(|rows| cancel.check().map(|()| rows))
    }

    /// Nothing to do: the CPU reads the table as it is at each step.
    fn cells_changed(&mut self) {}

    fn read_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        Ok(self.kv.read_cells(cells, false))
    }

    fn write_cells(&mut self, cells: &[usize], data: &[f32]) -> Result<()> {
        self.kv.write_cells(cells, data, false);
        Ok(())
    }

    fn kv_bytes(&self) -> Option<u64> {
        Some(self.kv.bytes())
    }

    fn read_ring_cells(&self, cells: &[usize]) -> Result<Vec<f32>> {
        Ok(self.kv.read_cells(cells, true))
    }

    fn write_ring_cells(&mut self, cells: &[usize], data: &[f32]) -> Result<()> {
        self.kv.write_cells(cells, data, true);
        Ok(())
    }
}

/// What one forward pass works with.
struct Run<'a> {
    model: &'a LoadedModel,
    /// The model's RoPE tables for this context's length ([`LoadedModel::rope_tables`]).
    rope_inv_freq: &'a [Vec<f32>],
    kv: &'a mut HostKv,
    cells: &'a Cells,
    pool: &'a ThreadPool,
    s: &'a mut Scratch,
}

/// The packed view of a weight in the model mapping.
fn matrix<'m>(model: &'m LoadedModel, w: &WeightRef) -> Result<PackedMatrix<'m>> {
    PackedMatrix::new(model.gguf.tensor_data(&w.info), w.ty(), w.rows, w.cols)
}

impl Run<'_> {
    /// Every layer for `batch`, whose tokens sit in `new_cells`; see [`Executor::forward`].
    fn layers(
        self,
        batch: &Batch,
        new_cells: &[usize],
        cancel: &CancelFlag,
        logits: &mut Vec<f32>,
    ) -> Result<Vec<Option<usize>>> {
        let Run {
            model,
            rope_inv_freq,
            kv,
            cells: table,
            pool,
            s,
        } = self;
        let cells = new_cells;
        // With a ring, the sliding-window layers' cells for this step's tokens.
        let ring_cells = table.ring().map(Cells::step_cells);
        let hp = &model.hparams;
        let w = &model.weights;
        let n = batch.len();
        let (d, q_dim, kv_dim, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        s.prepare(hp, n);

        embed(model, &batch.tokens, &mut s.x)?;
        if let Some(scale) = hp.embd_scale {
            for v in &mut s.x[..n * d] {
                *v *= scale;
            }
        }
        for t in 0..n {
            table.visible_cells(batch.seq[t], batch.pos[t], &mut s.visible[t]);
            for (r, inv_freq) in rope_inv_freq.iter().enumerate() {
                let factor = hp.ropes[r].attn_factor;
                rope_table(batch.pos[t] as f32, inv_freq, factor, &mut s.rope[r][t]);
            }
        }
        windowed_cells(hp, table, batch, &s.visible[..n], &mut s.windowed);
        let shape = AttentionShape {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            scale: hp
                .attn_scale
                .unwrap_or_else(|| 1.0 / (hp.head_dim as f32).sqrt()),
        };
        let rope = match hp.rope_style {
            RopeStyle::Normal => rope_in_place,
            RopeStyle::Neox => rope_neox_in_place,
        };
        let act = match hp.activation {
            Activation::SwiGlu => silu_mul_in_place,
            Activation::GeGlu => gelu_mul_in_place,
        };

        for (il, (layer, spec)) in w.layers.iter().zip(&hp.layers).enumerate() {
            cancel.check()?;
            // Attention block.
            norm_rows(pool, &s.x, &layer.attn_norm, hp.rms_eps, &mut s.xn, d);
            project_many(
                model,
                pool,
                &mut s.acts,
                &s.xn,
                n,
                [
                    (&layer.wq, &mut s.q[..]),
                    (&layer.wk, &mut s.k[..]),
                    (&layer.wv, &mut s.v[..]),
                ],
            )?;
            if spec.qkv_bias {
                let b = present(&layer.qkv_bias, "Q/K/V biases", il)?;
                add_bias_rows(&mut s.q[..n * q_dim], &b.q);
                add_bias_rows(&mut s.k[..n * kv_dim], &b.k);
                add_bias_rows(&mut s.v[..n * kv_dim], &b.v);
            }
            if spec.qk_norm {
                let qn = present(&layer.q_norm, "Q norm", il)?;
                let kn = present(&layer.k_norm, "K norm", il)?;
                rms_norm_heads_in_place(&mut s.q[..n * q_dim], qn, hp.rms_eps);
                rms_norm_heads_in_place(&mut s.k[..n * kv_dim], kn, hp.rms_eps);
            }
            let rot = &s.rope[spec.rope];
            let layer_cells = match (spec.window, ring_cells) {
                (Some(_), Some(ring)) => ring,
                _ => cells,
            };
            for (t, &cell) in layer_cells.iter().enumerate() {
                rope(&mut s.q[t * q_dim..(t + 1) * q_dim], hp.head_dim, &rot[t]);
                rope(&mut s.k[t * kv_dim..(t + 1) * kv_dim], hp.head_dim, &rot[t]);
                kv.store(
                    il,
                    cell,
                    &s.k[t * kv_dim..(t + 1) * kv_dim],
                    &s.v[t * kv_dim..(t + 1) * kv_dim],
                );
            }
            let visible = match spec.window {
                None => &s.visible[..n],
                // windowed_cells listed every window of the model.
                Some(win) => match s.windowed.iter().find(|(w, _)| *w == win) {
                    Some((_, v)) => &v[..n],
                    None => return Err(crate::Error::InvalidModel(format!("window {win}"))),
                },
            };
            attention(pool, kv, il, shape, &s.q, visible, &mut s.attn);
            project_fresh(model, pool, &mut s.acts, &layer.wo, &s.attn, n, &mut s.proj)?;
            if spec.out_bias {
                let b = present(&layer.out_bias, "output bias", il)?;
                add_bias_rows(&mut s.proj[..n * d], b);
            }
            if spec.post_attn_norm {
                let norm = present(&layer.post_attn_norm, "post-attention norm", il)?;
                norm_rows(pool, &s.proj[..n * d], norm, hp.rms_eps, &mut s.xn, d);
                add_in_place(&mut s.x[..n * d], &s.xn[..n * d]);
            } else {
                add_in_place(&mut s.x, &s.proj);
            }

            // Feed-forward block (gated: SwiGLU or GeGLU).
            norm_rows(pool, &s.x, &layer.ffn_norm, hp.rms_eps, &mut s.xn, d);
            project_many(
                model,
                pool,
                &mut s.acts,
                &s.xn,
                n,
                [(&layer.gate, &mut s.gate[..]), (&layer.up, &mut s.up[..])],
            )?;
            for (g, u) in s.gate[..n * ff].chunks_mut(ff).zip(s.up.chunks(ff)) {
                act(g, u);
            }
            project_fresh(
                model,
                pool,
                &mut s.acts,
                &layer.down,
                &s.gate,
                n,
                &mut s.proj,
            )?;
            if spec.post_ffn_norm {
                let norm = present(&layer.post_ffn_norm, "post-FFN norm", il)?;
                norm_rows(pool, &s.proj[..n * d], norm, hp.rms_eps, &mut s.xn, d);
                add_in_place(&mut s.x[..n * d], &s.xn[..n * d]);
            } else {
                add_in_place(&mut s.x, &s.proj);
            }
        }

        // Output head, only for the tokens that want logits.
        let rows: Vec<usize> = (0..n).filter(|&t| batch.logits[t]).collect();
        let mut out_index = vec![None; n];
        for (k, &t) in rows.iter().enumerate() {
            out_index[t] = Some(k);
            s.xn[k * d..(k + 1) * d].copy_from_slice(&s.x[t * d..(t + 1) * d]);
        }
        let n_out = rows.len();
        if n_out > 0 {
            // Normalise in place (rows were compacted to the front of xn).
            for k in 0..n_out {
                let row: Vec<f32> = s.xn[k * d..(k + 1) * d].to_vec();
                rms_norm(
                    &row,
                    &w.output_norm,
                    hp.rms_eps,
                    &mut s.xn[k * d..(k + 1) * d],
                );
            }
            logits.resize(n_out * hp.n_vocab, 0.0);
            project_fresh(
                model,
                pool,
                &mut s.acts,
                &w.output,
                &s.xn[..n_out * d],
                n_out,
                logits,
            )?;
            if let Some(cap) = hp.final_logit_softcap {
                softcap_in_place(logits, cap);
            }
        } else {
            logits.clear();
        }
        Ok(out_index)
    }
}

/// For each distinct window of the model's layers, each token's visible cells at most
/// `window - 1` positions before its own: cells of the ring in the order to sum them
/// ([`Cells::window_cells`]) when the table has one (the windowed layers' keys and values
/// live there), else of `visible` (each token's visible cells of the full table).
fn windowed_cells(
    hp: &Hparams,
    table: &Cells,
    batch: &Batch,
    visible: &[Vec<usize>],
    out: &mut Vec<(usize, Vec<Vec<usize>>)>,
) {
    use crate::backend::numerics::ATTENTION_CHUNK;
    out.clear();
    for win in hp.layers.iter().filter_map(|l| l.window) {
        if out.iter().any(|(w, _)| *w == win) {
            continue;
        }
        let lists = (visible.iter().enumerate())
            .map(|(t, cells)| match table.ring() {
                Some(ring) => {
                    let mut list = Vec::new();
                    let (seq, pos) = (batch.seq[t], batch.pos[t]);
                    ring.window_cells(seq, pos, win, ATTENTION_CHUNK, &mut list);
                    list
                }
                None => {
                    let pos = batch.pos[t] as i64;
                    (cells.iter().copied())
                        .filter(|&c| pos - (table.cell(c).0 as i64) < win as i64)
                        .collect()
                }
            })
            .collect();
        out.push((win, lists));
    }
}

/// The weight the layer's description names (the loader provides exactly those; a model
/// edited in code without its weights is an error, not a layer run without them).
fn present<'w, T>(w: &'w Option<T>, what: &str, layer: usize) -> Result<&'w T> {
    w.as_ref().ok_or_else(|| {
        crate::Error::InvalidModel(format!("layer {layer} is described with a {what} it lacks"))
    })
}

/// Token embeddings: each row dequantized from the embedding table. x: (n_tokens, n_embd)
fn embed(model: &LoadedModel, tokens: &[u32], x: &mut [f32]) -> Result<()> {
    let e = &model.weights.token_embd;
    let d = model.hparams.n_embd;
    let data = model.gguf.tensor_data(&e.info);
    let row_bytes = data.len() / e.rows;
    for (t, &tok) in tokens.iter().enumerate() {
        let src = &data[tok as usize * row_bytes..(tok as usize + 1) * row_bytes];
        crate::quant::dequantize_row(e.ty(), src, &mut x[t * d..(t + 1) * d])?;
    }
    Ok(())
}

/// RMSNorm of each of the rows of `x` into `out`, rows split over the threads.
fn norm_rows(pool: &ThreadPool, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], d: usize) {
    let n_rows = x.len() / d;
    if n_rows < 8 {
        for (src, dst) in x.chunks(d).zip(out.chunks_mut(d)) {
            rms_norm(src, weight, eps, dst);
        }
        return;
    }
    let shared = super::matmul::SharedMut::new(out);
    pool.for_each_range(n_rows, &|rows| {
        for r in rows {
            // SAFETY: each row is normalised by exactly one thread.
            let dst = unsafe { shared.slice(r * d, d) };
            rms_norm(&x[r * d..(r + 1) * d], weight, eps, dst);
        }
    });
}

/// `out = x · Wᵀ` for the first `n` rows of `x` (n, w.cols) into `out` (n, w.rows).
fn project_fresh(
    model: &LoadedModel,
    pool: &ThreadPool,
    acts: &mut PackedActivations,
    w: &WeightRef,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) -> Result<()> {
    project_many(model, pool, acts, x, n, [(w, out)])
}

/// Several products of the same input. Weights that share an activation type run as one
/// fused dispatch; the input is packed once per distinct activation type.
fn project_many<const N: usize>(
    model: &LoadedModel,
    pool: &ThreadPool,
    acts: &mut PackedActivations,
    x: &[f32],
    n: usize,
    products: [(&WeightRef, &mut [f32]); N],
) -> Result<()> {
    let mut pending: Vec<MatmulTarget<'_, '_>> = Vec::with_capacity(N);
    // Packs the input for the pending products' type and runs them as one dispatch.
    let flush =
        |pending: &mut Vec<MatmulTarget<'_, '_>>, acts: &mut PackedActivations| -> Result<()> {
            let Some(first) = pending.first() else {
                return Ok(());
            };
            let (ty, cols) = (first.w.ty, first.w.cols);
            acts.pack(pool, ty, &x[..n * cols], n, cols, gemm_min_tokens())?;
            matmul_fused(pool, pending, acts);
            pending.clear();
            Ok(())
        };
    for (w, out) in products {
        let target = MatmulTarget {
            w: matrix(model, w)?,
            out,
        };
        if pending
            .first()
            .is_some_and(|first| activation_type(first.w.ty) != activation_type(w.ty()))
        {
            flush(&mut pending, acts)?;
        }
        pending.push(target);
    }
    flush(&mut pending, acts)?;
    Ok(())
}
