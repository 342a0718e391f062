//! The description read from small files built here: what the llama file says, the refusals.

use super::*;
use crate::gguf::{GgufFile, GgufWriter, Value};
use crate::quant::GgmlType;
use crate::Error;

const N_LAYER: usize = 2;
const D: usize = 64;
const N_HEAD: usize = 4;
const N_HEAD_KV: usize = 2;
const FF: usize = 96;
const VOCAB: usize = 40;

/// A llama-shaped file (zero weights) with its `skip` tensors left out, `extra` tensors
/// (name, dims) added, and `keys` added to the metadata.
fn file(arch: &str, keys: &[(&str, Value)], extra: &[(&str, Vec<u64>)], skip: &[&str]) -> GgufFile {
    let mut w = GgufWriter::new();
    let mut kv = |k: String, v: Value| {
        w.add_kv(k, v).unwrap();
    };
    kv("general.architecture".into(), Value::String(arch.into()));
    kv(format!("{arch}.block_count"), Value::U32(N_LAYER as u32));
    kv(format!("{arch}.context_length"), Value::U32(512));
    kv(format!("{arch}.embedding_length"), Value::U32(D as u32));
    kv(format!("{arch}.feed_forward_length"), Value::U32(FF as u32));
    kv(
        format!("{arch}.attention.head_count"),
        Value::U32(N_HEAD as u32),
    );
    kv(
        format!("{arch}.attention.head_count_kv"),
        Value::U32(N_HEAD_KV as u32),
    );
    kv(format!("{arch}.vocab_size"), Value::U32(VOCAB as u32));
    kv(format!("{arch}.rope.freq_base"), Value::F32(50000.0));
    for (k, v) in keys {
        kv(format!("{arch}.{k}"), v.clone());
    }
    let (d, kvd, ff, v) = (
        D as u64,
        (D / N_HEAD * N_HEAD_KV) as u64,
        FF as u64,
        VOCAB as u64,
    );
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![d, v]),
        ("output_norm.weight".into(), vec![d]),
    ];
    for i in 0..N_LAYER {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.extend([
            (n("attn_norm"), vec![d]),
            (n("attn_q"), vec![d, d]),
            (n("attn_k"), vec![d, kvd]),
            (n("attn_v"), vec![d, kvd]),
            (n("attn_output"), vec![d, d]),
            (n("ffn_norm"), vec![d]),
            (n("ffn_gate"), vec![d, ff]),
            (n("ffn_up"), vec![d, ff]),
            (n("ffn_down"), vec![ff, d]),
        ]);
    }
    tensors.retain(|(name, _)| !skip.contains(&name.as_str()));
    tensors.extend(extra.iter().map(|(n, dims)| (n.to_string(), dims.clone())));
    for (name, dims) in tensors {
        let n: u64 = dims.iter().product();
        w.add_tensor(name, &dims, GgmlType::F32, vec![0u8; n as usize * 4])
            .unwrap();
    }
    GgufFile::from_bytes(w.to_bytes()).unwrap()
}

fn llama(extra: &[(&str, Vec<u64>)]) -> GgufFile {
    file("llama", &[], extra, &[])
}

#[test]
fn a_llama_file_is_the_plain_description() {
    let hp = Hparams::from_gguf(&llama(&[])).unwrap();
    assert_eq!(hp.arch.name(), "llama");
    assert_eq!(
        (hp.n_layer, hp.n_embd, hp.n_ff, hp.n_vocab),
        (2, 64, 96, 40)
    );
    assert_eq!((hp.n_head, hp.n_head_kv, hp.head_dim), (4, 2, 16));
    assert_eq!(hp.rope_style, RopeStyle::Normal);
    assert_eq!(hp.activation, Activation::SwiGlu);
    assert_eq!(
        hp.ropes,
        [RopeSpec {
            base: 50000.0,
            scaling: RopeScaling::None,
            freq_factors: FreqFactors::None,
            attn_factor: 1.0,
        }]
    );
    assert_eq!(hp.embd_scale, None);
    assert_eq!(hp.final_logit_softcap, None);
    assert_eq!(hp.attn_logit_softcap, None);
    let plain = LayerSpec {
        rope: 0,
        window: None,
        qkv_bias: false,
        out_bias: false,
        qk_norm: false,
        post_attn_norm: false,
        post_ffn_norm: false,
    };
    assert_eq!(hp.layers, [plain; N_LAYER]);
    assert!(hp.features().is_empty());
    // Every backend runs the plain description.
    hp.check_backend("CPU", crate::backend::cpu::RUNS).unwrap();
    hp.check_backend("GPU", crate::backend::gpu::RUNS).unwrap();
}

