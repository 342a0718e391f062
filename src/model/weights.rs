//! The weights of any family: one type whose optional tensors are present exactly when the
//! description ([`LayerSpec`]) says so. Names, shapes and types are checked against the
//! description at load; the data stays in the model mapping. Tensor names are GGUF's
//! standard ones (llama.cpp's `LLM_TENSOR_*` names), the same for every family.

use super::arch::Fused;
use super::{FreqFactors, Hparams, LayerSpec};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::GgmlType;
use crate::{Error, Result};
use std::collections::HashSet;

/// A weight tensor in the mapping: its info (name, dims, type, offset) is enough to find the
/// bytes again through the owning `GgufFile`. A row range of a fused tensor has an info of its
/// own (offset and size of those rows, name with the part appended).
#[derive(Debug, Clone)]
pub struct WeightRef {
    pub info: TensorInfo,
    /// Output features (rows of the matrix).
    pub rows: usize,
    /// Input features (elements per row).
    pub cols: usize,
}

impl WeightRef {
    pub fn ty(&self) -> GgmlType {
        self.info.ty
    }

    /// Rows `start .. start + rows` as a matrix of their own (row-major blocks: contiguous).
    pub(crate) fn rows(&self, start: usize, rows: usize, part: &str) -> WeightRef {
        let row_bytes = self.info.n_bytes / self.rows as u64;
        let mut info = self.info.clone();
        info.name = format!("{}[{part}]", self.info.name);
        info.offset += start as u64 * row_bytes;
        info.n_bytes = rows as u64 * row_bytes;
        info.dims = vec![self.cols as u64, rows as u64];
        WeightRef {
            info,
            rows,
            cols: self.cols,
        }
    }
}

/// Q, K and V biases: (q_dim), (kv_dim), (kv_dim).
pub struct QkvBias {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

pub struct LayerWeights {
    /// (n_embd)
    pub attn_norm: Vec<f32>,
    /// (q_dim, n_embd)
    pub wq: WeightRef,
    /// (kv_dim, n_embd)
    pub wk: WeightRef,
    /// (kv_dim, n_embd)
    pub wv: WeightRef,
    /// When the spec has `qkv_bias`.
    pub qkv_bias: Option<QkvBias>,
    /// (head_dim) each, when the spec has `qk_norm`.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// (n_embd, q_dim)
    pub wo: WeightRef,
    /// (n_embd), when the spec has `out_bias`.
    pub out_bias: Option<Vec<f32>>,
    /// (n_embd), when the spec has `post_attn_norm`.
    pub post_attn_norm: Option<Vec<f32>>,
    /// (n_embd)
    pub ffn_norm: Vec<f32>,
    /// (n_ff, n_embd)
    pub gate: WeightRef,
    /// (n_ff, n_embd)
    pub up: WeightRef,
    /// (n_embd, n_ff)
    pub down: WeightRef,
    /// (n_embd), when the spec has `post_ffn_norm`.
    pub post_ffn_norm: Option<Vec<f32>>,
}

pub struct Weights {
    /// (n_vocab, n_embd)
    pub token_embd: WeightRef,
    pub layers: Vec<LayerWeights>,
    /// (n_embd)
    pub output_norm: Vec<f32>,
    /// (n_vocab, n_embd); the embedding itself when the model ties them.
    pub output: WeightRef,
    /// Per-dimension RoPE frequency divisors, (head_dim / 2) each: Llama 3.1's `rope_freqs`
    /// or Phi-3's `rope_factors_short` (a RoPE's [`super::FreqFactors`] says which).
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Phi-3's `rope_factors_long`, for contexts longer than the original one.
    pub rope_freq_factors_long: Option<Vec<f32>>,
}

impl Weights {
    /// The tensors `hp` describes; a tensor of the file that the description does not use is
    /// an error (see [`Loader::finish`]).
    pub fn from_gguf(gguf: &GgufFile, hp: &Hparams) -> Result<Weights> {
        Self::load(gguf, hp, hp.arch.family().fused)
    }

    /// [`Self::from_gguf`] with the fused layouts to accept given.
    pub(crate) fn load(gguf: &GgufFile, hp: &Hparams, fused: Fused) -> Result<Weights> {
        let mut ld = Loader {
            gguf,
            used: HashSet::new(),
        };
        let token_embd = ld.matrix("token_embd.weight", hp.n_vocab, hp.n_embd)?;
        let output = if gguf.tensor("output.weight").is_some() {
            ld.matrix("output.weight", hp.n_vocab, hp.n_embd)?
        } else {
            token_embd.clone()
        };
        let mut layers = Vec::with_capacity(hp.n_layer);
        for (i, spec) in hp.layers.iter().enumerate() {
            layers.push(ld.layer(hp, i, spec, fused)?);
        }
        let half = hp.head_dim / 2;
        let has = |f: fn(&FreqFactors) -> bool| hp.ropes.iter().any(|r| f(&r.freq_factors));
        let (rope_freq_factors, rope_freq_factors_long) = if has(|f| *f == FreqFactors::Fixed) {
            (Some(ld.vector("rope_freqs.weight", half)?), None)
        } else if has(|f| matches!(f, FreqFactors::ByContext { .. })) {
            (
                ld.optional_vector("rope_factors_short.weight", half)?,
                ld.optional_vector("rope_factors_long.weight", half)?,
            )
        } else {
            (None, None)
        };
        let weights = Weights {
            token_embd,
            layers,
            output_norm: ld.vector("output_norm.weight", hp.n_embd)?,
            output,
            rope_freq_factors,
            rope_freq_factors_long,
        };
        ld.finish(hp)?;
        Ok(weights)
    }
}

/// Reads tensors by name and remembers which ones it read.
struct Loader<'a> {
    gguf: &'a GgufFile,
    used: HashSet<String>,
}

