//! Engine behaviour on tiny in-memory models: batching, multi-sequence, KV edits, errors.

mod common;

use common::tiny::{build, TinySpec, TINY_VOCAB};
use rocmforge::kv_cache::KvType;
use rocmforge::quant::GgmlType;
use rocmforge::{Batch, Context, ContextParams, Error, Model};

fn model(spec: &TinySpec) -> Model {
    Model::from_gguf(build(spec)).unwrap()
}

fn ctx(model: &Model, n_ctx: usize, n_seq: usize) -> Context {
    let params = ContextParams {
        n_ctx,
        n_batch: 64,
        n_seq_max: n_seq,
        n_threads: 2,
        ..Default::default()
    };
    Context::new(model, params).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const PROMPT: [u32; 7] = [1, 72, 101, 108, 108, 111, 33];

/// A tiny model of weight type `ty`, as wide as its blocks need (the K-quants' 256-element
/// super-blocks need rows of 256).
fn tiny_of(ty: GgmlType) -> TinySpec {
    let width = ty.block_elems().max(64);
    TinySpec {
        weight_type: ty,
        n_embd: width,
        n_ff: width.max(128),
        ..Default::default()
    }
}

/// Logits after each token when the prompt is fed one token at a time.
fn stepwise(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut c = ctx(model, 64, 1);
    tokens
        .iter()
        .map(|&t| {
            c.eval(&[t], 0).unwrap();
            c.last_logits().unwrap().to_vec()
        })
        .collect()
}

#[test]
fn batched_prompt_equals_token_by_token() {
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ] {
        let m = model(&tiny_of(ty));
        let steps = stepwise(&m, &PROMPT);
        let mut c = ctx(&m, 64, 1);
        let mut batch = Batch::new();
        for (i, &t) in PROMPT.iter().enumerate() {
            batch.push(t, i as i32, 0, true);
        }
        c.decode(&batch).unwrap();
        for (i, step) in steps.iter().enumerate() {
            let d = max_diff(c.logits(i).unwrap(), step);
            assert!(d < 1e-3, "{ty}: position {i} differs by {d}");
        }
        assert!(steps
            .iter()
            .all(|l| l.len() == TINY_VOCAB && l.iter().all(|v| v.is_finite())));
    }
}

#[test]
fn sequences_in_one_batch_do_not_see_each_other() {
    let m = model(&TinySpec::default());
    let other: [u32; 4] = [1, 50, 60, 70];
    let alone_a = stepwise(&m, &PROMPT);
    let alone_b = stepwise(&m, &other);
    let mut c = ctx(&m, 64, 2);
    let mut batch = Batch::new();
    // Interleave the two sequences in one batch.
    for i in 0..PROMPT.len() {
        batch.push(PROMPT[i], i as i32, 0, true);
        if i < other.len() {
            batch.push(other[i], i as i32, 1, true);
        }
    }
    c.decode(&batch).unwrap();
    let (mut ia, mut ib) = (0, 0);
    for k in 0..batch.len() {
        let expected = if batch.seq[k] == 0 {
            &alone_a[ia]
        } else {
            &alone_b[ib]
        };
        assert!(
            max_diff(c.logits(k).unwrap(), expected) < 1e-3,
            "batch index {k}"
        );
        if batch.seq[k] == 0 {
            ia += 1
        } else {
            ib += 1
        }
    }
}

#[test]
fn kv_edits_reproduce_fresh_evaluation() {
    let m = model(&TinySpec::default());
    let steps = stepwise(&m, &PROMPT);
    let mut c = ctx(&m, 64, 3);
    c.eval(&PROMPT, 0).unwrap();
    // Drop the last three positions and evaluate them again: same logits.
    c.kv_seq_remove(Some(0), 4, -1).unwrap();
    assert_eq!(c.kv_seq_pos_max(0), Some(3));
    c.eval(&PROMPT[4..], 0).unwrap();
    assert!(max_diff(c.last_logits().unwrap(), &steps[6]) < 1e-3);
    // Share the first four positions with sequence 2, continue there: same as from scratch.
    c.kv_seq_copy(0, 2, 0, 4).unwrap();
    c.eval(&PROMPT[4..], 2).unwrap();
    assert!(max_diff(c.last_logits().unwrap(), &steps[6]) < 1e-3);
    // Keep only sequence 2.
    c.kv_seq_keep(2).unwrap();
    assert_eq!(c.kv_seq_pos_max(0), None);
    assert_eq!(c.kv_seq_pos_max(2), Some(6));
    c.kv_clear();
    assert_eq!(c.cells().used(), 0);
}

