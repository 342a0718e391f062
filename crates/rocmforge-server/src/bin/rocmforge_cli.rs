//! `rocmforge_cli`: run a prompt through a model and stream the continuation, hold a chat, or
//! serve the model over the OpenAI API.
//!
//! rocmforge_cli [-m MODEL.gguf] [-p PROMPT] [-n N_PREDICT] [-t THREADS] [--temp T] [--seed S]
//!               [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--ctx N]
//!               [--backend auto|cpu|gpu] [--device I] [--cache-type f16|f32|q8_0]
//! rocmforge_cli chat [same options]
//! rocmforge_cli serve [-m MODEL] [--port 8080] [server options]   (also: rocmforge_cli --port 8080)
//!
//! A binary of the server crate, not of the library: clap, tokio and axum stay out of
//! librocmforge, and `serve` runs the server (this crate's library) in this process.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use rocmforge::kv_cache::KvType;
use rocmforge::sampler::{SamplerChain, SamplerParams};
use rocmforge::tokenizer::StreamDecoder;
use rocmforge::{Backend, Context, ContextParams, Model, ModelParams};
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// The model used when none is named: SmolLM2 in the model cache.
fn default_model() -> String {
    format!(
        "{}/SmolLM2-135M-Instruct.Q4_1.gguf",
        std::env::var("ROCMFORGE_MODEL_DIR").unwrap_or_else(|_| ".cache/models".into())
    )
}

#[derive(Parser)]
#[command(
    name = "rocmforge_cli",
    version,
    about = "Run a prompt through a GGUF model, chat with it, or serve it over the OpenAI API",
    after_help = "--seed -1 picks a random seed (printed on stderr).",
    args_conflicts_with_subcommands = true,
    // `-n -5` is a bad count (reported as such), not an unknown flag `-5`.
    allow_negative_numbers = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Interactive chat in the model's template: one stdin line is one user turn; the history
    /// is kept.
    #[command(allow_negative_numbers = true)]
    Chat(RunArgs),
    /// Serve the model over the OpenAI API (the rocmforge-server options).
    Serve(rocmforge_server::Args),
}

/// Options of a one-shot run and of `chat`.
#[derive(clap::Args)]
struct RunArgs {
    /// GGUF model file [default: $ROCMFORGE_MODEL_DIR or .cache/models, SmolLM2-135M-Instruct Q4_1]
    #[arg(short, long)]
    model: Option<String>,
    /// Prompt of a one-shot run.
    #[arg(short, long, default_value = "The capital of France is")]
    prompt: String,
    /// Tokens to generate [default: 64; chat: 512 per turn].
    #[arg(short, long = "n-predict", value_name = "N", value_parser = whole::<usize>(0, 1 << 24))]
    n_predict: Option<usize>,
    /// Compute threads [default: all cores].
    #[arg(short, long, value_parser = whole::<usize>(1, 1024))]
    threads: Option<usize>,
    /// Context size in tokens [default: the library's].
    #[arg(short, long, value_name = "N", value_parser = whole::<usize>(1, 1 << 24))]
    ctx: Option<usize>,
    /// Sampling temperature (0: greedy).
    #[arg(long, value_name = "T", default_value = "0", value_parser = number(0.0, 100.0))]
    temp: f32,
    /// Sampling seed; -1 picks a random one.
    #[arg(long, value_name = "S", allow_hyphen_values = true, value_parser = seed)]
    seed: Option<Seed>,
    /// Keep the K most likely tokens (0: all).
    #[arg(long, value_name = "K", value_parser = whole::<i32>(0, i32::MAX as i64))]
    top_k: Option<i32>,
    /// Nucleus sampling threshold.
    #[arg(long, value_name = "P", value_parser = number(0.0, 1.0))]
    top_p: Option<f32>,
    /// Drop tokens below P times the most likely one's probability.
    #[arg(long, value_name = "P", value_parser = number(0.0, 1.0))]
    min_p: Option<f32>,
    /// Repetition penalty (1: none).
    #[arg(long, value_name = "R", value_parser = number(0.0, 100.0))]
    repeat_penalty: Option<f32>,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// GPU index.
    #[arg(long, value_name = "I", default_value = "0", value_parser = whole::<usize>(0, 1023))]
    device: usize,
    /// KV cache type (f16 as llama.cpp, f32, or q8_0 on the CPU backend).
    #[arg(long, value_name = "TYPE", value_parser = cache_type)]
    cache_type: Option<KvType>,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Auto,
    Cpu,
    Gpu,
}

/// `--seed`: a fixed seed, or -1 for one picked at start.
#[derive(Clone, Copy)]
enum Seed {
    Fixed(u64),
    Random,
}

/// A parser of whole numbers in `lo..=hi` whose message says what is wrong (clap names the flag).
fn whole<T: TryFrom<i64>>(
    lo: i64,
    hi: i64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |v| {
        let n: i64 = (v.trim().parse()).map_err(|_| "not a whole number".to_string())?;
        if n < lo || n > hi {
            return Err(format!("{n} is outside {lo}..={hi}"));
        }
        T::try_from(n).map_err(|_| format!("{n} is out of range"))
    }
}