#[test]
fn llama_rope_scaling_and_frequency_factors_are_read() {
    let keys = [
        ("rope.scaling.type", Value::String("linear".into())),
        ("rope.scaling.factor", Value::F32(4.0)),
    ];
    let gguf = file("llama", &keys, &[("rope_freqs.weight", vec![8])], &[]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    assert_eq!(hp.ropes[0].scaling, RopeScaling::Linear { factor: 4.0 });
    assert_eq!(hp.ropes[0].freq_factors, FreqFactors::Fixed);
    // Folded into the one table every backend applies: no feature.
    assert!(hp.features().is_empty());
    let w = Weights::from_gguf(&gguf, &hp).unwrap();
    assert_eq!(w.rope_freq_factors.map(|f| f.len()), Some(8));
}

#[test]
fn llama_biases_are_described_loaded_and_run_by_both_backends() {
    let (d, kvd) = (D as u64, (D / N_HEAD * N_HEAD_KV) as u64);
    let extra = [
        ("blk.1.attn_q.bias", vec![d]),
        ("blk.1.attn_k.bias", vec![kvd]),
        ("blk.1.attn_v.bias", vec![kvd]),
        ("blk.1.attn_output.bias", vec![d]),
    ];
    let gguf = llama(&extra);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    assert!(!hp.layers[0].qkv_bias && !hp.layers[0].out_bias);
    assert!(hp.layers[1].qkv_bias && hp.layers[1].out_bias);
    assert_eq!(hp.features(), [Feature::QkvBias, Feature::OutputBias]);
    let w = Weights::from_gguf(&gguf, &hp).unwrap();
    assert!(w.layers[0].qkv_bias.is_none() && w.layers[0].out_bias.is_none());
    let b = w.layers[1].qkv_bias.as_ref().unwrap();
    assert_eq!((b.q.len(), b.k.len(), b.v.len()), (64, 32, 32));
    assert_eq!(w.layers[1].out_bias.as_ref().map(Vec::len), Some(64));
    hp.check_backend("CPU", crate::backend::cpu::RUNS).unwrap();
    hp.check_backend("GPU", crate::backend::gpu::RUNS).unwrap();
    // Two of three Q/K/V biases: the third is missing, not silently zero.
    let gguf = llama(&extra[..2]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    let e = Weights::from_gguf(&gguf, &hp).err().unwrap().to_string();
    assert!(e.contains("missing tensor 'blk.1.attn_v.bias'"), "{e}");
}

#[test]
fn tensors_the_description_does_not_use_are_refused() {
    // QK-norm weights are not part of a llama description: refused, not ignored.
    let gguf = llama(&[("blk.0.attn_q_norm.weight", vec![16])]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    let e = Weights::from_gguf(&gguf, &hp).err().unwrap().to_string();
    assert!(
        e.contains("1 tensor(s) that a 2-layer llama model does not use")
            && e.contains("blk.0.attn_q_norm.weight"),
        "{e}"
    );
}

#[test]
fn a_feature_a_backend_lacks_is_named_in_the_refusal() {
    let mut hp = Hparams::from_gguf(&llama(&[])).unwrap();
    hp.attn_logit_softcap = Some(50.0);
    hp.layers[1].window = Some(4096);
    hp.rope_style = RopeStyle::Neox;
    assert_eq!(
        hp.features(),
        [
            Feature::NeoxRope,
            Feature::AttentionLogitSoftcap,
            Feature::SlidingWindow
        ]
    );
    let e = hp
        .check_backend("CPU", crate::backend::cpu::RUNS)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "model architecture 'llama' uses attention logit soft-capping, which the CPU backend \
         does not run yet"
    );
    let e = hp
        .check_backend("GPU", crate::backend::gpu::RUNS)
        .unwrap_err();
    assert!(
        e.to_string().contains("uses attention logit soft-capping"),
        "{e}"
    );
}

#[test]
fn unknown_architectures_list_the_supported_ones() {
    let e = Hparams::from_gguf(&file("gpt-nano", &[], &[], &[])).unwrap_err();
    assert!(matches!(e, Error::UnsupportedArchitecture(_)), "{e:?}");
    let names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(Architecture::supported_names(), names.join(", "));
    assert_eq!(
        e.to_string(),
        format!(
            "unsupported model architecture 'gpt-nano' (this build runs: {})",
            names.join(", ")
        )
    );
    // Every row's name is found again, once.
    for f in FAMILIES {
        assert_eq!(Architecture::from_name(f.name).unwrap().name(), f.name);
        assert_eq!(FAMILIES.iter().filter(|g| g.name == f.name).count(), 1);
    }
}

/// The fused tensors of every layer (Q|K|V in `attn_qkv`, gate|up in a double `ffn_up`) to
/// add, and the separate ones they replace.
fn fused_layout() -> (Vec<(String, Vec<u64>)>, Vec<String>) {
    let (d, kvd, ff) = (D as u64, (D / N_HEAD * N_HEAD_KV) as u64, FF as u64);
    let mut extra = Vec::new();
    let mut skip = Vec::new();
    for i in 0..N_LAYER {
        extra.push((format!("blk.{i}.attn_qkv.weight"), vec![d, d + 2 * kvd]));
        extra.push((format!("blk.{i}.ffn_up.weight"), vec![d, 2 * ff]));
        for t in ["attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"] {
            skip.push(format!("blk.{i}.{t}.weight"));
        }
    }
    (extra, skip)
}

#[test]
fn fused_tensors_split_by_rows_into_the_separate_weights() {
    let (extra, skip) = fused_layout();
    let extra: Vec<(&str, Vec<u64>)> = extra.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
    let gguf = file("llama", &[], &extra, &skip);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    // llama files are never fused: the fused tensors are not what a llama model uses.
    let e = Weights::from_gguf(&gguf, &hp).err().unwrap().to_string();
    assert!(e.contains("missing tensor 'blk.0.attn_q.weight'"), "{e}");
    let fused = Fused {
        qkv: true,
        gate_up: true,
    };
    let w = Weights::load(&gguf, &hp, fused).unwrap();
    let qkv = gguf.tensor("blk.1.attn_qkv.weight").unwrap();
    let l = &w.layers[1];
    let row = 64 * 4;
    assert_eq!((l.wq.rows, l.wk.rows, l.wv.rows), (64, 32, 32));
    assert_eq!(l.wq.info.offset, qkv.offset);
    assert_eq!(l.wk.info.offset, qkv.offset + 64 * row);
    assert_eq!(l.wv.info.offset, qkv.offset + 96 * row);
    assert_eq!(l.wv.info.n_bytes, 32 * row);
    assert_eq!(l.wk.info.name, "blk.1.attn_qkv.weight[k]");
    let up = gguf.tensor("blk.1.ffn_up.weight").unwrap();
    assert_eq!((l.gate.rows, l.up.rows), (96, 96));
    assert_eq!(l.gate.info.offset, up.offset);
    assert_eq!(l.up.info.offset, up.offset + 96 * row);
    assert_eq!(l.up.info.dims, [64, 96]);

    let w = Weights::from_gguf(&llama(&[]), &hp).unwrap();
    let q = &w.layers[0].wq;
    let part = q.rows(16, 32, "x");
    assert_eq!((part.rows, part.cols), (32, 64));
    assert_eq!(part.info.offset, q.info.offset + 16 * 64 * 4);
    assert_eq!(part.info.n_bytes, 32 * 64 * 4);
    assert_eq!(part.info.dims, [64, 32]);
    assert_eq!(part.info.name, "blk.0.attn_q.weight[x]");
}

#[test]
fn descriptions_that_break_invariants_are_invalid() {
    let mut hp = Hparams::from_gguf(&llama(&[])).unwrap();
    hp.layers[0].rope = 1;
    assert!(hp.validate().is_err());
    let mut hp = Hparams::from_gguf(&llama(&[])).unwrap();
    hp.layers[1].window = Some(0);
    assert!(hp.validate().is_err());
    let mut hp = Hparams::from_gguf(&llama(&[])).unwrap();
    hp.final_logit_softcap = Some(f32::NAN);
    assert!(hp.validate().is_err());
    let mut hp = Hparams::from_gguf(&llama(&[])).unwrap();
    hp.ropes[0].base = -1.0;
    assert!(hp.validate().is_err());
}

#[test]
fn qwen2_files_are_neox_with_qkv_biases_and_a_tied_output() {
    let (d, kvd) = (D as u64, (D / N_HEAD * N_HEAD_KV) as u64);
    let mut extra = Vec::new();
    for i in 0..N_LAYER {
        extra.push((format!("blk.{i}.attn_q.bias"), vec![d]));
        extra.push((format!("blk.{i}.attn_k.bias"), vec![kvd]));
        extra.push((format!("blk.{i}.attn_v.bias"), vec![kvd]));
    }
    let extra: Vec<(&str, Vec<u64>)> = extra.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let gguf = file("qwen2", &[], &extra, &[]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    assert_eq!(hp.arch.name(), "qwen2");
    assert_eq!(hp.rope_style, RopeStyle::Neox);
    assert_eq!(hp.activation, Activation::SwiGlu);
    assert!(hp
        .layers
        .iter()
        .all(|l| l.qkv_bias && !l.out_bias && !l.qk_norm));
    assert_eq!(hp.features(), [Feature::NeoxRope, Feature::QkvBias]);
    let w = Weights::from_gguf(&gguf, &hp).unwrap();
    // No output.weight in the file: the head is the embedding.
    assert_eq!(w.output.info.name, "token_embd.weight");
    assert_eq!(w.layers[1].qkv_bias.as_ref().map(|b| b.k.len()), Some(32));
    hp.check_backend("CPU", crate::backend::cpu::RUNS).unwrap();
    hp.check_backend("GPU", crate::backend::gpu::RUNS).unwrap();
    // llama.cpp's qwen2 loader reads no attention-output bias: such a file is refused.
    let mut with_out_bias = extra.clone();
    with_out_bias.push(("blk.0.attn_output.bias", vec![d]));
    let gguf = file("qwen2", &[], &with_out_bias, &[]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    let e = Weights::from_gguf(&gguf, &hp).err().unwrap().to_string();
    assert!(e.contains("'blk.0.attn_output.bias'"), "{e}");
}

/// A qwen3 file whose heads are 32 wide while n_embd / n_head is 16 (Q: 128 wide), with
/// QK-norm weights, less the `skip` tensors.
fn qwen3(skip: &[&str]) -> GgufFile {
    const HD: u64 = 32;
    let (d, q, kvd) = (D as u64, N_HEAD as u64 * HD, N_HEAD_KV as u64 * HD);
    let mut replaced = Vec::new();
    let mut extra = Vec::new();
    for i in 0..N_LAYER {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        for t in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            replaced.push(n(t));
        }
        extra.extend([
            (n("attn_q"), vec![d, q]),
            (n("attn_k"), vec![d, kvd]),
            (n("attn_v"), vec![d, kvd]),
            (n("attn_output"), vec![q, d]),
            (n("attn_q_norm"), vec![HD]),
            (n("attn_k_norm"), vec![HD]),
        ]);
    }
    extra.retain(|(n, _)| !skip.contains(&n.as_str()));
    let extra: Vec<(&str, Vec<u64>)> = extra.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let replaced: Vec<&str> = replaced.iter().map(String::as_str).collect();
    let keys = [
        ("attention.key_length", Value::U32(HD as u32)),
        ("attention.value_length", Value::U32(HD as u32)),
    ];
    file("qwen3", &keys, &extra, &replaced)
}

#[test]
fn qwen3_files_have_qk_norm_and_a_head_size_of_their_own() {
    let gguf = qwen3(&[]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    assert_eq!(hp.arch.name(), "qwen3");
    assert_eq!((hp.n_embd, hp.n_head, hp.head_dim), (64, 4, 32));
    assert_eq!((hp.q_dim(), hp.kv_dim()), (128, 64));
    assert_eq!(hp.rope_style, RopeStyle::Neox);
    assert!(hp
        .layers
        .iter()
        .all(|l| l.qk_norm && !l.qkv_bias && !l.out_bias));
    assert_eq!(hp.features(), [Feature::NeoxRope, Feature::QkNorm]);
    let w = Weights::from_gguf(&gguf, &hp).unwrap();
    let l = &w.layers[0];
    assert_eq!(
        (l.wq.rows, l.wq.cols, l.wo.rows, l.wo.cols),
        (128, 64, 64, 128)
    );
    assert_eq!(l.q_norm.as_ref().map(Vec::len), Some(32));
    assert_eq!(l.k_norm.as_ref().map(Vec::len), Some(32));
    hp.check_backend("CPU", crate::backend::cpu::RUNS).unwrap();
    hp.check_backend("GPU", crate::backend::gpu::RUNS).unwrap();
    // The norms are required, as in llama.cpp: a file without one is refused.
    let gguf = qwen3(&["blk.1.attn_k_norm.weight"]);
    let hp = Hparams::from_gguf(&gguf).unwrap();
    let e = Weights::from_gguf(&gguf, &hp).err().unwrap().to_string();
    assert!(
        e.contains("missing tensor 'blk.1.attn_k_norm.weight'"),
        "{e}"
    );
}

#[test]
fn the_supported_families_are_llama_qwen_gemma3_and_phi3() {
    assert_eq!(
        Architecture::supported_names(),
        "llama, qwen2, qwen3, gemma3, phi3"
    );
    let e = Hparams::from_gguf(&file("qwen2moe", &[], &[], &[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported model architecture 'qwen2moe' (this build runs: llama, qwen2, qwen3, gemma3, phi3)"
    );
}

/// A phi3 file as its conversions write it: Q|K|V and gate|up fused, RoPE factors for short
/// and long contexts, an attention factor, a sliding window that llama.cpp does not apply.
fn phi3(orig_ctx: Option<u32>) -> GgufFile {
    let half = (D / N_HEAD / 2) as u64;
    let (mut extra, skip) = fused_layout();
    extra.push(("rope_factors_short.weight".to_string(), vec![half]));
    extra.push(("rope_factors_long.weight".to_string(), vec![half]));
    let extra: Vec<(&str, Vec<u64>)> = extra.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
    let mut keys = vec![
        ("rope.scaling.attn_factor", Value::F32(1.19)),
        ("attention.sliding_window", Value::U32(64)),
    ];
    if let Some(n) = orig_ctx {
        keys.push(("rope.scaling.original_context_length", Value::U32(n)));
    }
    file("phi3", &keys, &extra, &skip)
}

#[test]
fn phi3_is_fused_neox_with_rope_factors_chosen_by_context_length() {
    let gguf = phi3(Some(128));
    let hp = Hparams::from_gguf(&gguf).unwrap();
    assert_eq!(hp.rope_style, RopeStyle::Neox);
    assert_eq!(hp.ropes.len(), 1);
    assert_eq!(
        hp.ropes[0].freq_factors,
        FreqFactors::ByContext { n_ctx_orig: 128 }
    );
    assert_eq!(hp.ropes[0].attn_factor, 1.19);
    // No window: llama.cpp b11312 runs Phi-3 with full attention whatever the file declares.
    assert!(hp.layers.iter().all(|l| l.window.is_none()));
    assert_eq!(
        hp.features(),
        [
            Feature::NeoxRope,
            Feature::ContextRopeFactors,
            Feature::RopeAttnFactor
        ]
    );
    hp.check_backend("CPU", crate::backend::cpu::RUNS).unwrap();
    hp.check_backend("GPU", crate::backend::gpu::RUNS).unwrap();
    let model = LoadedModel::new(gguf).unwrap();
    assert_eq!(model.weights.layers[1].gate.rows, FF);
    assert!(model.weights.rope_freq_factors.is_some());
    assert!(model.weights.rope_freq_factors_long.is_some());
    // Up to the original length the short factors, beyond it the long ones.
    assert!(std::ptr::eq(
        model.rope_tables(128),
        model.rope_inv_freq.as_slice()
    ));
    assert!(std::ptr::eq(
        model.rope_tables(129),
        model.rope_inv_freq_long.as_slice()
    ));
    // Without the key the original length is the training length (512 here).
    let hp = Hparams::from_gguf(&phi3(None)).unwrap();
    assert_eq!(
        hp.ropes[0].freq_factors,
        FreqFactors::ByContext { n_ctx_orig: 512 }
    );
}

#[test]
fn a_bad_rope_attention_factor_is_refused() {
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let gguf = file(
            "llama",
            &[("rope.scaling.attn_factor", Value::F32(bad))],
            &[],
            &[],
        );
        let e = Hparams::from_gguf(&gguf).unwrap_err().to_string();
        assert!(e.contains("RoPE attention factor"), "{bad}: {e}");
    }
}
