//! The CPU forward pass runs what the model description says: each feature beyond plain llama
//! checked against an equivalent model or an identity, on tiny models built in memory.

mod common;

use common::tiny::{build, TinySpec};
use rocmforge::backend::cpu::CpuContext;
use rocmforge::backend::Engine;
use rocmforge::batch::Batch;
use rocmforge::cancel::CancelFlag;
use rocmforge::kv_cache::KvType;
use rocmforge::model::{Activation, Feature, LoadedModel, RopeSpec, RopeStyle};
use rocmforge::{Error, Model};
use std::sync::Arc;

const TOKENS: [u32; 7] = [1, 72, 101, 108, 108, 111, 33];
const N_CTX: usize = 64;

fn loaded(spec: &TinySpec) -> LoadedModel {
    LoadedModel::new(build(spec)).expect("tiny model")
}

/// The logits of every token of `tokens`: (n_tokens, n_vocab), in one batch when `steps` is
/// `tokens.len()`, else in batches of `steps` tokens.
fn logits(model: LoadedModel, tokens: &[u32], steps: usize) -> Vec<f32> {
    let n_vocab = model.hparams.n_vocab;
    let exec = CpuContext::new(Arc::new(model), N_CTX, N_CTX, 2, KvType::default(), None)
        .expect("CPU context");
    let mut engine = Engine::new(Box::new(exec), N_CTX, 1).expect("cells");
    let mut all = Vec::new();
    for (k, chunk) in tokens.chunks(steps).enumerate() {
        let mut b = Batch::new();
        for (i, &t) in chunk.iter().enumerate() {
            b.push(t, (k * steps + i) as i32, 0, true);
        }
        let mut out = Vec::new();
        engine
            .decode(&b, n_vocab, &CancelFlag::new(), &mut out)
            .expect("decode");
        all.extend(out);
    }
    all
}