/// A parser of finite numbers in `lo..=hi`.
fn number(
    lo: f64,
    hi: f64,
) -> impl Fn(&str) -> Result<f32, String> + Clone + Send + Sync + 'static {
    move |v| {
        let x: f64 = (v.trim().parse()).map_err(|_| "not a number".to_string())?;
        if !x.is_finite() || x < lo || x > hi {
            return Err(format!("{v} is outside {lo}..={hi}"));
        }
        Ok(x as f32)
    }
}

fn seed(v: &str) -> Result<Seed, String> {
    if v.trim() == "-1" {
        return Ok(Seed::Random);
    }
    (v.trim().parse().map(Seed::Fixed)).map_err(|_| "not -1 or a whole number >= 0".into())
}

fn cache_type(v: &str) -> Result<KvType, String> {
    v.parse().map_err(|e: rocmforge::Error| e.to_string())
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

/// A run or chat as the engine takes it.
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

impl RunArgs {
    fn resolve(self, chat: bool) -> Args {
        let mut ctx = ContextParams::default();
        if let Some(n) = self.threads {
            ctx.n_threads = n;
        }
        if let Some(n) = self.ctx {
            ctx.n_ctx = n;
        }
        if let Some(t) = self.cache_type {
            ctx.cache_type = t;
        }
        let mut sampling = SamplerParams {
            temperature: self.temp,
            ..SamplerParams::default()
        };
        match self.seed {
            Some(Seed::Fixed(s)) => sampling.seed = s,
            Some(Seed::Random) => {
                sampling.seed = random_seed();
                eprintln!("seed: {}", sampling.seed);
            }
            None => {}
        }
        if let Some(k) = self.top_k {
            sampling.top_k = k;
        }
        if let Some(p) = self.top_p {
            sampling.top_p = p;
        }
        if let Some(p) = self.min_p {
            sampling.min_p = p;
        }
        if let Some(r) = self.repeat_penalty {
            sampling.penalty_repeat = r;
        }
        Args {
            model: self.model.unwrap_or_else(default_model),
            prompt: self.prompt,
            n_predict: self.n_predict.unwrap_or(if chat { 512 } else { 64 }),
            ctx,
            sampling,
            backend: match self.backend {
                BackendArg::Auto => Backend::Auto,
                BackendArg::Cpu => Backend::Cpu,
                BackendArg::Gpu => Backend::Gpu,
            },
            device: self.device,
            chat,
        }
    }
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
/// template each turn, and only what differs from the tokens already in the cache is
/// evaluated (the template may rewrite earlier turns, and a reply may tokenize differently from
/// how it was sampled: the cache is cut back to the common prefix). The result is what a fresh
/// evaluation gives, bit for bit: a token's logits do not depend on how the tokens before it
/// were batched.
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
    // Tokens whose keys and values are in the cache (sequence 0), in position order.
    let mut cached: Vec<u32> = Vec::new();
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
        // At least the last prompt token is evaluated, for its logits.
        let mut keep = (cached.iter().zip(&prompt))
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len().saturating_sub(1));
        // A sliding-window ring (Gemma 3) keeps only the window before the last position:
        // going back further means evaluating the conversation again.
        if !ctx.kv_seq_can_continue_at(0, keep as i32) {
            keep = 0;
        }
        ctx.kv_seq_remove(Some(0), keep as i32, -1)
            .map_err(|e| e.to_string())?;
        cached.truncate(keep);
        ctx.eval(&prompt[keep..], 0).map_err(|e| e.to_string())?;
        cached.extend_from_slice(&prompt[keep..]);
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
            cached.push(next);
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

/// The command line with the first README's spelling, `rocmforge_cli --port 8080 [-m MODEL]`,
/// read as `serve`: a `--port` outside a subcommand can only mean the server.
fn with_serve_spelling(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str());
    let in_subcommand = matches!(first, Some("serve" | "chat" | "help"));
    let port = |a: &OsString| a == "--port" || a.to_str().is_some_and(|a| a.starts_with("--port="));
    if !in_subcommand && args.iter().skip(1).any(port) {
        args.insert(1, "serve".into());
    }
    args
}

fn main() -> ExitCode {
    let args = with_serve_spelling(std::env::args_os().collect());
    // `serve` without `-m` serves the default model, as a run does.
    let command = Cli::command().mut_subcommand("serve", |s| {
        s.mut_arg("model", |a| {
            a.required(false).default_value(default_model())
        })
    });
    // clap prints help and the version on stdout (exit 0) and usage errors on stderr (exit 2).
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let args = match cli.command {
        Some(Mode::Serve(server)) => return rocmforge_server::run(server),
        Some(Mode::Chat(run)) => run.resolve(true),
        None => cli.run.resolve(false),
    };
    match run(args) {
        Ok(Ended::Done | Ended::ReaderGone) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge_cli: {e}");
            ExitCode::FAILURE
        }
    }
}
