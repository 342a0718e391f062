//! Model weights on the GPU: uploaded once from a loaded GGUF, shared by all contexts.
//!
//! Projections that read the same input are stored as one matrix when their types agree
//! (Q, K, V stacked; gate and up stacked) so decode runs one mat-vec for each group.

use super::device::{check, set_device, DeviceBuffer, Stream};
use super::ffi;
use crate::model::{Hparams, LayerSpec, LoadedModel, RopeStyle, WeightRef};
use crate::quant::{Format, GgmlType};
use crate::{Error, Result};
use std::sync::Arc;

/// A weight matrix on the device: (rows, cols) in its GGUF type.
pub struct GpuMatrix {
    /// Shared when the output head is tied to the embedding.
    pub buf: Arc<DeviceBuffer>,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// First output column this matrix writes in its group's output.
    pub out_offset: usize,
}

/// Matrices whose outputs sit side by side in one activation row: (n, Σ rows).
pub struct Projection {
    pub parts: Vec<GpuMatrix>,
    pub out_width: usize,
}

pub struct GpuLayer {
    /// What the layer does beyond plain llama (biases, norms, its RoPE, its window).
    pub spec: LayerSpec,
    /// (n_embd) f32
    pub attn_norm: DeviceBuffer,
    /// Q | K | V: (q_dim + 2 kv_dim, n_embd)
    pub qkv: Projection,
    /// Q | K | V biases, (q_dim + 2 kv_dim) f32, when the spec has them.
    pub qkv_bias: Option<DeviceBuffer>,
    /// QK-norm weights, (head_dim) f32 each, when the spec has them.
    pub q_norm: Option<DeviceBuffer>,
    pub k_norm: Option<DeviceBuffer>,
    /// (n_embd, q_dim)
    pub wo: Projection,
    /// (n_embd) f32 each, when the spec has them.
    pub out_bias: Option<DeviceBuffer>,
    pub post_attn_norm: Option<DeviceBuffer>,
    /// (n_embd) f32
    pub ffn_norm: DeviceBuffer,
    /// gate | up: (2 n_ff, n_embd)
    pub gate_up: Projection,
    /// (n_embd, n_ff)
    pub down: Projection,
    /// (n_embd) f32, when the spec has it.
    pub post_ffn_norm: Option<DeviceBuffer>,
}

impl GpuLayer {
    /// Whether the Q|K|V results need more than RoPE before the cache (rf_qkv_post), which
    /// the mat-vec's fused epilogue does not do.
    pub fn qkv_post(&self, hp: &Hparams) -> bool {
        self.qkv_bias.is_some() || self.q_norm.is_some() || hp.rope_style == RopeStyle::Neox
    }
}

pub struct GpuModel {
    pub device: usize,
    pub hparams: Hparams,
    /// (n_vocab, n_embd)
    pub token_embd: GpuMatrix,
    pub layers: Vec<GpuLayer>,
    /// (n_embd) f32
    pub output_norm: DeviceBuffer,
    /// (n_vocab, n_embd); the embedding's buffer when tied.
    pub output: Projection,
    /// Per RoPE of the model (`Hparams::ropes`), its frequencies (head_dim / 2), kept on the
    /// host: each batch's rotations are computed there, by the CPU backend's own function, and
    /// uploaded with it. `_long`: for contexts past a RoPE's original length
    /// ([`LoadedModel::rope_tables`]).
    pub rope_inv_freq: Vec<Vec<f32>>,
    pub rope_inv_freq_long: Vec<Vec<f32>>,
    /// Largest rows x cols over all matrices (sizes the prefill dequantization buffer).
    pub max_matrix_elems: usize,
    pub bytes: u64,
}

