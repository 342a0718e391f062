//! Agreement with llama.cpp on the `qwen2`, `qwen3` and `phi3` families and windowed Mistral files, judged by teacher forcing on
//! small synthetic models: no real Qwen weights are needed (or downloaded).
//!
//! Each model is a [`TinySpec`] (tests/common/tiny.rs): deterministic random weights, so the
//! test rebuilds in memory the very file llama.cpp read. The `qwen2` ones carry random Q/K/V
//! biases; the `qwen3` ones random QK-norm weights and a head size (32) that is not
//! n_embd / n_head (16), so Q is wider than the residual stream. F32 and quantized (Q8_0,
//! Q4_0) weights, a tied output head in one of them. tools/reference/make-fixtures.sh writes
//! the files through the ignored test below and runs llama.cpp on them
//! (tests/fixtures/families/<name>.json, the schema of tests/fixtures/README.md).
//!
//! Why TinySpec and not `rocmforge_synth`: the test needs the file again and TinySpec makes it
//! in memory (no model file is committed or carried, only ~95 KB of logits); its weights
//! (about ±0.3, norms 1 ± 0.1) give logits several units apart, where synth's 0.02-noise
//! real-shape models give nearly flat ones whose near-ties would hide a wrong feature; and
//! it already had the options a family differs in (biases, NEOX row order).
//!
//! The checks are those of tests/llamacpp_parity.rs (SmolLM2), the tolerances tighter (see
//! [`TOLERANCE`]); the measured agreement is printed. A real qwen2 file's header (no usable
//! weights) checks the description against what llama.cpp reads from it.

mod common;

use common::teacher::{self, argmax};
use common::tiny::{build, build_bytes, TinySpec};
use rocmforge::kv_cache::KvType;
use rocmforge::model::Feature;
use rocmforge::quant::GgmlType;
use rocmforge::{Batch, Context, ContextParams, Model};

/// Largest |Δlogit| over llama.cpp's top-5 at any position, largest mean over a model, and
/// the top-1/top-2 margin under which a top-1 difference is a near-tie. SmolLM2's parity test
/// allows 1.5 / 0.35 / 0.5: llama.cpp's own spread between its settings on a real 30-layer
/// model. Here llama.cpp ran with the settings we compute with (f32 K/V, no flash attention)
/// on 2-layer models that do not amplify rounding, and we measured 1e-4 (the fixtures round to
/// 4 decimals), so the bound is much tighter: room for an activation code rounded the other
/// way in the quantized models, none for a feature computed differently (those move the
/// logits by whole units: the test below).
const TOLERANCE: f32 = 0.02;
const MEAN_TOLERANCE: f64 = 0.005;

/// The tolerances (max, mean |Δlogit| over top-5) of the GPU-width files
/// (`common::tiny::gpu_family_specs`): 3 layers of 256 with quantized matrices, where a sum
/// taken in another order flips an activation's int8 rounding now and then and the flip
/// travels (the 2-layer files above have sums too short to reorder). Each bound is llama.cpp's
/// own spread on that file between its settings: the smaller of flash attention on and an f16
/// cache against the reference run (`dump_logits vary FILE prompt.txt OUT --n-gen 24 --threads 1
/// --fa off --kv f32 --n-ctx 256`, b11312). Measured against them: ours 0.150 / 0.029, 0.262 /
/// 0.036, 1.590 / 0.106, 0.251 / 0.096, 0.307 / 0.064, 0.345 / 0.096, 0.059 / 0.028.
const GPU_WIDTH_TOLERANCE: [(&str, f32, f64); 7] = [
    ("gpu_llama_biases_q8_0", 1.223, 0.320),
    ("gpu_qwen2_q8_0", 0.909, 0.315),
    ("gpu_qwen2_q4_0_tied", 2.907, 0.653),
    ("gpu_qwen3_q4_0", 0.345, 0.156),
    ("gpu_phi3_long_q8_0", 1.414, 0.364),
    ("gpu_phi3_short_q8_0", 1.269, 0.368),
    ("gpu_gemma3_q8_0", 0.060, 0.031),
];

