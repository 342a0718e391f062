//! The gemma3 description read from small files built here: windows and their RoPE from the
//! pattern keys, the norms and the attention scale, the chat template.

use super::*;
use crate::gguf::{Array, GgufFile, GgufWriter, Value};
use crate::quant::GgmlType;

const D: u64 = 64;
const N_HEAD: u64 = 4;
const HD: u64 = 32;
const FF: u64 = 96;
const VOCAB: u64 = 40;

/// A gemma3 file of `n_layer` layers with `keys` added (zero weights, all of Gemma 3's
/// tensors but `skip`); Q is 128 wide, one KV head, output tied.
fn gemma3(n_layer: usize, keys: &[(&str, Value)], skip: &[&str]) -> GgufFile {
    let mut w = GgufWriter::new();
    let mut kv = |k: &str, v: Value| {
        w.add_kv(k.to_string(), v).unwrap();
    };
    kv("general.architecture", Value::String("gemma3".into()));
    kv("gemma3.block_count", Value::U32(n_layer as u32));
    kv("gemma3.context_length", Value::U32(32768));
    kv("gemma3.embedding_length", Value::U32(D as u32));
    kv("gemma3.feed_forward_length", Value::U32(FF as u32));
    kv("gemma3.attention.head_count", Value::U32(N_HEAD as u32));
    kv("gemma3.attention.head_count_kv", Value::U32(1));
    kv("gemma3.attention.key_length", Value::U32(HD as u32));
    kv("gemma3.attention.value_length", Value::U32(HD as u32));
    kv("gemma3.attention.layer_norm_rms_epsilon", Value::F32(1e-6));
    kv("gemma3.rope.freq_base", Value::F32(1e6));
    kv("gemma3.vocab_size", Value::U32(VOCAB as u32));
    for (k, v) in keys {
        kv(&format!("gemma3.{k}"), v.clone());
    }
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![D, VOCAB]),
        ("output_norm.weight".into(), vec![D]),
    ];
    for i in 0..n_layer {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.extend([
            (n("attn_norm"), vec![D]),
            (n("attn_q"), vec![D, N_HEAD * HD]),
            (n("attn_k"), vec![D, HD]),
            (n("attn_v"), vec![D, HD]),
            (n("attn_q_norm"), vec![HD]),
            (n("attn_k_norm"), vec![HD]),
            (n("attn_output"), vec![N_HEAD * HD, D]),
            (n("post_attention_norm"), vec![D]),
            (n("ffn_norm"), vec![D]),
            (n("ffn_gate"), vec![D, FF]),
            (n("ffn_up"), vec![D, FF]),
            (n("ffn_down"), vec![FF, D]),
            (n("post_ffw_norm"), vec![D]),
        ]);
    }
    tensors.retain(|(name, _)| !skip.contains(&name.as_str()));
    for (name, dims) in tensors {
        let n: u64 = dims.iter().product();
        w.add_tensor(name, &dims, GgmlType::F32, vec![0u8; n as usize * 4])
            .unwrap();
    }
    GgufFile::from_bytes(w.to_bytes()).unwrap()
}

fn windows(hp: &Hparams) -> Vec<Option<usize>> {
    hp.layers.iter().map(|l| l.window).collect()
}

