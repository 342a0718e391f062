//! Cancellation races and concurrent use of one handle, in-process.

use crate::common::capi::{self, last_error, ok, Batch, Ctx, CtxOpts, Model, Rng, Sampler};
use crate::{check_status, sampler, smollm2, timed, write_tiny, Scratch};
use rocmforge::ffi::params::*;
use rocmforge::ffi::sampler::*;
use rocmforge::ffi::status::rocmforge_status::{self, *};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Text of at least 32 tokens for the races.
const RACE_TEXT: &str = "The old lighthouse keeper climbed the spiral stairs every evening, \
    counting each step, watching the grey sea roll against the rocks below while gulls \
    circled the lamp and the wind carried salt across the harbour";

/// Cancels evals at random moments spread over an eval's duration, `trials` times: each cancel
/// must stop the running eval (CANCELLED, cache unchanged) or the next one (CANCELLED at once),
/// and the eval after a cancelled one must run normally. Prints the latency percentiles.
fn cancel_race(backend: i32, trials: usize) {
    let path = match std::env::var_os("ROCMFORGE_CANCEL_MODEL") {
        Some(p) => PathBuf::from(p),
        None => match smollm2() {
            Some(p) => p,
            None => return,
        },
    };
    let model = Model::load_on(&path, true, backend).unwrap();
    let opts = CtxOpts {
        n_ctx: 128,
        n_batch: 128,
        n_seq_max: 1,
        n_threads: 2,
    };
    let ctx = Ctx::new(&model, opts).unwrap();
    let text = model.tokenize(RACE_TEXT);
    let n_body = env_usize("ROCMFORGE_CANCEL_TOKENS", 8).clamp(1, 64);
    let (prefix, body) = (&text[..4], &text[4..4 + n_body]);
    ok(ctx.eval(prefix, 0));
    let base = ctx.pos_max(0);
    let reset = || {
        ok(ctx.seq_remove(0, base + 1, -1));
        assert_eq!(ctx.pos_max(0), base);
    };
    let mut spans: Vec<Duration> = (0..5)
        .map(|_| {
            let (s, t) = timed(|| ctx.eval(body, 0));
            ok(s);
            reset();
            t
        })
        .collect();
    spans.sort();
    let span = spans[2];
    let mut rng = Rng::from_env("cancel race");
    let (mut in_flight, mut at_next, mut lost) = (0usize, 0usize, Vec::new());
    let mut latencies = Vec::new();
    let mut next_call = Vec::new();
    let started = Instant::now();
    let (to_canceller, delays) = std::sync::mpsc::channel::<Option<Duration>>();
    let (done, cancelled_at) = std::sync::mpsc::channel::<(Instant, Instant)>();
    std::thread::scope(|scope| {
        let ctx = &ctx;
        scope.spawn(move || {
            while let Ok(Some(delay)) = delays.recv() {
                std::thread::sleep(delay);
                let called = Instant::now();
                ok(ctx.cancel());
                done.send((called, Instant::now())).unwrap();
            }
        });
        for trial in 0..trials {
            let delay = span.mul_f64(rng.below(1250) as f64 / 1000.0);
            to_canceller.send(Some(delay)).unwrap();
            let s = ctx.eval(body, 0);
            let end = Instant::now();
            let (cancel_called, cancel_returned) = cancelled_at.recv().unwrap();
            match s {
                ROCMFORGE_ERR_CANCELLED => {
                    // Cancelled before this trial's cancel was even asked: an earlier request
                    // was left pending (not consumed when honoured).
                    assert!(
                        end >= cancel_called,
                        "trial {trial}: the eval was cancelled {:?} before the cancel call",
                        cancel_called - end
                    );
                    in_flight += 1;
                    latencies.push(end.saturating_duration_since(cancel_returned));
                    assert_eq!(
                        ctx.pos_max(0),
                        base,
                        "trial {trial}: a cancelled eval changed the cache"
                    );
                }
                ROCMFORGE_OK => {
                    assert_eq!(ctx.pos_max(0), base + body.len() as i32);
                    reset();
                    // The cancel came after the eval's last check: the next eval honours it.
                    let (s, t) = timed(|| ctx.eval(&body[..1], 0));
                    match s {
                        ROCMFORGE_ERR_CANCELLED => {
                            at_next += 1;
                            next_call.push(t);
                            assert_eq!(ctx.pos_max(0), base, "trial {trial}");
                        }
                        ROCMFORGE_OK => {
                            lost.push(format!("trial {trial} (delay {delay:?})"));
                            reset();
                        }
                        other => panic!("trial {trial}: next eval {other:?}: {}", last_error()),
                    }
                }
                other => panic!("trial {trial}: eval {other:?}: {}", last_error()),
            }
            // The cancel was consumed: this eval runs.
            let s = ctx.eval(&body[..1], 0);
            assert_eq!(
                s,
                ROCMFORGE_OK,
                "trial {trial}: the eval after a cancelled one: {}",
                last_error()
            );
            reset();
        }
        to_canceller.send(None).unwrap();
    });
    latencies.sort();
    next_call.sort();
    eprintln!(
        "cancel race (backend {backend}): {trials} trials in {:.1} s ({n_body}-token eval: {:.1} ms); \
         {in_flight} cancelled in flight, {at_next} at the next call, {} lost; \
         cancel-to-return latency p50 {:?} p99 {:?} max {:?}; next-call CANCELLED returns in p50 {:?} max {:?}",
        started.elapsed().as_secs_f64(),
        span.as_secs_f64() * 1e3,
        lost.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        percentile(&next_call, 0.5),
        next_call.last().copied().unwrap_or_default(),
    );
    assert!(
        lost.is_empty(),
        "{} of {trials} cancels lost: {}",
        lost.len(),
        lost.join(", ")
    );
    // Generous: a cancelled eval never runs much longer than an eval does.
    let worst = latencies.last().copied().unwrap_or_default();
    assert!(
        worst < span * 4 + Duration::from_secs(1),
        "a cancel took {worst:?} to stop a {span:?} eval"
    );
}