#[test]
fn full_context_fails_cleanly_and_leaves_the_cache_as_it_was() {
    let m = model(&TinySpec::default());
    let mut c = ctx(&m, 8, 1);
    c.eval(&PROMPT[..5], 0).unwrap();
    let err = c.eval(&PROMPT[..5], 0).unwrap_err();
    assert!(matches!(err, Error::ContextFull(_)), "{err}");
    assert_eq!(c.cells().used(), 5);
    assert_eq!(c.kv_seq_pos_max(0), Some(4));
    c.eval(&PROMPT[..3], 0).unwrap();
}

#[test]
fn cancellation_stops_a_decode_without_side_effects() {
    let m = model(&TinySpec::default());
    let mut c = ctx(&m, 64, 1);
    c.cancel_handle().request();
    assert!(matches!(c.eval(&PROMPT, 0), Err(Error::Cancelled)));
    assert_eq!(c.cells().used(), 0);
    // The request is consumed: the next call runs.
    c.eval(&PROMPT, 0).unwrap();
    // A request that comes when no call runs waits for the next one (it is never dropped by a
    // call that succeeds meanwhile), and cancels exactly one call.
    let used = c.cells().used();
    c.cancel_handle().request();
    let batch = Batch::for_sequence(&PROMPT[..1], PROMPT.len() as i32, 0);
    assert!(matches!(c.decode(&batch), Err(Error::Cancelled)));
    assert_eq!(c.cells().used(), used);
    c.decode(&batch).unwrap();
}

#[test]
fn positions_stop_at_the_largest_exact_rope_position() {
    use rocmforge::batch::MAX_POSITION;
    let m = model(&TinySpec::default());
    let mut c = ctx(&m, 64, 1);
    for pos in [MAX_POSITION + 1, i32::MAX, i32::MIN, -1] {
        let e = c
            .decode(&Batch::for_sequence(&[5], pos, 0))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("position {pos} ")), "{e}");
    }
    // The last position is usable; an eval that would pass it fails with the cache unchanged.
    c.decode(&Batch::for_sequence(&[5], MAX_POSITION - 1, 0))
        .unwrap();
    let e = c.eval(&[5, 6], 0).unwrap_err().to_string();
    assert!(e.contains("largest position"), "{e}");
    assert_eq!(c.kv_seq_pos_max(0), Some(MAX_POSITION - 1));
    c.eval(&[5], 0).unwrap();
    assert_eq!(c.kv_seq_pos_max(0), Some(MAX_POSITION));
}

