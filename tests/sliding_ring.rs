//! The ring of the sliding-window layers (`kv_cache::Cells::ring`): the same logits as full
//! tables (bit for bit: a lone sequence's ring cells form the attention chunks the full
//! table's would, summed in the same order), far past the window; sequence edits, state
//! round trips and the scheduler with it; and the KV bytes it saves, as the estimate says.

mod common;

use common::tiny::{build, TinySpec};
use rocmforge::api::MemoryEstimate;
use rocmforge::batch::Batch;
use rocmforge::kv_cache::KvType;
use rocmforge::scheduler::{Event, Request, Scheduler, SchedulerConfig};
use rocmforge::{Context, ContextParams, Model, ModelParams};

const WINDOW: u32 = 16;

/// A gemma3-shaped tiny model: layers 0 and 2 see windows of 16 positions, 1 and 3 all.
fn tiny_gemma() -> Model {
    Model::from_gguf(build(&TinySpec {
        arch: "gemma3",
        n_layer: 4,
        qk_norm_scale: Some(0.3),
        post_norm_scale: Some(0.2),
        sliding_window: Some(WINDOW),
        sliding_window_pattern: Some(2),
        ..TinySpec::default()
    }))
    .expect("tiny gemma3")
}

fn context(model: &Model, n_seq_max: usize, swa_full: bool) -> Context {
    let params = ContextParams {
        n_ctx: 2048,
        n_batch: 16,
        n_seq_max,
        n_threads: 2,
        cache_type: KvType::F16,
        swa_full,
    };
    Context::new(model, params).expect("context")
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn argmax(v: &[f32]) -> u32 {
    (v.iter().enumerate())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32)
}

/// Prompt tokens of the tiny vocabulary (bytes).
fn prompt(n: usize) -> Vec<u32> {
    (0..n).map(|i| 3 + (i * 37 % 250) as u32).collect()
}

/// Greedy decoding of `steps` tokens after what `ctx` holds for `seq`: each step's logits.
fn greedy(ctx: &mut Context, seq: u32, steps: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for _ in 0..steps {
        let last = ctx.last_logits().expect("logits").to_vec();
        let next = argmax(&last);
        ctx.eval(&[next], seq).expect("decode");
        out.push(ctx.last_logits().expect("logits").to_vec());
    }
    out
}

#[test]
fn the_ring_gives_the_full_table_s_bits_far_past_the_window() {
    let model = tiny_gemma();
    let mut ring = context(&model, 1, false);
    let mut full = context(&model, 1, true);
    // 16 + 16 cells per sequence, but a window of 16 can touch two chunks of 256: 512 cells,
    // so positions wrap past 512.
    assert_eq!(ring.cells().ring().map(|r| r.n_ctx()), Some(512));
    assert!(full.cells().ring().is_none());
    let p = prompt(40);
    ring.eval(&p, 0).unwrap();
    full.eval(&p, 0).unwrap();
    assert_eq!(
        bits(ring.last_logits().unwrap()),
        bits(full.last_logits().unwrap())
    );
    let a = greedy(&mut ring, 0, 560);
    let b = greedy(&mut full, 0, 560);
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(bits(x), bits(y), "step {step} (position {})", 40 + step);
    }
    // The ring holds the window only; the full table every position.
    assert_eq!(ring.cells().ring().unwrap().used(), WINDOW as usize);
    assert_eq!(ring.cells().used(), 600);
    // The windowed layers really see only the window: with the window widened the logits
    // change (so the comparison above could fail).
    assert_ne!(bits(&a[559]), bits(&greedy_plain(&model, &p, 560)));
}

/// The last logits of the same run on a model whose windows are wider than the context.
fn greedy_plain(_model: &Model, p: &[u32], steps: usize) -> Vec<f32> {
    let wide = Model::from_gguf(build(&TinySpec {
        arch: "gemma3",
        n_layer: 4,
        qk_norm_scale: Some(0.3),
        post_norm_scale: Some(0.2),
        sliding_window: Some(4096),
        sliding_window_pattern: Some(2),
        ..TinySpec::default()
    }))
    .unwrap();
    let mut ctx = context(&wide, 1, true);
    ctx.eval(p, 0).unwrap();
    greedy(&mut ctx, 0, steps).pop().unwrap()
}

#[test]
fn prompt_chunks_across_the_wrap_match_the_full_table() {
    // A long prompt in batches of 16 crosses the ring's end several times; every chunk's
    // logits match.
    let model = tiny_gemma();
    let (mut ring, mut full) = (context(&model, 1, false), context(&model, 1, true));
    let p = prompt(700);
    for (k, chunk) in p.chunks(16).enumerate() {
        let mut batch = Batch::for_sequence(chunk, (k * 16) as i32, 0);
        batch.logits.fill(true);
        ring.decode(&batch).unwrap();
        full.decode(&batch).unwrap();
        for t in 0..chunk.len() {
            assert_eq!(
                bits(ring.logits(t).unwrap()),
                bits(full.logits(t).unwrap()),
                "chunk {k} token {t}"
            );
        }
    }
}

