//! The quantizer (`rocmforge_quantize`, `quantize_model`): llama.cpp's per-tensor type choices
//! for every mix (against fixtures recorded from llama-quantize b11312 on the same inputs),
//! files that load and generate in our engine and in llama.cpp, the same bytes on every run,
//! no file left by a cancelled or failed run, and the command line.

mod common;

use common::tiny::{build, build_bytes, TinySpec};
use rocmforge::api::{quantize_model, quantize_plan, FileType, QuantizeParams};
use rocmforge::gguf::{GgufFile, Value};
use rocmforge::quant::GgmlType;
use rocmforge::{Context, ContextParams, Error, Model, ModelParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mixes recorded in the fixtures, in their column order.
const MIXES: &[&str] = &[
    "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q4_0",
    "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16", "F32", "IQ4_NL", "IQ4_XS",
];

/// A model whose rows are whole 256-element super-blocks (so the mixes' own choices show, not
/// the fallbacks), with 16 layers (use_more_bits picks layers 0, 1, 4, 7, 10, 13, 14, 15), four
/// query heads per KV head (Q2_K's attn_v rule) and its own output head.
fn tiny_spec() -> TinySpec {
    TinySpec {
        n_layer: 16,
        n_embd: 256,
        n_head: 4,
        n_head_kv: 1,
        n_ff: 512,
        weight_type: GgmlType::F16,
        ..TinySpec::default()
    }
}

/// A scratch folder of this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rf-quantize-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
    /// The names of the files in the folder, sorted.
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fixture table: `tensor MIX...` header, then one row per tensor in llama.cpp's file order.
/// Returns, per mix, the (tensor, type name) list.
fn load_types_fixture(file: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(common::fixture(&format!("quantize/{file}"))).unwrap();
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().skip(1).collect();
    assert_eq!(header, MIXES, "{file}: columns");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in lines {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), MIXES.len() + 1, "{file}: {line}");
        for (mix, ty) in MIXES.iter().zip(&cols[1..]) {
            let entry = out.entry(mix.to_string()).or_default();
            entry.push((cols[0].to_string(), ty.to_string()));
        }
    }
    out
}

/// Our plan for every mix against llama-quantize's recorded choices, tensor by tensor and in
/// the same order.
fn check_plans(file: &GgufFile, fixture: &str) {
    let want = load_types_fixture(fixture);
    let mut wrong = Vec::new();
    for mix in MIXES {
        let ours: Vec<(String, String)> = quantize_plan(file, FileType::parse(mix).unwrap(), false)
            .into_iter()
            .map(|(n, t)| (n, t.name().to_string()))
            .collect();
        assert_eq!(ours.len(), want[*mix].len(), "{mix}: tensor count");
        for (o, w) in ours.iter().zip(&want[*mix]) {
            if o != w {
                wrong.push(format!(
                    "{mix}: ours {} {}, llama.cpp {} {}",
                    o.0, o.1, w.0, w.1
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} differences:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_mix_chooses_llama_quantizes_types_on_a_model_of_whole_super_blocks() {
    check_plans(&build(&tiny_spec()), "tiny_types.txt");
}

#[test]
fn every_mix_chooses_llama_quantizes_types_on_smollm2() {
    let Some(path) = common::model_path(common::SMOLLM2) else {
        return;
    };
    check_plans(&GgufFile::open(&path).unwrap(), "smollm2_types.txt");
}

fn params(file_type: &str, threads: usize) -> QuantizeParams<'static> {
    QuantizeParams {
        allow_requantize: true,
        threads,
        ..QuantizeParams::new(FileType::parse(file_type).unwrap())
    }
}

/// Greedy tokens after "The capital of France is".
fn greedy(model: &Model, n: usize) -> Vec<u32> {
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 64,
        n_seq_max: 1,
        n_threads: 2,
        ..Default::default()
    };
    let mut ctx = Context::new(model, params).unwrap();
    let prompt = model
        .tokenizer()
        .encode("The capital of France is", true, true);
    ctx.eval(&prompt, 0).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let logits = ctx.last_logits().unwrap();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as u32;
        out.push(best);
        ctx.eval(&[best], 0).unwrap();
    }
    out
}

/// sha256 of a file by coreutils' sha256sum (no hashing crate in the dependencies); None where
/// the tool is missing.
fn sha256(path: &Path) -> Option<String> {
    let out = Command::new("sha256sum").arg(path).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.split_whitespace().next()?.to_string())
}

/// llama-quantize's sha256 of `model` in `mix` (tests/fixtures/quantize/<model>_sha256.txt).
fn llama_cpp_sha256(model: &str, mix: &str) -> String {
    let text =
        std::fs::read_to_string(common::fixture(&format!("quantize/{model}_sha256.txt"))).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(m, _)| *m == mix)
        .map(|(_, sha)| sha.to_string())
        .unwrap_or_else(|| panic!("no sha256 of {model} in {mix} in the fixture"))
}

