//! `phi3`: Phi-3 and Phi-3.5 (mini, medium; dense). Llama's layers with NEOX-style RoPE, the
//! Q|K|V projections fused in one `attn_qkv` tensor (separate ones are accepted too, as
//! llama.cpp's loader does) and the FFN's gate|up fused in `ffn_up` (2 n_ff rows: gate first),
//! split by rows at load.
//!
//! The long-context files (Phi-3-mini-128k, Phi-3.5) carry `rope_factors_short` and
//! `rope_factors_long` (per-dimension divisors of the RoPE frequencies) and an attention factor
//! (`rope.scaling.attn_factor`, read for every family): a context of more than the original
//! length (`rope.scaling.original_context_length`, else the training length) cells per
//! sequence rotates with the long factors, a shorter one with the short factors, as llama.cpp
//! chooses them per context. Files declare a sliding window (`attention.sliding_window`), which
//! llama.cpp b11312 does not apply to Phi-3 (its conversions do not describe it correctly),
//! so it is not read here either: every layer attends to the whole context.

use super::arch::{Family, Fused, Source};
use super::{FreqFactors, Hparams, RopeStyle};
use crate::Result;

pub const FAMILY: Family = Family {
    name: "phi3",
    describe,
    fused: Fused {
        qkv: true,
        gate_up: true,
    },
    chat_template: None,
};

fn describe(src: &Source, hp: &mut Hparams) -> Result<()> {
    hp.rope_style = RopeStyle::Neox;
    if src.has_tensor("rope_factors_short.weight") || src.has_tensor("rope_factors_long.weight") {
        let n_ctx_orig = match src.u64("rope.scaling.original_context_length") {
            Some(_) => src.required("rope.scaling.original_context_length", 1 << 24)?,
            None => hp.n_ctx_train,
        };
        hp.ropes[0].freq_factors = FreqFactors::ByContext { n_ctx_orig };
    }
    for (il, layer) in hp.layers.iter_mut().enumerate() {
        layer.qkv_bias = src.layer_has_qkv_bias(il);
    }
    Ok(())
}
