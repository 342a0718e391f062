//! Extreme parameters, out-of-range ids and indices, and sampler settings at the edges. Apart
//! from the thread-count case (a child process), these run in-process: wrong answers, not
//! crashes, are what can go wrong here.

use crate::common::capi::{self, check, last_error, ok, Batch, Ctx, CtxOpts, Model, Sampler};
use crate::common::child::Limits;
use crate::{
    check_status, child_after, expect_report, report_result, report_status, run_child, sampler,
    smollm2, timed, write_tiny, Scratch,
};
// 2^24 - 1: RoPE angles are computed from the position as an f32.
use rocmforge::ffi::batch::ROCMFORGE_MAX_POSITION as MAX_POSITION;
use rocmforge::ffi::params::*;
use rocmforge::ffi::sampler::*;
use rocmforge::ffi::status::rocmforge_status::{self, *};
use std::path::Path;
use std::time::Duration;

/// arg: the tiny model file. A context with the most threads the setter accepts.
pub(crate) fn child_threads(arg: &str) {
    let model = Model::load(Path::new(arg), true).unwrap();
    let opts = CtxOpts {
        n_ctx: 32,
        n_threads: 1024,
        ..CtxOpts::default()
    };
    let (r, t) = timed(|| Ctx::new(&model, opts));
    report_result("create", &r, t);
    if let Ok(ctx) = r {
        let (s, t) = timed(|| ctx.eval(&[1, 5, 6], 0));
        report_status("eval", s, t);
    }
    drop(model);
    child_after();
}

#[test]
fn the_most_threads_the_setter_accepts_work_or_fail_with_a_status() {
    let Some(_) = smollm2() else {
        return;
    };
    let dir = Scratch::new("threads");
    let tiny = dir.path("tiny.gguf");
    write_tiny(&tiny);
    let o = run_child("threads", tiny.to_str().unwrap(), Limits::two_gib(60));
    o.assert_clean_exit();
    eprintln!("1024 threads: {:?}", o.reports());
    expect_report(
        &o,
        "create",
        &[ROCMFORGE_OK, ROCMFORGE_ERR_OUT_OF_MEMORY],
        Duration::MAX,
    );
    if o.report("create").status == 0 {
        expect_report(&o, "eval", &[ROCMFORGE_OK], Duration::MAX);
    }
    expect_report(&o, "after", &[ROCMFORGE_OK], Duration::MAX);
}

/// SmolLM2 with a context that has evaluated `prompt`.
fn smollm2_with(prompt: &str, opts: CtxOpts) -> Option<(Model, Ctx, Vec<i32>)> {
    let model = Model::load(&smollm2()?, true).unwrap();
    let ctx = Ctx::new(&model, opts).unwrap();
    let tokens = model.tokenize(prompt);
    ok(ctx.eval(&tokens, 0));
    Some((model, ctx, tokens))
}

#[test]
fn a_subnormal_temperature_then_dist_picks_the_greedy_token() {
    let Some((_model, ctx, _)) = smollm2_with("The capital of France is", CtxOpts::default())
    else {
        return;
    };
    let greedy = ctx.greedy();
    let tiny_temperatures = [1e-39f32, 1e-45, f32::from_bits(1), 5e-39, 1.1e-38];
    for t in tiny_temperatures {
        for seed in [0u64, 1, 42, 0xDEAD_BEEF, u64::MAX - 1] {
            // SAFETY: live sampler for each stage call.
            let plain = sampler(|s| unsafe {
                ok(rocmforge_sampler_add_temperature(s, t));
                ok(rocmforge_sampler_add_dist(s, seed));
            });
            // SAFETY: as above.
            let filtered = sampler(|s| unsafe {
                ok(rocmforge_sampler_add_top_k(s, 40));
                ok(rocmforge_sampler_add_top_p(s, 0.95, 1));
                ok(rocmforge_sampler_add_min_p(s, 0.05, 1));
                ok(rocmforge_sampler_add_temperature(s, t));
                ok(rocmforge_sampler_add_dist(s, seed));
            });
            for (what, s) in [("temperature, dist", plain), ("filters", filtered)] {
                for _ in 0..3 {
                    let token = s.sample(&ctx, -1).unwrap();
                    assert_eq!(
                        token, greedy,
                        "temperature {t:e} ({what}), seed {seed}: sampled {token}, greedy {greedy}"
                    );
                }
            }
        }
    }
}