#[test]
fn smollm2_in_q8_0_and_q4_k_m_loads_generates_and_is_the_same_on_every_run() {
    let Some(path) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let dir = Scratch::new("smollm2");
    let original = Model::load(&path, ModelParams::default()).unwrap();
    let reference = greedy(&original, 8);
    for (mix, id) in [("Q8_0", 7), ("Q4_K_M", 15)] {
        let out = dir.path(&format!("{mix}.gguf"));
        let report = quantize_model(&path, &out, params(mix, 2)).unwrap();
        let again = dir.path(&format!("{mix}-1-thread.gguf"));
        quantize_model(&path, &again, params(mix, 1)).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap(),
            "{mix}: two runs (2 threads, 1 thread) wrote different bytes"
        );
        // llama-quantize's very bytes.
        if let Some(got) = sha256(&out) {
            assert_eq!(
                got,
                llama_cpp_sha256("smollm2", mix),
                "{mix}: sha256 of the file"
            );
        }

        // The file says what it is, and holds the planned types.
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.get_u32("general.file_type"), Some(id), "{mix}");
        assert_eq!(file.get_u32("general.quantization_version"), Some(2));
        assert_eq!(file.alignment(), GgufFile::open(&path).unwrap().alignment());
        let types: Vec<(String, GgmlType)> = file
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.ty))
            .collect();
        assert_eq!(types, report.tensors, "{mix}");
        assert_eq!(report.output_bytes, file.file_size());

        // It runs: Q8_0 of a Q4_1 model is the same model up to rounding, so the same greedy
        // tokens up to the first near-tie (" Paris.\n\n" then a sixth token that flips);
        // Q4_K_M re-rounds every weight to 4-6 bits and must still say " Paris".
        let model = Model::load(&out, ModelParams::default()).unwrap();
        let tokens = greedy(&model, 8);
        eprintln!("{mix}: {:?} (original {reference:?})", tokens);
        let same = if mix == "Q8_0" { 5 } else { 1 };
        assert_eq!(tokens[..same], reference[..same], "{mix} greedy tokens");
    }
}

#[test]
fn every_mix_writes_llama_quantizes_bytes() {
    let Some(_) = sha256(Path::new(file!())) else {
        eprintln!("skipping: no sha256sum");
        return;
    };
    // The model of whole super-blocks: every mix (each a fraction of a second).
    let dir = Scratch::new("identical");
    let tiny = tiny_file(&dir);
    let mut wrong = Vec::new();
    for mix in MIXES {
        let out = dir.path(&format!("tiny-{mix}.gguf"));
        quantize_model(&tiny, &out, params(mix, 2)).unwrap();
        if sha256(&out).unwrap() != llama_cpp_sha256("tiny", mix) {
            wrong.push(format!("tiny {mix}"));
        }
        std::fs::remove_file(&out).unwrap();
    }
    // SmolLM2 (requantized from Q4_1, rows of 576; Q4_K_M and Q8_0 are checked above): the
    // low-bit mixes, whose fallbacks differ, and the IQ4 mixes (IQ4_XS falls back to IQ4_NL
    // on rows of 576).
    if let Some(path) = common::model_path(common::SMOLLM2) {
        for mix in ["Q2_K", "Q3_K_M", "IQ4_NL", "IQ4_XS"] {
            let out = dir.path(&format!("smollm2-{mix}.gguf"));
            quantize_model(&path, &out, params(mix, 2)).unwrap();
            if sha256(&out).unwrap() != llama_cpp_sha256("smollm2", mix) {
                wrong.push(format!("smollm2 {mix}"));
            }
            std::fs::remove_file(&out).unwrap();
        }
    }
    assert!(wrong.is_empty(), "not llama-quantize's bytes: {wrong:?}");
}

