//! The continuous-batching scheduler on the real SmolLM2: a request's greedy continuation is
//! the same alone (plain `Context` decoding) and among 15 others, through prefix reuse and
//! through preemption; cancellation frees cells; stop strings and limits end generation.

mod common;

use rocmforge::scheduler::{Event, FinishReason, Request, Scheduler, SchedulerConfig, Usage};
use rocmforge::{Context, ContextParams, Model, ModelParams};
use std::sync::mpsc::Receiver;

fn model() -> Option<Model> {
    let path = common::model_path(common::SMOLLM2)?;
    Some(Model::load(path, ModelParams::default()).expect("load SmolLM2"))
}

const PROMPTS: [&str; 16] = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "The three primary colors are",
    "def fibonacci(n):",
    "Water boils at a temperature of",
    "The largest planet in the solar system is",
    "My favourite recipe for pancakes starts with",
    "In 1969, astronauts",
    "The quick brown fox",
    "A haiku about autumn:",
    "To install Python packages, you use",
    "The meaning of life is",
    "Photosynthesis is the process by which",
    "Here is a list of prime numbers: 2, 3, 5,",
    "The best way to learn a language is",
    "Rust is a programming language that",
];

/// Greedy tokens from a plain context, one sequence, token by token: the reference.
fn alone(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let params = ContextParams {
        n_ctx: 512,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model, params).unwrap();
    ctx.eval(prompt, 0).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let logits = ctx.last_logits().unwrap();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        if model.tokenizer().is_eog(best) {
            break;
        }
        out.push(best);
        ctx.eval(&[best], 0).unwrap();
    }
    out
}

/// Tokens, text and the end of one request's events.
fn collect(rx: Receiver<Event>) -> (Vec<u32>, String, FinishReason, Usage) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    for ev in rx {
        match ev {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Done {
                reason,
                text: t,
                usage,
            } => {
                text.push_str(&t);
                return (ids, text, reason, usage);
            }
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
    panic!("the scheduler hung up without Done");
}

const N_GEN: usize = 24;

fn encode(model: &Model, s: &str) -> Vec<u32> {
    model.tokenizer().encode(s, true, true)
}

/// Waits until the worker has published the state after the last request ended.
fn settle(sched: &Scheduler) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sched.stats().running > 0 || sched.stats().queued > 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", sched.stats());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn run_all(sched: &Scheduler, model: &Model) -> Vec<(Vec<u32>, Usage)> {
    let rxs: Vec<_> = PROMPTS
        .iter()
        .map(|p| {
            let req = Request::greedy(encode(model, p), N_GEN);
            sched.submit_channel(req).unwrap()
        })
        .collect();
    rxs.into_iter()
        .map(|rx| {
            let (ids, _, _, usage) = collect(rx);
            (ids, usage)
        })
        .collect()
}

#[test]
fn sixteen_in_flight_match_alone_and_with_prefix_reuse_and_preemption() {
    let Some(model) = model() else { return };
    let expected: Vec<Vec<u32>> = (PROMPTS.iter())
        .map(|p| alone(&model, &encode(&model, p), N_GEN))
        .collect();

    // Roomy: every request admitted at once, prompts chunked alongside decode tokens.
    let roomy = SchedulerConfig {
        n_ctx: 16 * 256,
        n_seq: 16,
        n_batch: 64,
        ..SchedulerConfig::default()
    };
    let sched = Scheduler::new(&model, roomy).unwrap();
    let got = run_all(&sched, &model);
    // Prompts that begin alike ("The ...") may take their shared start from a request already
    // running when they are admitted, which depends on timing; no more than that may be cached.
    let shared_start = |i: usize| {
        let mine = encode(&model, PROMPTS[i]);
        (0..PROMPTS.len())
            .filter(|&j| j != i)
            .map(|j| {
                let theirs = [encode(&model, PROMPTS[j]), expected[j].clone()].concat();
                mine.iter().zip(&theirs).take_while(|(a, b)| a == b).count()
            })
            .max()
            .unwrap_or(0)
            .min(mine.len() - 1)
    };
    for (i, (ids, usage)) in got.iter().enumerate() {
        assert_eq!(ids, &expected[i], "prompt {i} {:?} among 16", PROMPTS[i]);
        assert!(usage.completion_tokens >= ids.len(), "prompt {i}");
        assert!(
            usage.cached_tokens <= shared_start(i),
            "prompt {i}: {} cached, but it shares only {} tokens with the others",
            usage.cached_tokens,
            shared_start(i)
        );
    }
    // The same prompts again: every prompt is now held by an idle sequence, so all but the
    // last prompt token come from the prefix cache, and the output does not change.
    let before = sched.stats().prefix_hits;
    let again = run_all(&sched, &model);
    for (i, (ids, usage)) in again.iter().enumerate() {
        assert_eq!(ids, &expected[i], "prompt {i} with its prefix reused");
        assert_eq!(usage.cached_tokens, usage.prompt_tokens - 1, "prompt {i}");
    }
    assert!(sched.stats().prefix_hits >= before + 16);
    sched.shutdown();

    // Shared pool, tight: 16 sequences cannot all grow in 400 cells, so some are preempted and
    // recomputed; every request still completes. (Cells then lie
    // anywhere, so the last bits, and at a near-tie a token, may differ from alone.)
    let tight = SchedulerConfig {
        n_ctx: 400,
        n_seq: 16,
        n_batch: 64,
        isolated: false,
        ..SchedulerConfig::default()
    };
    let sched = Scheduler::new(&model, tight).unwrap();
    let got = run_all(&sched, &model);
    for (i, (ids, usage)) in got.iter().enumerate() {
        assert!(
            !ids.is_empty() && usage.completion_tokens >= ids.len(),
            "prompt {i}"
        );
    }
    assert!(sched.stats().preemptions > 0, "{:?}", sched.stats());
}

