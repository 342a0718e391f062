//! Hyperparameters read from GGUF metadata (`<arch>.*` keys).

use crate::gguf::GgufFile;
use crate::{Error, Result};

/// Architectures this engine runs. GGUF files of Mistral, SmolLM2 and TinyLlama say `llama`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
}

impl Architecture {
    pub const ALL: [Architecture; 1] = [Architecture::Llama];

    /// The `general.architecture` names this build runs, for error messages: "llama, ...".
    pub fn supported_names() -> String {
        Self::ALL.map(Architecture::name).join(", ")
    }

    pub fn from_name(name: &str) -> Result<Architecture> {
        match name {
            "llama" => Ok(Architecture::Llama),
            other => Err(Error::UnsupportedArchitecture(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
        }
    }
}

/// How RoPE frequencies are stretched for contexts beyond training length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions are multiplied by `1 / factor`.
    Linear {
        factor: f32,
    },
}

#[derive(Debug, Clone)]
pub struct Hparams {
    pub arch: Architecture,
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Hidden width of the feed-forward block.
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    pub rope_base: f32,
    pub rope_scaling: RopeScaling,
    pub rms_eps: f32,
}

/// Upper bounds that keep a hostile file from sizing huge buffers through metadata.
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 4096;

impl Hparams {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Hparams> {
        let arch_name = gguf
            .get_str("general.architecture")
            .ok_or_else(|| Error::InvalidModel("missing general.architecture".into()))?;
        let arch = Architecture::from_name(arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let required = |k: &str, max: usize| -> Result<usize> {
            let full = key(k);
            let v = gguf
                .get_u64(&full)
                .ok_or_else(|| Error::InvalidModel(format!("missing or non-integer {full}")))?;
            if v == 0 || v as u128 > max as u128 {
                return Err(Error::InvalidModel(format!(
                    "{full} = {v} is out of range 1..={max}"
                )));
            }
            Ok(v as usize)
        };
        let n_layer = required("block_count", MAX_LAYERS)?;
        let n_embd = required("embedding_length", MAX_DIM)?;
        let n_head = required("attention.head_count", MAX_DIM)?;
        let n_head_kv = match gguf.get_u64(&key("attention.head_count_kv")) {
            Some(_) => required("attention.head_count_kv", MAX_DIM)?,
            None => n_head,
        };
        let n_ff = required("feed_forward_length", MAX_DIM * 4)?;
        let n_ctx_train = required("context_length", 1 << 24)?;
        if n_embd % n_head != 0 {
            return Err(Error::InvalidModel(format!(
                "embedding length {n_embd} is not a multiple of head count {n_head}"
            )));
        }
        if n_head % n_head_kv != 0 {
            return Err(Error::InvalidModel(format!(
                "head count {n_head} is not a multiple of KV head count {n_head_kv}"
            )));
        }
        let head_dim = match gguf.get_u64(&key("attention.key_length")) {
            Some(_) => required("attention.key_length", MAX_DIM)?,
            None => n_embd / n_head,
        };
        if head_dim % 2 != 0 {
            return Err(Error::InvalidModel(format!(
                "head dimension {head_dim} is odd"
            )));
        }
        if let Some(rope_dims) = gguf.get_u64(&key("rope.dimension_count")) {
            if rope_dims as usize != head_dim {
                return Err(Error::InvalidModel(format!(
                    "partial RoPE ({rope_dims} of {head_dim} dimensions) is not supported"
                )));
            }
        }
        let n_vocab = match gguf.get_u64(&key("vocab_size")) {
            Some(_) => required("vocab_size", 1 << 24)?,
            None => gguf
                .get_str_array("tokenizer.ggml.tokens")
                .map(|t| t.len())
                .filter(|&n| n > 0)
                .ok_or_else(|| Error::InvalidModel("no vocabulary size".into()))?,
        };
        let rope_base = gguf.get_f32(&key("rope.freq_base")).unwrap_or(10000.0);
        let rms_eps = gguf
            .get_f32(&key("attention.layer_norm_rms_epsilon"))
            .unwrap_or(1e-5);
        let valid =
            rope_base.is_finite() && rope_base > 0.0 && rms_eps.is_finite() && rms_eps >= 0.0;
        if !valid {
            return Err(Error::InvalidModel(format!(
                "invalid rope.freq_base {rope_base} or rms epsilon {rms_eps}"
            )));
        }
        let rope_scaling = rope_scaling(gguf, arch_name)?;
        Ok(Hparams {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            n_ctx_train,
            rope_base,
            rope_scaling,
            rms_eps,
        })
    }

    /// Width of one token's keys (or values) in one layer.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of one token's queries in one layer.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}

fn rope_scaling(gguf: &GgufFile, arch: &str) -> Result<RopeScaling> {
    let kind = gguf.get_str(&format!("{arch}.rope.scaling.type"));
    let factor = gguf
        .get_f32(&format!("{arch}.rope.scaling.factor"))
        .or_else(|| gguf.get_f32(&format!("{arch}.rope.scale_linear")));
    match (kind, factor) {
        (None | Some("none"), None) => Ok(RopeScaling::None),
        (None | Some("linear"), Some(f)) if f.is_finite() && f > 0.0 => {
            if f == 1.0 {
                Ok(RopeScaling::None)
            } else {
                Ok(RopeScaling::Linear { factor: f })
            }
        }
        (Some("none"), Some(_)) => Ok(RopeScaling::None),
        (None | Some("linear"), f) => Err(Error::InvalidModel(format!(
            "invalid or missing RoPE scaling factor {f:?}"
        ))),
        (Some(other), _) => Err(Error::InvalidModel(format!(
            "unsupported RoPE scaling type '{other}' (supported: none, linear)"
        ))),
    }
}