#[test]
fn cancel_race_cpu() {
    cancel_race(
        ROCMFORGE_BACKEND_CPU,
        // 1000 (the count) takes several minutes on a 2-core machine: set the variable.
        env_usize("ROCMFORGE_CANCEL_TRIALS", 200),
    );
}

#[test]
fn cancel_race_gpu() {
    if !capi::gpu_available() {
        let expected = std::env::var("ROCMFORGE_EXPECT_GPU").as_deref() == Ok("1");
        assert!(
            !expected,
            "ROCMFORGE_EXPECT_GPU=1 but no GPU backend or device"
        );
        eprintln!("skipping the GPU cancel race: no GPU backend built in or no device");
        return;
    }
    cancel_race(
        ROCMFORGE_BACKEND_GPU,
        env_usize("ROCMFORGE_GPU_CANCEL_TRIALS", 200),
    );
}

/// Counts of a storm's outcomes, and its unexpected statuses.
#[derive(Default)]
struct Tally {
    ok: std::sync::atomic::AtomicUsize,
    busy: std::sync::atomic::AtomicUsize,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    /// Counts `s`; anything but OK, BUSY and `also` is recorded as an error. True for OK.
    fn count(&self, what: &str, s: rocmforge_status, also: &[rocmforge_status]) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        match s {
            ROCMFORGE_OK => {
                self.ok.fetch_add(1, Relaxed);
                return true;
            }
            ROCMFORGE_ERR_BUSY => {
                self.busy.fetch_add(1, Relaxed);
                // Let the holder progress on a small machine.
                std::thread::sleep(Duration::from_micros(200));
            }
            s if also.contains(&s) => {}
            s => self.error(format!("{what}: {s:?}: {}", last_error())),
        }
        false
    }

    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(e);
        }
    }

    fn finish(&self, what: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let (ok, busy) = (self.ok.load(Relaxed), self.busy.load(Relaxed));
        eprintln!("{what}: {ok} calls OK, {busy} BUSY");
        let errors = self.errors.lock().unwrap();
        assert!(errors.is_empty(), "{what}:\n{}", errors.join("\n"));
        assert!(
            ok > 0 && busy > 0,
            "{what}: no contention happened ({ok} OK, {busy} BUSY)"
        );
    }
}