#[test]
fn state_round_trips_and_sequence_edits_work_with_the_ring() {
    let model = tiny_gemma();
    let mut a = context(&model, 1, false);
    a.eval(&prompt(600), 0).unwrap();
    let whole = a.state_save(None).unwrap();
    assert_eq!(whole.len(), a.state_size(None));
    let one = a.state_save(Some(0)).unwrap();
    // A restored context continues with the same bits as the original.
    let mut b = context(&model, 1, false);
    b.state_restore(&whole, None).unwrap();
    let mut c = context(&model, 1, false);
    c.state_restore(&one, Some(0)).unwrap();
    c.eval(&[42], 0).unwrap();
    let next_a = greedy(&mut a, 0, 20);
    let next_b = greedy(&mut b, 0, 20);
    assert_eq!(
        next_a.iter().map(|l| bits(l)).collect::<Vec<_>>(),
        next_b.iter().map(|l| bits(l)).collect::<Vec<_>>()
    );
    // The one-sequence restore took 42 as the next token: as the original would have.
    let mut d = context(&model, 1, false);
    d.eval(&prompt(600), 0).unwrap();
    d.eval(&[42], 0).unwrap();
    assert_eq!(
        bits(c.last_logits().unwrap()),
        bits(d.last_logits().unwrap())
    );
    // A full-table context (or one of another ring) refuses a ring state instead of
    // restoring a window it cannot hold.
    let mut f = context(&model, 1, true);
    assert!(f.state_restore(&whole, None).is_err());

    // Removing a tail the ring moved past: refused, and the ring says what it holds.
    assert_eq!(d.kv_seq_pos_min(0), Some(601 - WINDOW as i32));
    assert!(d.kv_seq_can_continue_at(0, 601));
    assert!(!d.kv_seq_can_continue_at(0, 200));
    d.kv_seq_remove(Some(0), 200, -1).unwrap();
    let e = d.eval(&[7], 0).unwrap_err();
    assert!(e.to_string().contains("evaluate it again"), "{e}");
    // Evaluating again from the start gives the bits of a fresh context.
    d.kv_clear();
    d.eval(&prompt(201), 0).unwrap();
    let mut fresh = context(&model, 1, false);
    fresh.eval(&prompt(201), 0).unwrap();
    assert_eq!(
        bits(d.last_logits().unwrap()),
        bits(fresh.last_logits().unwrap())
    );
    // Removing the last token only (the window before it is still there) continues. Its
    // global-layer cell moved on (the full table allocates after its last cell), so the
    // attention partials differ by rounding only.
    d.kv_seq_remove(Some(0), 200, -1).unwrap();
    d.eval(&prompt(201)[200..], 0).unwrap();
    let diff = max_diff(d.last_logits().unwrap(), fresh.last_logits().unwrap());
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn sequences_share_and_copy_their_windows() {
    let model = tiny_gemma();
    let mut ctx = context(&model, 2, false);
    ctx.eval(&prompt(100), 0).unwrap();
    // Sequence 1 shares sequence 0's cells (the ring's window too) and continues alone.
    ctx.kv_seq_copy(0, 1, 0, -1).unwrap();
    ctx.eval(&[9, 10, 11], 1).unwrap();
    let forked = ctx.last_logits().unwrap().to_vec();
    let mut alone = context(&model, 1, true);
    alone.eval(&prompt(100), 0).unwrap();
    alone.eval(&[9, 10, 11], 0).unwrap();
    // Shared cells lie where sequence 0 put them: the same chunks as alone.
    assert_eq!(bits(&forked), bits(alone.last_logits().unwrap()));
    // Sequence 0 goes on; the cells only sequence 1 still needs stay for it.
    ctx.eval(&prompt(60), 0).unwrap();
    ctx.kv_seq_keep(1).unwrap();
    assert_eq!(ctx.kv_seq_pos_max(0), None);
    ctx.eval(&[12], 1).unwrap();
    alone.eval(&[12], 0).unwrap();
    let d = max_diff(ctx.last_logits().unwrap(), alone.last_logits().unwrap());
    assert!(d < 1e-4, "{d}");
}

/// Largest absolute difference.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn sequence_regions_copy_the_window_into_the_target_region() {
    let model = tiny_gemma();
    let mut ctx = context(&model, 2, false);
    ctx.set_seq_regions(Some(1024)).unwrap();
    ctx.eval(&prompt(600), 0).unwrap();
    ctx.kv_seq_copy_into_region(0, 1, 600).unwrap();
    ctx.eval(&[5], 1).unwrap();
    let mut alone = context(&model, 1, true);
    alone.eval(&prompt(600), 0).unwrap();
    alone.eval(&[5], 0).unwrap();
    assert_eq!(
        bits(ctx.last_logits().unwrap()),
        bits(alone.last_logits().unwrap())
    );
    // A prefix whose window the ring no longer holds is not copied.
    ctx.kv_seq_remove(Some(1), 0, -1).unwrap();
    assert!(ctx.kv_seq_copy_into_region(0, 1, 200).is_err());
}

