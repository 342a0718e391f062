//! The C ABI from C: the header (drift against a fresh cbindgen generation, compiles alone as
//! C99 and C++17), the library installed under a prefix, and the C unit tests and examples
//! built through pkg-config against both librocmforge.so and librocmforge.a, run natively and
//! under valgrind, with the C example's greedy output compared with the Rust library's greedy
//! loop (what `rocmforge_cli` prints).

mod common;

use common::cbuild::{
    build_c_library, check_passed, library_stamp, repo, run, soversion, stdout, target_profile_dir,
    valgrind, FileLock,
};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Scratch folder for this test process (nextest runs each test in its own process).
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rocmforge-ffi-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Installs the library from target/<profile> into target/<profile>/c-api/prefix and builds the
/// C programs there for both link modes, once per library build: the first test process does
/// it under a lock, the others reuse it (a stamp records which library it was built from).
/// Returns (prefix, build dir).
fn built() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let from = target_profile_dir();
        let root = from.join("c-api");
        std::fs::create_dir_all(&root).expect("c-api dir");
        let _lock = FileLock::acquire(&root.join("lock"));
        build_c_library(&from);
        let stamp = library_stamp(&from);
        let (prefix, build) = (root.join("prefix"), root.join("build"));
        let stamp_file = root.join("stamp");
        if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
            return (prefix, build);
        }
        let _ = std::fs::remove_dir_all(&build);
        run(Command::new("bash")
            .arg(repo().join("scripts/install.sh"))
            .arg(&prefix)
            .arg("--from")
            .arg(&from));
        let pc = prefix.join("lib/pkgconfig");
        for link in ["shared", "static"] {
            for dir in ["examples-c", "tests/c"] {
                run(Command::new("make")
                    .arg("-s")
                    .arg("-B")
                    .arg("-C")
                    .arg(repo().join(dir))
                    .arg(format!("OUT={}", build.join(link).display()))
                    .arg(format!("LINK={link}"))
                    .env("PKG_CONFIG_PATH", &pc));
            }
        }
        std::fs::write(&stamp_file, stamp).expect("stamp");
        (prefix, build)
    })
}

fn exe(link: &str, name: &str) -> PathBuf {
    built().1.join(link).join(name)
}

#[test]
fn header_matches_a_fresh_cbindgen_generation() {
    run(Command::new("bash")
        .arg(repo().join("scripts/gen-header.sh"))
        .arg("--check")
        .env("ROCMFORGE_NO_INSTALL", "1"));
}

#[test]
fn header_compiles_alone_as_c99_and_cpp17() {
    let header = repo().join("include/rocmforge.h");
    let flags = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"];
    run(Command::new("cc")
        .args(["-x", "c", "-std=c99"])
        .args(flags)
        .arg(&header));
    run(Command::new("c++")
        .args(["-x", "c++", "-std=c++17"])
        .args(flags)
        .arg(&header));
}

/// Every function's documentation states its thread-safety; those that hand out pointers
/// (a pointer return or a `**` out-param: handles, strings, logits) state ownership or lifetime.
#[test]
fn header_documents_ownership_and_threads_for_every_function() {
    let text = std::fs::read_to_string(repo().join("include/rocmforge.h")).unwrap();
    let (mut doc, mut decl) = (String::new(), String::new());
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in text.lines() {
        if decl.is_empty() {
            if let Some(comment) = line.trim_start().strip_prefix("//") {
                doc.push_str(comment);
                doc.push('\n');
                continue;
            }
            let is_function = line.contains("rocmforge_")
                && line.contains('(')
                && !line.starts_with("typedef")
                && !line.trim_start().starts_with(['/', '*']);
            if !is_function {
                doc.clear();
                continue;
            }
        }
        decl.push_str(line);
        if !decl.contains(';') {
            continue;
        }
        let name = decl
            .split('(')
            .next()
            .and_then(|d| d.split_whitespace().last())
            .unwrap_or("");
        let hands_out_pointer =
            decl.contains("**") || decl.split('(').next().is_some_and(|r| r.contains('*'));
        let ok = doc.contains("Thread-safety")
            && (!hands_out_pointer || doc.contains("Ownership") || doc.contains("Lifetime"));
        if !ok {
            missing.push(name.trim_start_matches('*').to_string());
        }
        checked += 1;
        doc.clear();
        decl.clear();
    }
    assert!(checked > 60, "parsed only {checked} declarations");
    assert!(
        missing.is_empty(),
        "functions whose docs lack Thread-safety / Ownership: {missing:?}"
    );
}

#[test]
fn installed_layout_and_soname() {
    let (prefix, _) = built();
    let soname = format!("librocmforge.so.{}", soversion());
    for f in [
        "lib/librocmforge.so".to_string(),
        format!("lib/{soname}"),
        "lib/librocmforge.a".to_string(),
        "include/rocmforge.h".to_string(),
        "lib/pkgconfig/rocmforge.pc".to_string(),
    ] {
        assert!(
            prefix.join(&f).exists(),
            "{f} missing under {}",
            prefix.display()
        );
    }
    let dynamic = stdout(&run(Command::new("readelf")
        .arg("-d")
        .arg(prefix.join("lib/librocmforge.so"))));
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
    );
    let version = stdout(&run(Command::new("pkg-config")
        .arg("--modversion")
        .arg("rocmforge")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))));
    assert_eq!(version.trim(), env!("CARGO_PKG_VERSION"));
}