/// (max, mean) |Δlogit| allowed for fixture `name`.
fn tolerance(name: &str) -> (f32, f64) {
    (GPU_WIDTH_TOLERANCE.iter())
        .find(|(n, _, _)| *n == name)
        .map_or((TOLERANCE, MEAN_TOLERANCE), |&(_, max, mean)| (max, mean))
}
const NEAR_TIE: f32 = 0.5;

/// The models llama.cpp was run on: (fixture name, spec).
fn models() -> Vec<(&'static str, TinySpec)> {
    let qwen2 = |weight_type, omit_tensor| TinySpec {
        arch: "qwen2",
        weight_type,
        omit_tensor,
        qkv_bias_scale: Some(0.5),
        ..Default::default()
    };
    let qwen3 = |weight_type| TinySpec {
        arch: "qwen3",
        head_dim: Some(32),
        weight_type,
        qk_norm_scale: Some(0.5),
        ..Default::default()
    };
    vec![
        ("qwen2_f32", qwen2(GgmlType::F32, None)),
        // Tied: the output head is the (quantized) embedding.
        (
            "qwen2_q8_0_tied",
            qwen2(GgmlType::Q8_0, Some("output.weight")),
        ),
        ("qwen3_f32", qwen3(GgmlType::F32)),
        ("qwen3_q4_0", qwen3(GgmlType::Q4_0)),
        // The same phi3 file in contexts longer ("_long", 512 cells: rope_factors_long) and
        // not longer ("_short", 256: rope_factors_short) than its original length of 256.
        ("phi3_f32_long", phi3(GgmlType::F32)),
        ("phi3_f32_short", phi3(GgmlType::F32)),
        ("phi3_q8_0_long", phi3(GgmlType::Q8_0)),
        // Mistral v0.1's files are `llama` ones declaring a sliding window (here 4 positions,
        // far shorter than the prompt), which llama.cpp does not apply to this architecture.
        (
            "mistral_f32_windowed",
            TinySpec {
                sliding_window: Some(4),
                ..Default::default()
            },
        ),
    ]
    .into_iter()
    // The files tests/gpu_parity.rs runs on the GPU (bit-identical to the CPU on decode): so
    // the GPU's agreement with llama.cpp is shown on the very files llama.cpp read.
    .chain(common::tiny::gpu_family_specs())
    .collect()
}

/// A phi3 file: fused Q|K|V and gate|up, short and long RoPE factors, an attention factor.
fn phi3(weight_type: GgmlType) -> TinySpec {
    TinySpec {
        arch: "phi3",
        weight_type,
        fused: true,
        rope_factors_orig_ctx: Some(256),
        rope_attn_factor: Some(1.19),
        ..Default::default()
    }
}

/// The context length llama.cpp ran model `name` with (`--n-ctx`, make-fixtures.sh).
fn n_ctx(name: &str) -> usize {
    match name {
        "phi3_f32_short" => 256,
        n if n.starts_with("phi3") => 512,
        _ => 256,
    }
}