#[test]
fn the_estimate_counts_global_layers_times_n_ctx_plus_windowed_layers_times_the_ring() {
    let model = tiny_gemma();
    let hp = model.hparams();
    for (swa_full, n_seq) in [(false, 1), (false, 3), (true, 1)] {
        let params = ContextParams {
            n_ctx: 2048,
            n_batch: 16,
            n_seq_max: n_seq,
            n_threads: 1,
            cache_type: KvType::F16,
            swa_full,
        };
        let est = MemoryEstimate::new(hp, 0, &params);
        let ctx = Context::new(&model, params).unwrap();
        let ring = if swa_full { 2048 } else { 512 * n_seq };
        let row = (2 * hp.kv_dim() * 2) as u64;
        assert_eq!(est.kv_cache_bytes, (2 * 2048 + 2 * ring) as u64 * row);
        assert_eq!(
            ctx.kv_bytes(),
            Some(est.kv_cache_bytes),
            "measured = estimate"
        );
    }
}

/// The real Gemma 3 270M: a prompt of 832 tokens in steps of 64 crosses the end of its
/// 768-cell ring; every step's last logits have the full table's bits.
#[test]
fn gemma3_270m_ring_matches_full_tables_bit_for_bit() {
    let Some(path) = common::model_path("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let model = Model::load(path, ModelParams::default()).unwrap();
    let params = |swa_full| ContextParams {
        n_ctx: 1024,
        n_batch: 64,
        n_seq_max: 1,
        n_threads: 2,
        cache_type: KvType::F16,
        swa_full,
    };
    let mut ring = Context::new(&model, params(false)).unwrap();
    let mut full = Context::new(&model, params(true)).unwrap();
    assert_eq!(ring.cells().ring().map(|r| r.n_ctx()), Some(768));
    let text = "The quick brown fox jumps over the lazy dog; ".repeat(120);
    let tokens = model.tokenizer().encode(&text, true, false);
    let tokens = &tokens[..832];
    for (k, chunk) in tokens.chunks(64).enumerate() {
        let batch = Batch::for_sequence(chunk, (k * 64) as i32, 0);
        ring.decode(&batch).unwrap();
        full.decode(&batch).unwrap();
        let (a, b) = (ring.last_logits().unwrap(), full.last_logits().unwrap());
        assert_eq!(bits(a), bits(b), "step {k}");
    }
}

/// The must-show measurement on the real Gemma 3 270M: an 8192-cell context's KV bytes with
/// the ring (measured: the CPU's arrays) against the estimate and the full tables. Printed
/// (`--nocapture`) for docs/BENCHMARKS.md.
#[test]
fn gemma3_270m_keeps_global_layers_plus_windows() {
    let Some(path) = common::model_path("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let model = Model::load(path, ModelParams::default()).unwrap();
    let hp = model.hparams();
    let windowed = hp.layers.iter().filter(|l| l.window.is_some()).count();
    assert_eq!((hp.n_layer, windowed), (18, 15));
    let params = |swa_full| ContextParams {
        n_ctx: 8192,
        n_batch: 512,
        n_seq_max: 1,
        n_threads: 2,
        cache_type: KvType::F16,
        swa_full,
    };
    let ring = Context::new(&model, params(false)).unwrap();
    let est = MemoryEstimate::new(hp, 0, &params(false));
    let full_est = MemoryEstimate::new(hp, 0, &params(true));
    let row = (2 * hp.kv_dim() * 2) as u64; // keys + values, f16
                                            // 3 global layers x 8192 cells + 15 windowed x (512 + 512) cells.
    assert_eq!(est.kv_cache_bytes, (3 * 8192 + 15 * 1024) * row);
    assert_eq!(full_est.kv_cache_bytes, 18 * 8192 * row);
    assert_eq!(ring.kv_bytes(), Some(est.kv_cache_bytes));
    println!(
        "gemma3 270M, n_ctx 8192, f16 KV: ring {} bytes (estimate {}), full tables {} bytes",
        ring.kv_bytes().unwrap(),
        est.kv_cache_bytes,
        full_est.kv_cache_bytes
    );
}

/// Greedy tokens of `prompt` in a plain context (ties to the lower id, as the sampler).
fn alone(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut ctx = context(model, 1, false);
    ctx.eval(prompt, 0).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let l = ctx.last_logits().unwrap();
        let best = (0..l.len())
            .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        out.push(best);
        ctx.eval(&[best], 0).unwrap();
    }
    out
}

/// The tokens and cached-prompt count of one scheduled request.
fn scheduled(sched: &Scheduler, prompt: &[u32], n: usize) -> (Vec<u32>, usize) {
    let rx = sched.submit_channel(Request {
        ignore_eos: true,
        ..Request::greedy(prompt.to_vec(), n)
    });
    let mut ids = Vec::new();
    for ev in rx.unwrap() {
        match ev {
            Event::Token { id, .. } => ids.push(id),
            Event::Done { usage, .. } => return (ids, usage.cached_tokens),
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
    panic!("no Done")
}

#[test]
fn the_scheduler_reuses_a_prefix_only_while_the_ring_holds_its_window() {
    let model = tiny_gemma();
    let sched = Scheduler::new(
        &model,
        SchedulerConfig {
            n_ctx: 4096,
            n_seq: 2,
            n_batch: 16,
            n_threads: 2,
            isolated: true,
            ..SchedulerConfig::default()
        },
    )
    .unwrap();
    let first = prompt(300);
    let (ids, cached) = scheduled(&sched, &first, 30);
    assert_eq!(
        (ids.as_slice(), cached),
        (alone(&model, &first, 30).as_slice(), 0)
    );
    // The idle sequence holds 329 positions; its ring only the last 16. A prompt that shares
    // 250 of them would need the window before 250: it is computed again.
    let mut branch = first[..250].to_vec();
    branch.extend(prompt(20).iter().map(|t| t + 1));
    let (ids, cached) = scheduled(&sched, &branch, 20);
    assert_eq!(cached, 0, "the window before position 250 left the ring");
    assert_eq!(ids, alone(&model, &branch, 20));
    // A prompt that continues the whole of what a sequence holds reuses it.
    let mut longer = branch.clone();
    longer.extend_from_slice(&ids[..19]);
    longer.extend_from_slice(&[40, 41, 42]);
    let (more, cached) = scheduled(&sched, &longer, 10);
    assert!(cached >= branch.len(), "{cached}");
    assert_eq!(more, alone(&model, &longer, 10));
}

/// Random edits and steps on two sequences, with the ring and with full tables: whenever the
/// ring context accepts a step, its logits match the full tables' (cell layouts may differ
/// after edits, so to rounding); it refuses exactly when the ring lacks the window.
#[test]
fn random_edits_keep_the_ring_consistent_with_full_tables() {
    let model = tiny_gemma();
    let (mut ring, mut full) = (context(&model, 2, false), context(&model, 2, true));
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut refused, mut compared) = (0, 0);
    for _ in 0..300 {
        let seq = next(2) as u32;
        match next(10) {
            0 => {
                // Remove a tail of up to 40 positions from both.
                let end = full.kv_seq_pos_max(seq).map_or(0, |p| p + 1);
                let from = (end - next(40) as i32).max(0);
                ring.kv_seq_remove(Some(seq), from, -1).unwrap();
                full.kv_seq_remove(Some(seq), from, -1).unwrap();
            }
            1 => {
                ring.kv_seq_copy(seq, 1 - seq, 0, -1).unwrap();
                full.kv_seq_copy(seq, 1 - seq, 0, -1).unwrap();
            }
            2 => {
                ring.kv_seq_keep(seq).unwrap();
                full.kv_seq_keep(seq).unwrap();
            }
            _ => {
                let n = 1 + next(20) as usize;
                let tokens: Vec<u32> = (0..n).map(|_| 3 + next(250) as u32).collect();
                let start = full.kv_seq_pos_max(seq).map_or(0, |p| p + 1);
                let can = ring.kv_seq_can_continue_at(seq, start);
                match ring.eval(&tokens, seq) {
                    Ok(()) => {
                        assert!(can, "accepted a step the window check refused");
                        full.eval(&tokens, seq).unwrap();
                        let d = max_diff(ring.last_logits().unwrap(), full.last_logits().unwrap());
                        assert!(d < 1e-3, "logits differ by {d}");
                        compared += 1;
                    }
                    Err(e) => {
                        assert!(!can, "refused a step the window check allowed: {e}");
                        // Evaluate the sequence again from scratch, on both.
                        ring.kv_seq_remove(Some(seq), 0, -1).unwrap();
                        full.kv_seq_remove(Some(seq), 0, -1).unwrap();
                        refused += 1;
                    }
                }
            }
        }
        assert!(ring.cells().ring().unwrap().used() <= 2 * (WINDOW as usize + 20));
    }
    assert!(
        refused > 0 && compared > 100,
        "refused {refused}, compared {compared}"
    );
}