#[test]
fn cancellation_stop_strings_and_limits() {
    let Some(model) = model() else { return };
    let sched = Scheduler::new(
        &model,
        SchedulerConfig {
            n_ctx: 1024,
            n_seq: 4,
            isolated: true,
            n_batch: 64,
            ..SchedulerConfig::default()
        },
    )
    .unwrap();
    let prompt = encode(&model, "Here is a list of prime numbers: 2, 3, 5,");
    let reference = alone(&model, &prompt, 16);
    let text = String::from_utf8(model.tokenizer().decode(&reference, false)).unwrap();

    // max_tokens
    let (ids, t, reason, usage) = collect(
        sched
            .submit_channel(Request::greedy(prompt.clone(), 5))
            .unwrap(),
    );
    assert_eq!(ids, reference[..5]);
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(usage.completion_tokens, 5);
    assert!(text.starts_with(&t), "{t:?} vs {text:?}");

    // A stop string taken from the middle of the reference text ends the output before it.
    let cut = text.len() / 2;
    let stop: String = text[cut..].chars().take(3).collect();
    let mut req = Request::greedy(prompt.clone(), 16);
    req.stop = vec![stop.clone()];
    let (_, t, reason, _) = collect(sched.submit_channel(req).unwrap());
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(t, text[..text.find(&stop).unwrap()]);

    // A dropped receiver cancels: its cells are freed within a few steps.
    settle(&sched);
    let idle_cells = sched.stats().kv_cells_used;
    let long = Request {
        ignore_eos: true,
        ..Request::greedy(
            encode(&model, "Tell me a very long story about a dragon."),
            500,
        )
    };
    let rx = sched.submit_channel(long).unwrap();
    for _ in 0..3 {
        assert!(matches!(rx.recv().unwrap(), Event::Token { .. }));
    }
    assert!(sched.stats().kv_cells_used > idle_cells);
    drop(rx);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sched.stats().running > 0 || sched.stats().kv_cells_used > idle_cells {
        assert!(std::time::Instant::now() < deadline, "{:?}", sched.stats());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // Seeded sampling is reproducible.
    let sampled = |seed| {
        let mut req = Request::greedy(prompt.clone(), 12);
        req.sampling.temperature = 1.0;
        req.sampling.seed = seed;
        collect(sched.submit_channel(req).unwrap()).0
    };
    assert_eq!(sampled(7), sampled(7));
}

/// Isolated regions: a request whose prompt begins with what a running request already holds
/// gets a copy of those cells in its own region (not recomputed), and its continuation is still
/// exactly its continuation alone; the running request is not disturbed.
#[test]
fn a_running_requests_prefix_is_copied_into_a_new_requests_region() {
    let Some(model) = model() else { return };
    let sched = Scheduler::new(
        &model,
        SchedulerConfig {
            n_ctx: 4 * 512,
            n_seq: 4,
            n_batch: 64,
            isolated: true,
            ..SchedulerConfig::default()
        },
    )
    .unwrap();
    let system = "You are a helpful assistant who answers questions about geography, history \
                  and science briefly and accurately. ";
    let first = encode(
        &model,
        &format!("{system}Question: What is the capital of France?"),
    );
    let second = encode(&model, &format!("{system}Question: Why is the sky blue?"));
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared >= 16, "{shared}");
    let n = 20;
    let (ref_first, ref_second) = (alone(&model, &first, n), alone(&model, &second, n));

    let long = Request {
        ignore_eos: true,
        ..Request::greedy(first.clone(), n)
    };
    let rx_first = sched.submit_channel(long).unwrap();
    // Its prompt is in the cache once its first token arrives.
    let Event::Token { id, .. } = rx_first.recv().unwrap() else {
        panic!("no first token")
    };
    let before = sched.stats().prefix_hits;
    let (ids, _, _, usage) = collect(
        sched
            .submit_channel(Request::greedy(second.clone(), n))
            .unwrap(),
    );
    assert_eq!(usage.cached_tokens, shared, "{usage:?}");
    assert_eq!(sched.stats().prefix_hits, before + 1);
    assert_eq!(ids, ref_second, "the second request with a copied prefix");
    let (rest, _, _, _) = collect(rx_first);
    let first_ids: Vec<u32> = std::iter::once(id).chain(rest).collect();
    // Alone it stops at its end-of-generation token; here it ran on through it (to stay
    // running while the second request was admitted).
    assert_eq!(first_ids[..ref_first.len()], ref_first);
}