/// llama.cpp's `llama-simple` from the reference build (tools/reference/build-llama-cpp.sh).
fn llama_simple() -> Option<PathBuf> {
    let dir = std::env::var_os("ROCMFORGE_REF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/ref"));
    let bin = dir.join("build/bin/llama-simple");
    bin.exists().then_some(bin)
}

#[test]
fn llama_cpp_loads_and_runs_the_files_we_write() {
    let Some(path) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let Some(simple) = llama_simple() else {
        eprintln!("skipping: no llama.cpp reference build (tools/reference/build-llama-cpp.sh)");
        return;
    };
    let dir = Scratch::new("llama-cpp");
    for mix in ["Q4_K_M", "Q2_K"] {
        let out = dir.path(&format!("{mix}.gguf"));
        quantize_model(&path, &out, params(mix, 2)).unwrap();
        let run = Command::new(&simple)
            .arg("-m")
            .arg(&out)
            .args(["-n", "4", "The capital of France is"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{mix}: llama-simple failed: {}\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        let generated = stdout.trim().strip_prefix("The capital of France is");
        assert!(
            generated.is_some_and(|g| !g.trim().is_empty()),
            "{mix}: llama.cpp generated nothing: {stdout:?}"
        );
        eprintln!("{mix}: llama.cpp: {stdout:?}");
    }
}

/// The tiny model written to `dir`.
fn tiny_file(dir: &Scratch) -> PathBuf {
    let path = dir.path("tiny-f16.gguf");
    std::fs::write(&path, build_bytes(&tiny_spec())).unwrap();
    path
}

#[test]
fn cancelling_after_the_first_tensor_leaves_no_file_and_keeps_an_old_one() {
    let dir = Scratch::new("cancel");
    let input = tiny_file(&dir);
    let out = dir.path("out.gguf");
    let mut calls = Vec::new();
    let mut stop = |done: usize, total: usize| {
        calls.push((done, total));
        false
    };
    let r = quantize_model(
        &input,
        &out,
        QuantizeParams {
            progress: Some(&mut stop),
            ..QuantizeParams::new(FileType::MostlyQ4KM)
        },
    );
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(calls, [(1, 147)]);
    assert_eq!(
        dir.files(),
        ["tiny-f16.gguf"],
        "nothing but the input is left"
    );

    // An existing output stays as it was when a run is cancelled.
    std::fs::write(&out, b"old").unwrap();
    let mut stop_half = |done: usize, total: usize| done < total / 2;
    let r = quantize_model(
        &input,
        &out,
        QuantizeParams {
            progress: Some(&mut stop_half),
            ..QuantizeParams::new(FileType::MostlyQ4KM)
        },
    );
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    assert_eq!(dir.files(), ["out.gguf", "tiny-f16.gguf"]);

    // Progress runs to the total on a complete run, and the file replaces the old one.
    let mut seen = Vec::new();
    let mut count = |done: usize, _total: usize| {
        seen.push(done);
        true
    };
    quantize_model(
        &input,
        &out,
        QuantizeParams {
            progress: Some(&mut count),
            ..QuantizeParams::new(FileType::MostlyQ4KM)
        },
    )
    .unwrap();
    assert_eq!(seen, (1..=147).collect::<Vec<_>>());
    assert_eq!(dir.files(), ["out.gguf", "tiny-f16.gguf"]);
    let model = Model::load(&out, ModelParams::default()).unwrap();
    assert_eq!(greedy(&model, 2).len(), 2);
}

#[test]
fn user_errors_are_clear_and_leave_no_file() {
    let dir = Scratch::new("errors");
    let input = tiny_file(&dir);
    let q4 = dir.path("q4.gguf");
    quantize_model(&input, &q4, QuantizeParams::new(FileType::MostlyQ4_0)).unwrap();

    // Quantized input needs allow_requantize; the message names the tensor and the way out.
    let e = quantize_model(
        &q4,
        &dir.path("x.gguf"),
        QuantizeParams::new(FileType::MostlyQ8_0),
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("already quantized") && text.contains("--allow-requantize"),
        "{text}"
    );

    let e = quantize_model(
        &dir.path("missing.gguf"),
        &dir.path("x.gguf"),
        QuantizeParams::new(FileType::MostlyQ8_0),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("missing.gguf"), "{e}");

    let not_gguf = dir.path("junk.gguf");
    std::fs::write(&not_gguf, b"not a model").unwrap();
    let e = quantize_model(
        &not_gguf,
        &dir.path("x.gguf"),
        QuantizeParams::new(FileType::MostlyQ8_0),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Gguf(_)), "{e}");

    for out in [dir.path("no/such/dir/x.gguf"), dir.0.clone()] {
        let e =
            quantize_model(&input, &out, QuantizeParams::new(FileType::MostlyQ8_0)).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{}: {e}", out.display());
    }

    let e = FileType::parse("IQ3_S").unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("IQ3_S"), "{e}");
    assert_eq!(dir.files(), ["junk.gguf", "q4.gguf", "tiny-f16.gguf"]);
}

