//! Agreement with llama.cpp by teacher forcing, shared by the model parity tests: the fixture
//! format of tools/reference/make-fixtures.sh (llama.cpp's tokenization of a prompt, its greedy
//! continuation, its top-10 logits at every position) and the two checks run on it.

use rocmforge::{Batch, Context};
use serde_json::Value;

pub struct Fixture {
    pub name: String,
    pub prompt: String,
    pub prompt_tokens: Vec<u32>,
    pub generated: Vec<u32>,
    /// Per position: llama.cpp's top-10 (id, logit), best first.
    pub top: Vec<Vec<(u32, f32)>>,
}

/// The bounds a model's parity test derives from llama.cpp's own spread between its settings:
/// the largest |Δlogit| over llama.cpp's top-5 at any position, the largest mean over a prompt,
/// and the top-1/top-2 margin below which a top-1 disagreement is a near-tie.
pub struct Bounds {
    pub max: f32,
    pub mean: f64,
    pub near_tie: f32,
}

/// The fixtures of one model: every JSON file in tests/fixtures/`dir`, at least `min` of them.
pub fn load_fixtures(dir: &str, min: usize) -> Vec<Fixture> {
    let dir = super::fixture(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= min,
        "expected at least {min} fixtures in {}",
        dir.display()
    );
    paths.iter().map(|p| load_fixture(p)).collect()
}

/// One fixture file.
pub fn load_fixture(path: &std::path::Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        (v[k].as_array().unwrap().iter())
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let top = (v["positions"].as_array().unwrap().iter())
        .map(|pos| {
            (pos["top"].as_array().unwrap().iter())
                .map(|e| (e[0].as_u64().unwrap() as u32, e[1].as_f64().unwrap() as f32))
                .collect()
        })
        .collect();
    Fixture {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        prompt: v["prompt"].as_str().unwrap().to_string(),
        prompt_tokens: ids("prompt_tokens"),
        generated: ids("generated"),
        top,
    }
}

/// Index of the largest logit (the first on ties).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Feeds each fixture's prompt and continuation in one batch to a fresh context from `ctx` and
/// requires, at every position: our top-1 equals llama.cpp's wherever its top-1/top-2 margin
/// exceeds `near_tie`, llama.cpp's top-5 logits within `max` of ours, and their mean difference
/// over the fixture within `mean`. Prints one report line per fixture.
pub fn check_teacher_forced(fixtures: &[Fixture], b: &Bounds, mut ctx: impl FnMut() -> Context) {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for f in fixtures {
        let mut ctx = ctx();
        let tokens: Vec<u32> = (f.prompt_tokens.iter().chain(&f.generated))
            .copied()
            .collect();
        assert_eq!(tokens.len(), f.top.len(), "fixture '{}' positions", f.name);
        let mut batch = Batch::new();
        for (i, &t) in tokens.iter().enumerate() {
            batch.push(t, i as i32, 0, true);
        }
        ctx.decode(&batch).unwrap();
        let (mut max_delta, mut near_ties, mut compared) = (0.0f32, 0, 0);
        let (mut sum_delta, mut n_delta) = (0.0f64, 0usize);
        let (mut flips, mut max_margin_at_flip) = (0, 0.0f32);
        for (i, top) in f.top.iter().enumerate() {
            let logits = ctx.logits(i).unwrap();
            let margin = top[0].1 - top[1].1;
            let ours = argmax(logits);
            if ours != top[0].0 {
                flips += 1;
                max_margin_at_flip = max_margin_at_flip.max(margin);
            }
            if margin > b.near_tie {
                compared += 1;
                if ours != top[0].0 {
                    failures.push(format!(
                        "{} pos {i}: top-1 {ours} vs llama.cpp {} (margin {margin:.3})",
                        f.name, top[0].0
                    ));
                }
            } else {
                near_ties += 1;
            }
            for &(id, logit) in &top[..5] {
                let delta = (logits[id as usize] - logit).abs();
                max_delta = max_delta.max(delta);
                sum_delta += delta as f64;
                n_delta += 1;
                if delta > b.max {
                    failures.push(format!(
                        "{} pos {i}: logit of token {id} is {} vs llama.cpp {logit} (Δ {delta:.3})",
                        f.name, logits[id as usize]
                    ));
                }
            }
        }
        let mean = sum_delta / n_delta as f64;
        if mean > b.mean {
            failures.push(format!(
                "{}: mean |Δlogit| over top-5 {mean:.3} > {}",
                f.name, b.mean
            ));
        }
        report.push(format!(
            "{:>14}: {} positions, top-1 compared at {compared} (near-ties {near_ties}), max \
             |Δlogit| over top-5 {max_delta:.4} (mean {mean:.4}), top-1 flips {flips} (largest \
             llama.cpp margin at a flip {max_margin_at_flip:.3})",
            f.name,
            f.top.len(),
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Greedy decoding from each fixture's prompt on a fresh context from `ctx` must give
/// llama.cpp's continuation up to the first step where llama.cpp itself was at a near-tie.
pub fn check_free_running(fixtures: &[Fixture], near_tie: f32, mut ctx: impl FnMut() -> Context) {
    for f in fixtures {
        let mut ctx = ctx();
        ctx.eval(&f.prompt_tokens, 0).unwrap();
        let n_prompt = f.prompt_tokens.len();
        let mut matched = 0;
        for (step, &expected) in f.generated.iter().enumerate() {
            let ours = argmax(ctx.last_logits().unwrap());
            if ours != expected {
                // Texts may part only where llama.cpp itself was at a near-tie.
                let top = &f.top[n_prompt - 1 + step];
                let margin = top[0].1 - top[1].1;
                assert!(
                    margin <= near_tie,
                    "fixture '{}' step {step}: we chose {ours}, llama.cpp {expected} with margin \
                     {margin:.3} > {near_tie} (after {matched} equal tokens)",
                    f.name
                );
                break;
            }
            matched += 1;
            ctx.eval(&[ours], 0).unwrap();
        }
        eprintln!(
            "{:>14}: {matched}/{} greedy tokens identical",
            f.name,
            f.generated.len()
        );
    }
}
