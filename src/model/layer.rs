//! The per-layer description ([`LayerSpec`]), and the list of features a description uses
//! ([`Feature`]), against which each backend states what it runs: a model that uses a feature
//! a backend does not run is refused when it is loaded there, never run without it.

use super::hparams::{Activation, Hparams, RopeScaling, RopeStyle};
use crate::{Error, Result};

/// One rotation: the base of its frequencies and how they are stretched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSpec {
    pub base: f32,
    pub scaling: RopeScaling,
    /// Per-dimension divisors of the frequencies, from the file.
    pub freq_factors: FreqFactors,
    /// The rotation's sine and cosine are multiplied by this (`rope.scaling.attn_factor`,
    /// 1 when absent; Phi-3's long-context files): queries and keys grow by it, scores by its
    /// square, as llama.cpp's rope does.
    pub attn_factor: f32,
}

/// Where a rotation's per-dimension frequency divisors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreqFactors {
    None,
    /// The `rope_freqs` tensor (Llama 3.1), for every context.
    Fixed,
    /// `rope_factors_short` for contexts of at most `n_ctx_orig` cells per sequence,
    /// `rope_factors_long` beyond (Phi-3 128k), as llama.cpp chooses them per context; either
    /// tensor may be absent (then no factors for those contexts).
    ByContext {
        n_ctx_orig: usize,
    },
}

/// What one layer is: which RoPE it applies, how far back it attends, which optional tensors
/// (biases, norms) it has. The weights hold exactly the tensors the description names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerSpec {
    /// Index into [`Hparams::ropes`].
    pub rope: usize,
    /// Sliding-window attention: a token sees the cells of its sequence at most `window - 1`
    /// positions before its own (llama.cpp's standard SWA mask). None: every earlier position.
    pub window: Option<usize>,
    /// Biases added to the Q, K and V projections.
    pub qkv_bias: bool,
    /// Bias added to the attention output projection.
    pub out_bias: bool,
    /// RMSNorm over each head of Q and K (weights of head_dim) before RoPE.
    pub qk_norm: bool,
    /// RMSNorm of the attention output before the residual add (Gemma).
    pub post_attn_norm: bool,
    /// RMSNorm of the feed-forward output before the residual add (Gemma).
    pub post_ffn_norm: bool,
}

/// A way in which a model departs from the plain llama forward pass: the unit in which
/// backends say what they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    NeoxRope,
    /// Layers with different RoPE bases or scaling.
    PerLayerRope,
    GeGlu,
    QkvBias,
    OutputBias,
    QkNorm,
    PostAttentionNorm,
    PostFfnNorm,
    EmbeddingScale,
    SlidingWindow,
    FinalLogitSoftcap,
    AttentionLogitSoftcap,
    /// Attention scores scaled by other than `1 / √head_dim`.
    AttentionScale,
    /// RoPE factors that depend on the context's length ([`FreqFactors::ByContext`]).
    ContextRopeFactors,
    /// A RoPE attention factor other than 1 ([`RopeSpec::attn_factor`]).
    RopeAttnFactor,
}

impl Feature {
    pub fn name(self) -> &'static str {
        match self {
            Feature::NeoxRope => "NEOX-style RoPE",
            Feature::PerLayerRope => "per-layer RoPE base/scaling",
            Feature::GeGlu => "GeGLU feed-forward",
            Feature::QkvBias => "Q/K/V projection biases",
            Feature::OutputBias => "attention output bias",
            Feature::QkNorm => "QK-norm",
            Feature::PostAttentionNorm => "post-attention norm",
            Feature::PostFfnNorm => "post-feed-forward norm",
            Feature::EmbeddingScale => "embedding scale",
            Feature::SlidingWindow => "sliding-window attention",
            Feature::FinalLogitSoftcap => "final logit soft-capping",
            Feature::AttentionLogitSoftcap => "attention logit soft-capping",
            Feature::AttentionScale => "attention scale other than 1/sqrt(head_dim)",
            Feature::ContextRopeFactors => "RoPE factors chosen by context length",
            Feature::RopeAttnFactor => "RoPE attention factor",
        }
    }
}

impl Hparams {
    /// Every feature this description uses, each once. Reads every field that changes the
    /// computation (the destructuring has no `..`: a new field must be classified here, so no
    /// backend can ignore it unnoticed).
    pub fn features(&self) -> Vec<Feature> {
        let Hparams {
            arch: _,
            n_layer: _,
            n_embd: _,
            n_head: _,
            n_head_kv: _,
            head_dim: _,
            n_ff: _,
            n_vocab: _,
            n_ctx_train: _,
            rms_eps: _,
            rope_style,
            ropes,
            activation,
            embd_scale,
            final_logit_softcap,
            attn_logit_softcap,
            attn_scale,
            layers,
        } = self;
        let mut out = Vec::new();
        let mut add = |on: bool, f: Feature| {
            if on && !out.contains(&f) {
                out.push(f);
            }
        };
        add(*rope_style == RopeStyle::Neox, Feature::NeoxRope);
        // Scaling and frequency factors are folded into each rotation's table, which every
        // backend applies as it is; only several tables are a feature.
        add(ropes.len() > 1, Feature::PerLayerRope);
        for r in ropes {
            let by_context = matches!(r.freq_factors, FreqFactors::ByContext { .. });
            add(by_context, Feature::ContextRopeFactors);
            add(r.attn_factor != 1.0, Feature::RopeAttnFactor);
        }
        add(*activation == Activation::GeGlu, Feature::GeGlu);
        add(embd_scale.is_some(), Feature::EmbeddingScale);
        add(final_logit_softcap.is_some(), Feature::FinalLogitSoftcap);
        add(attn_logit_softcap.is_some(), Feature::AttentionLogitSoftcap);
        add(attn_scale.is_some(), Feature::AttentionScale);
        for l in layers {
            let LayerSpec {
                rope: _,
                window,
                qkv_bias,
                out_bias,
                qk_norm,
                post_attn_norm,
                post_ffn_norm,
            } = *l;
            add(window.is_some(), Feature::SlidingWindow);
            add(qkv_bias, Feature::QkvBias);
            add(out_bias, Feature::OutputBias);
            add(qk_norm, Feature::QkNorm);
            add(post_attn_norm, Feature::PostAttentionNorm);
            add(post_ffn_norm, Feature::PostFfnNorm);
        }
        out
    }

    /// `Ok` when `backend` (named in the error) runs every feature this model uses, given the
    /// list of those it runs; else `Unsupported` naming the first missing one.
    pub fn check_backend(&self, backend: &'static str, runs: &[Feature]) -> Result<()> {
        match self.features().into_iter().find(|f| !runs.contains(f)) {
            None => Ok(()),
            Some(f) => Err(Error::UnsupportedFeature {
                arch: self.arch.name(),
                feature: f.name(),
                backend,
            }),
        }
    }
}
