//! `qwen3`: Qwen3 (dense). Llama's layers with NEOX-style RoPE and QK-norm: each head of Q and
//! K is RMS-normalised with its own weights (`attn_q_norm`, `attn_k_norm`, head_dim long)
//! before the rotation. The head size is the file's `qwen3.attention.key_length` (128 in every
//! Qwen3), which need not be n_embd / n_head (Qwen3-0.6B: 1024 / 16 = 64), so Q is n_head x
//! head_dim wide and the attention output projection maps that width back to n_embd.
//!
//! Qwen3 checkpoints have no projection biases, but llama.cpp's loader takes Q/K/V biases when
//! a file has them, so they are read the same way here. Output tied when `output.weight` is
//! absent (Qwen3-0.6B to 4B).

use super::arch::{Family, Fused, Source};
use super::{Hparams, RopeStyle};
use crate::Result;

pub const FAMILY: Family = Family {
    name: "qwen3",
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
        // Required, as in llama.cpp: a Qwen3 file without them is refused at load (missing
        // tensor), never run without the norm.
        layer.qk_norm = true;
        layer.qkv_bias = src.layer_has_qkv_bias(il);
    }
    Ok(())
}