/// Logits of `tokens` on sequence `seq` after removing it (the cache otherwise as it is).
fn logits_of_fresh_sequence(ctx: &Ctx, tokens: &[i32], seq: i32) -> Vec<f32> {
    ok(ctx.seq_remove(seq, 0, -1));
    ok(ctx.eval(tokens, seq));
    ctx.logits(-1).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn eight_threads_on_one_context_get_ok_or_busy_and_leave_it_sound() {
    use rocmforge::ffi::context::{rocmforge_context_logits, rocmforge_context_sizes};
    use rocmforge::ffi::state::{rocmforge_state_save, rocmforge_state_size};
    let Some(path) = smollm2() else {
        return;
    };
    let model = Model::load(&path, true).unwrap();
    let opts = CtxOpts {
        n_ctx: 512,
        n_batch: 64,
        n_seq_max: 8,
        n_threads: 2,
    };
    let ctx = Ctx::new(&model, opts).unwrap();
    let input = &model.tokenize(RACE_TEXT)[..4];
    ok(ctx.eval(input, 0));
    ok(ctx.seq_remove(0, 0, -1));
    let tally = Tally::default();
    let stop = Instant::now() + Duration::from_secs(4);
    let mut rng = Rng::from_env("context storm");
    let seeds: Vec<u64> = (0..8).map(|_| rng.next() | 1).collect();
    std::thread::scope(|scope| {
        for (t, seed) in seeds.into_iter().enumerate() {
            let (ctx, tally, model) = (&ctx, &tally, &model);
            scope.spawn(move || {
                let seq = t as i32;
                let mut rng = Rng(seed);
                let batch = Batch::new(4).unwrap();
                let sampler = Sampler::new();
                // SAFETY: live sampler.
                ok(unsafe { rocmforge_sampler_add_greedy(sampler.0) });
                let mut buf = vec![0u8; 8 << 20];
                // Positions held by this thread's sequence: only this thread changes it.
                let mut len = 0i32;
                while Instant::now() < stop {
                    match rng.below(8) {
                        0 if len < 40 => {
                            if tally.count("eval", ctx.eval(input, seq), &[]) {
                                len += input.len() as i32;
                            }
                        }
                        1 if len < 40 => {
                            ok(batch.clear());
                            ok(batch.add(input[0], len, seq, true));
                            if tally.count("decode", ctx.decode(&batch), &[]) {
                                len += 1;
                            }
                        }
                        0..=2 => {
                            if tally.count("remove", ctx.seq_remove(seq, 0, -1), &[]) {
                                len = 0;
                            }
                        }
                        3 => match ctx.try_pos_max(seq) {
                            Ok(p) if p != len - 1 => tally
                                .error(format!("thread {t}: pos_max {p}, expected {}", len - 1)),
                            Ok(_) => {
                                tally.count("pos_max", ROCMFORGE_OK, &[]);
                            }
                            Err(f) => {
                                tally.count("pos_max", f.status, &[]);
                            }
                        },
                        4 => {
                            let (mut p, mut n) = (std::ptr::null(), 0usize);
                            // SAFETY: live context, valid out-pointers; the logits are not read
                            // (another thread's eval may replace them at any time).
                            let s = unsafe { rocmforge_context_logits(ctx.0, -1, &mut p, &mut n) };
                            if tally.count("logits", s, &[]) && n != model.n_vocab() {
                                tally.error(format!("logits of {n} floats"));
                            }
                        }
                        5 => {
                            let mut n = 0usize;
                            // SAFETY: live context; buffer of buf.len() bytes.
                            let s = unsafe {
                                rocmforge_state_save(
                                    ctx.0,
                                    seq,
                                    buf.as_mut_ptr(),
                                    buf.len(),
                                    &mut n,
                                )
                            };
                            tally.count("state_save", s, &[]);
                            let mut size = 0usize;
                            // SAFETY: as above.
                            let s = unsafe { rocmforge_state_size(ctx.0, seq, &mut size) };
                            tally.count("state_size", s, &[]);
                        }
                        6 => {
                            let s = check_status(sampler.sample(ctx, -1));
                            tally.count("sample", s, &[]);
                        }
                        _ => {
                            let mut n_ctx = 0u32;
                            // SAFETY: live context; NULL out-pointers are skipped.
                            let s = unsafe {
                                rocmforge_context_sizes(
                                    ctx.0,
                                    &mut n_ctx,
                                    std::ptr::null_mut(),
                                    std::ptr::null_mut(),
                                )
                            };
                            if tally.count("sizes", s, &[]) && n_ctx != 512 {
                                tally.error(format!("n_ctx {n_ctx}"));
                            }
                        }
                    }
                }
            });
        }
    });
    tally.finish("8 threads on one context");
    // The context computes what a fresh one does, with every other sequence still in it.
    let query = &model.tokenize("Shared contexts must stay correct")[..];
    let got = logits_of_fresh_sequence(&ctx, query, 3);
    let fresh = Ctx::new(&model, opts).unwrap();
    let want = logits_of_fresh_sequence(&fresh, query, 3);
    assert_eq!(capi::argmax(&got), capi::argmax(&want));
    let diff = max_abs_diff(&got, &want);
    assert!(
        diff < 1e-2,
        "logits differ by {diff} from a fresh context's"
    );
}

/// Tiny-model contexts for the sampler and batch storms (cheap to evaluate).
fn tiny_model(dir: &Scratch) -> Model {
    let path = dir.path("tiny.gguf");
    write_tiny(&path);
    Model::load(&path, true).unwrap()
}

fn tiny_ctx(model: &Model) -> Ctx {
    let opts = CtxOpts {
        n_ctx: 64,
        n_batch: 16,
        n_seq_max: 1,
        n_threads: 1,
    };
    Ctx::new(model, opts).unwrap()
}

/// The chain the sampler storm shares.
fn storm_sampler() -> Sampler {
    // SAFETY: live sampler for each stage call.
    sampler(|s| unsafe {
        ok(rocmforge_sampler_add_penalties(s, 16, 1.3, 0.1, 0.1));
        ok(rocmforge_sampler_add_top_k(s, 50));
        ok(rocmforge_sampler_add_top_p(s, 0.9, 1));
        ok(rocmforge_sampler_add_temperature(s, 1.5));
        ok(rocmforge_sampler_add_dist(s, 7));
    })
}

#[test]
fn eight_threads_on_one_sampler_get_ok_or_busy_and_leave_it_sound() {
    let dir = Scratch::new("sampler-storm");
    let model = tiny_model(&dir);
    let n_vocab = model.n_vocab() as i32;
    let shared = storm_sampler();
    let tally = Tally::default();
    let stop = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (model, shared, tally) = (&model, &shared, &tally);
            scope.spawn(move || {
                let ctx = tiny_ctx(model);
                ok(ctx.eval(&[1, 5 + t as i32, 6], 0));
                let mut rng = Rng(t * 7919 + 1);
                while Instant::now() < stop {
                    match rng.below(6) {
                        0..=2 => match shared.sample(&ctx, -1) {
                            Ok(tok) if !(0..n_vocab).contains(&tok) => {
                                tally.error(format!("sampled {tok}"))
                            }
                            r => {
                                tally.count("sample", check_status(r), &[]);
                            }
                        },
                        3 | 4 => {
                            tally.count(
                                "accept",
                                shared.accept(rng.below(n_vocab as u64) as i32),
                                &[],
                            );
                        }
                        _ => {
                            tally.count("reset", shared.reset(), &[]);
                        }
                    }
                }
            });
        }
    });
    tally.finish("8 threads on one sampler");
    // After a reset it draws what a new sampler of the same chain draws.
    let ctx = tiny_ctx(&model);
    ok(ctx.eval(&[1, 5, 6], 0));
    ok(shared.reset());
    let fresh = storm_sampler();
    for _ in 0..8 {
        let (a, b) = (
            shared.sample(&ctx, -1).unwrap(),
            fresh.sample(&ctx, -1).unwrap(),
        );
        assert_eq!(a, b);
        ok(shared.accept(a));
        ok(fresh.accept(b));
    }
}

