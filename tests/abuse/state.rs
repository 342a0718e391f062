//! Corrupted, truncated and foreign state blobs and state files, tried in a child process: each
//! is refused and the context is left unchanged.

use crate::common::capi::{last_error, ok, Ctx, CtxOpts, Model, Rng};
use crate::common::child::{self, Limits};
use crate::{
    child_after, expect_report, report_status, run_child, smollm2, status_of, timed, write_tiny,
    Scratch,
};
use rocmforge::ffi::status::rocmforge_status::{self, *};
use std::path::Path;
use std::time::{Duration, Instant};

const INVALID: i32 = ROCMFORGE_ERR_INVALID_ARGUMENT as i32;

/// Flips, truncations and foreign blobs against a SmolLM2 context; arg: a tiny model file.
/// Reports one label per kind: INVALID_ARGUMENT when every attempt answered it and the context
/// is unchanged, else the first other status with the attempt in the message (-2: changed).
pub(crate) fn child_state(arg: &str) {
    let mut rng = Rng::from_env("state corruption");
    let model = Model::load(&smollm2().unwrap(), true).unwrap();
    let opts = CtxOpts {
        n_ctx: 64,
        n_seq_max: 2,
        ..CtxOpts::default()
    };
    let ctx = Ctx::new(&model, opts).unwrap();
    ok(ctx.eval(&model.tokenize("The state of things"), 0));
    let whole = ctx.state(-1).unwrap();
    let seq = ctx.state(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);

    // Each attempt must be refused with INVALID_ARGUMENT and leave the context as it was.
    let run = |label: &str, attempts: &mut dyn Iterator<Item = (String, Vec<u8>, i32)>| {
        let start = Instant::now();
        let mut first_bad: Option<(rocmforge_status, String)> = None;
        let mut n = 0;
        for (what, blob, into) in attempts {
            if Instant::now() > deadline {
                break;
            }
            n += 1;
            let s = ctx.state_load(into, &blob);
            if s != ROCMFORGE_ERR_INVALID_ARGUMENT && first_bad.is_none() {
                first_bad = Some((s, format!("{what}: {}", last_error())));
            }
            if s == ROCMFORGE_OK {
                // Accepted: put the original back for the next attempts.
                ok(ctx.state_load(-1, &whole));
            }
        }
        let unchanged = ctx.state(-1).unwrap() == whole;
        match first_bad {
            None if unchanged => {
                child::report(label, INVALID, start.elapsed(), &format!("{n} tried"))
            }
            None => child::report(label, -2, start.elapsed(), "context changed"),
            Some((s, m)) => child::report(label, s as i32, start.elapsed(), &m),
        }
    };

    let flip = |blob: &[u8], rng: &mut Rng| {
        let mut b = blob.to_vec();
        let bit = rng.below(b.len() as u64 * 8);
        b[(bit / 8) as usize] ^= 1 << (bit % 8);
        (format!("bit {bit} of {} bytes", b.len()), b)
    };
    let mut r1 = Rng(rng.next() | 1);
    run(
        "flip_whole",
        &mut (0..300).map(|_| {
            let (w, b) = flip(&whole, &mut r1);
            (w, b, -1)
        }),
    );
    let mut r2 = Rng(rng.next() | 1);
    run(
        "flip_seq",
        &mut (0..100).map(|_| {
            let (w, b) = flip(&seq, &mut r2);
            (w, b, 1)
        }),
    );
    let mut r3 = Rng(rng.next() | 1);
    let cuts: Vec<usize> = (0..32)
        .chain([whole.len() - 1, whole.len() - 4, whole.len() / 2])
        .chain((0..60).map(|_| r3.below(whole.len() as u64) as usize))
        .collect();
    run(
        "truncate",
        &mut cuts
            .into_iter()
            .map(|n| (format!("first {n} bytes"), whole[..n].to_vec(), -1)),
    );
    run(
        "appended",
        &mut [1usize, 4, 4096].into_iter().map(|n| {
            let mut b = whole.clone();
            b.extend(std::iter::repeat_n(0xA5, n));
            (format!("{n} bytes appended"), b, -1)
        }),
    );

    // A state of another model, both ways.
    let tiny = Model::load(Path::new(arg), true).unwrap();
    let tctx = Ctx::new(&tiny, opts).unwrap();
    ok(tctx.eval(&[1, 5, 6, 7], 0));
    let foreign = tctx.state(-1).unwrap();
    let foreign_seq = tctx.state(0).unwrap();
    run(
        "foreign",
        &mut [(foreign, -1), (foreign_seq, 0)]
            .into_iter()
            .map(|(b, s)| ("tiny model's state".to_string(), b, s)),
    );
    let (s, t) = timed(|| tctx.state_load(-1, &whole));
    report_status("foreign_into_tiny", s, t);

    // State files with a flipped bit.
    let dir = Scratch::new("state-file");
    let file = dir.path("state.bin");
    let start = Instant::now();
    let mut first_bad = None;
    for i in 0..40 {
        ok(ctx.state_save_file(-1, &file));
        let mut bytes = std::fs::read(&file).unwrap();
        let bit = rng.below(bytes.len() as u64 * 8);
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        std::fs::write(&file, &bytes).unwrap();
        let s = ctx.state_load_file(-1, &file);
        if s != ROCMFORGE_ERR_INVALID_ARGUMENT && first_bad.is_none() {
            first_bad = Some((s, format!("file {i}, bit {bit}: {}", last_error())));
        }
        if s == ROCMFORGE_OK {
            ok(ctx.state_load(-1, &whole));
        }
    }
    match first_bad {
        None => child::report("file_flip", INVALID, start.elapsed(), ""),
        Some((s, m)) => child::report("file_flip", s as i32, start.elapsed(), &m),
    }
    let (s, t) = timed(|| ctx.state_load_file(-1, &dir.path("missing.bin")));
    report_status("file_missing", s, t);

    // Still usable and unchanged: the same next token as before, and a restore of the real
    // blob works.
    let greedy = ctx.greedy();
    ok(ctx.state_load(-1, &whole));
    assert_eq!(ctx.greedy(), greedy);
    let (s, t) = timed(|| ctx.eval(&model.tokenize(" goes on"), 0));
    report_status("eval_after", s, t);
    drop((ctx, model, tctx, tiny));
    child_after();
}

