//! Runs the `rocmforge_cli` binary the way people do: help and version, bad values, an argument
//! that is not UTF-8, a reader (`head -c 10`) that closes stdout early, chat, the load progress
//! bar, and `serve` (also as the first README's `rocmforge_cli --port 8080`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

mod common {
    use std::path::PathBuf;

    pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

    /// A model of the shared cache; `None` (test skipped) only when ROCMFORGE_SKIP_MODEL_TESTS=1.
    pub fn model_path(name: &str) -> Option<PathBuf> {
        let dir = std::env::var_os("ROCMFORGE_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models")
            });
        let path = dir.join(name);
        if path.exists() {
            return Some(path);
        }
        if std::env::var("ROCMFORGE_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
            return None;
        }
        panic!("{} is missing: run scripts/fetch-models.sh", path.display());
    }
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rocmforge_cli"))
}

#[test]
fn help_and_version_go_to_stdout_and_succeed() {
    for flag in ["--help", "-h"] {
        let out = cli().arg(flag).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: rocmforge_cli"), "{flag}: {text}");
        assert!(
            text.contains("--seed -1 picks a random seed"),
            "{flag}: {text}"
        );
        assert!(out.stderr.is_empty(), "{flag}");
    }
    let out = cli().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        concat!("rocmforge_cli ", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_values_exit_2_with_a_message_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["-n", "abc"],
            "invalid value 'abc' for '--n-predict <N>': not a whole number",
        ),
        (&["-n", "-5"], "'--n-predict <N>': -5 is outside 0..="),
        (&["-t", "0"], "'--threads <THREADS>': 0 is outside 1..=1024"),
        (&["--top-p", "2"], "'--top-p <P>': 2 is outside 0..=1"),
        (&["--temp", "nan"], "'--temp <T>': nan is outside"),
        (&["--seed", "-2"], "'--seed <S>': not -1 or a whole number"),
        (
            &["chat", "--seed", "x"],
            "'--seed <S>': not -1 or a whole number",
        ),
        (&["--backend", "tpu"], "[possible values: auto, cpu, gpu]"),
        (&["--ctx"], "a value is required for '--ctx <N>'"),
        (
            &["--cache-type", "q4"],
            "'--cache-type <TYPE>': invalid argument: unknown KV cache type \"q4\"",
        ),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
        (
            &["serve", "--port", "http"],
            "invalid value 'http' for '--port <PORT>'",
        ),
    ];
    for (args, message) in cases {
        let out = cli().args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn an_argument_that_is_not_utf8_is_an_error_not_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let bad = OsStr::from_bytes(b"\xff\xfe");
    let cases = [
        (vec![bad], "unrecognized subcommand"),
        (vec![OsStr::new("-p"), bad], "invalid UTF-8"),
        (
            vec![OsStr::new("serve"), OsStr::new("-m"), bad],
            "invalid UTF-8",
        ),
    ];
    for (args, message) in cases {
        let out = cli().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    // The reader takes 10 bytes and closes the pipe, like `| head -c 10`; the CLI still has
    // hundreds of tokens to write and must stop at the broken pipe without an error.
    let mut child = (cli().arg("-m").arg(&model))
        .args(["-n", "400", "--seed", "-1", "--temp", "0.8", "-t", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // Dropping the pipe above closed our end.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("Broken pipe") && !err.contains("panicked"),
        "{err}"
    );
    // The speed line comes after the last token: without it the run stopped at the closed pipe.
    assert!(
        !err.contains("generated:"),
        "kept generating after stdout closed: {err}"
    );
    assert!(
        err.contains("seed: "),
        "--seed -1 reports the seed it picked: {err}"
    );
    assert_eq!(&first, b"The capita");
}

#[test]
fn chat_over_a_pipe_keeps_the_history_across_turns() {
    use std::io::Write;
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    // An f32 cache: the greedy replies of this small model are the ones the checks below were
    // written for (with the default f16 cache the second reply drifts off Rome).
    let mut child = (cli().arg("chat").arg("-m").arg(&model))
        .args(["-n", "24", "-t", "1", "--cache-type", "f32"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The second turn names no country: only the history of the first makes "Rome" the answer.
    (child.stdin.take().unwrap())
        .write_all(b"What is the capital of France?\nAnd of Italy?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let replies: Vec<&str> = text.lines().collect();
    assert_eq!(replies.len(), 2, "{text}");
    assert!(replies[0].contains("Paris"), "{text}");
    assert!(replies[1].contains("Rome"), "{text}");
}

/// A progress bar on stderr while the model loads, ending at 100 % on its own line, when stderr
/// is a terminal (run under util-linux `script`, which gives the program a pseudo-terminal);
/// nothing of it when stderr is a pipe.
#[test]
fn a_progress_bar_shows_the_load_on_a_terminal_only() {
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let run = format!(
        "'{}' -m '{}' -n 2 -t 1",
        env!("CARGO_BIN_EXE_rocmforge_cli"),
        model.display()
    );
    let Ok(out) = Command::new("script")
        .args(["-qec", &run, "/dev/null"])
        .output()
    else {
        eprintln!("no `script` (util-linux) here: the terminal case is not checked");
        return;
    };
    let tty = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{tty}");
    assert!(
        tty.contains("\rloading [...."),
        "the bar starts empty: {tty:?}"
    );
    assert!(
        tty.contains(&format!("loading [{}] 100%\r\n", "#".repeat(30))),
        "the bar ends full, then a new line: {tty:?}"
    );
    let piped = cli()
        .arg("-m")
        .arg(&model)
        .args(["-n", "2", "-t", "1"])
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("loading ["));
}

/// `rocmforge_cli --port 0` (the first README's spelling, with a free port) runs the server in
/// this process: it listens, loads the default-sized model and answers /health; `serve --help`
/// lists the server's own options.
#[test]
fn the_port_spelling_serves_the_model() {
    let help = cli().args(["serve", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--port <PORT>") && text.contains("--api-key"),
        "{text}"
    );
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let mut child = (cli().args(["--port", "0", "-c", "512", "-p", "2", "-t", "1", "-m"]))
        .arg(&model)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("rocmforge-server: listening on http://") {
            addr = Some(a.to_string());
        }
        let loaded = line.contains("model loaded");
        seen.push(line);
        if loaded {
            break;
        }
    }
    let health = addr.as_deref().map(|a| {
        let mut s = std::net::TcpStream::connect(a).unwrap();
        std::io::Write::write_all(&mut s, b"GET /health HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(addr.is_some(), "{seen:?}");
    assert!(
        seen.last()
            .is_some_and(|l| l.contains("model loaded (2 sequences")),
        "{seen:?}"
    );
    let health = health.unwrap();
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
}
