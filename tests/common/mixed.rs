//! Batch invariance harness: many sequences in mixed batches (some prefilling a chunk of their
//! prompt while others decode their next token) against each sequence run alone, both through
//! the public API (`Context`), on whichever backend the model was loaded for.

use rocmforge::{Batch, Context, ContextParams, Model};

/// How one sequence of the mixed run behaves.
#[derive(Clone, Debug)]
pub struct SeqPlan {
    pub prompt: Vec<u32>,
    /// The step at which its first prompt tokens join the batch.
    pub start_step: usize,
    /// Prompt tokens it contributes per step until the prompt is in.
    pub chunk: usize,
}

/// What a sequence generated greedily: each token and the logits row it was picked from.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub tokens: Vec<u32>,
    pub logits: Vec<Vec<f32>>,
}

/// `n_seq` sequences with prompts of 1 to `max_prompt` tokens, starting at staggered steps and
/// fed in chunks of 1 to 7 tokens, so that most steps hold prompt chunks and decode tokens of
/// different sequences together, at different positions.
pub fn plans(n_seq: usize, n_vocab: usize, max_prompt: usize) -> Vec<SeqPlan> {
    (0..n_seq)
        .map(|s| {
            let len = 1 + (s * 13 + 5) % max_prompt;
            let prompt = (0..len)
                .map(|i| (1 + (s * 7919 + i * 104_729 + 31) % (n_vocab - 1)) as u32)
                .collect();
            SeqPlan {
                prompt,
                start_step: (s * 5) % 11,
                chunk: 1 + (s * 3) % 7,
            }
        })
        .collect()
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// The sequence alone in a fresh context (cells from 0): its prompt in calls of at most
/// `max_call` tokens, then `n_gen` greedy tokens one step at a time.
pub fn run_alone(
    model: &Model,
    plan: &SeqPlan,
    n_gen: usize,
    n_ctx: usize,
    max_call: usize,
) -> Trace {
    let params = ContextParams {
        n_ctx,
        n_batch: 64,
        n_seq_max: 1,
        n_threads: 2,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model, params).expect("context");
    for chunk in plan.prompt.chunks(max_call) {
        ctx.eval(chunk, 0).expect("prompt");
    }
    let mut trace = Trace::default();
    loop {
        let logits = ctx.last_logits().expect("logits").to_vec();
        trace.tokens.push(argmax(&logits));
        trace.logits.push(logits);
        if trace.tokens.len() == n_gen {
            return trace;
        }
        ctx.eval(&[*trace.tokens.last().unwrap()], 0)
            .expect("decode");
    }
}

/// Every sequence in one context, each in its own region of `stride` cells, in mixed batches
/// as `plans` describe, each following its own greedy choice until it has `n_gen` tokens.
/// Each step's tokens go to the context in calls of at most `max_call` tokens.
pub fn run_mixed(
    model: &Model,
    plans: &[SeqPlan],
    n_gen: usize,
    stride: usize,
    n_threads: usize,
    max_call: usize,
) -> Vec<Trace> {
    let n_seq = plans.len();
    let params = ContextParams {
        n_ctx: n_seq * stride,
        n_batch: n_seq * 8,
        n_seq_max: n_seq,
        n_threads,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model, params).expect("context");
    ctx.set_seq_regions(Some(stride)).expect("regions");
    let mut fed = vec![0usize; n_seq];
    let mut traces = vec![Trace::default(); n_seq];
    let mut batch = Batch::new();
    let mut mixed_steps = 0;
    for step in 0.. {
        batch.clear();
        let (mut prefilling, mut decoding) = (false, false);
        for (s, plan) in plans.iter().enumerate() {
            let p = &plan.prompt;
            if step < plan.start_step {
                continue;
            }
            if fed[s] < p.len() {
                let end = (fed[s] + plan.chunk).min(p.len());
                for i in fed[s]..end {
                    batch.push(p[i], i as i32, s as u32, i + 1 == p.len());
                }
                fed[s] = end;
                prefilling = true;
            } else if (1..n_gen).contains(&traces[s].tokens.len()) {
                let k = traces[s].tokens.len();
                batch.push(
                    traces[s].tokens[k - 1],
                    (p.len() + k - 1) as i32,
                    s as u32,
                    true,
                );
                decoding = true;
            }
        }
        if batch.is_empty() {
            if traces.iter().all(|t| t.tokens.len() == n_gen) {
                break;
            }
            continue; // the others have not started yet
        }
        mixed_steps += usize::from(prefilling && decoding);
        for c0 in (0..batch.len()).step_by(max_call.max(1)) {
            let c1 = (c0 + max_call.max(1)).min(batch.len());
            let mut call = Batch::new();
            for i in c0..c1 {
                call.push(batch.tokens[i], batch.pos[i], batch.seq[i], batch.logits[i]);
            }
            ctx.decode(&call).expect("mixed decode");
            for i in 0..call.len() {
                if let Some(logits) = ctx.logits(i) {
                    let t = &mut traces[call.seq[i] as usize];
                    t.tokens.push(argmax(logits));
                    t.logits.push(logits.to_vec());
                }
            }
        }
    }
    assert!(
        mixed_steps >= 3,
        "the plans must give steps that prefill and decode together ({mixed_steps})"
    );
    assert!(traces.iter().all(|t| t.tokens.len() == n_gen));
    traces
}
