//! Model weights on the GPU: uploaded once from a loaded GGUF, shared by all contexts.
//!
//! Projections that read the same input are stored as one matrix when their types agree
//! (Q, K, V stacked; gate and up stacked) so decode runs one mat-vec for each group.

use super::device::{check, set_device, DeviceBuffer, Stream};
use super::ffi;
use crate::model::{Hparams, LayerSpec, LoadedModel, WeightRef};
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
    /// (n_embd) f32
    pub attn_norm: DeviceBuffer,
    /// Q | K | V: (q_dim + 2 kv_dim, n_embd)
    pub qkv: Projection,
    /// (n_embd, q_dim)
    pub wo: Projection,
    /// (n_embd) f32
    pub ffn_norm: DeviceBuffer,
    /// gate | up: (2 n_ff, n_embd)
    pub gate_up: Projection,
    /// (n_embd, n_ff)
    pub down: Projection,
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
    /// (head_dim / 2) f32
    /// RoPE frequencies (head_dim / 2), kept on the host: each batch's rotations are computed
    /// there, by the CPU backend's own function, and uploaded with it.
    pub rope_inv_freq: Vec<f32>,
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
        for (l, spec) in w.layers.iter().zip(&hp.layers) {
            plain_layer(spec)?;
            layers.push(GpuLayer {
                attn_norm: up.vector(&l.attn_norm, "attn_norm")?,
                qkv: up.projection(&[&l.wq, &l.wk, &l.wv])?,
                wo: up.projection(&[&l.wo])?,
                ffn_norm: up.vector(&l.ffn_norm, "ffn_norm")?,
                gate_up: up.projection(&[&l.gate, &l.up])?,
                down: up.projection(&[&l.down])?,
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
        // One RoPE for every layer (several are refused above).
        let rope_inv_freq = model.rope_inv_freq[0].clone();
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
            rope_inv_freq,
            max_matrix_elems,
            bytes,
        })
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

/// Checks that a layer is the plain llama layer this backend's forward pass runs. Every field of
/// the description is named (no `..`), so a new one must be handled here; `check_backend`
/// has already refused any model with a feature this backend lacks.
fn plain_layer(spec: &LayerSpec) -> Result<()> {
    match *spec {
        LayerSpec {
            rope: 0,
            window: None,
            qkv_bias: false,
            out_bias: false,
            qk_norm: false,
            post_attn_norm: false,
            post_ffn_norm: false,
        } => Ok(()),
        _ => Err(Error::InvalidModel(format!(
            "layer {spec:?} is not one the GPU forward pass runs"
        ))),
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

    /// One stacked matrix when all parts share type and width, else one matrix per part.
    fn projection(&mut self, parts: &[&WeightRef]) -> Result<Projection> {
        let out_width = parts.iter().map(|w| w.rows).sum();
        let same = parts
            .iter()
            .all(|w| w.ty() == parts[0].ty() && w.cols == parts[0].cols);
        if !same || parts.len() == 1 {
            let mut mats = Vec::with_capacity(parts.len());
            let mut off = 0;
            for w in parts {
                mats.push(self.matrix(w, off)?);
                off += w.rows;
            }
            return Ok(Projection {
                parts: mats,
                out_width,
            });
        }
        let buf = self.upload_rows(parts)?;
        let m = GpuMatrix {
            buf: Arc::new(buf),
            ty: parts[0].ty(),
            rows: out_width,
            cols: parts[0].cols,
            out_offset: 0,
        };
        Ok(Projection {
            parts: vec![m],
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
