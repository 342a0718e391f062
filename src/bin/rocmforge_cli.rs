//! `rocmforge_cli`: run a prompt through a model and stream the continuation.
//!
//! rocmforge_cli [-m MODEL.gguf] [-p PROMPT] [-n N_PREDICT] [-t THREADS] [--temp T] [--seed S]
//!               [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--ctx N]
//!               [--backend auto|cpu|gpu] [--device I]
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
}

/// The model used when none is named: SmolLM2 in the model cache.
fn default_model() -> String {
    format!(
        "{}/SmolLM2-135M-Instruct.Q4_1.gguf",
        std::env::var("ROCMFORGE_MODEL_DIR").unwrap_or_else(|_| ".cache/models".into())
    )
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: default_model(),
        prompt: "The capital of France is".into(),
        n_predict: 64,
        ctx: ContextParams::default(),
        backend: Backend::Auto,
        device: 0,
        sampling: SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "-m" | "--model" => args.model = value()?,
            "-p" | "--prompt" => args.prompt = value()?,
            "-n" | "--n-predict" => args.n_predict = num(value()?)? as usize,
            "-t" | "--threads" => args.ctx.n_threads = num(value()?)? as usize,
            "-c" | "--ctx" => args.ctx.n_ctx = num(value()?)? as usize,
            "--temp" => args.sampling.temperature = num(value()?)? as f32,
            "--seed" => args.sampling.seed = num(value()?)? as u64,
            "--top-k" => args.sampling.top_k = num(value()?)? as i32,
            "--top-p" => args.sampling.top_p = num(value()?)? as f32,
            "--min-p" => args.sampling.min_p = num(value()?)? as f32,
            "--repeat-penalty" => args.sampling.penalty_repeat = num(value()?)? as f32,
            "--device" => args.device = num(value()?)? as usize,
            "--backend" => {
                args.backend = match value()?.as_str() {
                    "auto" => Backend::Auto,
                    "cpu" => Backend::Cpu,
                    "gpu" => Backend::Gpu,
                    other => return Err(format!("--backend: '{other}' is not auto, cpu or gpu")),
                }
            }
            "-h" | "--help" => {
                return Err(
                    "usage: rocmforge_cli [-m MODEL] [-p PROMPT] [-n N] [-t THREADS] \
                            [-c CTX] [--temp T] [--seed S] [--top-k K] [--top-p P] [--min-p P] \
                            [--repeat-penalty R] [--backend auto|cpu|gpu] [--device I]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), String> {
    let params = ModelParams {
        backend: args.backend,
        device: args.device,
        ..ModelParams::default()
    };
    let model = Model::load(&args.model, params).map_err(|e| e.to_string())?;
    eprintln!("backend: {:?}", model.backend());
    let mut ctx = Context::new(&model, args.ctx).map_err(|e| e.to_string())?;
    let mut sampler = SamplerChain::from_params(&args.sampling).map_err(|e| e.to_string())?;
    let tok = model.tokenizer();
    let prompt = tok.encode(&args.prompt, true, true);
    let started = std::time::Instant::now();
    ctx.eval(&prompt, 0).map_err(|e| e.to_string())?;
    let prompt_time = started.elapsed();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", args.prompt);
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
        let _ = write!(out, "{}", decoder.push(&tok.token_to_piece(next, false)));
        let _ = out.flush();
        generated += 1;
        ctx.eval(&[next], 0).map_err(|e| e.to_string())?;
    }
    let _ = writeln!(out, "{}", decoder.finish());
    let gen_time = started.elapsed();
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s; generated: {generated} tokens, {:.1} tok/s",
        prompt.len(),
        prompt.len() as f64 / prompt_time.as_secs_f64(),
        generated as f64 / gen_time.as_secs_f64()
    );
    Ok(())
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
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge_cli: {e}");
            ExitCode::FAILURE
        }
    }
}
