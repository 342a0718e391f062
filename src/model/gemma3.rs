//! `gemma3`: Gemma 3 (text; 270M to 27B). Against llama: token embeddings scaled by √n_embd,
//! NEOX-style RoPE, GeGLU (tanh GELU) feed-forward, QK-norm, RMSNorm after attention and after
//! the FFN as well as before them, and sliding-window attention on most layers.
//!
//! What the keys say, read as llama.cpp's gemma3 loader reads them:
//! - `attention.sliding_window` (> 0) turns windows on. `attention.sliding_window_pattern` is
//!   either a per-layer array (true: windowed) or a period `p`: layer `il` is windowed when
//!   `il % p < p - 1` (every p-th layer global; 0: all windowed). Absent: a period of 6
//!   (five local layers, then one global), which is Gemma 3's.
//! - Windowed layers rotate with their own base, `rope.freq_base_swa` or 10,000, unscaled;
//!   the global layers with `rope.freq_base` (1,000,000) and the file's RoPE scaling (linear 8
//!   on the 4B and larger). Without a window every layer is global.
//! - The attention scale is 1/√key_length, except on the 27B (62 layers), whose checkpoint
//!   was trained with `query_pre_attn_scalar = n_embd / n_head` (168, not its head size 128):
//!   the converter does not store that scalar, so llama.cpp keys it on the layer count, and
//!   so does this file.
//! - `final_logit_softcapping` when present (Gemma 3 checkpoints have none; llama.cpp reads it).
//!
//! The norm weights need nothing special: Gemma's RMSNorm multiplies by `1 + w`, and
//! llama.cpp's converter stores `1 + w` in the GGUF, so they are plain RMSNorm weights here.
//! Output tied to the embedding when `output.weight` is absent (every Gemma 3).

use super::arch::{Family, Fused, Source};
use super::layer::{FreqFactors, RopeSpec};
use super::{Activation, Hparams, RopeScaling, RopeStyle};
use crate::gguf::Array;
use crate::{Error, Result};

pub const FAMILY: Family = Family {
    name: "gemma3",
    describe,
    fused: Fused {
        qkv: false,
        gate_up: false,
    },
    chat_template: Some(CHAT_TEMPLATE),
};

/// Gemma's turn format, for files without `tokenizer.chat_template` (the 270M's has none):
/// `<start_of_turn>user\n...<end_of_turn>\n`, the assistant's role named `model`, contents
/// trimmed, and system messages (Gemma has no system role) joined and put at the top of the
/// next user turn, followed by a blank line; the generation prompt opens a `model` turn. The
/// same text as llama.cpp's built-in "gemma" format. No BOS: the tokenizer adds it.
const CHAT_TEMPLATE: &str = r"{%- set ns = namespace(system='') -%}
{%- for m in messages -%}
  {%- if m.role == 'system' -%}
    {%- set ns.system = ns.system ~ (m.content | trim) -%}
  {%- else -%}
    {%- set role = 'model' if m.role == 'assistant' else m.role -%}
    {{- '<start_of_turn>' ~ role ~ '\n' -}}
    {%- if ns.system and role != 'model' -%}
      {{- ns.system ~ '\n\n' -}}
      {%- set ns.system = '' -%}
    {%- endif -%}
    {{- (m.content | trim) ~ '<end_of_turn>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<start_of_turn>model\n' -}}
{%- endif -%}
";

/// Gemma 3's layer period when the file does not say: five windowed layers, one global.
const DEFAULT_PATTERN: usize = 6;
/// The base of the windowed layers' RoPE when the file does not say.
const DEFAULT_SWA_BASE: f32 = 10_000.0;

fn describe(src: &Source, hp: &mut Hparams) -> Result<()> {
    hp.rope_style = RopeStyle::Neox;
    hp.activation = Activation::GeGlu;
    hp.embd_scale = Some((hp.n_embd as f32).sqrt());
    hp.final_logit_softcap = src.f32("final_logit_softcapping").filter(|&cap| cap != 0.0);
    if hp.n_layer == 62 {
        let scale = 1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt();
        if scale != 1.0 / (hp.head_dim as f32).sqrt() {
            hp.attn_scale = Some(scale);
        }
    }
    for layer in hp.layers.iter_mut() {
        layer.qk_norm = true;
        layer.post_attn_norm = true;
        layer.post_ffn_norm = true;
    }

    let window = match src.u64("attention.sliding_window") {
        None | Some(0) => return Ok(()),
        Some(_) => src.required("attention.sliding_window", 1 << 30)?,
    };
    let windowed = windowed_layers(src, hp.n_layer)?;
    if !windowed.iter().any(|&w| w) {
        return Ok(());
    }
    hp.ropes.push(RopeSpec {
        base: src.f32("rope.freq_base_swa").unwrap_or(DEFAULT_SWA_BASE),
        scaling: RopeScaling::None,
        freq_factors: FreqFactors::None,
        // llama.cpp's rope takes the context's one attention factor for every layer.
        attn_factor: hp.ropes[0].attn_factor,
    });
    let local = hp.ropes.len() - 1;
    for (layer, &w) in hp.layers.iter_mut().zip(&windowed) {
        if w {
            layer.window = Some(window);
            layer.rope = local;
        }
    }
    Ok(())
}

/// Which layers attend through the window, from `attention.sliding_window_pattern`.
fn windowed_layers(src: &Source, n_layer: usize) -> Result<Vec<bool>> {
    let key = "attention.sliding_window_pattern";
    let bad = |what: String| Error::InvalidModel(format!("{}: {what}", src.key(key)));
    let per_layer: Option<Vec<bool>> = match src.gguf().get_array(&src.key(key)) {
        None => None,
        Some(Array::Bool(v)) => Some(v.clone()),
        Some(Array::U32(v)) => Some(v.iter().map(|&x| x != 0).collect()),
        Some(Array::I32(v)) => Some(v.iter().map(|&x| x != 0).collect()),
        Some(_) => return Err(bad("not a bool or 32-bit integer array".into())),
    };
    if let Some(v) = per_layer {
        if v.len() != n_layer {
            return Err(bad(format!("{} entries for {n_layer} layers", v.len())));
        }
        return Ok(v);
    }
    let period = match src.gguf().get(&src.key(key)) {
        None => DEFAULT_PATTERN,
        Some(_) => src
            .u64(key)
            .and_then(|p| usize::try_from(p).ok())
            .ok_or_else(|| bad("not a non-negative integer".into()))?,
    };
    Ok((0..n_layer)
        .map(|il| period == 0 || il % period < period - 1)
        .collect())
}