#[test]
fn gemma3_files_describe_gemma_layers_and_load_their_norms() {
    let gguf = gemma3(2, &[], &[]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    assert_eq!(hp.arch.name(), "gemma3");
    assert_eq!(hp.rope_style, RopeStyle::Neox);
    assert_eq!(hp.activation, Activation::GeGlu);
    assert_eq!(hp.embd_scale, Some(8.0));
    assert_eq!((hp.head_dim, hp.q_dim(), hp.kv_dim()), (32, 128, 32));
    assert_eq!(hp.attn_scale, None);
    assert_eq!(hp.final_logit_softcap, None);
    assert!(hp
        .layers
        .iter()
        .all(|l| l.qk_norm && l.post_attn_norm && l.post_ffn_norm && !l.qkv_bias));
    // No sliding_window key: full attention everywhere, one RoPE.
    assert_eq!(windows(&hp), [None, None]);
    assert_eq!(hp.ropes.len(), 1);
    let w = Weights::from_gguf(&gguf, &hp).unwrap();
    assert_eq!(w.output.info.name, "token_embd.weight");
    assert_eq!(w.layers[1].post_ffn_norm.as_ref().map(Vec::len), Some(64));
    assert_eq!(w.layers[0].q_norm.as_ref().map(Vec::len), Some(32));
    hp.check_backend("CPU", crate::backend::cpu::RUNS).unwrap();
    hp.check_backend("GPU", crate::backend::gpu::RUNS).unwrap();
    // Every Gemma 3 norm is required.
    let gguf = gemma3(2, &[], &["blk.1.post_ffw_norm.weight"]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    let e = Weights::from_gguf(&gguf, &hp).err().unwrap().to_string();
    assert!(
        e.contains("missing tensor 'blk.1.post_ffw_norm.weight'"),
        "{e}"
    );
}

#[test]
fn gemma3_windows_and_their_rope_follow_the_pattern_keys() {
    let win = ("attention.sliding_window", Value::U32(512));
    // Gemma 3's default period of 6: layers 5 and 11 global, the rest windowed with the local
    // RoPE (base 10,000, unscaled), the global ones with the file's base and scaling.
    let scaling = [
        ("rope.scaling.type", Value::String("linear".into())),
        ("rope.scaling.factor", Value::F32(8.0)),
    ];
    let hp = Hparams::from_gguf(&gguf_keys(
        12,
        &[std::slice::from_ref(&win), &scaling[..]].concat(),
    ))
    .unwrap();
    let global = [5, 11];
    for (il, l) in hp.layers.iter().enumerate() {
        if global.contains(&il) {
            assert_eq!((l.window, l.rope), (None, 0), "layer {il}");
        } else {
            assert_eq!((l.window, l.rope), (Some(512), 1), "layer {il}");
        }
    }
    assert_eq!(hp.ropes[0].base, 1e6);
    assert_eq!(hp.ropes[0].scaling, RopeScaling::Linear { factor: 8.0 });
    assert_eq!(hp.ropes[1].base, 10_000.0);
    assert_eq!(hp.ropes[1].scaling, RopeScaling::None);
    assert!(hp.features().contains(&Feature::SlidingWindow));
    assert!(hp.features().contains(&Feature::PerLayerRope));

    // A period of 3, a local base of the file's, a per-layer array, all windowed (0), none (1).
    let keys = [
        win.clone(),
        ("attention.sliding_window_pattern", Value::U32(3)),
        ("rope.freq_base_swa", Value::F32(20_000.0)),
    ];
    let hp = Hparams::from_gguf(&gguf_keys(4, &keys)).unwrap();
    assert_eq!(windows(&hp), [Some(512), Some(512), None, Some(512)]);
    assert_eq!(hp.ropes[1].base, 20_000.0);
    let pattern = Value::Array(Array::Bool(vec![false, true, true, false]));
    let keys = [win.clone(), ("attention.sliding_window_pattern", pattern)];
    let hp = Hparams::from_gguf(&gguf_keys(4, &keys)).unwrap();
    assert_eq!(windows(&hp), [None, Some(512), Some(512), None]);
    let keys = [
        win.clone(),
        ("attention.sliding_window_pattern", Value::U32(0)),
    ];
    let hp = Hparams::from_gguf(&gguf_keys(3, &keys)).unwrap();
    assert_eq!(windows(&hp), [Some(512); 3]);
    let keys = [
        win.clone(),
        ("attention.sliding_window_pattern", Value::U32(1)),
    ];
    let hp = Hparams::from_gguf(&gguf_keys(3, &keys)).unwrap();
    assert_eq!(windows(&hp), [None; 3]);
    assert_eq!(hp.ropes.len(), 1);
    // A per-layer array of the wrong length is refused, not padded.
    let short = Value::Array(Array::Bool(vec![true, false]));
    let keys = [win, ("attention.sliding_window_pattern", short)];
    let e = Hparams::from_gguf(&gguf_keys(3, &keys)).unwrap_err();
    assert!(e.to_string().contains("2 entries for 3 layers"), "{e}");
}

/// Metadata only (the description reads no tensors): a gemma3 file of `n_layer` layers.
fn gguf_keys(n_layer: usize, keys: &[(&str, Value)]) -> GgufFile {
    gemma3(n_layer, keys, &[])
}

#[test]
fn gemma3_27b_scales_attention_by_its_query_pre_attention_scalar() {
    // 62 layers is the 27B: n_embd / n_head = 16 here, not the head size of 32, so its scores
    // are scaled by 1/4 (a feature of its own), where every other size uses 1/√32.
    let hp = Hparams::from_gguf(&gguf_keys(62, &[])).unwrap();
    assert_eq!(hp.attn_scale, Some(0.25));
    assert!(hp.features().contains(&Feature::AttentionScale));
    hp.check_backend("CPU", crate::backend::cpu::RUNS).unwrap();
    let hp = Hparams::from_gguf(&gguf_keys(26, &[])).unwrap();
    assert_eq!(hp.attn_scale, None);
    // The soft-cap key is read when a file has it.
    let cap = [("final_logit_softcapping", Value::F32(30.0))];
    let hp = Hparams::from_gguf(&gguf_keys(1, &cap)).unwrap();
    assert_eq!(hp.final_logit_softcap, Some(30.0));
}

#[test]
fn gemma3_chat_template_is_gemmas_turn_format() {
    let template = FAMILIES
        .iter()
        .find(|f| f.name == "gemma3")
        .and_then(|f| f.chat_template)
        .unwrap();
    let m = |role, content| crate::chat::Message { role, content };
    let messages = [
        m("system", " Be brief. "),
        m("user", "Hi there\n"),
        m("assistant", "Hello!"),
        m("user", "Bye"),
    ];
    let out = crate::chat::render(template, &messages, true, &Default::default()).unwrap();
    assert_eq!(
        out,
        "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n\
         <start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    let out = crate::chat::render(template, &messages[1..2], false, &Default::default()).unwrap();
    assert_eq!(out, "<start_of_turn>user\nHi there<end_of_turn>\n");
}