#[test]
fn plain_and_pure_targets_give_every_matrix_one_type() {
    let file = build(&tiny_spec());
    for (name, pure, want) in [
        ("F16", false, GgmlType::F16),
        ("BF16", false, GgmlType::Bf16),
        ("F32", false, GgmlType::F32),
        ("Q4_K_M", true, GgmlType::Q4K),
        ("Q2_K", true, GgmlType::Q2K),
        ("Q3_K", true, GgmlType::Q3K),
        ("Q5_K", true, GgmlType::Q5K),
        ("Q6_K", true, GgmlType::Q6K),
    ] {
        for (tensor, ty) in quantize_plan(&file, FileType::parse(name).unwrap(), pure) {
            let want = if tensor.contains("norm") {
                GgmlType::F32
            } else {
                want
            };
            assert_eq!(ty, want, "{name}: {tensor}");
        }
    }
}

/// The logits after "The capital of France is" (tokens of the tiny byte vocabulary), on an f32
/// KV cache: the error bounds below were measured so, and they judge the weights alone (an f16
/// cache adds its own rounding on both sides: Q6_K measured 0.177 with it, 0.082 without).
fn prompt_logits(model: &Model) -> Vec<f32> {
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 64,
        n_seq_max: 1,
        n_threads: 2,
        cache_type: rocmforge::kv_cache::KvType::F32,
        swa_full: false,
    };
    let mut ctx = Context::new(model, params).unwrap();
    let prompt = model
        .tokenizer()
        .encode("The capital of France is", true, true);
    ctx.eval(&prompt, 0).unwrap();
    ctx.last_logits().unwrap().to_vec()
}

/// RMS of the difference over the RMS of the reference.
fn relative_rms(x: &[f32], reference: &[f32]) -> f64 {
    let sq = |v: &mut dyn Iterator<Item = f64>| v.map(|d| d * d).sum::<f64>();
    let diff = sq(&mut x.iter().zip(reference).map(|(a, b)| (a - b) as f64));
    let base = sq(&mut reference.iter().map(|&b| b as f64));
    (diff / base).sqrt()
}

#[test]
fn every_k_quant_written_runs_in_our_engine_with_the_error_its_bits_allow() {
    let Some(path) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let dir = Scratch::new("k-quants");
    let reference = prompt_logits(&Model::load(&path, ModelParams::default()).unwrap());
    // Pure Q2_K and Q3_K: SmolLM2's rows of 576 fall back to Q4_0, its ffn_down rows of 1536
    // take the K-quant itself, so those quantizers run in a real model (the mixes use them on
    // no SmolLM2 tensor); Q6_K's mix has its own type nearly everywhere. The relative RMS error
    // of the logits against the original Q4_1 model is large even for near-lossless types
    // (Q8_0: 0.23), so the bounds are 1.5x what we measured (as llama.cpp's files measure,
    // which these are byte for byte); per-weight accuracy is the next test.
    for (name, pure, bound) in [
        ("Q2_K", true, 1.5),
        ("Q3_K", true, 0.85),
        ("Q6_K", false, 0.13),
    ] {
        let out = dir.path(&format!("{name}.gguf"));
        let params = QuantizeParams {
            pure,
            ..params(name, 2)
        };
        quantize_model(&path, &out, params).unwrap();
        let model = Model::load(&out, ModelParams::default()).unwrap();
        let err = relative_rms(&prompt_logits(&model), &reference);
        eprintln!("{name} (pure: {pure}): relative RMS error of the logits {err:.4}");
        assert!(
            err < bound,
            "{name}: relative RMS error {err} (bound {bound})"
        );
    }
}

fn quantize_cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rocmforge_quantize"))
}