/// Writes every model of [`models`] to `$ROCMFORGE_TINY_OUT/<name>.gguf`, for llama.cpp
/// (tools/reference/make-fixtures.sh).
#[test]
#[ignore = "writes the reference models; run by tools/reference/make-fixtures.sh"]
fn write_reference_models() {
    let dir = std::env::var_os("ROCMFORGE_TINY_OUT").expect("ROCMFORGE_TINY_OUT");
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, spec) in models() {
        let path = dir.join(format!("{name}.gguf"));
        std::fs::write(&path, build_bytes(&spec)).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

#[test]
fn the_reference_models_are_what_they_claim() {
    // (The GPU-width files are described by tests/common/tiny.rs and checked by loading.)
    for (name, spec) in models().into_iter().filter(|(n, _)| !n.starts_with("gpu_")) {
        let model = Model::from_gguf(build(&spec)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let hp = model.hparams();
        assert_eq!(hp.arch.name(), spec.arch, "{name}");
        let expected: &[Feature] = match spec.arch {
            "qwen2" => &[Feature::NeoxRope, Feature::QkvBias],
            "phi3" => &[
                Feature::NeoxRope,
                Feature::ContextRopeFactors,
                Feature::RopeAttnFactor,
            ],
            "llama" => &[],
            _ => &[Feature::NeoxRope, Feature::QkNorm],
        };
        assert_eq!(hp.features(), expected, "{name}");
        if spec.arch == "qwen3" {
            assert_eq!(
                (hp.head_dim, hp.q_dim(), hp.n_embd),
                (32, 128, 64),
                "{name}"
            );
        }
    }
}

/// A fixture of tests/fixtures/families, with the prompt and continuation as one token list.
struct Fixture {
    prompt: String,
    n_prompt: usize,
    /// Prompt then llama.cpp's greedy continuation.
    tokens: Vec<u32>,
    /// Per position: llama.cpp's top-10 (id, logit), best first.
    top: Vec<Vec<(u32, f32)>>,
}

fn load_fixture(name: &str) -> Fixture {
    let f = teacher::load_fixture(&common::fixture(&format!("families/{name}.json")));
    let n_prompt = f.prompt_tokens.len();
    Fixture {
        prompt: f.prompt,
        n_prompt,
        tokens: [f.prompt_tokens, f.generated].concat(),
        top: f.top,
    }
}

/// An f32 KV cache, as the fixtures were made (`--kv f32`): these tiny models are compared
/// at the level of the arithmetic (hundredths of a logit), where f16 rounding of K/V shows.
fn context_params(n_ctx: usize) -> ContextParams {
    ContextParams {
        n_ctx,
        n_batch: n_ctx,
        n_seq_max: 1,
        n_threads: 2,
        cache_type: KvType::F32,
        swa_full: false,
    }
}

/// How our logits for `spec` compare with llama.cpp's fixture `name`.
struct Agreement {
    positions: usize,
    /// Positions whose top-1 equals llama.cpp's, and those where llama.cpp's top-1/top-2
    /// margin exceeds [`NEAR_TIE`] (where a difference is a failure).
    top1_equal: usize,
    compared: usize,
    /// max and mean over positions of |Δlogit| over llama.cpp's top-5.
    max_delta: f32,
    mean_delta: f64,
    failures: Vec<String>,
}

fn agreement(name: &str, spec: &TinySpec) -> Agreement {
    let f = load_fixture(name);
    assert_eq!(f.tokens.len(), f.top.len(), "fixture '{name}' positions");
    let model = Model::from_gguf(build(spec)).unwrap();
    let mut ctx = Context::new(&model, context_params(n_ctx(name))).unwrap();
    // The byte vocabulary tokenizes the prompt as llama.cpp did (with BOS).
    assert_eq!(
        model.tokenizer().encode(&f.prompt, true, true),
        f.tokens[..f.n_prompt],
        "{name}: prompt tokens"
    );
    let mut batch = Batch::new();
    for (i, &t) in f.tokens.iter().enumerate() {
        batch.push(t, i as i32, 0, true);
    }
    ctx.decode(&batch).unwrap();
    let mut a = Agreement {
        positions: f.top.len(),
        top1_equal: 0,
        compared: 0,
        max_delta: 0.0,
        mean_delta: 0.0,
        failures: Vec::new(),
    };
    let mut sum_delta = 0f64;
    for (i, top) in f.top.iter().enumerate() {
        let logits = ctx.logits(i).unwrap();
        let ours = argmax(logits);
        let margin = top[0].1 - top[1].1;
        a.top1_equal += usize::from(ours == top[0].0);
        if margin > NEAR_TIE {
            a.compared += 1;
            if ours != top[0].0 {
                a.failures.push(format!(
                    "{name} pos {i}: top-1 {ours} vs llama.cpp {} (margin {margin:.3})",
                    top[0].0
                ));
            }
        }
        let mut pos_delta = 0f32;
        for &(id, logit) in &top[..5] {
            let delta = (logits[id as usize] - logit).abs();
            pos_delta = pos_delta.max(delta);
            if delta > tolerance(name).0 {
                a.failures.push(format!(
                    "{name} pos {i}: logit of token {id} is {} vs llama.cpp {logit} (Δ {delta:.4})",
                    logits[id as usize]
                ));
            }
        }
        a.max_delta = a.max_delta.max(pos_delta);
        sum_delta += pos_delta as f64;
    }
    a.mean_delta = sum_delta / a.positions as f64;
    let mean_tolerance = tolerance(name).1;
    if a.mean_delta > mean_tolerance {
        a.failures.push(format!(
            "{name}: mean |Δlogit| over top-5 {:.4} > {mean_tolerance}",
            a.mean_delta
        ));
    }
    a
}

#[test]
fn teacher_forced_logits_match_llama_cpp() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, spec) in models() {
        let a = agreement(name, &spec);
        report.push(format!(
            "{name:>16}: {} positions, top-1 equal at {} (margin > {NEAR_TIE} at {}), \
             max |Δlogit| over top-5 {:.4}, mean {:.5}",
            a.positions, a.top1_equal, a.compared, a.max_delta, a.mean_delta
        ));
        failures.extend(a.failures);
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Generating token by token against the KV cache (the decode path, not the one batch above)
/// chooses llama.cpp's greedy continuation, up to a near-tie of llama.cpp's.
#[test]
fn free_running_greedy_matches_llama_cpp() {
    for (name, spec) in models() {
        let f = load_fixture(name);
        let model = Model::from_gguf(build(&spec)).unwrap();
        let mut ctx = Context::new(&model, context_params(n_ctx(name))).unwrap();
        ctx.eval(&f.tokens[..f.n_prompt], 0).unwrap();
        let mut matched = 0;
        for (step, &expected) in f.tokens[f.n_prompt..].iter().enumerate() {
            let ours = argmax(ctx.last_logits().unwrap());
            if ours != expected {
                let top = &f.top[f.n_prompt - 1 + step];
                let margin = top[0].1 - top[1].1;
                assert!(
                    margin <= NEAR_TIE,
                    "{name} step {step}: we chose {ours}, llama.cpp {expected} (margin {margin:.3})"
                );
                break;
            }
            matched += 1;
            ctx.eval(&[ours], 0).unwrap();
        }
        eprintln!(
            "{name:>16}: {matched}/{} greedy tokens identical",
            f.tokens.len() - f.n_prompt
        );
    }
}

/// Not vacuous: each thing the families add, left out or done the llama way, moves the logits
/// far outside the tolerance.
#[test]
fn a_model_missing_what_the_family_adds_is_told_apart() {
    let all = models();
    let spec = |name: &str| all.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let wrong = [
        // Normal (llama) RoPE on the same weights and biases.
        (
            "qwen2_f32",
            TinySpec {
                arch: "llama",
                ..spec("qwen2_f32")
            },
        ),
        // No Q/K/V biases (the other weights are the same: biases are drawn last).
        (
            "qwen2_f32",
            TinySpec {
                qkv_bias_scale: None,
                ..spec("qwen2_f32")
            },
        ),
        // QK-norm weights of 1 instead of the file's.
        (
            "qwen3_f32",
            TinySpec {
                qk_norm_scale: Some(0.0),
                ..spec("qwen3_f32")
            },
        ),
        // The short factors where llama.cpp took the long ones (an original length of 1024).
        (
            "phi3_f32_long",
            TinySpec {
                rope_factors_orig_ctx: Some(1024),
                ..spec("phi3_f32_long")
            },
        ),
        // No attention factor.
        (
            "phi3_f32_short",
            TinySpec {
                rope_attn_factor: None,
                ..spec("phi3_f32_short")
            },
        ),
    ];
    for (name, wrong_spec) in wrong {
        let a = agreement(name, &wrong_spec);
        let what = format!(
            "{name} against arch {}, biases {:?}, QK-norm {:?}, RoPE factors' length {:?}, \
             attention factor {:?}",
            wrong_spec.arch,
            wrong_spec.qkv_bias_scale,
            wrong_spec.qk_norm_scale,
            wrong_spec.rope_factors_orig_ctx,
            wrong_spec.rope_attn_factor
        );
        eprintln!("{what}: max |Δlogit| {:.3}", a.max_delta);
        assert!(
            a.max_delta > 20.0 * TOLERANCE,
            "{what}: max |Δlogit| only {}",
            a.max_delta
        );
    }
}

/// A real qwen2 file (the header of DeepSeek-R1-Distill-Qwen-7B Q4_K_M, scripts/fetch-models.sh)
/// is described with the values llama.cpp's loader prints for it: 28 layers of 3584, 28 query
/// and 4 KV heads of 128, n_ff 18944, RoPE base 10000 (NEOX), epsilon 1e-6, biased Q/K/V.
#[test]
fn a_real_qwen2_header_is_described_as_llama_cpp_reads_it() {
    let Some(path) = common::model_path("DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.header.gguf") else {
        return;
    };
    let gguf = rocmforge::gguf::GgufFile::open(&path).unwrap();
    let hp = rocmforge::model::Hparams::from_gguf(&gguf).unwrap();
    assert_eq!(hp.arch.name(), "qwen2");
    assert_eq!(
        (hp.n_layer, hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim),
        (28, 3584, 28, 4, 128)
    );
    assert_eq!(
        (hp.n_ff, hp.n_vocab, hp.n_ctx_train),
        (18944, 152064, 131072)
    );
    assert_eq!(hp.ropes[0].base, 10000.0);
    assert_eq!(hp.ropes[0].scaling, rocmforge::model::RopeScaling::None);
    assert_eq!(hp.rms_eps, 1e-6);
    assert!(hp
        .layers
        .iter()
        .all(|l| l.qkv_bias && !l.out_bias && !l.qk_norm));
    assert_eq!(hp.features(), [Feature::NeoxRope, Feature::QkvBias]);
    // 28 x (9 matrices and norms + 3 biases) + embedding, output norm and (untied) output:
    // every tensor of the file is one the description names.
    assert_eq!(gguf.tensors().len(), 28 * 12 + 3);
    assert!(gguf.tensor("output.weight").is_some());
}

/// The same file holds llama.cpp's Q4_K_M mix as its loader lists it ("f32: 141 tensors, q4_K:
/// 169, q6_K: 29"), and the memory estimate counts every tensor at its own type's size: the
/// weights come to exactly the file's data section (the last tensor ends at the end of the file).
#[test]
fn a_real_q4_k_m_mix_is_estimated_tensor_by_tensor() {
    let Some(path) = common::model_path("DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.header.gguf") else {
        return;
    };
    let gguf = rocmforge::gguf::GgufFile::open(&path).unwrap();
    let count = |ty: GgmlType| gguf.tensors().iter().filter(|t| t.ty == ty).count();
    assert_eq!(
        (
            count(GgmlType::F32),
            count(GgmlType::Q4K),
            count(GgmlType::Q6K)
        ),
        (141, 169, 29)
    );
    // The mix's Q6_K rows: attn_v and ffn_down of some layers, and the output head.
    let q6k: Vec<&str> = (gguf.tensors().iter())
        .filter(|t| t.ty == GgmlType::Q6K)
        .map(|t| t.name.as_str())
        .collect();
    assert!(q6k.contains(&"output.weight"), "{q6k:?}");
    assert!(q6k.iter().all(|n| *n == "output.weight"
        || n.ends_with("attn_v.weight")
        || n.ends_with("ffn_down.weight")));

    let estimate =
        rocmforge::api::MemoryEstimate::for_file(&path, &ContextParams::default()).unwrap();
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    assert_eq!(estimate.weights_bytes, file_bytes - gguf.data_offset());
    assert_eq!(estimate.weights_bytes, 4_677_120_000);
}