impl Loader<'_> {
    fn layer(
        &mut self,
        hp: &Hparams,
        i: usize,
        spec: &LayerSpec,
        fused: Fused,
    ) -> Result<LayerWeights> {
        let (d, q, kv, ff, hd) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff, hp.head_dim);
        let name = |s: &str| format!("blk.{i}.{s}");
        let opt_vec = |ld: &mut Self, on: bool, s: &str, len: usize| -> Result<Option<Vec<f32>>> {
            if on {
                ld.vector(&name(s), len).map(Some)
            } else {
                Ok(None)
            }
        };
        let (wq, wk, wv) = if fused.qkv && self.gguf.tensor(&name("attn_qkv.weight")).is_some() {
            let w = self.matrix(&name("attn_qkv.weight"), q + 2 * kv, d)?;
            (
                w.rows(0, q, "q"),
                w.rows(q, kv, "k"),
                w.rows(q + kv, kv, "v"),
            )
        } else {
            (
                self.matrix(&name("attn_q.weight"), q, d)?,
                self.matrix(&name("attn_k.weight"), kv, d)?,
                self.matrix(&name("attn_v.weight"), kv, d)?,
            )
        };
        let (gate, up) = if fused.gate_up && self.gguf.tensor(&name("ffn_gate.weight")).is_none() {
            let w = self.matrix(&name("ffn_up.weight"), 2 * ff, d)?;
            (w.rows(0, ff, "gate"), w.rows(ff, ff, "up"))
        } else {
            (
                self.matrix(&name("ffn_gate.weight"), ff, d)?,
                self.matrix(&name("ffn_up.weight"), ff, d)?,
            )
        };
        let qkv_bias = if spec.qkv_bias {
            Some(QkvBias {
                q: self.vector(&name("attn_q.bias"), q)?,
                k: self.vector(&name("attn_k.bias"), kv)?,
                v: self.vector(&name("attn_v.bias"), kv)?,
            })
        } else {
            None
        };
        Ok(LayerWeights {
            attn_norm: self.vector(&name("attn_norm.weight"), d)?,
            wq,
            wk,
            wv,
            qkv_bias,
            q_norm: opt_vec(self, spec.qk_norm, "attn_q_norm.weight", hd)?,
            k_norm: opt_vec(self, spec.qk_norm, "attn_k_norm.weight", hd)?,
            wo: self.matrix(&name("attn_output.weight"), d, q)?,
            out_bias: opt_vec(self, spec.out_bias, "attn_output.bias", d)?,
            post_attn_norm: opt_vec(self, spec.post_attn_norm, "post_attention_norm.weight", d)?,
            ffn_norm: self.vector(&name("ffn_norm.weight"), d)?,
            gate,
            up,
            down: self.matrix(&name("ffn_down.weight"), d, ff)?,
            post_ffn_norm: opt_vec(self, spec.post_ffn_norm, "post_ffw_norm.weight", d)?,
        })
    }

    fn find(&mut self, name: &str) -> Result<TensorInfo> {
        let info = self
            .gguf
            .tensor(name)
            .ok_or_else(|| Error::InvalidModel(format!("missing tensor '{name}'")))?;
        self.used.insert(name.to_string());
        Ok(info.clone())
    }

    /// A 2-D weight of `rows` x `cols` (GGUF dims are [cols, rows]) of a type we can compute
    /// with.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<WeightRef> {
        let info = self.find(name)?;
        if info.dims != [cols as u64, rows as u64] {
            return Err(Error::InvalidModel(format!(
                "tensor '{name}' has shape {:?}, expected [{cols}, {rows}]",
                info.dims
            )));
        }
        if !info.ty.is_computable() {
            return Err(Error::UnsupportedTensorType {
                tensor: name.to_string(),
                ty: info.ty.name().to_string(),
            });
        }
        Ok(WeightRef { info, rows, cols })
    }

    /// A 1-D weight (norm scales, biases), converted to f32 once at load: they are tiny.
    /// [`Self::vector`] when the file has the tensor.
    fn optional_vector(&mut self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        match self.gguf.tensor(name) {
            Some(_) => self.vector(name, len).map(Some),
            None => Ok(None),
        }
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.find(name)?;
        if info.dims != [len as u64] {
            return Err(Error::InvalidModel(format!(
                "tensor '{name}' has shape {:?}, expected [{len}]",
                info.dims
            )));
        }
        let mut out = vec![0.0f32; len];
        crate::quant::dequantize_row(info.ty, self.gguf.tensor_data(&info), &mut out).map_err(
            |_| Error::UnsupportedTensorType {
                tensor: name.to_string(),
                ty: info.ty.name().to_string(),
            },
        )?;
        Ok(out)
    }

    /// A file whose tensors the description does not all use was most likely edited or
    /// mislabelled (a lowered `block_count` runs a fraction of the layers and produces
    /// plausible garbage; a bias the family does not expect would be ignored), so it is
    /// refused, as llama.cpp refuses a tensor count that does not match.
    fn finish(&self, hp: &Hparams) -> Result<()> {
        let unused: Vec<&str> = (self.gguf.tensors().iter())
            .map(|t| t.name.as_str())
            .filter(|n| !self.used.contains(*n))
            .collect();
        match unused.first() {
            None => Ok(()),
            Some(first) => Err(Error::InvalidModel(format!(
                "the file holds {} tensor(s) that a {}-layer {} model does not use (first: \
                 '{first}'); is the block count ({}) right?",
                unused.len(),
                hp.n_layer,
                hp.arch.name(),
                hp.n_layer
            ))),
        }
    }
}
