//! Llama-family weights (Llama 2/3, Mistral, SmolLM2, TinyLlama): names, shapes and types
//! checked against the hyperparameters at load, kept in the model mapping.

use super::Hparams;
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// A weight tensor in the mapping: its info (name, dims, type, offset) is enough to find the
/// bytes again through the owning `GgufFile`.
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
    /// (n_embd, q_dim)
    pub wo: WeightRef,
    /// (n_embd)
    pub ffn_norm: Vec<f32>,
    /// (n_ff, n_embd)
    pub gate: WeightRef,
    /// (n_ff, n_embd)
    pub up: WeightRef,
    /// (n_embd, n_ff)
    pub down: WeightRef,
}

pub struct LlamaWeights {
    /// (n_vocab, n_embd)
    pub token_embd: WeightRef,
    pub layers: Vec<LayerWeights>,
    /// (n_embd)
    pub output_norm: Vec<f32>,
    /// (n_vocab, n_embd); the embedding itself when the model ties them.
    pub output: WeightRef,
    /// Per-dimension RoPE frequency divisors (Llama 3.1 long-context scaling): (head_dim / 2).
    pub rope_freq_factors: Option<Vec<f32>>,
}

impl LlamaWeights {
    pub fn from_gguf(gguf: &GgufFile, hp: &Hparams) -> Result<LlamaWeights> {
        let token_embd = matrix(gguf, "token_embd.weight", hp.n_vocab, hp.n_embd)?;
        let output = if gguf.tensor("output.weight").is_some() {
            matrix(gguf, "output.weight", hp.n_vocab, hp.n_embd)?
        } else {
            token_embd.clone()
        };
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let name = |suffix: &str| format!("blk.{i}.{suffix}.weight");
            layers.push(LayerWeights {
                attn_norm: vector(gguf, &name("attn_norm"), hp.n_embd)?,
                wq: matrix(gguf, &name("attn_q"), hp.q_dim(), hp.n_embd)?,
                wk: matrix(gguf, &name("attn_k"), hp.kv_dim(), hp.n_embd)?,
                wv: matrix(gguf, &name("attn_v"), hp.kv_dim(), hp.n_embd)?,
                wo: matrix(gguf, &name("attn_output"), hp.n_embd, hp.q_dim())?,
                ffn_norm: vector(gguf, &name("ffn_norm"), hp.n_embd)?,
                gate: matrix(gguf, &name("ffn_gate"), hp.n_ff, hp.n_embd)?,
                up: matrix(gguf, &name("ffn_up"), hp.n_ff, hp.n_embd)?,
                down: matrix(gguf, &name("ffn_down"), hp.n_embd, hp.n_ff)?,
            });
        }
        let rope_freq_factors = match gguf.tensor("rope_freqs.weight") {
            Some(_) => Some(vector(gguf, "rope_freqs.weight", hp.head_dim / 2)?),
            None => None,
        };
        let weights = LlamaWeights {
            token_embd,
            layers,
            output_norm: vector(gguf, "output_norm.weight", hp.n_embd)?,
            output,
            rope_freq_factors,
        };
        check_all_used(gguf, hp)?;
        Ok(weights)
    }
}

/// A file whose tensors the model does not all use was most likely edited or mislabelled (a
/// lowered `block_count` runs a fraction of the layers and produces plausible garbage), so it is
/// refused, as llama.cpp refuses a tensor count that does not match.
fn check_all_used(gguf: &GgufFile, hp: &Hparams) -> Result<()> {
    const GLOBAL: [&str; 4] = [
        "token_embd.weight",
        "output.weight",
        "output_norm.weight",
        "rope_freqs.weight",
    ];
    const PER_LAYER: [&str; 9] = [
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    let used = |name: &str| {
        GLOBAL.contains(&name)
            || name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(layer, tail)| {
                    layer.parse::<usize>().is_ok_and(|l| l < hp.n_layer)
                        && tail
                            .strip_suffix(".weight")
                            .is_some_and(|t| PER_LAYER.contains(&t))
                })
    };
    let unused: Vec<&str> = (gguf.tensors().iter())
        .map(|t| t.name.as_str())
        .filter(|n| !used(n))
        .collect();
    match unused.first() {
        None => Ok(()),
        Some(first) => Err(Error::InvalidModel(format!(
            "the file holds {} tensor(s) that a {}-layer llama model does not use (first: \
             '{first}'); is the block count ({}) right?",
            unused.len(),
            hp.n_layer,
            hp.n_layer
        ))),
    }
}

fn find<'a>(gguf: &'a GgufFile, name: &str) -> Result<&'a TensorInfo> {
    gguf.tensor(name)
        .ok_or_else(|| Error::InvalidModel(format!("missing tensor '{name}'")))
}

/// A 2-D weight of `rows` x `cols` (GGUF dims are [cols, rows]) of a type we can compute with.
fn matrix(gguf: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<WeightRef> {
    let info = find(gguf, name)?;
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
    Ok(WeightRef {
        info: info.clone(),
        rows,
        cols,
    })
}

/// A 1-D weight (norm scales), converted to f32 once at load: they are tiny.
fn vector(gguf: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
    let info = find(gguf, name)?;
    if info.dims != [len as u64] {
        return Err(Error::InvalidModel(format!(
            "tensor '{name}' has shape {:?}, expected [{len}]",
            info.dims
        )));
    }
    let mut out = vec![0.0f32; len];
    crate::quant::dequantize_row(info.ty, gguf.tensor_data(info), &mut out).map_err(|_| {
        Error::UnsupportedTensorType {
            tensor: name.to_string(),
            ty: info.ty.name().to_string(),
        }
    })?;
    Ok(out)
}