impl GpuModel {
    /// Whether the GPU backend runs `model`, decided without touching a device: its features
    /// (`gpu::RUNS`), every matrix's tensor type, its widths and head size.
    pub fn check(model: &LoadedModel) -> Result<()> {
        let hp = &model.hparams;
        hp.check_backend("GPU", crate::backend::gpu::RUNS)?;
        // Every matrix's type is checked before the device is touched, so a file with a type
        // the GPU does not run (today: none the CPU runs, see the registry) is refused at
        // once, naming the type and the first tensor of it.
        let weights = &model.weights;
        let layer_matrices = (weights.layers.iter())
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]);
        for m in [&weights.token_embd, &weights.output]
            .into_iter()
            .chain(layer_matrices)
        {
            Uploader::check_type(m)?;
        }
        if !hp.n_embd.is_multiple_of(32)
            || !hp.n_ff.is_multiple_of(32)
            || !hp.q_dim().is_multiple_of(32)
        {
            return Err(Error::InvalidModel(format!(
                "GPU backend needs widths that are multiples of 32 (n_embd {}, n_ff {}, q_dim {})",
                hp.n_embd,
                hp.n_ff,
                hp.q_dim()
            )));
        }
        if hp.head_dim > 256 || !hp.head_dim.is_multiple_of(32) {
            return Err(Error::InvalidModel(format!(
                "GPU attention supports head sizes that are multiples of 32 up to 256, got {}",
                hp.head_dim
            )));
        }
        Ok(())
    }

    /// Uploads every weight to GPU `device`. `progress(done_bytes, total_bytes)` is called
    /// after each tensor; its error (a cancel) stops the upload there.
    pub fn upload(
        model: &LoadedModel,
        device: usize,
        progress: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<GpuModel> {
        Self::check(model)?;
        let hp = model.hparams.clone();
        set_device(device)?;
        let w = &model.weights;
        let stream = Stream::new()?;
        let mut up = Uploader {
            model,
            stream: &stream,
            done: 0,
            total: model.gguf.file_size(),
            progress,
        };
        let token_embd = up.matrix(&w.token_embd, 0)?;
        let mut layers = Vec::with_capacity(w.layers.len());
        for (il, (l, spec)) in w.layers.iter().zip(&hp.layers).enumerate() {
            // Each optional tensor is uploaded exactly when the description asks for it: a
            // model edited in code without its weights is an error, as on the CPU.
            let missing = |what: &str| {
                Error::InvalidModel(format!("layer {il} is described with a {what} it lacks"))
            };
            let qkv_bias = match (&l.qkv_bias, spec.qkv_bias) {
                (Some(b), true) => {
                    let joined: Vec<f32> =
                        [&b.q, &b.k, &b.v].into_iter().flatten().copied().collect();
                    Some(up.vector(&joined, "Q/K/V biases")?)
                }
                (None, true) => return Err(missing("Q/K/V biases")),
                (_, false) => None,
            };
            let (q_norm, k_norm) = match (&l.q_norm, &l.k_norm, spec.qk_norm) {
                (Some(q), Some(k), true) => {
                    (Some(up.vector(q, "Q norm")?), Some(up.vector(k, "K norm")?))
                }
                (_, _, true) => return Err(missing("QK-norm")),
                (_, _, false) => (None, None),
            };
            let mut optional = |v: &Option<Vec<f32>>, wanted: bool, what: &str| match (v, wanted) {
                (Some(v), true) => up.vector(v, what).map(Some),
                (None, true) => Err(missing(what)),
                (_, false) => Ok(None),
            };
            let out_bias = optional(&l.out_bias, spec.out_bias, "output bias")?;
            let post_attn_norm = optional(
                &l.post_attn_norm,
                spec.post_attn_norm,
                "post-attention norm",
            )?;
            let post_ffn_norm = optional(&l.post_ffn_norm, spec.post_ffn_norm, "post-FFN norm")?;
            layers.push(GpuLayer {
                spec: *spec,
                attn_norm: up.vector(&l.attn_norm, "attn_norm")?,
                qkv: up.projection(&[&l.wq, &l.wk, &l.wv])?,
                qkv_bias,
                q_norm,
                k_norm,
                wo: up.projection(&[&l.wo])?,
                out_bias,
                post_attn_norm,
                ffn_norm: up.vector(&l.ffn_norm, "ffn_norm")?,
                gate_up: up.projection(&[&l.gate, &l.up])?,
                down: up.projection(&[&l.down])?,
                post_ffn_norm,
            });
        }
        let tied = w.output.info.name == w.token_embd.info.name;
        let output = if tied {
            let m = GpuMatrix {
                buf: Arc::clone(&token_embd.buf),
                ty: token_embd.ty,
                rows: token_embd.rows,
                cols: token_embd.cols,
                out_offset: 0,
            };
            Projection {
                parts: vec![m],
                out_width: token_embd.rows,
            }
        } else {
            up.projection(&[&w.output])?
        };
        let output_norm = up.vector(&w.output_norm, "output_norm")?;
        stream.sync("uploading weights")?;
        let bytes = up.done;
        let mut max_matrix_elems = token_embd.rows * token_embd.cols;
        for l in &layers {
            for p in [&l.qkv, &l.wo, &l.gate_up, &l.down] {
                for m in &p.parts {
                    max_matrix_elems = max_matrix_elems.max(m.rows * m.cols);
                }
            }
        }
        Ok(GpuModel {
            device,
            hparams: hp,
            token_embd,
            layers,
            output_norm,
            output,
            rope_inv_freq: model.rope_inv_freq.clone(),
            rope_inv_freq_long: model.rope_inv_freq_long.clone(),
            max_matrix_elems,
            bytes,
        })
    }

    /// The RoPE frequencies of a context with `n_ctx_seq` cells per sequence (the choice of
    /// [`LoadedModel::rope_tables`]).
    pub fn rope_tables(&self, n_ctx_seq: usize) -> &[Vec<f32>] {
        if self.hparams.long_rope_factors(n_ctx_seq) {
            &self.rope_inv_freq_long
        } else {
            &self.rope_inv_freq
        }
    }

    /// Weight bytes read per decoded token (every matrix once, the embedding row aside).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let mut b = 0u64;
        for l in &self.layers {
            for p in [&l.qkv, &l.wo, &l.gate_up, &l.down] {
                b += p
                    .parts
                    .iter()
                    .map(|m| m.buf.len_bytes() as u64)
                    .sum::<u64>();
            }
        }
        b + self
            .output
            .parts
            .iter()
            .map(|m| m.buf.len_bytes() as u64)
            .sum::<u64>()
    }
}

