//! `qwen2`: Qwen2, Qwen2.5 and the DeepSeek-R1 distillations into Qwen. Llama's layers with
//! NEOX-style RoPE (rotating the halves of each head) and biases on the Q, K and V projections
//! (none on the attention output); the output head is tied to the embedding when the file has
//! no `output.weight` (the small Qwen2.5 models).
//!
//! The biases are read from the file as llama.cpp's loader does (each optional), though every
//! Qwen2 checkpoint has them. Keys that llama.cpp's qwen2 loader does not read (a sliding
//! window: Qwen2 runs full attention there) are not read either. What llama.cpp accepts and
//! this file refuses, by the loader's unused-tensor check: an `output.bias`, which no Qwen2
//! conversion writes.

use super::arch::{Family, Fused, Source};
use super::{Hparams, RopeStyle};
use crate::Result;

pub const FAMILY: Family = Family {
    name: "qwen2",
    describe,
    fused: Fused {
        qkv: false,
        gate_up: false,
    },
    chat_template: None,
};

fn describe(src: &Source, hp: &mut Hparams) -> Result<()> {
    hp.rope_style = RopeStyle::Neox;
    for (il, layer) in hp.layers.iter_mut().enumerate() {
        layer.qkv_bias = src.layer_has_qkv_bias(il);
    }
    Ok(())
}