#[test]
fn the_command_line_answers_help_usage_errors_and_quantizes() {
    let help = quantize_cli().arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("Q4_K_M") && text.contains("--allow-requantize"),
        "{text}"
    );

    for args in [
        &[][..],
        &["a.gguf", "b.gguf"],
        &["a.gguf", "b.gguf", "Q9_Z"],
        &["a.gguf", "b.gguf", "IQ3_S"],
        &["--threads", "0", "a.gguf", "b.gguf", "Q8_0"],
        &["--bogus", "a.gguf", "b.gguf", "Q8_0"],
    ] {
        let out = quantize_cli().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("rocmforge_quantize: "), "{args:?}: {err}");
    }
    let out = quantize_cli()
        .args(["a.gguf", "b.gguf", "IQ3_S"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("IQ3 types are not supported"));

    let dir = Scratch::new("cli");
    let input = tiny_file(&dir);
    let out = dir.path("out.gguf");
    let run = quantize_cli()
        .args([input.as_os_str(), out.as_os_str(), "q4_k_m".as_ref()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(file.get("general.file_type"), Some(&Value::U32(15)));

    // --dry-run prints the plan and writes nothing.
    let plan = quantize_cli()
        .args(["--dry-run".as_ref(), input.as_os_str(), "Q4_K_M".as_ref()])
        .output()
        .unwrap();
    assert!(plan.status.success());
    let want: String = quantize_plan(&file_of(&input), FileType::MostlyQ4KM, false)
        .into_iter()
        .map(|(n, t)| format!("{n} {t}\n"))
        .collect();
    assert_eq!(String::from_utf8(plan.stdout).unwrap(), want);

    // A failed run exits 1 with the reason.
    let run = quantize_cli()
        .args([
            out.as_os_str(),
            dir.path("x.gguf").as_os_str(),
            "Q8_0".as_ref(),
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--allow-requantize"));
}

fn file_of(path: &Path) -> GgufFile {
    GgufFile::open(path).unwrap()
}

/// Writes the tiny model for tools/reference/make-quantize-fixtures.sh (llama-quantize runs on
/// it): `ROCMFORGE_TINY_OUT=DIR cargo test --test quantize -- --ignored write_reference_model`.
#[test]
#[ignore]
fn write_reference_model() {
    let dir = PathBuf::from(std::env::var_os("ROCMFORGE_TINY_OUT").expect("ROCMFORGE_TINY_OUT"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("quantize_tiny_f16.gguf");
    std::fs::write(&path, build_bytes(&tiny_spec())).unwrap();
    eprintln!("wrote {}", path.display());
}

#[test]
fn each_k_quantizer_keeps_real_weights_within_its_bits() {
    let Some(path) = common::model_path(common::SMOLLM2) else {
        return;
    };
    // 64 rows of 1536 of a real FFN down projection, dequantized from Q4_1.
    let file = GgufFile::open(&path).unwrap();
    let t = file.tensor("blk.5.ffn_down.weight").unwrap();
    let cols = t.dims[0] as usize;
    let rows = 64;
    let row_bytes = t.ty.row_bytes(cols as u64).unwrap() as usize;
    let mut x = vec![0f32; rows * cols];
    rocmforge::quant::dequantize_row(t.ty, &file.tensor_data(t)[..rows * row_bytes], &mut x)
        .unwrap();
    // Relative RMS error bounds: about 1.25x what each measured. The input lies on Q4_1's grid
    // (16 levels per 32 weights), which Q4_K's 16 levels per 32 reproduce almost exactly, hence
    // its small error; a wrong layout or lost scale gives errors near 1.
    for (ty, bound) in [
        (GgmlType::Q2K, 0.38),
        (GgmlType::Q3K, 0.19),
        (GgmlType::Q4K, 0.023),
        (GgmlType::Q5K, 0.024),
        (GgmlType::Q6K, 0.022),
        (GgmlType::Q8_0, 0.007),
    ] {
        let mut packed = Vec::new();
        rocmforge::quant::quantize::quantize_row(ty, &x, &mut packed).unwrap();
        let mut back = vec![0f32; x.len()];
        rocmforge::quant::dequantize_row(ty, &packed, &mut back).unwrap();
        let err = relative_rms(&back, &x);
        eprintln!("{ty}: relative RMS error of the weights {err:.4}");
        assert!(
            err < bound,
            "{ty}: relative RMS error {err} (bound {bound})"
        );
    }
}

/// `rocmforge_synth --mix` plans with the quantizer's rules: a synthetic model of the fixture's
/// shape (`tiny16`: 16 layers of 256, four query heads per KV head, its own output head) gets,
/// tensor by tensor, the type llama-quantize chose for the real model of that shape, and
/// loads and runs. The vocabulary is the tiny model's (a few hundred tokens), so each file is
/// about 9M weights and takes about a second.
#[test]
fn synth_writes_llama_quantizes_types_for_every_mix() {
    let dir = Scratch::new("synth");
    let vocab = dir.path("vocab.gguf");
    std::fs::write(&vocab, build_bytes(&TinySpec::default())).unwrap();
    let want = load_types_fixture("tiny_types.txt");
    for mix in ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q4_0", "Q8_0"] {
        let out = dir.path(&format!("synth-{mix}.gguf"));
        let run = Command::new(env!("CARGO_BIN_EXE_rocmforge_synth"))
            .args(["--shape", "tiny16", "--mix", mix, "--vocab"])
            .arg(&vocab)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{mix}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let file = GgufFile::open(&out).unwrap();
        let ours: BTreeMap<String, String> = (file.tensors().iter())
            .map(|t| (t.name.clone(), t.ty.name().to_string()))
            .collect();
        let theirs: BTreeMap<String, String> = want[mix].iter().cloned().collect();
        assert_eq!(ours, theirs, "{mix}: types of the synthetic model");
        assert_eq!(
            file.get_u64("general.file_type"),
            Some(u64::from(FileType::parse(mix).unwrap().id())),
            "{mix}"
        );
        drop(file);
        let model = Model::load(&out, ModelParams::default()).unwrap();
        let mut ctx = Context::new(
            &model,
            ContextParams {
                n_ctx: 32,
                n_threads: 2,
                ..Default::default()
            },
        )
        .unwrap();
        ctx.eval(&[1, 40, 50, 60], 0).unwrap();
        let logits = ctx.last_logits().unwrap();
        assert!(
            logits.iter().all(|l| l.is_finite()) && logits.iter().any(|&l| l != logits[0]),
            "{mix}: logits of the synthetic model"
        );
        std::fs::remove_file(&out).unwrap();
    }
    // --type is one type for every matrix (llama-quantize's --pure), embedding and output too.
    let out = dir.path("synth-q4_k.gguf");
    let run = Command::new(env!("CARGO_BIN_EXE_rocmforge_synth"))
        .args(["--shape", "tiny16", "--type", "q4_k", "--vocab"])
        .arg(&vocab)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success());
    let file = GgufFile::open(&out).unwrap();
    for t in file.tensors() {
        let want = if t.dims.len() == 1 {
            GgmlType::F32
        } else {
            GgmlType::Q4K
        };
        assert_eq!(t.ty, want, "{}", t.name);
    }
    // --distinct-rows N: each matrix's first N rows are the full file's, and row r repeats
    // row r mod N.
    let repeated = dir.path("synth-q4_k-distinct.gguf");
    let synth_distinct = |n: &str| {
        Command::new(env!("CARGO_BIN_EXE_rocmforge_synth"))
            .args(["--shape", "tiny16", "--type", "q4_k", "--distinct-rows", n])
            .args(["--vocab".as_ref(), vocab.as_os_str(), "--out".as_ref()])
            .arg(&repeated)
            .output()
            .unwrap()
    };
    let run = synth_distinct("3");
    assert!(run.status.success());
    let rep = GgufFile::open(&repeated).unwrap();
    let mut matrices = 0;
    for (t, r) in file.tensors().iter().zip(rep.tensors()) {
        assert_eq!((&t.name, &t.dims, t.ty), (&r.name, &r.dims, r.ty));
        let (full, part) = (file.tensor_data(t), rep.tensor_data(r));
        if t.dims.len() == 1 {
            assert_eq!(full, part, "{}", t.name);
            continue;
        }
        matrices += 1;
        let row = full.len() / t.dims[1] as usize;
        assert_eq!(
            part[..3 * row],
            full[..3 * row],
            "{}: the first 3 rows",
            t.name
        );
        for (i, chunk) in part.chunks(row).enumerate() {
            assert_eq!(chunk, &part[(i % 3) * row..][..row], "{}: row {i}", t.name);
        }
        assert_ne!(
            full[3 * row..4 * row],
            full[..row],
            "{}: rows differ",
            t.name
        );
    }
    assert!(matrices > 0);
    let bad = synth_distinct("0");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad --distinct-rows '0'"));
}
