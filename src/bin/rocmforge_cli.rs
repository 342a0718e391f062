//! `rocmforge_cli`: run a prompt through a model and stream the continuation.
//!
//! rocmforge_cli [-m MODEL.gguf] [-p PROMPT] [-n N_PREDICT] [-t THREADS] [--temp T] [--seed S]
//!               [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--ctx N]
//!               [--backend auto|cpu|gpu] [--device I] [--cache-type f16|f32]
//! rocmforge_cli serve -m MODEL [--port 8080] [server options]   (also: rocmforge_cli --port 8080)
//!
//! `serve` runs the OpenAI-compatible server, `rocmforge-server` (crate
//! `crates/rocmforge-server`), installed beside this program: the library crate links no HTTP
//! stack, so the CLI hands over to that binary instead of containing it.

use rocmforge::sampler::{SamplerChain, SamplerParams};
use rocmforge::tokenizer::StreamDecoder;
use rocmforge::{Backend, Context, ContextParams, Model, ModelParams};
use std::io::Write;
use std::process::ExitCode;

struct Args {
    model: String,
    prompt: String,
    n_predict: usize,
    ctx: ContextParams,
    sampling: SamplerParams,
    backend: Backend,
    device: usize,
    /// `chat`: read user turns from stdin, answer each with the model's chat template.
    chat: bool,
}

/// The model used when none is named: SmolLM2 in the model cache.
fn default_model() -> String {
    format!(
        "{}/SmolLM2-135M-Instruct.Q4_1.gguf",
        std::env::var("ROCMFORGE_MODEL_DIR").unwrap_or_else(|_| ".cache/models".into())
    )
}

const USAGE: &str = "usage: rocmforge_cli [-m MODEL] [-p PROMPT] [-n N] [-t THREADS] \
[-c CTX] [--temp T] [--seed S|-1] [--top-k K] [--top-p P] [--min-p P] \
[--repeat-penalty R] [--backend auto|cpu|gpu] [--device I] [--cache-type f16|f32]
       rocmforge_cli chat [same options]   (one stdin line = one turn; history is kept)
       rocmforge_cli serve -m MODEL [--port 8080] [server options]
       rocmforge_cli --version
--seed -1 picks a random seed (printed on stderr).";

/// What the command line asked for: a run, or something answered at once (help, version).
enum Parsed {
    Run(Args),
    Print(String),
}

/// A whole number in `lo..=hi`, with a message naming the flag when it is not one.
fn int_in(flag: &str, v: &str, lo: i64, hi: i64) -> Result<i64, String> {
    let n: i64 = (v.trim().parse()).map_err(|_| format!("{flag}: '{v}' is not a whole number"))?;
    if n < lo || n > hi {
        return Err(format!("{flag}: {n} is outside {lo}..={hi}"));
    }
    Ok(n)
}

/// A finite number in `lo..=hi`, with a message naming the flag when it is not one.
fn float_in(flag: &str, v: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let x: f64 = (v.trim().parse()).map_err(|_| format!("{flag}: '{v}' is not a number"))?;
    if !x.is_finite() || x < lo || x > hi {
        return Err(format!("{flag}: {v} is outside {lo}..={hi}"));
    }
    Ok(x)
}

