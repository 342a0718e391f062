//! Agreement with llama.cpp on SmolLM2-135M-Instruct Q4_1, judged by teacher forcing.
//!
//! Each fixture (tests/fixtures/smollm2/*.json, made by tools/reference/make-fixtures.sh) holds
//! llama.cpp's tokenization of a prompt, its own 64-token greedy continuation, and its top-10
//! logits at every position of prompt + continuation. We feed the same tokens and require, at
//! every position: our top-1 equals llama.cpp's wherever llama.cpp's top-1/top-2 margin exceeds
//! `NEAR_TIE`, and the logits of llama.cpp's top-5 tokens differ from ours by at most
//! `TOLERANCE` (and by `MEAN_TOLERANCE` on average over a prompt). Why these numbers: see
//! tests/fixtures/README.md — llama.cpp's own logits move by that much between its own settings
//! (flash attention on/off, f16/f32 KV cache, one-token vs batched decode).

mod common;

use rocmforge::api::{quantize_model, FileType, QuantizeParams};
use rocmforge::kv_cache::KvType;
use rocmforge::{Batch, Context, ContextParams, Model, ModelParams};
use serde_json::Value;

/// Largest |Δlogit| allowed over llama.cpp's top-5 at any position, the largest mean |Δlogit|
/// over a prompt, and the top-1/top-2 margin below which a top-1 disagreement counts as a
/// near-tie. tests/fixtures/README.md measures llama.cpp against itself on these very prompts:
/// its default settings (flash attention on, f16 KV cache) move its top-5 logits by up to 1.15
/// (mean 0.25, worst prompt 0.34) from the f32/no-FA settings the fixtures use, and no top-1
/// of its own flipped where the margin exceeded 0.35. Our arithmetic is a third order of the
/// same sums (src/backend/numerics.rs, shared with the GPU): measured max 0.58-1.30, means
/// 0.14-0.20, flips only at margins <= 0.42. A wrong kernel moves logits by several units.
const TOLERANCE: f32 = 1.5;
const MEAN_TOLERANCE: f64 = 0.35;
const NEAR_TIE: f32 = 0.5;

struct Fixture {
    name: String,
    prompt: String,
    prompt_tokens: Vec<u32>,
    generated: Vec<u32>,
    /// Per position: llama.cpp's top-10 (id, logit), best first.
    top: Vec<Vec<(u32, f32)>>,
}

/// The fixtures of one model: every JSON file in tests/fixtures/`dir`, at least `min` of them.
fn load_fixtures_from(dir: &str, min: usize) -> Vec<Fixture> {
    let dir = common::fixture(dir);
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
    paths
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            let ids = |k: &str| -> Vec<u32> {
                v[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            };
            let top = v["positions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pos| {
                    pos["top"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| (e[0].as_u64().unwrap() as u32, e[1].as_f64().unwrap() as f32))
                        .collect()
                })
                .collect();
            Fixture {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                prompt: v["prompt"].as_str().unwrap().to_string(),
                prompt_tokens: ids("prompt_tokens"),
                generated: ids("generated"),
                top,
            }
        })
        .collect()
}

fn load_fixtures() -> Vec<Fixture> {
    load_fixtures_from("smollm2", 6)
}

/// SmolLM2 requantized to Q4_K_M (Q4_K and Q6_K in the FFN down projections, Q5_0 and Q8_0
/// where rows of 576 are not whole 256-element super-blocks): the fixtures hold llama.cpp's
/// logits on `llama-quantize --allow-requantize SmolLM2-135M-Instruct.Q4_1.gguf OUT Q4_K_M`
/// (tests/fixtures/README.md), and our quantizer writes that very file (its sha256 is checked
/// against llama-quantize's by tests/quantize.rs). `ROCMFORGE_SMOLLM2_Q4KM` names a copy to
/// use; else it is made once under the target directory (written to a temporary name and
/// renamed, so test processes racing to make it each see a whole file).
fn load_q4_k_m_model() -> Option<Model> {
    let path = match std::env::var_os("ROCMFORGE_SMOLLM2_Q4KM") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let source = common::model_path(common::SMOLLM2)?;
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("SmolLM2-135M-Instruct.Q4_K_M.gguf");
            if !path.exists() {
                let params = QuantizeParams {
                    allow_requantize: true,
                    ..QuantizeParams::new(FileType::MostlyQ4KM)
                };
                quantize_model(&source, &path, params).expect("quantize SmolLM2 to Q4_K_M");
            }
            path
        }
    };
    Some(Model::load(path, ModelParams::default()).expect("model loads"))
}