/// Status of a decode of one token at `pos` of sequence 0 (through a one-token batch).
fn decode_at(ctx: &Ctx, token: i32, pos: i32) -> Result<(), capi::Failure> {
    let batch = Batch::new(1).unwrap();
    check(batch.add(token, pos, 0, true))?;
    check(ctx.decode(&batch))
}

#[test]
fn positions_past_the_limit_are_refused_and_leave_the_cache_unchanged() {
    let Some((model, ctx, prompt)) = smollm2_with("Positions", CtxOpts::default()) else {
        return;
    };
    ok(ctx.kv_clear());
    let t = prompt[0];
    let mut failures = Vec::new();
    // Refused when added, or when decoded; the cache stays empty either way.
    for pos in [i32::MAX, i32::MAX - 1, MAX_POSITION + 1, 1 << 30] {
        match decode_at(&ctx, t, pos) {
            Err(f) if f.status == ROCMFORGE_ERR_INVALID_ARGUMENT => {}
            other => failures.push(format!(
                "position {pos}: expected INVALID_ARGUMENT, {other:?}"
            )),
        }
        assert_eq!(ctx.pos_max(0), -1, "position {pos} changed the cache");
    }
    for pos in [-1, i32::MIN] {
        let batch = Batch::new(1).unwrap();
        assert_eq!(
            batch.add(t, pos, 0, true),
            ROCMFORGE_ERR_INVALID_ARGUMENT,
            "position {pos}"
        );
    }
    // A batch mixing a good token and one past the limit: refused as a whole.
    let batch = Batch::new(2).unwrap();
    ok(batch.add(t, 0, 0, false));
    if batch.add(t, i32::MAX, 0, true) == ROCMFORGE_OK {
        assert_eq!(ctx.decode(&batch), ROCMFORGE_ERR_INVALID_ARGUMENT);
    }
    assert_eq!(ctx.pos_max(0), -1);

    // Up to the last position, then one more: the eval fails and the cache is unchanged.
    let tail = &model.tokenize("a b c d e f g h i j")[..8];
    decode_at(&ctx, t, MAX_POSITION - 4).unwrap();
    for n in [8, 5] {
        let s = ctx.eval(&tail[..n], 0);
        if ![ROCMFORGE_ERR_INVALID_ARGUMENT, ROCMFORGE_ERR_CONTEXT_FULL].contains(&s) {
            failures.push(format!(
                "eval of {n} past the limit: {s:?}: {}",
                last_error()
            ));
        }
        assert_eq!(ctx.pos_max(0), MAX_POSITION - 4);
    }
    ok(ctx.eval(&tail[..4], 0));
    assert_eq!(ctx.pos_max(0), MAX_POSITION);
    let s = ctx.eval(&tail[..1], 0);
    if ![ROCMFORGE_ERR_INVALID_ARGUMENT, ROCMFORGE_ERR_CONTEXT_FULL].contains(&s) {
        failures.push(format!("eval at the limit: {s:?}: {}", last_error()));
    }
    assert_eq!(ctx.pos_max(0), MAX_POSITION);
    // Rewound, the sequence is usable again.
    ok(ctx.seq_remove(0, 0, -1));
    ok(ctx.eval(&prompt, 0));
    assert_eq!(ctx.pos_max(0), prompt.len() as i32 - 1);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Collects mismatches so one run shows every wrong status at once.
#[derive(Default)]
struct Expect(Vec<String>);

impl Expect {
    fn status(&mut self, what: &str, got: rocmforge_status, want: rocmforge_status) {
        if got != want {
            let msg = if got == ROCMFORGE_OK {
                String::new()
            } else {
                last_error()
            };
            self.0
                .push(format!("{what}: expected {want:?}, got {got:?} {msg}"));
        }
    }

    fn finish(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n"));
    }
}

/// `expect!(e, WANT; "label" => call; ...)`: each call (a C API call on live handles, or a
/// status from a helper) must answer WANT. Labels are format strings.
macro_rules! expect {
    ($e:expr, $want:expr; $($what:literal => $call:expr;)+) => {
        $(
            // SAFETY: the tables only pass live handles, valid out-pointers and buffers of the
            // sizes given; the hostile part is the values, never the memory.
            #[allow(unused_unsafe)]
            let got = unsafe { $call };
            $e.status(&format!($what), got, $want);
        )+
    };
}

#[test]
fn extreme_context_and_model_parameters_are_refused_or_work() {
    use rocmforge::ffi::context::rocmforge_context_sizes;
    let Some(path) = smollm2() else {
        return;
    };
    let mut e = Expect::default();
    let (mut p, mut mp) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid out-pointers; both objects are freed below.
    unsafe {
        ok(rocmforge_context_params_create(&mut p));
        ok(rocmforge_model_params_create(&mut mp));
    }
    expect!(e, ROCMFORGE_ERR_INVALID_ARGUMENT;
        "n_batch 0" => rocmforge_context_params_set_n_batch(p, 0);
        "n_batch 65537" => rocmforge_context_params_set_n_batch(p, 65537);
        "n_batch UINT_MAX" => rocmforge_context_params_set_n_batch(p, u32::MAX);
        "n_threads 100000" => rocmforge_context_params_set_n_threads(p, 100_000);
        "n_threads UINT_MAX" => rocmforge_context_params_set_n_threads(p, u32::MAX);
        "n_seq_max 0" => rocmforge_context_params_set_n_seq_max(p, 0);
        "n_seq_max 65" => rocmforge_context_params_set_n_seq_max(p, 65);
        "backend -1" => rocmforge_model_params_set_backend(mp, -1);
        "backend 3" => rocmforge_model_params_set_backend(mp, 3);
        "backend INT_MIN" => rocmforge_model_params_set_backend(mp, i32::MIN);
        "device -1" => rocmforge_model_params_set_device(mp, -1);
        "cache_type -1" => rocmforge_context_params_set_cache_type(p, -1);
        "cache_type 2" => rocmforge_context_params_set_cache_type(p, 2);
        "cache_type 7 (q5_1, no cache of it)" => rocmforge_context_params_set_cache_type(p, 7);
        "cache_type INT_MAX" => rocmforge_context_params_set_cache_type(p, i32::MAX);
    );
    expect!(e, ROCMFORGE_ERR_NULL_POINTER;
        "NULL context params" => rocmforge_context_params_set_n_ctx(std::ptr::null_mut(), 1);
        "NULL model params" => rocmforge_model_params_set_use_mmap(std::ptr::null_mut(), true);
    );
    expect!(e, ROCMFORGE_OK;
        "device INT_MAX (the CPU ignores it)" => rocmforge_model_params_set_device(mp, i32::MAX);
        "n_ctx 0 (the model's)" => rocmforge_context_params_set_n_ctx(p, 0);
        "cache_type f32" => rocmforge_context_params_set_cache_type(p, ROCMFORGE_CACHE_TYPE_F32);
        "cache_type f16" => rocmforge_context_params_set_cache_type(p, ROCMFORGE_CACHE_TYPE_F16);
        "cache_type q8_0" => rocmforge_context_params_set_cache_type(p, ROCMFORGE_CACHE_TYPE_Q8_0);
    );
    // SAFETY: both objects from the create calls above, freed once.
    unsafe {
        rocmforge_context_params_free(p);
        rocmforge_model_params_free(mp);
    }
    if !capi::gpu_available() {
        let r = Model::load_on(&path, true, ROCMFORGE_BACKEND_GPU);
        let want = ROCMFORGE_ERR_BACKEND_UNAVAILABLE;
        e.status("GPU backend without a GPU", check_status(r), want);
    }

    // The largest batch, the most sequences and the default thread count are accepted; the
    // batch is clamped to the context.
    let model = Model::load(&path, true).unwrap();
    let opts = CtxOpts {
        n_ctx: 64,
        n_batch: 65536,
        n_seq_max: 64,
        n_threads: 0,
    };
    let ctx = Ctx::new(&model, opts).unwrap();
    let mut sizes = [0u32; 3];
    let [a, b, c] = &mut sizes;
    // SAFETY: live context, valid out-pointers.
    ok(unsafe { rocmforge_context_sizes(ctx.0, a, b, c) });
    assert_eq!(sizes, [64, 64, 64]);
    ok(ctx.eval(&model.tokenize("Many sequences"), 63));
    e.finish();
}

#[test]
fn out_of_range_ids_and_indices_are_refused_and_change_nothing() {
    use rocmforge::ffi::context::rocmforge_context_eval as eval;
    use rocmforge::ffi::kv::{rocmforge_kv_seq_copy as kv_copy, rocmforge_kv_seq_keep as keep};
    use rocmforge::ffi::tokenizer::*;
    let opts = CtxOpts {
        n_ctx: 64,
        n_batch: 16,
        n_seq_max: 2,
        n_threads: 2,
    };
    let Some((model, ctx, prompt)) = smollm2_with("Extreme parameters", opts) else {
        return;
    };
    let mut e = Expect::default();
    let (v, tok, c) = (model.n_vocab() as i32, prompt[1], ctx.0);
    let before = ctx.pos_max(0);
    let state = ctx.state(0).unwrap();
    // First, while the last batch is the prompt: a token that did not ask for logits.
    expect!(e, ROCMFORGE_ERR_NOT_FOUND;
        "logits of a token that did not ask" => check_status(ctx.logits(0));
    );
    let n_prompt = prompt.len() as i32;
    let one = Batch::new(1).unwrap();
    let batch_of = |token: i32, pos: i32, seq: i32| {
        ok(one.clear());
        ok(one.add(token, pos, seq, true));
        &one
    };
    let empty = Batch::new(4).unwrap();
    let over = Batch::new(32).unwrap();
    for i in 0..17 {
        ok(over.add(tok, before + 1 + i, 0, i == 16));
    }
    let full = Batch::new(1).unwrap();
    ok(full.add(tok, 0, 0, true));
    let (mut buf, mut n, mut ids) = ([0 as std::ffi::c_char; 64], 0usize, [0i32; 16]);
    let (bp, cap, mut eog, mut id) = (buf.as_mut_ptr(), buf.len(), false, 0);
    let bad_utf8 = b"ab\xff\xfe";

    expect!(e, ROCMFORGE_ERR_INVALID_TOKEN;
        "eval token -1" => ctx.eval(&[tok, -1], 0);
        "eval token n_vocab" => ctx.eval(&[tok, v], 0);
        "eval token INT_MAX" => ctx.eval(&[tok, i32::MAX], 0);
        "eval token INT_MIN" => ctx.eval(&[i32::MIN], 0);
        "batch token -1" => empty.add(-1, 0, 0, true);
        "decode token n_vocab" => ctx.decode(batch_of(v, before + 1, 0));
        "decode token INT_MAX" => ctx.decode(batch_of(i32::MAX, before + 1, 0));
        "piece -1" => rocmforge_token_to_piece(model.0, -1, true, bp, cap, &mut n);
        "piece n_vocab" => rocmforge_token_to_piece(model.0, v, true, bp, cap, &mut n);
        "detokenize INT_MAX" => rocmforge_detokenize(model.0, [tok, i32::MAX].as_ptr(), 2, true, bp, cap, &mut n);
        "is_eog n_vocab" => rocmforge_token_is_eog(model.0, v, &mut eog);
        "accept -1" => Sampler::new().accept(-1);
    );
    expect!(e, ROCMFORGE_ERR_INVALID_SEQUENCE;
        "eval seq -1" => ctx.eval(&[tok], -1);
        "eval seq n_seq_max" => ctx.eval(&[tok], 2);
        "eval seq INT_MAX" => ctx.eval(&[tok], i32::MAX);
        "batch seq -1" => empty.add(tok, 0, -1, true);
        "decode seq n_seq_max" => ctx.decode(batch_of(tok, before + 1, 2));
        "decode seq INT_MAX" => ctx.decode(batch_of(tok, before + 1, i32::MAX));
        "kv_seq_remove seq 2" => ctx.seq_remove(2, 0, -1);
        "kv_seq_remove seq INT_MIN" => ctx.seq_remove(i32::MIN, 0, -1);
        "kv_seq_copy to 2" => kv_copy(c, 0, 2, 0, -1);
        "kv_seq_copy from -1" => kv_copy(c, -1, 1, 0, -1);
        "kv_seq_keep -1" => keep(c, -1);
        "pos_max -1" => check_status(ctx.try_pos_max(-1));
        "state seq 2" => check_status(ctx.state(2));
        "state_load seq INT_MAX" => ctx.state_load(i32::MAX, &[0; 8]);
    );
    expect!(e, ROCMFORGE_ERR_INVALID_ARGUMENT;
        "eval n = 0" => ctx.eval(&[], 0);
        "eval n = SIZE_MAX (refused before reading)" => eval(c, [tok].as_ptr(), usize::MAX, 0);
        "decode an empty batch" => ctx.decode(&empty);
        "decode past n_batch" => ctx.decode(&over);
        "add to a full batch" => full.add(tok, 1, 0, true);
        "batch capacity 0" => check_status(Batch::new(0));
        "batch capacity 65537" => check_status(Batch::new(65537));
        "logits index -2" => check_status(ctx.logits(-2));
        "logits index INT_MIN" => check_status(ctx.logits(i32::MIN));
        "logits index INT_MAX" => check_status(ctx.logits(i32::MAX));
        "logits index past the batch" => check_status(ctx.logits(n_prompt));
        "state_load n = 0" => ctx.state_load(-1, &[]);
        "tokenize invalid UTF-8" => rocmforge_tokenize(model.0, bad_utf8.as_ptr().cast(), 4, true, true, ids.as_mut_ptr(), 16, &mut n);
        "special kind -1" => rocmforge_token_special(model.0, -1, &mut id);
        "special kind INT_MAX" => rocmforge_token_special(model.0, i32::MAX, &mut id);
    );
    expect!(e, ROCMFORGE_ERR_NULL_POINTER;
        "eval NULL tokens" => eval(c, std::ptr::null(), 4, 0);
    );
    expect!(e, ROCMFORGE_ERR_CONTEXT_FULL;
        "eval past n_ctx" => ctx.eval(&[tok; 100], 0);
    );
    // Odd ranges are no error: empty, reversed or unbounded.
    expect!(e, ROCMFORGE_OK;
        "kv_seq_copy INT_MIN..INT_MAX" => kv_copy(c, 0, 1, i32::MIN, i32::MAX);
        "kv_seq_remove INT_MAX..INT_MIN" => ctx.seq_remove(1, i32::MAX, i32::MIN);
        "kv_seq_copy 5..2" => kv_copy(c, 0, 1, 5, 2);
        "kv_seq_remove -7..-7" => ctx.seq_remove(1, -7, -7);
        "kv_seq_remove all of 1" => ctx.seq_remove(1, -1, -1);
    );
    assert_eq!(ctx.pos_max(0), before, "a refused call changed the cache");
    assert_eq!(ctx.pos_max(1), -1);
    assert!(
        ctx.state(0).unwrap() == state,
        "a refused call changed the cache"
    );
    ok(ctx.eval(&prompt[..1], 0));
    e.finish();
}

#[test]
fn extreme_sampler_parameters_are_refused_or_sample_a_valid_token() {
    let Some((model, ctx, _)) = smollm2_with("Sampling at the edges", CtxOpts::default()) else {
        return;
    };
    let n_vocab = model.n_vocab() as i32;
    let mut e = Expect::default();
    let s = Sampler::new();
    let (nan, inf, x) = (f32::NAN, f32::INFINITY, s.0);
    use rocmforge::ffi::sampler::rocmforge_sampler_add_penalties as penalties;
    expect!(e, ROCMFORGE_ERR_INVALID_ARGUMENT;
        "temperature NaN" => rocmforge_sampler_add_temperature(x, nan);
        "temperature inf" => rocmforge_sampler_add_temperature(x, inf);
        "temperature -inf" => rocmforge_sampler_add_temperature(x, -inf);
        "top-p NaN" => rocmforge_sampler_add_top_p(x, nan, 1);
        "top-p inf" => rocmforge_sampler_add_top_p(x, inf, 1);
        "min-p NaN" => rocmforge_sampler_add_min_p(x, nan, 1);
        "min-p -inf" => rocmforge_sampler_add_min_p(x, -inf, 1);
        "repeat penalty NaN" => penalties(x, 64, nan, 0.0, 0.0);
        "repeat penalty 0" => penalties(x, 64, 0.0, 0.0, 0.0);
        "repeat penalty -1" => penalties(x, 64, -1.0, 0.0, 0.0);
        "frequency penalty inf" => penalties(x, 64, 1.1, inf, 0.0);
        "presence penalty NaN" => penalties(x, 64, 1.1, 0.0, nan);
        "sample without a terminal stage" => check_status(s.sample(&ctx, -1));
    );
    // SAFETY: live sampler.
    ok(unsafe { rocmforge_sampler_add_greedy(x) });
    expect!(e, ROCMFORGE_ERR_INVALID_ARGUMENT;
        "a stage after the terminal one" => rocmforge_sampler_add_top_k(x, 5);
    );

    // Out-of-range values that mean "off" or an extreme: accepted, and sampling still gives a
    // token of the vocabulary with either terminal stage.
    type Add = fn(*mut rocmforge_sampler) -> rocmforge_status;
    macro_rules! stage {
        ($call:expr) => {
            // SAFETY: called with a live sampler.
            (stringify!($call), (|s| unsafe { $call(s) }) as Add)
        };
    }
    let stages = [
        stage!(|s| rocmforge_sampler_add_top_k(s, -1)),
        stage!(|s| rocmforge_sampler_add_top_k(s, i32::MIN)),
        stage!(|s| rocmforge_sampler_add_top_k(s, i32::MAX)),
        stage!(|s| rocmforge_sampler_add_top_p(s, -1.0, 1)),
        stage!(|s| rocmforge_sampler_add_top_p(s, 0.0, 0)),
        stage!(|s| rocmforge_sampler_add_top_p(s, 2.0, u32::MAX)),
        stage!(|s| rocmforge_sampler_add_min_p(s, -1.0, 0)),
        stage!(|s| rocmforge_sampler_add_min_p(s, 5.0, 0)),
        stage!(|s| rocmforge_sampler_add_min_p(s, 1.0, u32::MAX)),
        stage!(|s| rocmforge_sampler_add_temperature(s, -1.0)),
        stage!(|s| rocmforge_sampler_add_temperature(s, 0.0)),
        stage!(|s| rocmforge_sampler_add_temperature(s, f32::MAX)),
        stage!(|s| rocmforge_sampler_add_temperature(s, f32::MIN_POSITIVE)),
        stage!(|s| penalties(s, u32::MAX, f32::MAX, f32::MAX, f32::MAX)),
        stage!(|s| penalties(s, u32::MAX, f32::MIN_POSITIVE, -f32::MAX, -f32::MAX)),
        stage!(|s| penalties(s, 0, 2.0, 1.0, 1.0)),
    ];
    for (what, add) in stages {
        for greedy in [true, false] {
            let s = Sampler::new();
            e.status(what, add(s.0), ROCMFORGE_OK);
            // SAFETY: live sampler.
            ok(unsafe {
                if greedy {
                    rocmforge_sampler_add_greedy(s.0)
                } else {
                    rocmforge_sampler_add_dist(s.0, ROCMFORGE_SEED_RANDOM)
                }
            });
            for draw in 0..4 {
                match s.sample(&ctx, -1) {
                    Ok(t) if (0..n_vocab).contains(&t) => ok(s.accept(t)),
                    r => {
                        e.0.push(format!("{what} (greedy {greedy}), draw {draw}: {r:?}"))
                    }
                }
            }
            // Accepted ids outside the vocabulary (refused or ignored) break no later draw.
            for t in [n_vocab, i32::MAX] {
                let st = s.accept(t);
                if st != ROCMFORGE_OK && st != ROCMFORGE_ERR_INVALID_TOKEN {
                    e.0.push(format!("{what}: accept {t}: {st:?}"));
                }
            }
            if let Err(f) = s.sample(&ctx, -1) {
                e.0.push(format!("{what} (greedy {greedy}), after odd accepts: {f}"));
            }
        }
    }
    e.finish();
}