/// A seed different on every run, for `--seed -1`: the clock mixed with the process id.
fn random_seed() -> u64 {
    let nanos = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64 finaliser: spreads nearby clock values over the whole range.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn parse_args() -> Result<Parsed, String> {
    let mut args = Args {
        model: default_model(),
        prompt: "The capital of France is".into(),
        n_predict: 64,
        ctx: ContextParams::default(),
        backend: Backend::Auto,
        device: 0,
        chat: false,
        sampling: SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        },
    };
    // args_os, not args: std::env::args panics on an argument that is not UTF-8.
    let mut it = std::env::args_os().skip(1).peekable();
    if it.peek().is_some_and(|a| a == "chat") {
        it.next();
        args.chat = true;
        args.n_predict = 512;
    }
    while let Some(flag_os) = it.next() {
        let Some(flag) = flag_os.to_str().map(str::to_owned) else {
            return Err(format!(
                "argument {} is not valid UTF-8 (try --help)",
                flag_os.to_string_lossy()
            ));
        };
        let mut value = || -> Result<String, String> {
            let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            v.into_string()
                .map_err(|v| format!("{flag}: {} is not valid UTF-8", v.to_string_lossy()))
        };
        let f = flag.as_str();
        match f {
            "-m" | "--model" => args.model = value()?,
            "-p" | "--prompt" => args.prompt = value()?,
            "-n" | "--n-predict" => args.n_predict = int_in(f, &value()?, 0, 1 << 24)? as usize,
            "-t" | "--threads" => args.ctx.n_threads = int_in(f, &value()?, 1, 1024)? as usize,
            "-c" | "--ctx" => args.ctx.n_ctx = int_in(f, &value()?, 1, 1 << 24)? as usize,
            "--temp" => args.sampling.temperature = float_in(f, &value()?, 0.0, 100.0)? as f32,
            "--seed" => {
                let v = value()?;
                args.sampling.seed = if v.trim() == "-1" {
                    let seed = random_seed();
                    eprintln!("seed: {seed}");
                    seed
                } else {
                    (v.trim().parse::<u64>())
                        .map_err(|_| format!("--seed: '{v}' is not -1 or a whole number >= 0"))?
                };
            }
            "--top-k" => args.sampling.top_k = int_in(f, &value()?, 0, i32::MAX as i64)? as i32,
            "--top-p" => args.sampling.top_p = float_in(f, &value()?, 0.0, 1.0)? as f32,
            "--min-p" => args.sampling.min_p = float_in(f, &value()?, 0.0, 1.0)? as f32,
            "--repeat-penalty" => {
                args.sampling.penalty_repeat = float_in(f, &value()?, 0.0, 100.0)? as f32
            }
            "--device" => args.device = int_in(f, &value()?, 0, 1023)? as usize,
            "--backend" => {
                args.backend = match value()?.as_str() {
                    "auto" => Backend::Auto,
                    "cpu" => Backend::Cpu,
                    "gpu" => Backend::Gpu,
                    other => return Err(format!("--backend: '{other}' is not auto, cpu or gpu")),
                }
            }
            "--cache-type" => {
                args.ctx.cache_type = value()?.parse().map_err(|e| format!("{f}: {e}"))?
            }
            "-h" | "--help" => return Ok(Parsed::Print(USAGE.into())),
            "-V" | "--version" => {
                return Ok(Parsed::Print(format!(
                    "rocmforge_cli {}",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    Ok(Parsed::Run(args))
}

/// Whether writing to stdout failed because the reader went away (`| head`): stop quietly.
fn reader_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// The loading progress bar: `loading [#######.............]  35%`, redrawn in place.
struct LoadBar {
    enabled: bool,
    /// Last percentage drawn (redraw only on change).
    shown: Option<u32>,
}

const BAR_WIDTH: usize = 30;

impl LoadBar {
    fn new(enabled: bool) -> LoadBar {
        LoadBar {
            enabled,
            shown: None,
        }
    }

    /// Draws `fraction` (0..=1); always lets the load go on.
    fn draw(&mut self, fraction: f32) -> bool {
        let pct = (fraction.clamp(0.0, 1.0) * 100.0).round() as u32;
        if self.enabled && self.shown != Some(pct) {
            self.shown = Some(pct);
            let filled = pct as usize * BAR_WIDTH / 100;
            eprint!(
                "\rloading [{}{}] {pct:3}%",
                "#".repeat(filled),
                ".".repeat(BAR_WIDTH - filled)
            );
        }
        true
    }

    /// Ends the bar's line (if one was drawn), so what follows starts on its own line.
    fn finish(&mut self) {
        if self.shown.take().is_some() {
            eprintln!();
        }
    }
}

/// How a run ended: normally, or because stdout's reader closed it.
enum Ended {
    Done,
    ReaderGone,
}

fn run(args: Args) -> Result<Ended, String> {
    // A progress bar on stderr while the weights load, only when a person watches it (a
    // terminal): logs and pipes get no carriage-return noise.
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut bar = LoadBar::new(on_terminal);
    let loaded = {
        let mut on_progress = |fraction: f32| bar.draw(fraction);
        let params = ModelParams {
            backend: args.backend,
            device: args.device,
            progress: on_terminal.then_some(&mut on_progress as _),
            ..ModelParams::default()
        };
        Model::load(&args.model, params)
    };
    bar.finish();
    let model = loaded.map_err(|e| e.to_string())?;
    eprintln!("backend: {:?}", model.backend());
    let mut ctx = Context::new(&model, args.ctx).map_err(|e| e.to_string())?;
    let mut sampler = SamplerChain::from_params(&args.sampling).map_err(|e| e.to_string())?;
    let tok = model.tokenizer();
    if args.chat {
        return chat(args.n_predict, &model, &mut ctx, &mut sampler);
    }
    let prompt = tok.encode(&args.prompt, true, true);
    let started = std::time::Instant::now();
    ctx.eval(&prompt, 0).map_err(|e| e.to_string())?;
    let prompt_time = started.elapsed();
    let mut out = std::io::stdout().lock();
    // Write errors other than a closed pipe are reported; a closed pipe ends the run quietly.
    let io = |e: std::io::Error| {
        if reader_gone(&e) {
            None
        } else {
            Some(e.to_string())
        }
    };
    macro_rules! emit {
        ($($t:tt)*) => {
            if let Err(e) = write!(out, $($t)*).and_then(|()| out.flush()) {
                return match io(e) {
                    None => Ok(Ended::ReaderGone),
                    Some(m) => Err(m),
                };
            }
        };
    }
    emit!("{}", args.prompt);
    let mut decoder = StreamDecoder::new();
    let started = std::time::Instant::now();
    let mut generated = 0;
    for _ in 0..args.n_predict {
        let logits = ctx.last_logits().ok_or("no logits")?;
        let next = sampler.sample(logits).map_err(|e| e.to_string())?;
        sampler.accept(next);
        if tok.is_eog(next) {
            break;
        }
        emit!("{}", decoder.push(&tok.token_to_piece(next, false)));
        generated += 1;
        ctx.eval(&[next], 0).map_err(|e| e.to_string())?;
    }
    emit!("{}\n", decoder.finish());
    let gen_time = started.elapsed();
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s; generated: {generated} tokens, {:.1} tok/s",
        prompt.len(),
        prompt.len() as f64 / prompt_time.as_secs_f64(),
        generated as f64 / gen_time.as_secs_f64()
    );
    Ok(Ended::Done)
}

/// `chat`: one line of stdin is one user turn; the whole history is rendered with the model's
/// template each turn and evaluated afresh (simple and exact: the template may rewrite earlier
/// turns, so reusing cached cells would need a prefix comparison).
fn chat(
    n_predict: usize,
    model: &Model,
    ctx: &mut Context,
    sampler: &mut SamplerChain,
) -> Result<Ended, String> {
    use std::io::{BufRead, IsTerminal};
    let template = (model.chat_template()).ok_or("this model has no chat template")?;
    let tok = model.tokenizer();
    let piece = |t: Option<u32>| {
        t.map(|t| String::from_utf8_lossy(&tok.token_to_piece(t, true)).into_owned())
            .unwrap_or_default()
    };
    let (bos, eos) = (piece(tok.bos()), piece(tok.eos()));
    let special = rocmforge::chat::SpecialTokens {
        bos: &bos,
        eos: &eos,
    };
    let interactive = std::io::stdin().is_terminal();
    let mut history: Vec<(String, String)> = Vec::new();
    let mut out = std::io::stdout().lock();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        history.push(("user".into(), line));
        let messages: Vec<rocmforge::chat::Message> = (history.iter())
            .map(|(role, content)| rocmforge::chat::Message { role, content })
            .collect();
        let text = rocmforge::chat::render(template, &messages, true, &special)
            .map_err(|e| e.to_string())?;
        let prompt = tok.encode(&text, false, true);
        ctx.kv_clear();
        ctx.eval(&prompt, 0).map_err(|e| e.to_string())?;
        let mut decoder = StreamDecoder::new();
        let mut reply = String::new();
        for _ in 0..n_predict {
            let logits = ctx.last_logits().ok_or("no logits")?;
            let next = sampler.sample(logits).map_err(|e| e.to_string())?;
            sampler.accept(next);
            if tok.is_eog(next) {
                break;
            }
            let piece = decoder.push(&tok.token_to_piece(next, false));
            reply.push_str(&piece);
            if let Err(e) = write!(out, "{piece}").and_then(|()| out.flush()) {
                return if reader_gone(&e) {
                    Ok(Ended::ReaderGone)
                } else {
                    Err(e.to_string())
                };
            }
            ctx.eval(&[next], 0).map_err(|e| e.to_string())?;
        }
        let rest = decoder.finish();
        reply.push_str(&rest);
        if let Err(e) = writeln!(out, "{rest}").and_then(|()| out.flush()) {
            return if reader_gone(&e) {
                Ok(Ended::ReaderGone)
            } else {
                Err(e.to_string())
            };
        }
        history.push(("assistant".into(), reply));
    }
    Ok(Ended::Done)
}

/// `serve ...` or any `--port`: replaces this process with the server, passing the arguments on.
fn serve_requested() -> Option<Vec<std::ffi::OsString>> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "serve") {
        return Some(args[1..].to_vec());
    }
    args.iter().any(|a| a == "--port").then_some(args)
}

fn serve(args: Vec<std::ffi::OsString>) -> ExitCode {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("rocmforge-server")));
    let Some(server) = exe.filter(|p| p.exists()) else {
        eprintln!(
            "rocmforge_cli: serve needs the rocmforge-server program beside this one \
             (build it with: cargo build --release -p rocmforge-server)"
        );
        return ExitCode::FAILURE;
    };
    let mut cmd = std::process::Command::new(&server);
    let has_model =
        (args.iter()).any(|a| a == "-m" || a == "--model" || a == "-h" || a == "--help");
    if !has_model {
        cmd.arg("--model").arg(default_model());
    }
    cmd.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        eprintln!("rocmforge_cli: cannot run {}: {err}", server.display());
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rocmforge_cli: cannot run {}: {e}", server.display());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    if let Some(args) = serve_requested() {
        return serve(args);
    }
    let args = match parse_args() {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Print(text)) => {
            // Help and version go to stdout and succeed, as people pipe them into a pager.
            let mut out = std::io::stdout().lock();
            return match writeln!(out, "{text}") {
                Err(e) if !reader_gone(&e) => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            };
        }
        Err(e) => {
            // A usage error exits 2 (the convention of getopt and clap), a failed run 1.
            eprintln!("rocmforge_cli: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(Ended::Done | Ended::ReaderGone) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge_cli: {e}");
            ExitCode::FAILURE
        }
    }
}