#[test]
fn corrupted_truncated_and_foreign_state_is_refused_and_the_context_is_unchanged() {
    let Some(_) = smollm2() else {
        return;
    };
    let dir = Scratch::new("state");
    let tiny = dir.path("tiny.gguf");
    write_tiny(&tiny);
    let o = run_child("state", tiny.to_str().unwrap(), Limits::two_gib(90));
    o.assert_clean_exit();
    let bad = [ROCMFORGE_ERR_INVALID_ARGUMENT];
    let mut failures = Vec::new();
    let labels = [
        "flip_whole",
        "flip_seq",
        "truncate",
        "appended",
        "foreign",
        "file_flip",
    ];
    for label in labels {
        // Reported INVALID_ARGUMENT only when every attempt answered it and the context was
        // unchanged; else the first other status (-2: the context changed).
        let r = o.report(label);
        eprintln!("{label}: {r:?}");
        if r.status != INVALID {
            failures.push(format!(
                "{label}: expected INVALID_ARGUMENT for every attempt, got {:?} ({}): {}",
                status_of(r.status),
                r.status,
                r.message
            ));
        }
    }
    expect_report(&o, "foreign_into_tiny", &bad, Duration::MAX);
    expect_report(&o, "file_missing", &[ROCMFORGE_ERR_IO], Duration::MAX);
    expect_report(&o, "eval_after", &[ROCMFORGE_OK], Duration::MAX);
    expect_report(&o, "after", &[ROCMFORGE_OK], Duration::MAX);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