#[test]
fn bad_batches_are_rejected_with_messages() {
    let m = model(&TinySpec::default());
    let mut c = ctx(&m, 64, 2);
    let bad_token = Batch::for_sequence(&[TINY_VOCAB as u32], 0, 0);
    let e = c.decode(&bad_token).unwrap_err().to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
    let e = c
        .decode(&Batch::for_sequence(&[5], 0, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sequence id 2"), "{e}");
    let e = c
        .decode(&Batch::for_sequence(&[5], -1, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("position -1 "), "{e}");
    assert!(c.decode(&Batch::new()).is_err());
    c.eval(&[5, 6], 0).unwrap();
    let e = c
        .decode(&Batch::for_sequence(&[7], 1, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not after its last position"), "{e}");
    let mut ragged = Batch::for_sequence(&[5, 6], 2, 0);
    ragged.pos.pop();
    assert!(c.decode(&ragged).is_err());
    let big = Batch::for_sequence(&[5; 65], 2, 0);
    assert!(c
        .decode(&big)
        .unwrap_err()
        .to_string()
        .contains("batch size"));
}

#[test]
fn unsupported_architecture_and_tensor_types_are_named() {
    let spec = TinySpec {
        arch: "gpt-nano",
        ..Default::default()
    };
    match Model::from_gguf(build(&spec)) {
        Err(e @ Error::UnsupportedArchitecture(_)) => assert_eq!(
            e.to_string(),
            "unsupported model architecture 'gpt-nano' (this build runs: llama, qwen2, qwen3, gemma3, phi3)"
        ),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("loaded an unsupported architecture"),
    }
    let spec = TinySpec {
        override_type: Some(("blk.1.attn_k.weight", GgmlType::Iq3S)),
        n_embd: 256,
        n_ff: 256,
        ..Default::default()
    };
    match Model::from_gguf(build(&spec)) {
        Err(e @ Error::UnsupportedTensorType { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("IQ3_S") && msg.contains("blk.1.attn_k.weight"),
                "{msg}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("loaded an unsupported tensor type"),
    }
    let spec = TinySpec {
        omit_tensor: Some("blk.0.ffn_up.weight"),
        ..Default::default()
    };
    let e = Model::from_gguf(build(&spec))
        .err()
        .expect("missing tensor must fail")
        .to_string();
    assert!(e.contains("blk.0.ffn_up.weight"), "{e}");
}

#[test]
fn a_model_serves_contexts_on_several_threads() {
    let m = model(&TinySpec::default());
    let expected = stepwise(&m, &PROMPT);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut c = ctx(&m, 64, 1);
                c.eval(&PROMPT, 0).unwrap();
                assert!(max_diff(c.last_logits().unwrap(), &expected[6]) < 1e-3);
            });
        }
    });
}

/// Batch invariance: a sequence's logits are the same bits however its tokens are batched,
/// whether alone token by token, as one prompt batch, or interleaved with two other
/// sequences (which moves its tokens to other slots of the matmul's groups of 4). Needs
/// every kernel (dot products, activation quantizer, attention) to compute one token's
/// values independently of the tokens beside it.
#[test]
fn logits_are_bit_identical_however_the_tokens_are_batched() {
    let others: [&[u32]; 2] = [&[1, 50, 60, 70], &[1, 9, 8, 7, 6, 5]];
    // (Not the K-quants yet: their tiny models are 256 wide, where even F32 weights give
    // last-bit differences between batchings, outside the dot products.)
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
    ] {
        let m = model(&tiny_of(ty));
        let seqs: [&[u32]; 3] = [&PROMPT, others[0], others[1]];
        let alone: Vec<Vec<Vec<f32>>> = seqs.iter().map(|s| stepwise(&m, s)).collect();

        // The 7-token prompt as one batch.
        let mut c = ctx(&m, 64, 1);
        let mut batch = Batch::new();
        for (i, &t) in PROMPT.iter().enumerate() {
            batch.push(t, i as i32, 0, true);
        }
        c.decode(&batch).unwrap();
        for (i, step) in alone[0].iter().enumerate() {
            assert_eq!(c.logits(i).unwrap(), &step[..], "{ty}: prompt position {i}");
        }

        // The three sequences interleaved in one batch, on other thread counts than the
        // 2 of `stepwise` (which splits the matmul rows at other places).
        let mut batch = Batch::new();
        let mut expected = Vec::new();
        for i in 0..PROMPT.len() {
            for (s, seq) in seqs.iter().enumerate() {
                if let Some(&t) = seq.get(i) {
                    batch.push(t, i as i32, s as u32, true);
                    expected.push((s, i));
                }
            }
        }
        for n_threads in [1, 3] {
            let params = ContextParams {
                n_ctx: 64,
                n_batch: 64,
                n_seq_max: 3,
                n_threads,
                ..Default::default()
            };
            let mut c = Context::new(&m, params).unwrap();
            c.decode(&batch).unwrap();
            for (k, &(s, i)) in expected.iter().enumerate() {
                assert_eq!(
                    c.logits(k).unwrap(),
                    &alone[s][i][..],
                    "{ty}, {n_threads} threads: sequence {s} position {i} (batch index {k})"
                );
            }
        }
    }
}

/// A context with `cache_type`, otherwise as [`ctx`].
fn ctx_typed(model: &Model, cache_type: KvType) -> Context {
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 64,
        n_seq_max: 2,
        n_threads: 2,
        cache_type,
        swa_full: false,
    };
    Context::new(model, params).unwrap()
}