struct Uploader<'a> {
    model: &'a LoadedModel,
    stream: &'a Stream,
    done: u64,
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64) -> Result<()>,
}

impl Uploader<'_> {
    /// The GPU takes the types whose registry rows have both GPU product paths.
    fn check_type(w: &WeightRef) -> Result<()> {
        if w.ty().format().is_some_and(Format::on_gpu) && w.cols.is_multiple_of(32) {
            Ok(())
        } else {
            Err(Error::UnsupportedTensorType {
                tensor: w.info.name.clone(),
                ty: w.ty().name().to_string(),
            })
        }
    }

    fn matrix(&mut self, w: &WeightRef, out_offset: usize) -> Result<GpuMatrix> {
        let buf = self.upload_rows(&[w])?;
        Ok(GpuMatrix {
            buf: Arc::new(buf),
            ty: w.ty(),
            rows: w.rows,
            cols: w.cols,
            out_offset,
        })
    }

    /// Runs of neighbouring parts that share type and width stacked into one matrix each (all
    /// of Q|K|V in one, or, in a Q4_K_M layer with a Q6_K V, Q|K and V): one launch per run.
    fn projection(&mut self, parts: &[&WeightRef]) -> Result<Projection> {
        let out_width = parts.iter().map(|w| w.rows).sum();
        let mut mats = Vec::with_capacity(parts.len());
        let mut off = 0;
        let mut i = 0;
        while i < parts.len() {
            let first = parts[i];
            let run = parts[i..]
                .iter()
                .take_while(|w| w.ty() == first.ty() && w.cols == first.cols)
                .count();
            let rows: usize = parts[i..i + run].iter().map(|w| w.rows).sum();
            if run == 1 {
                mats.push(self.matrix(first, off)?);
            } else {
                let buf = self.upload_rows(&parts[i..i + run])?;
                mats.push(GpuMatrix {
                    buf: Arc::new(buf),
                    ty: first.ty(),
                    rows,
                    cols: first.cols,
                    out_offset: off,
                });
            }
            off += rows;
            i += run;
        }
        Ok(Projection {
            parts: mats,
            out_width,
        })
    }

    /// The rows of `parts` (same type and width), stacked, in the device layout: quantized
    /// types are uploaded to a staging buffer and rearranged by `rf_repack`
    /// (kernels/quant.h), float types are copied as they are.
    fn upload_rows(&mut self, parts: &[&WeightRef]) -> Result<DeviceBuffer> {
        for w in parts {
            Self::check_type(w)?;
        }
        let ty = parts[0].ty();
        let total: usize = parts
            .iter()
            .map(|w| self.model.gguf.tensor_data(&w.info).len())
            .sum();
        let name = parts
            .iter()
            .map(|w| w.info.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let out = DeviceBuffer::new(total, &name)?;
        let quantized = ty.format().is_some_and(Format::gpu_int8);
        let staging = if quantized {
            Some(DeviceBuffer::new(total, "weight staging")?)
        } else {
            None
        };
        let target = staging.as_ref().unwrap_or(&out);
        let mut at = 0;
        for w in parts {
            let data = self.model.gguf.tensor_data(&w.info);
            target.upload(at, data, self.stream, &w.info.name)?;
            at += data.len();
            self.advance(data.len())?;
        }
        if let Some(src) = &staging {
            let groups = total / ty.block_bytes();
            // SAFETY: both buffers hold `groups` blocks of `ty`.
            let code = unsafe {
                ffi::rf_repack(
                    ty.id() as i32,
                    src.ptr(),
                    groups,
                    out.ptr(),
                    self.stream.raw(),
                )
            };
            check(code, &format!("rearranging {name}"))?;
            self.stream.sync(&name)?;
        }
        Ok(out)
    }

    fn vector(&mut self, v: &[f32], what: &str) -> Result<DeviceBuffer> {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let buf = DeviceBuffer::new(bytes.len(), what)?;
        buf.upload(0, &bytes, self.stream, what)?;
        // The host bytes must outlive the asynchronous copy.
        self.stream.sync(what)?;
        Ok(buf)
    }

    /// Reports progress; syncing per tensor keeps the mapped pages' copies finished in order.
    fn advance(&mut self, bytes: usize) -> Result<()> {
        self.stream.sync("uploading weights")?;
        self.done += bytes as u64;
        (self.progress)(self.done.min(self.total), self.total)
    }
}
