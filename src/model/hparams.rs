//! The model-level description: shapes from the `<arch>.*` keys every family shares, and what
//! families differ in (RoPE style, FFN activation, embedding scale, soft-capping), with one
//! [`LayerSpec`] per layer. Built once at load: the keys all families share are read here,
//! then the family's file ([`super::arch`]) fills in its own.

use super::arch::{Architecture, Source};
use super::layer::{FreqFactors, LayerSpec, RopeSpec};
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// How RoPE frequencies are stretched for contexts beyond training length. (Llama 3.1's
/// per-dimension factors come from the file: [`RopeSpec::freq_factors`].)
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions are multiplied by `1 / factor`.
    Linear {
        factor: f32,
    },
}

/// Which elements of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])` (llama).
    Normal,
    /// Halves `(x[i], x[i + head_dim/2])` (GPT-NeoX; Qwen, Phi-3, Gemma).
    Neox,
}

/// The gated feed-forward's activation: `down(act(gate x) * up x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (llama, Qwen, Mistral, Phi-3).
    SwiGlu,
    /// GELU, tanh approximation (Gemma).
    GeGlu,
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
    pub rms_eps: f32,
    pub rope_style: RopeStyle,
    /// The distinct rotations the layers use, each layer naming one by index (llama: one;
    /// Gemma 3: a local one for the windowed layers and a global one).
    pub ropes: Vec<RopeSpec>,
    pub activation: Activation,
    /// Token embeddings are multiplied by this (Gemma: √n_embd).
    pub embd_scale: Option<f32>,
    /// `logits = cap * tanh(logits / cap)` (Gemma 2).
    pub final_logit_softcap: Option<f32>,
    /// `score = cap * tanh(score / cap)` on attention scores before the softmax (Gemma 2).
    pub attn_logit_softcap: Option<f32>,
    /// Attention scores are `q . k * attn_scale` instead of `q . k / √head_dim` (Gemma 3 27B:
    /// `1 / √(n_embd / n_head)`). None for the usual scale; a family sets it only when it
    /// differs, so that only the models that need it are refused where it is not run.
    pub attn_scale: Option<f32>,
    /// (n_layer)
    pub layers: Vec<LayerSpec>,
}

/// Upper bounds that keep a hostile file from sizing huge buffers through metadata.
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 4096;

impl Hparams {
    /// The description of the model in `gguf`: shared keys, then its family's own.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Hparams> {
        let arch_name = gguf
            .get_str("general.architecture")
            .ok_or_else(|| Error::InvalidModel("missing general.architecture".into()))?;
        let arch = Architecture::from_name(arch_name)?;
        let src = Source::new(gguf, arch.name());
        let mut hp = shared(&src, arch)?;
        (arch.family().describe)(&src, &mut hp)?;
        hp.validate()?;
        Ok(hp)
    }

    /// Width of one token's keys (or values) in one layer.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of one token's queries in one layer.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Whether a context with `n_ctx_seq` cells per sequence rotates with a
    /// [`FreqFactors::ByContext`] RoPE's long factors (past its original context length), as
    /// llama.cpp chooses them; the same choice for every backend.
    pub fn long_rope_factors(&self, n_ctx_seq: usize) -> bool {
        (self.ropes.iter()).any(|r| match r.freq_factors {
            FreqFactors::ByContext { n_ctx_orig } => n_ctx_seq > n_ctx_orig,
            _ => false,
        })
    }

    /// Invariants a family's `describe` must keep, checked on every file (they are untrusted).
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidModel(what));
        if self.layers.len() != self.n_layer {
            return bad(format!(
                "{} layer descriptions for {} layers",
                self.layers.len(),
                self.n_layer
            ));
        }
        if self.ropes.is_empty() {
            return bad("no RoPE description".into());
        }
        for r in &self.ropes {
            let ok = r.base.is_finite()
                && r.base > 0.0
                && match r.scaling {
                    RopeScaling::None => true,
                    RopeScaling::Linear { factor } => factor.is_finite() && factor > 0.0,
                };
            if !ok {
                return bad(format!("invalid RoPE base or scaling {r:?}"));
            }
        }
        for (il, l) in self.layers.iter().enumerate() {
            if l.rope >= self.ropes.len() {
                return bad(format!(
                    "layer {il} names RoPE {} of {}",
                    l.rope,
                    self.ropes.len()
                ));
            }
            if l.window == Some(0) {
                return bad(format!("layer {il} has an empty attention window"));
            }
        }
        let caps = [
            ("embedding scale", self.embd_scale),
            ("final logit soft-cap", self.final_logit_softcap),
            ("attention logit soft-cap", self.attn_logit_softcap),
            ("attention scale", self.attn_scale),
        ];
        for (what, v) in caps {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return bad(format!("invalid {what} {v:?}"));
            }
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return bad(format!("invalid rms epsilon {}", self.rms_eps));
        }
        Ok(())
    }
}

