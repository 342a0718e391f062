//! `llama`: Llama 2/3, Mistral, SmolLM2, TinyLlama. The plain description (normal RoPE,
//! SwiGLU, one RoPE for all layers, full attention) plus what llama.cpp's loader also takes
//! from llama files: Llama 3.1's `rope_freqs` factors and optional Q/K/V/output biases.
//!
//! llama.cpp runs llama-architecture files with full attention even when they declare a
//! sliding window (Mistral v0.1), so the key is not read here either.

use super::arch::{Family, Fused, Source};
use super::{FreqFactors, Hparams};
use crate::Result;

pub const FAMILY: Family = Family {
    name: "llama",
    describe,
    fused: Fused {
        qkv: false,
        gate_up: false,
    },
    chat_template: None,
};

fn describe(src: &Source, hp: &mut Hparams) -> Result<()> {
    if src.has_tensor("rope_freqs.weight") {
        hp.ropes[0].freq_factors = FreqFactors::Fixed;
    }
    for (il, layer) in hp.layers.iter_mut().enumerate() {
        layer.qkv_bias = src.layer_has_qkv_bias(il);
        layer.out_bias = src.layer_has(il, "attn_output.bias");
    }
    Ok(())
}
