//! Starts the real server on 127.0.0.1 (free ports) with SmolLM2 and runs
//! `openai_client.py`, which drives it with the official `openai` Python package (installed into
//! `.cache/tools/openai` by scripts/setup-test-deps.sh). The greedy texts the script expects
//! over HTTP are computed here with the library itself.

use rocmforge::tokenizer::StreamDecoder;
use rocmforge::{Context, ContextParams, Model, ModelParams};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> Option<PathBuf> {
    let dir = std::env::var_os("ROCMFORGE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/models"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("ROCMFORGE_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        return None;
    }
    panic!("{} is missing: run scripts/fetch-models.sh", path.display());
}

/// A server process, killed on drop; `url` once it printed where it listens.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(model: &PathBuf, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rocmforge-server"))
        .arg("-m")
        .arg(model)
        .args(["--port", "0", "--alias", "smollm2", "-t", "2"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rocmforge-server");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().expect("server exited").expect("read stderr");
        if let Some(u) = line.split("listening on ").nth(1) {
            break u.trim().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(|l| eprintln!("server: {}", l.unwrap_or_default())));
    Server { child, url }
}

/// Waits for /health to say ready (it answers 503 while loading).
fn wait_ready(url: &str) {
    let addr = url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = write!(
                s,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if resp.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server at {url} never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The library's greedy continuation (16 tokens, or up to end-of-generation) as text.
fn library_greedy(model: &Model, prompt: &str) -> String {
    let mut ctx = Context::new(
        model,
        ContextParams {
            n_ctx: 256,
            ..Default::default()
        },
    )
    .unwrap();
    let tok = model.tokenizer();
    ctx.eval(&tok.encode(prompt, true, true), 0).unwrap();
    let mut dec = StreamDecoder::new();
    let mut text = String::new();
    for _ in 0..16 {
        let logits = ctx.last_logits().unwrap();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        if tok.is_eog(best) {
            break;
        }
        text.push_str(&dec.push(&tok.token_to_piece(best, false)));
        ctx.eval(&[best], 0).unwrap();
    }
    text + &dec.finish()
}

#[test]
fn openai_python_client_against_the_real_server() {
    let Some(model_file) = model_path() else {
        return;
    };
    let python_path = repo().join(".cache/tools/openai");
    assert!(
        python_path.join("openai").is_dir(),
        "the openai package is missing from {}: run scripts/setup-test-deps.sh",
        python_path.display()
    );
    let main = start(&model_file, &["-c", "8192", "-p", "16", "-b", "128"]);
    let full = start(
        &model_file,
        &["-c", "512", "-p", "1", "--max-queue", "1", "--api-key", "k"],
    );
    let model = Model::load(&model_file, ModelParams::default()).unwrap();
    let prompts = [
        "The capital of France is",
        "Once upon a time, in a small village,",
        "def fibonacci(n):",
        "The three primary colors are",
    ];
    let expected: serde_json::Map<String, serde_json::Value> = prompts
        .iter()
        .map(|p| (p.to_string(), library_greedy(&model, p).into()))
        .collect();
    wait_ready(&main.url);
    wait_ready(&full.url);
    let status = Command::new("python3")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py"))
        .env("PYTHONPATH", &python_path)
        .env("ROCMFORGE_URL", &main.url)
        .env("ROCMFORGE_FULL_URL", &full.url)
        .env("ROCMFORGE_MODEL_ID", "smollm2")
        .env(
            "ROCMFORGE_EXPECTED",
            serde_json::Value::Object(expected).to_string(),
        )
        .status()
        .expect("run python3");
    assert!(status.success(), "openai_client.py failed");

    // SIGTERM: a graceful stop, exit status 0, within the shutdown deadline.
    let mut main = main;
    let pid = main.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = main.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit after SIGTERM: {exit}");
}
