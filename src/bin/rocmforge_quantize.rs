//! `rocmforge_quantize`: re-quantizes a GGUF model, as llama.cpp's `llama-quantize` does.
//!
//! rocmforge_quantize [--threads N] [--allow-requantize] [--pure] IN.gguf OUT.gguf TYPE
//! rocmforge_quantize --dry-run [--pure] IN.gguf TYPE
//!
//! TYPE is one of llama-quantize's names (any case) or its file-type number; the per-tensor
//! choices of the mixes are llama.cpp's (see `rocmforge::api::quantize::mix`). Progress goes to
//! stderr when it is a terminal; a summary of the types written ends the run. `--dry-run`
//! prints the type each tensor would get (`name TYPE` lines on stdout) and writes nothing.

use rocmforge::api::{quantize_model, quantize_plan, FileType, QuantizeParams};
use rocmforge::gguf::GgufFile;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: rocmforge_quantize [--threads N] [--allow-requantize] [--pure] \
IN.gguf OUT.gguf TYPE
       rocmforge_quantize --dry-run [--pure] IN.gguf TYPE

Writes OUT.gguf with the tensors of IN.gguf quantized to TYPE, choosing per-tensor types as
llama.cpp's llama-quantize does (same names, same mixes; OUT.gguf loads in llama.cpp too).

TYPE (any case, or llama.cpp's file-type number):
  mixes:  Q2_K  Q3_K_S  Q3_K_M (Q3_K)  Q3_K_L  Q4_K_S  Q4_K_M (Q4_K)  Q5_K_S  Q5_K_M (Q5_K)  Q6_K
          Q4_0  Q4_1  Q5_0  Q5_1  Q8_0  IQ4_NL  IQ4_XS   (norms and 1-D tensors stay as they
          are; the output head gets Q6_K or Q8_0; rows that are not whole 256-blocks fall back
          to Q5_0/Q5_1/Q8_0/Q4_0/IQ4_NL)
  plain:  F16  BF16  F32
  not supported: IQ1/IQ2/IQ3, TQ1_0/TQ2_0, MXFP4_MOE, Q2_K_S

options:
  --threads N          threads quantizing rows (default: all cores; the output is the same)
  --allow-requantize   accept already-quantized input (dequantized, then quantized again)
  --pure               one type for every quantizable tensor: no per-tensor mix
  --dry-run            print `name TYPE` for every tensor, write nothing
  -h, --help           this text
  -V, --version        the version";

struct Args {
    input: PathBuf,
    /// None: --dry-run
    output: Option<PathBuf>,
    file_type: FileType,
    threads: usize,
    allow_requantize: bool,
    pure: bool,
}

enum Parsed {
    Run(Args),
    Print(String),
}

fn parse_args() -> Result<Parsed, String> {
    let mut positional: Vec<std::ffi::OsString> = Vec::new();
    let (mut threads, mut allow_requantize, mut pure, mut dry_run) = (0usize, false, false, false);
    // args_os: a path need not be UTF-8, and std::env::args would panic on one.
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(Parsed::Print(USAGE.into())),
            Some("-V" | "--version") => {
                return Ok(Parsed::Print(format!(
                    "rocmforge_quantize {}",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            Some("--allow-requantize") => allow_requantize = true,
            Some("--pure") => pure = true,
            Some("--dry-run") => dry_run = true,
            Some("--threads" | "-t") => {
                let v = it.next().ok_or("--threads needs a value")?;
                let v = v.to_string_lossy();
                threads = match v.trim().parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "--threads: '{v}' is not a whole number in 1..=1024"
                        ))
                    }
                };
            }
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option '{flag}' (try --help)"))
            }
            _ => positional.push(arg),
        }
    }
    let want = if dry_run {
        "IN.gguf TYPE"
    } else {
        "IN.gguf OUT.gguf TYPE"
    };
    if positional.len() != 3 - usize::from(dry_run) {
        return Err(format!(
            "expected {want}, got {} argument(s) (try --help)",
            positional.len()
        ));
    }
    let ty = positional.pop().unwrap_or_default();
    let output = (!dry_run).then(|| positional.pop().unwrap_or_default().into());
    let input = positional.pop().unwrap_or_default();
    let ty = ty
        .into_string()
        .map_err(|t| format!("TYPE '{}' is not valid UTF-8", t.to_string_lossy()))?;
    let file_type = FileType::parse(&ty).map_err(|e| e.to_string())?;
    Ok(Parsed::Run(Args {
        input: input.into(),
        output,
        file_type,
        threads,
        allow_requantize,
        pure,
    }))
}

/// `--dry-run`: the plan on stdout.
fn dry_run(args: &Args) -> Result<(), String> {
    let file = GgufFile::open(&args.input).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for (name, ty) in quantize_plan(&file, args.file_type, args.pure) {
        match writeln!(out, "{name} {ty}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    let Some(output) = args.output.clone() else {
        return dry_run(&args);
    };
    let start = std::time::Instant::now();
    // A counter redrawn in place, on a terminal only (a log file gets the summary alone).
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |done: usize, total: usize| {
        if terminal {
            eprint!("\rrocmforge_quantize: [{done}/{total}] tensors written");
        }
        true
    };
    let report = quantize_model(
        &args.input,
        &output,
        QuantizeParams {
            file_type: args.file_type,
            pure: args.pure,
            allow_requantize: args.allow_requantize,
            threads: args.threads,
            progress: Some(&mut progress),
        },
    );
    if terminal {
        eprintln!();
    }
    let report = report.map_err(|e| e.to_string())?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, ty) in &report.tensors {
        *counts.entry(ty.name()).or_default() += 1;
    }
    let mix: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!(
        "rocmforge_quantize: {} -> {} ({}): {:.1} MiB -> {:.1} MiB, tensors: {}, {:.1} s",
        args.input.display(),
        output.display(),
        args.file_type,
        report.input_bytes as f64 / (1u64 << 20) as f64,
        report.output_bytes as f64 / (1u64 << 20) as f64,
        mix.join(", "),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Print(text)) => {
            // Help and version go to stdout and succeed; a closed pipe is no failure.
            let mut out = std::io::stdout().lock();
            return match writeln!(out, "{text}") {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            };
        }
        Err(e) => {
            // A usage error exits 2 (getopt's and clap's convention), a failed run 1.
            eprintln!("rocmforge_quantize: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge_quantize: {e}");
            ExitCode::FAILURE
        }
    }
}