#[test]
fn eight_threads_on_one_batch_get_ok_or_busy_and_leave_it_sound() {
    let dir = Scratch::new("batch-storm");
    let model = tiny_model(&dir);
    let batch = Batch::new(16).unwrap();
    let tally = Tally::default();
    let stop = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (model, batch, tally) = (&model, &batch, &tally);
            scope.spawn(move || {
                let ctx = tiny_ctx(model);
                let mut rng = Rng(t * 104_729 + 1);
                while Instant::now() < stop {
                    if t == 0 {
                        // The decoder: the batch may be empty, full or in use.
                        ok(ctx.kv_clear());
                        tally.count(
                            "decode",
                            ctx.decode(batch),
                            &[ROCMFORGE_ERR_INVALID_ARGUMENT],
                        );
                        continue;
                    }
                    match rng.below(8) {
                        0..=4 => {
                            let tok = 3 + rng.below(200) as i32;
                            let s = batch.add(tok, rng.below(32) as i32, 0, rng.below(2) == 0);
                            // A full batch answers INVALID_ARGUMENT.
                            tally.count("add", s, &[ROCMFORGE_ERR_INVALID_ARGUMENT]);
                        }
                        5 => {
                            tally.count("clear", batch.clear(), &[]);
                        }
                        _ => match batch.size() {
                            Ok(n) if n > 16 => tally.error(format!("batch size {n}")),
                            r => {
                                tally.count("size", check_status(r), &[]);
                            }
                        },
                    }
                }
            });
        }
    });
    tally.finish("8 threads on one batch");
    // Still a working batch: it decodes what an eval of the same tokens computes.
    ok(batch.clear());
    for (i, tok) in [1, 40, 41].into_iter().enumerate() {
        ok(batch.add(tok, i as i32, 0, i == 2));
    }
    assert_eq!(batch.size().unwrap(), 3);
    let a = tiny_ctx(&model);
    ok(a.decode(&batch));
    let b = tiny_ctx(&model);
    ok(b.eval(&[1, 40, 41], 0));
    assert_eq!(a.logits(-1).unwrap(), b.logits(-1).unwrap());
}