fn one_batch(model: LoadedModel) -> Vec<f32> {
    logits(model, &TOKENS, TOKENS.len())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// max |a - b| / max |a|.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

#[test]
fn llama_biases_run_on_the_cpu() {
    let plain = one_batch(loaded(&TinySpec::default()));
    let zero = loaded(&TinySpec {
        bias_scale: Some(0.0),
        ..Default::default()
    });
    assert_eq!(
        zero.hparams.features(),
        [Feature::QkvBias, Feature::OutputBias]
    );
    // Adding zero biases changes no bit.
    assert_eq!(bits(&one_batch(zero)), bits(&plain));
    let biased = one_batch(loaded(&TinySpec {
        bias_scale: Some(0.3),
        ..Default::default()
    }));
    assert!(rel_diff(&plain, &biased) > 1e-3);
    // And through the API, which checks the CPU runs the model's features at load.
    let spec = TinySpec {
        bias_scale: Some(0.3),
        ..Default::default()
    };
    Model::from_gguf(build(&spec)).expect("a llama model with biases loads on the CPU");
}

#[test]
fn neox_rope_equals_normal_rope_on_reordered_rows() {
    let mut neox = loaded(&TinySpec::default());
    neox.hparams.rope_style = RopeStyle::Neox;
    let neox = one_batch(neox);
    let normal = one_batch(loaded(&TinySpec {
        qk_rows_from_neox: true,
        ..Default::default()
    }));
    // The same arithmetic but for the order of the Q.K sums.
    let d = rel_diff(&neox, &normal);
    assert!(d < 1e-4, "NEOX vs reordered normal: {d}");
    // Not vacuous: normal RoPE on the file as it is computes something else.
    let plain = one_batch(loaded(&TinySpec::default()));
    assert!(rel_diff(&neox, &plain) > 1e-3);
}

#[test]
fn sliding_windows_hide_positions_outside_them() {
    let plain = one_batch(loaded(&TinySpec::default()));
    let mut wide = loaded(&TinySpec::default());
    for l in &mut wide.hparams.layers {
        l.window = Some(TOKENS.len());
    }
    assert_eq!(bits(&one_batch(wide)), bits(&plain));
    // A window of 2 on layer 1: tokens 0 and 1 see everything before them, later ones not.
    let mut narrow = loaded(&TinySpec::default());
    narrow.hparams.layers[1].window = Some(2);
    let n_vocab = narrow.hparams.n_vocab;
    let narrow_one = one_batch(narrow);
    assert_eq!(
        bits(&narrow_one[..2 * n_vocab]),
        bits(&plain[..2 * n_vocab])
    );
    for t in 2..TOKENS.len() {
        let row = t * n_vocab..(t + 1) * n_vocab;
        assert!(
            rel_diff(&plain[row.clone()], &narrow_one[row]) > 1e-4,
            "token {t}"
        );
    }
    // Token by token, the window is applied against the cache the same way.
    let mut narrow = loaded(&TinySpec::default());
    narrow.hparams.layers[1].window = Some(2);
    let stepwise = logits(narrow, &TOKENS, 1);
    assert!(rel_diff(&narrow_one, &stepwise) < 1e-4);
}

#[test]
fn identities_of_scale_softcap_and_per_layer_rope() {
    let plain = one_batch(loaded(&TinySpec::default()));
    // Embedding scale 1: x * 1 = x.
    let mut m = loaded(&TinySpec::default());
    m.hparams.embd_scale = Some(1.0);
    assert_eq!(bits(&one_batch(m)), bits(&plain));
    // Two RoPEs of the same base: the same rotations.
    let mut m = loaded(&TinySpec::default());
    let r = m.hparams.ropes[0];
    m.hparams.ropes.push(RopeSpec { ..r });
    m.rope_inv_freq.push(m.rope_inv_freq[0].clone());
    m.hparams.layers[1].rope = 1;
    assert_eq!(m.hparams.features(), [Feature::PerLayerRope]);
    assert_eq!(bits(&one_batch(m)), bits(&plain));
    // Final soft-capping: cap * tanh(logit / cap) of the uncapped logits, exactly.
    let mut m = loaded(&TinySpec::default());
    m.hparams.final_logit_softcap = Some(2.0);
    let capped = one_batch(m);
    for (c, l) in capped.iter().zip(&plain) {
        assert_eq!(
            c.to_bits(),
            (2.0 * rocmforge::backend::numerics::tanh(l / 2.0)).to_bits()
        );
        assert!(c.abs() <= 2.0);
    }
}

#[test]
fn gemma_style_layers_run_and_agree_between_batch_and_steps() {
    // GeGLU, embedding scale, QK-norm, post-attention and post-FFN norms, two RoPEs and a
    // window at once: a prompt in one batch and token by token give the same logits.
    let make = || {
        let mut m = loaded(&TinySpec::default());
        let hd = m.hparams.head_dim;
        let d = m.hparams.n_embd;
        m.hparams.activation = Activation::GeGlu;
        m.hparams.rope_style = RopeStyle::Neox;
        m.hparams.embd_scale = Some((d as f32).sqrt());
        let local = RopeSpec {
            base: 1000.0,
            ..m.hparams.ropes[0]
        };
        m.hparams.ropes.push(local);
        m.rope_inv_freq.push(
            (0..hd / 2)
                .map(|i| 1000f32.powf(-2.0 * i as f32 / hd as f32))
                .collect(),
        );
        for (il, (spec, w)) in (m.hparams.layers.iter_mut())
            .zip(&mut m.weights.layers)
            .enumerate()
        {
            spec.qk_norm = true;
            spec.post_attn_norm = true;
            spec.post_ffn_norm = true;
            w.q_norm = Some((0..hd).map(|i| 0.5 + i as f32 / hd as f32).collect());
            w.k_norm = Some(vec![1.0; hd]);
            w.post_attn_norm = Some(vec![0.7; d]);
            w.post_ffn_norm = Some(vec![1.3; d]);
            if il == 0 {
                spec.window = Some(3);
                spec.rope = 1;
            }
        }
        m
    };
    let batch = one_batch(make());
    assert!(batch.iter().all(|x| x.is_finite()));
    let plain = one_batch(loaded(&TinySpec::default()));
    assert!(rel_diff(&plain, &batch) > 1e-2);
    let stepwise = logits(make(), &TOKENS, 1);
    let d = rel_diff(&batch, &stepwise);
    assert!(d < 1e-4, "batch vs token by token: {d}");
}

#[test]
fn a_feature_the_cpu_lacks_refuses_the_context() {
    let mut m = loaded(&TinySpec::default());
    m.hparams.attn_logit_softcap = Some(50.0);
    let e = CpuContext::new(Arc::new(m), N_CTX, N_CTX, 1, KvType::default(), None)
        .err()
        .expect("refused");
    assert!(matches!(e, Error::UnsupportedFeature { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "model architecture 'llama' uses attention logit soft-capping, which the CPU backend \
         does not run yet"
    );
}

#[test]
fn a_layer_described_with_a_tensor_it_lacks_is_an_error_not_skipped() {
    let mut m = loaded(&TinySpec::default());
    m.hparams.layers[1].qk_norm = true;
    let n_vocab = m.hparams.n_vocab;
    let exec = CpuContext::new(Arc::new(m), N_CTX, N_CTX, 1, KvType::default(), None)
        .expect("CPU context");
    let mut engine = Engine::new(Box::new(exec), N_CTX, 1).expect("cells");
    let e = engine
        .decode(
            &Batch::for_sequence(&TOKENS, 0, 0),
            n_vocab,
            &CancelFlag::new(),
            &mut Vec::new(),
        )
        .expect_err("a QK-norm layer without its weights");
    assert!(
        e.to_string()
            .contains("layer 1 is described with a Q norm it lacks"),
        "{e}"
    );
}

#[test]
fn qwen_families_agree_between_batch_and_steps() {
    // qwen2: NEOX RoPE and Q/K/V biases; qwen3: QK-norm and Q twice as wide as the residual
    // stream (head size 32 from key_length, n_embd / n_head = 16), read back from the cache.
    let specs = [
        TinySpec {
            arch: "qwen2",
            qkv_bias_scale: Some(0.5),
            ..Default::default()
        },
        TinySpec {
            arch: "qwen3",
            head_dim: Some(32),
            qk_norm_scale: Some(0.5),
            weight_type: rocmforge::quant::GgmlType::Q8_0,
            ..Default::default()
        },
    ];
    for spec in specs {
        let batch = one_batch(loaded(&spec));
        assert!(batch.iter().all(|x| x.is_finite()), "{}", spec.arch);
        let stepwise = logits(loaded(&spec), &TOKENS, 1);
        let d = rel_diff(&batch, &stepwise);
        assert!(d < 1e-4, "{}: batch vs token by token: {d}", spec.arch);
        let threes = logits(loaded(&spec), &TOKENS, 3);
        let d = rel_diff(&batch, &threes);
        assert!(d < 1e-4, "{}: batch vs batches of 3: {d}", spec.arch);
    }
}
