//! `ROCMFORGE_CPU_ISA` forces one table of CPU kernels: every table this CPU runs gives the
//! same bits for quantized weights as the scalar reference (prompt and decode logits of tiny
//! Q4_0/Q4_1/Q8_0/Q5_0/Q5_1/Q4_K/Q6_K/IQ4_NL/IQ4_XS models, a tiny Q4_K_M-like mix, the real
//! SmolLM2 Q4_1 and, when `ROCMFORGE_SMOLLM2_Q4KM` names it, SmolLM2 requantized to Q4_K_M by
//! llama-quantize), and a table the CPU lacks or an unknown name is refused with a message
//! naming the runnable ones.
//!
//! The choice is read once per process, so each table runs in a child: this test binary
//! re-executed for one test with the variable set.

mod common;

use common::tiny::{build, TinySpec};
use rocmforge::quant::dot::Isa;
use rocmforge::quant::GgmlType;
use rocmforge::{Batch, Context, ContextParams, Error, Model};
use std::process::Command;

const CHILD_VAR: &str = "ROCMFORGE_CPU_ISA_CHILD";

/// Runs `test` of this binary in a child with `ROCMFORGE_CPU_ISA=isa`; returns its stdout.
fn in_child(test: &str, isa: &str) -> String {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("ROCMFORGE_CPU_ISA", isa)
        .env(CHILD_VAR, "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {test} with ROCMFORGE_CPU_ISA={isa} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn smollm2_present() -> bool {
    common::model_dir().join(common::SMOLLM2).exists()
}

/// SmolLM2 in llama.cpp's Q4_K_M mix (Q4_K, Q6_K, Q5_0, Q8_0), made by llama-quantize (see
/// tests/llamacpp_parity.rs): only when `ROCMFORGE_SMOLLM2_Q4KM` names an existing file.
fn smollm2_q4km() -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(std::env::var_os("ROCMFORGE_SMOLLM2_Q4KM")?);
    path.exists().then_some(path)
}

/// The tiny models: (digest name, weight type, the type of ffn_down if it differs). Rows of
/// the K-quants are whole 256-element super-blocks (n_embd 256, n_ff 512); "q4_k_m" mixes
/// Q4_K with a Q6_K ffn_down as llama.cpp's Q4_K_M does.
const TINY: [(&str, GgmlType, Option<GgmlType>); 10] = [
    ("q4_0", GgmlType::Q4_0, None),
    ("q4_1", GgmlType::Q4_1, None),
    ("q8_0", GgmlType::Q8_0, None),
    ("q5_0", GgmlType::Q5_0, None),
    ("q5_1", GgmlType::Q5_1, None),
    ("q4_k", GgmlType::Q4K, None),
    ("q6_k", GgmlType::Q6K, None),
    ("q4_k_m", GgmlType::Q4K, Some(GgmlType::Q6K)),
    ("iq4_nl", GgmlType::Iq4Nl, None),
    ("iq4_xs", GgmlType::Iq4Xs, None),
];

fn is_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// FNV-1a over the bits of every logit.
fn digest(logits: &[f32], h: &mut u64) {
    for x in logits {
        for b in x.to_bits().to_le_bytes() {
            *h = (*h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// A 6-token prompt in one batch (every logit), then 4 single-token steps, at 2 threads.
fn run(model: &Model, prompt: &[u32]) -> u64 {
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 16,
        n_seq_max: 1,
        n_threads: 2,
        ..Default::default()
    };
    let mut ctx = Context::new(model, params).expect("context");
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut batch = Batch::new();
    for (i, &t) in prompt.iter().enumerate() {
        batch.push(t, i as i32, 0, true);
    }
    ctx.decode(&batch).expect("prompt");
    for i in 0..prompt.len() {
        digest(ctx.logits(i).expect("logits"), &mut h);
    }
    for step in 0..4 {
        let pos = (prompt.len() + step) as i32;
        ctx.decode(&Batch::for_sequence(&[prompt[step] + 1], pos, 0))
            .expect("decode");
        digest(ctx.last_logits().expect("logits"), &mut h);
    }
    h
}

/// In a child: one digest line per model.
#[test]
fn child_digests() {
    if !is_child() {
        return;
    }
    for (name, ty, ffn_down) in TINY {
        let k_quant = ty.block_elems() == 256;
        let model = Model::from_gguf(build(&TinySpec {
            weight_type: ty,
            n_embd: if k_quant { 256 } else { 128 },
            n_ff: if k_quant { 512 } else { 256 },
            override_type: ffn_down.map(|t| ("blk.1.ffn_down.weight", t)),
            ..Default::default()
        }))
        .expect("tiny model");
        println!(
            "@@digest {name} {:016x}",
            run(&model, &[1, 72, 101, 108, 108, 111])
        );
    }
    if let Some(path) = common::model_path(common::SMOLLM2) {
        let model = Model::load(path, Default::default()).expect("SmolLM2");
        let prompt = [1, 504, 3458, 4593, 2585, 314];
        println!("@@digest smollm2 {:016x}", run(&model, &prompt));
    }
    if let Some(path) = smollm2_q4km() {
        let model = Model::load(path, Default::default()).expect("SmolLM2 Q4_K_M");
        let prompt = [1, 504, 3458, 4593, 2585, 314];
        println!("@@digest smollm2_q4_k_m {:016x}", run(&model, &prompt));
    }
}

/// In a child whose ROCMFORGE_CPU_ISA the CPU cannot honour: contexts are refused.
#[test]
fn child_refused() {
    if !is_child() {
        return;
    }
    let model = Model::from_gguf(build(&TinySpec::default())).expect("tiny model");
    match Context::new(&model, ContextParams::default()) {
        Err(Error::InvalidArgument(m)) => println!("@@refused {m}"),
        Err(other) => panic!("expected InvalidArgument, got {other}"),
        Ok(_) => panic!("a context started under an ISA this CPU cannot run"),
    }
}

/// The digest lines of a child's output. With `--nocapture` the first one shares its line with
/// the harness's "test child_digests ... ", so they are found anywhere in a line.
fn digests(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.find("@@digest").map(|i| &l[i..]))
        .collect()
}

#[test]
fn every_table_gives_the_scalar_bits() {
    if is_child() {
        return;
    }
    let reference = in_child("child_digests", "scalar");
    let reference = digests(&reference);
    assert_eq!(
        reference.len(),
        TINY.len() + usize::from(smollm2_present()) + usize::from(smollm2_q4km().is_some()),
        "{reference:?}"
    );
    let mut checked = vec!["scalar"];
    for isa in Isa::ALL
        .into_iter()
        .filter(|i| i.runnable() && *i != Isa::Scalar)
    {
        let out = in_child("child_digests", isa.name());
        assert_eq!(
            digests(&out),
            reference,
            "{} differs from scalar",
            isa.name()
        );
        checked.push(isa.name());
    }
    let auto = in_child("child_digests", "auto");
    assert_eq!(
        digests(&auto),
        reference,
        "the automatic choice differs from scalar"
    );
    eprintln!("tables giving the scalar bits: {checked:?} and auto");
}

#[test]
fn unknown_or_unrunnable_tables_are_refused() {
    if is_child() {
        return;
    }
    let out = in_child("child_refused", "sse9");
    assert!(
        out.contains("ROCMFORGE_CPU_ISA=sse9: unknown table") && out.contains("auto, scalar"),
        "{out}"
    );
    if let Some(missing) = Isa::ALL.into_iter().find(|i| !i.runnable()) {
        let out = in_child("child_refused", missing.name());
        assert!(out.contains("lacks its features"), "{out}");
    }
}