#[test]
fn cancels_from_seven_threads_during_evals_are_honoured_and_consumed() {
    let Some(path) = smollm2() else {
        return;
    };
    let model = Model::load(&path, true).unwrap();
    let ctx = Ctx::new(&model, CtxOpts::default()).unwrap();
    let text = model.tokenize(RACE_TEXT);
    let (prefix, body) = (&text[..4], &text[4..8]);
    ok(ctx.eval(prefix, 0));
    let base = ctx.pos_max(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut completed, mut cancelled) = (0, 0);
    std::thread::scope(|scope| {
        for t in 0..7u64 {
            let (ctx, stop) = (&ctx, &stop);
            scope.spawn(move || {
                let mut rng = Rng(t + 11);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    ok(ctx.cancel());
                    // Bursts and pauses: some evals run to the end, most are cut short.
                    std::thread::sleep(Duration::from_micros(rng.below(400_000)));
                }
            });
        }
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match ctx.eval(body, 0) {
                ROCMFORGE_OK => {
                    completed += 1;
                    assert_eq!(ctx.pos_max(0), base + body.len() as i32);
                    ok(ctx.seq_remove(0, base + 1, -1));
                }
                ROCMFORGE_ERR_CANCELLED => {
                    cancelled += 1;
                    assert_eq!(ctx.pos_max(0), base, "a cancelled eval changed the cache");
                }
                other => panic!("eval: {other:?}: {}", last_error()),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    eprintln!("cancel storm: {completed} evals completed, {cancelled} cancelled");
    assert!(cancelled > 0);
    // At most one request is still pending; once it is consumed, evals run.
    let s = ctx.eval(body, 0);
    assert!(s == ROCMFORGE_OK || s == ROCMFORGE_ERR_CANCELLED, "{s:?}");
    ok(ctx.seq_remove(0, base + 1, -1));
    ok(ctx.eval(body, 0));
    assert_eq!(ctx.pos_max(0), base + body.len() as i32);
}
