//! Batch invariance on the CPU: 32 sequences in mixed batches (prompt chunks of some beside the
//! decode tokens of others, at different positions) each generate exactly what they generate
//! alone — the same greedy tokens and the same logits, bit for bit. Each sequence of the
//! mixed context sits in its own region of the cache (`Context::set_seq_regions`, a stride that
//! is a multiple of the attention chunk), as the scheduler places them: every kernel computes
//! a token's values independently of the tokens beside it (tests/engine.rs), and the region
//! gives its attention the cell indices it has alone.

mod common;

use common::mixed::{plans, run_alone, run_mixed, Trace};
use common::tiny::{build, TinySpec, TINY_VOCAB};
use rocmforge::backend::numerics::ATTENTION_CHUNK;
use rocmforge::quant::GgmlType;
use rocmforge::Model;

const N_SEQ: usize = 32;

fn assert_same(alone: &[Trace], mixed: &[Trace], what: &str) {
    for (s, (a, m)) in alone.iter().zip(mixed).enumerate() {
        assert_eq!(a.tokens, m.tokens, "{what}: sequence {s}'s greedy tokens");
        for (k, (la, lm)) in a.logits.iter().zip(&m.logits).enumerate() {
            let differ = la
                .iter()
                .zip(lm)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(differ, 0, "{what}: sequence {s}, token {k}: logits differ");
        }
    }
}

fn check(model: &Model, max_prompt: usize, n_gen: usize, what: &str) {
    let plans = plans(N_SEQ, model.hparams().n_vocab, max_prompt);
    let stride = (max_prompt + n_gen).div_ceil(ATTENTION_CHUNK) * ATTENTION_CHUNK;
    let alone: Vec<Trace> = plans
        .iter()
        .map(|p| run_alone(model, p, n_gen, stride, usize::MAX))
        .collect();
    // 3 threads: the matmul rows and attention tasks split at other places than alone's 2.
    let mixed = run_mixed(model, &plans, n_gen, stride, 3, usize::MAX);
    assert_same(&alone, &mixed, what);
}

#[test]
fn thirty_two_sequences_in_mixed_batches_match_each_alone_tiny() {
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Iq4Nl] {
        let spec = TinySpec {
            weight_type: ty,
            ..Default::default()
        };
        let model = Model::from_gguf(build(&spec)).expect("tiny model");
        assert_eq!(model.hparams().n_vocab, TINY_VOCAB);
        check(&model, 40, 12, ty.name());
    }
}

/// The K-quants' tiled prompt kernels: a tiny model in llama.cpp's Q4_K_M mix (Q4_K, a Q6_K
/// ffn_down; rows of whole 256-element super-blocks).
#[test]
fn thirty_two_sequences_in_mixed_batches_match_each_alone_tiny_q4_k_m() {
    let spec = TinySpec {
        weight_type: GgmlType::Q4K,
        n_embd: 256,
        n_ff: 512,
        override_type: Some(("blk.1.ffn_down.weight", GgmlType::Q6K)),
        ..Default::default()
    };
    let model = Model::from_gguf(build(&spec)).expect("tiny model");
    check(&model, 40, 12, "q4_k_m");
}

/// IQ4_XS's tiled prompt kernels (Q8_K activations like the K-quants; rows of whole
/// 256-element super-blocks).
#[test]
fn thirty_two_sequences_in_mixed_batches_match_each_alone_tiny_iq4_xs() {
    let spec = TinySpec {
        weight_type: GgmlType::Iq4Xs,
        n_embd: 256,
        n_ff: 512,
        ..Default::default()
    };
    let model = Model::from_gguf(build(&spec)).expect("tiny model");
    check(&model, 40, 12, "iq4_xs");
}

/// The same on the real SmolLM2 (Q4_1, 30 layers of 576), shorter to stay fast: prompts of
/// up to 12 tokens and 4 generated each.
#[test]
fn thirty_two_sequences_in_mixed_batches_match_each_alone_smollm2() {
    let Some(path) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let model = Model::load(&path, Default::default()).expect("SmolLM2");
    check(&model, 12, 4, "SmolLM2");
}