#[test]
fn each_cache_type_estimates_its_allocation_and_restores_its_own_states() {
    use rocmforge::api::MemoryEstimate;
    use rocmforge::backend::cpu::CpuContext;
    // Heads of 32, one q8_0 block each (the default tiny model's 16 cannot use q8_0).
    let spec = TinySpec {
        n_head: 2,
        n_head_kv: 1,
        ..TinySpec::default()
    };
    let m = model(&spec);
    assert_eq!(m.hparams().head_dim, 32);
    let hp = m.hparams().clone();
    let mut last = Vec::new();
    for cache_type in KvType::ALL {
        // The estimate counts the bytes the CPU context allocates for this type.
        let params = ContextParams {
            n_ctx: 96,
            cache_type,
            ..ContextParams::default()
        };
        let est = MemoryEstimate::new(&hp, 0, &params);
        let exec = CpuContext::new(
            std::sync::Arc::new(rocmforge::model::LoadedModel::new(build(&spec)).unwrap()),
            96,
            96,
            1,
            cache_type,
            None,
        )
        .unwrap();
        assert_eq!(est.kv_cache_bytes, exec.kv().bytes(), "{cache_type}");
        let row_bytes = match cache_type {
            KvType::F32 => 4 * hp.kv_dim(),
            KvType::F16 => 2 * hp.kv_dim(),
            KvType::Q8_0 => hp.kv_dim() / 32 * 34,
        };
        assert_eq!(est.kv_cache_bytes, (2 * hp.n_layer * 96 * row_bytes) as u64);

        // Save after the prompt, continue; a restored context continues with the same bits.
        let mut a = ctx_typed(&m, cache_type);
        a.eval(&PROMPT, 0).unwrap();
        a.eval(&PROMPT[..3], 1).unwrap();
        let state = a.state_save(None).unwrap();
        assert_eq!(state.len(), a.state_size(None));
        a.eval(&[5], 0).unwrap();
        let want = a.last_logits().unwrap().to_vec();
        let mut b = ctx_typed(&m, cache_type);
        b.state_restore(&state, None).unwrap();
        b.eval(&[5], 0).unwrap();
        assert_eq!(b.last_logits().unwrap(), &want[..], "{cache_type}");
        // One sequence too.
        let seq_state = a.state_save(Some(1)).unwrap();
        let mut c = ctx_typed(&m, cache_type);
        c.state_restore(&seq_state, Some(0)).unwrap();
        assert_eq!(c.cells().seq_pos_max(0), Some(2));
        // Another cache type refuses the state and stays usable.
        let other = KvType::ALL.into_iter().find(|&t| t != cache_type).unwrap();
        let mut d = ctx_typed(&m, other);
        let e = d.state_restore(&state, None).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("KV cache of type"), "{e}");
        d.eval(&PROMPT, 0).unwrap();
        last.push(want);
    }
    // The f16 cache rounds keys and values: close to the f32 cache's logits, not the same;
    // q8_0 rounds them more coarsely (8 bits against 11), further off but still close.
    let (f32_logits, f16_logits, q8_logits) = (&last[0], &last[1], &last[2]);
    assert_ne!(f32_logits, f16_logits);
    let scale = f32_logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let (d16, d8) = (
        max_diff(f32_logits, f16_logits),
        max_diff(f32_logits, q8_logits),
    );
    assert!(d16 < 0.01 * scale, "{d16} {scale}");
    assert!(d8 > d16 && d8 < 0.05 * scale, "{d8} {d16} {scale}");
}

/// A q8_0 cache needs heads of whole 32-element blocks: the default tiny model's 16 is refused
/// at context creation, naming the head size, and f16 works for it.
#[test]
fn a_q8_0_cache_is_refused_for_heads_that_are_not_whole_blocks() {
    let m = model(&TinySpec::default());
    assert_eq!(m.hparams().head_dim, 16);
    let params = ContextParams {
        n_ctx: 64,
        cache_type: KvType::Q8_0,
        ..ContextParams::default()
    };
    let e = Context::new(&m, params).err().expect("refused");
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(
        e.to_string().contains("16") && e.to_string().contains("q8_0"),
        "{e}"
    );
    ctx_typed(&m, KvType::F16).eval(&PROMPT, 0).unwrap();
}