/// What every family's keys say, with the llama defaults for the rest (normal RoPE, SwiGLU,
/// no biases or extra norms, full attention): the family's `describe` changes what differs.
fn shared(src: &Source, arch: Architecture) -> Result<Hparams> {
    let n_layer = src.required("block_count", MAX_LAYERS)?;
    let n_embd = src.required("embedding_length", MAX_DIM)?;
    let n_head = src.required("attention.head_count", MAX_DIM)?;
    let n_head_kv = match src.u64("attention.head_count_kv") {
        Some(_) => src.required("attention.head_count_kv", MAX_DIM)?,
        None => n_head,
    };
    let n_ff = src.required("feed_forward_length", MAX_DIM * 4)?;
    let n_ctx_train = src.required("context_length", 1 << 24)?;
    if n_head % n_head_kv != 0 {
        return Err(Error::InvalidModel(format!(
            "head count {n_head} is not a multiple of KV head count {n_head_kv}"
        )));
    }
    let head_dim = match src.u64("attention.key_length") {
        Some(_) => src.required("attention.key_length", MAX_DIM)?,
        None if n_embd % n_head == 0 => n_embd / n_head,
        None => {
            return Err(Error::InvalidModel(format!(
                "embedding length {n_embd} is not a multiple of head count {n_head}"
            )))
        }
    };
    if let Some(v) = src.u64("attention.value_length") {
        if v as usize != head_dim {
            return Err(Error::InvalidModel(format!(
                "value head size {v} differs from key head size {head_dim}"
            )));
        }
    }
    if head_dim % 2 != 0 {
        return Err(Error::InvalidModel(format!(
            "head dimension {head_dim} is odd"
        )));
    }
    if let Some(rope_dims) = src.u64("rope.dimension_count") {
        if rope_dims as usize != head_dim {
            return Err(Error::InvalidModel(format!(
                "partial RoPE ({rope_dims} of {head_dim} dimensions) is not supported"
            )));
        }
    }
    let n_vocab = match src.u64("vocab_size") {
        Some(_) => src.required("vocab_size", 1 << 24)?,
        None => src
            .gguf()
            .get_str_array("tokenizer.ggml.tokens")
            .map(|t| t.len())
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::InvalidModel("no vocabulary size".into()))?,
    };
    let attn_factor = src.f32("rope.scaling.attn_factor").unwrap_or(1.0);
    if !(attn_factor.is_finite() && attn_factor > 0.0) {
        return Err(Error::InvalidModel(format!(
            "RoPE attention factor {attn_factor} is not a positive number"
        )));
    }
    let rope = RopeSpec {
        base: src.f32("rope.freq_base").unwrap_or(10000.0),
        scaling: rope_scaling(src)?,
        freq_factors: FreqFactors::None,
        attn_factor,
    };
    let rms_eps = src.f32("attention.layer_norm_rms_epsilon").unwrap_or(1e-5);
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
        rms_eps,
        rope_style: RopeStyle::Normal,
        ropes: vec![rope],
        activation: Activation::SwiGlu,
        embd_scale: None,
        final_logit_softcap: None,
        attn_logit_softcap: None,
        attn_scale: None,
        layers: vec![LayerSpec::default(); n_layer],
    })
}

fn rope_scaling(src: &Source) -> Result<RopeScaling> {
    let kind = src.str("rope.scaling.type");
    let factor = src
        .f32("rope.scaling.factor")
        .or_else(|| src.f32("rope.scale_linear"));
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