fn model() -> Option<PathBuf> {
    common::model_path(common::SMOLLM2)
}

#[test]
fn c_unit_tests_pass_against_the_shared_library() {
    let Some(model) = model() else { return };
    check_passed(&run(Command::new(exe("shared", "test_api"))
        .arg(&model)
        .arg(scratch())));
}

#[test]
fn c_unit_tests_pass_against_the_static_library() {
    let Some(model) = model() else { return };
    let test = exe("static", "test_api");
    let deps = stdout(&run(Command::new("ldd").arg(&test)));
    assert!(
        !deps.contains("librocmforge"),
        "static build links the .so: {deps}"
    );
    check_passed(&run(Command::new(test).arg(&model).arg(scratch())));
}

#[test]
fn out_of_memory_is_a_status() {
    let Some(model) = model() else { return };
    check_passed(&run(Command::new(exe("shared", "test_api"))
        .arg(&model)
        .arg(scratch())
        .arg("--oom")));
}

const PROMPT: &str = "The capital of France is";

/// What `rocmforge_cli -m MODEL -p PROMPT -n N` prints (the prompt, the greedy continuation up
/// to N tokens or end of generation, a new line), made with the Rust library directly: the CLI
/// lives in the server crate, whose binaries this crate's tests cannot name.
fn rust_greedy(model: &std::path::Path, prompt: &str, n: usize) -> String {
    use rocmforge::sampler::{SamplerChain, SamplerParams};
    use rocmforge::{Context, ContextParams, Model, ModelParams};
    let model = Model::load(model, ModelParams::default()).unwrap();
    let mut ctx = Context::new(&model, ContextParams::default()).unwrap();
    let greedy = SamplerParams {
        temperature: 0.0,
        ..SamplerParams::default()
    };
    let mut sampler = SamplerChain::from_params(&greedy).unwrap();
    let tok = model.tokenizer();
    ctx.eval(&tok.encode(prompt, true, true), 0).unwrap();
    let mut decoder = rocmforge::tokenizer::StreamDecoder::new();
    let mut text = prompt.to_string();
    for _ in 0..n {
        let next = sampler.sample(ctx.last_logits().unwrap()).unwrap();
        sampler.accept(next);
        if tok.is_eog(next) {
            break;
        }
        text.push_str(&decoder.push(&tok.token_to_piece(next, false)));
        ctx.eval(&[next], 0).unwrap();
    }
    text.push_str(&decoder.finish());
    text.push('\n');
    text
}

#[test]
fn c_simple_example_prints_the_rust_greedy_continuation() {
    let Some(model) = model() else { return };
    let c = stdout(&run(Command::new(exe("shared", "simple"))
        .arg(&model)
        .arg(PROMPT)
        .arg("16")));
    let rust = rust_greedy(&model, PROMPT, 16);
    assert_eq!(c, rust);
    assert!(c.starts_with(PROMPT) && c.len() > PROMPT.len() + 10, "{c}");
}

#[test]
fn c_batch_example_matches_prompts_run_alone() {
    let Some(model) = model() else { return };
    let prompts = [PROMPT, "Once upon a time"];
    let out = stdout(&run(Command::new(exe("static", "batch"))
        .arg(&model)
        .arg("8")
        .args(prompts)));
    // Each sequence prints "[i] " and what `simple` prints for its prompt alone.
    let mut expected = String::new();
    for (i, p) in prompts.iter().enumerate() {
        let alone = stdout(&run(Command::new(exe("static", "simple"))
            .arg(&model)
            .arg(p)
            .arg("8")));
        expected.push_str(&format!("[{i}] {alone}"));
    }
    assert_eq!(out, expected);
}

#[test]
fn c_chat_example_holds_a_two_turn_conversation() {
    let Some(model) = model() else { return };
    use std::io::Write;
    let mut child = Command::new(exe("shared", "chat"))
        .arg(&model)
        .arg("12")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nAnd of Italy?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let replies: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("assistant: "))
        .collect();
    assert_eq!(replies.len(), 2, "{text}");
    assert!(replies.iter().all(|r| !r.trim().is_empty()), "{text}");
    // The first turn is the model's own template (with its default system message) followed by
    // a greedy continuation: the Rust library on that exact text gives the same reply.
    let rendered = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
                    Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?\
                    <|im_end|>\n<|im_start|>assistant\n";
    let rust = rust_greedy(&model, rendered, 12);
    let rust_reply = rust
        .strip_prefix(rendered)
        .unwrap_or_else(|| panic!("{rust}"));
    assert_eq!(replies[0], rust_reply.trim_end_matches('\n'), "{text}");
}

#[test]
fn c_programs_are_valgrind_clean() {
    let Some(model) = model() else { return };
    let m = model.as_os_str();
    let scratch = scratch();
    check_passed(&valgrind(
        &exe("shared", "test_api"),
        &[m, scratch.as_os_str()],
        b"",
    ));
    valgrind(
        &exe("shared", "simple"),
        &[m, PROMPT.as_ref(), "4".as_ref()],
        b"",
    );
    valgrind(
        &exe("static", "batch"),
        &[m, "4".as_ref(), PROMPT.as_ref(), "Hello".as_ref()],
        b"",
    );
    let chat = valgrind(&exe("shared", "chat"), &[m, "3".as_ref()], b"Hi\nThanks\n");
    assert_eq!(stdout(&chat).matches("assistant: ").count(), 2);
}