fn load_model() -> Option<Model> {
    let path = common::model_path(common::SMOLLM2)?;
    Some(Model::load(path, ModelParams::default()).expect("model loads"))
}

/// A context with `cache_type`: teacher forcing uses f32, the setting the fixtures were made
/// with (`--kv f32`), so that it measures the arithmetic alone (with the default f16 cache the
/// Q4_K_M fixtures differ by up to 1.55 at one position, the Q4_1 ones stay within the
/// tolerance); free running uses the default f16.
fn context(model: &Model, cache_type: KvType) -> Context {
    let params = ContextParams {
        n_ctx: 2048,
        n_batch: 1024,
        n_seq_max: 1,
        n_threads: 2,
        cache_type,
    };
    Context::new(model, params).unwrap()
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn prompts_tokenize_like_llama_cpp() {
    let Some(model) = load_model() else { return };
    for f in load_fixtures() {
        let ours = model.tokenizer().encode(&f.prompt, true, true);
        assert_eq!(
            ours, f.prompt_tokens,
            "tokenization of fixture '{}'",
            f.name
        );
    }
}

#[test]
fn teacher_forced_logits_match_llama_cpp() {
    let Some(model) = load_model() else { return };
    check_teacher_forced(&model, &load_fixtures());
}

#[test]
fn q4_k_m_teacher_forced_logits_match_llama_cpp() {
    let Some(model) = load_q4_k_m_model() else {
        return;
    };
    check_teacher_forced(&model, &load_fixtures_from("smollm2_q4_k_m", 3));
}

fn check_teacher_forced(model: &Model, fixtures: &[Fixture]) {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for f in fixtures {
        let mut ctx = context(model, KvType::F32);
        let tokens: Vec<u32> = f
            .prompt_tokens
            .iter()
            .chain(&f.generated)
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
            if margin > NEAR_TIE {
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
                if delta > TOLERANCE {
                    failures.push(format!(
                        "{} pos {i}: logit of token {id} is {} vs llama.cpp {logit} (Δ {delta:.3})",
                        f.name, logits[id as usize]
                    ));
                }
            }
        }
        let mean = sum_delta / n_delta as f64;
        if mean > MEAN_TOLERANCE {
            failures.push(format!(
                "{}: mean |Δlogit| over top-5 {mean:.3} > {MEAN_TOLERANCE}",
                f.name
            ));
        }
        report.push(format!(
            "{:>14}: {} positions, top-1 compared at {compared} (near-ties {near_ties}), max |Δlogit| over top-5 {max_delta:.4} (mean {:.4}), \
             top-1 flips {flips} (largest llama.cpp margin at a flip {max_margin_at_flip:.3})",
            f.name,
            f.top.len(),
            sum_delta / n_delta as f64
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

#[test]
fn free_running_greedy_matches_llama_cpp_up_to_first_near_tie() {
    let Some(model) = load_model() else { return };
    check_free_running(&model, &load_fixtures());
}

#[test]
fn q4_k_m_free_running_greedy_matches_llama_cpp_up_to_first_near_tie() {
    let Some(model) = load_q4_k_m_model() else {
        return;
    };
    check_free_running(&model, &load_fixtures_from("smollm2_q4_k_m", 3));
}

fn check_free_running(model: &Model, fixtures: &[Fixture]) {
    for f in fixtures {
        let mut ctx = context(model, KvType::default());
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
                    margin <= NEAR_TIE,
                    "fixture '{}' step {step}: we chose {ours}, llama.cpp {expected} with margin \
                     {margin:.3} > {NEAR_TIE} (after {matched} equal tokens)",
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
