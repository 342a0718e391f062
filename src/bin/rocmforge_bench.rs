//! `rocmforge_bench`: prompt-processing and generation speed, measured like llama-bench
//! (pp: N random tokens in one batch on an empty cache; tg: N tokens one at a time from an
//! empty cache), printed as one JSON object per (threads, test) line.
//!
//! rocmforge_bench -m MODEL [-p 128] [-n 64] [-t 1,2] [-r 3]

use rocmforge::{Batch, Context, ContextParams, Model, ModelParams};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    model: String,
    n_prompt: usize,
    n_gen: usize,
    threads: Vec<usize>,
    reps: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        n_prompt: 128,
        n_gen: 64,
        threads: vec![1, 2],
        reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n = |s: &str| s.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "-m" => a.model = v,
            "-p" => a.n_prompt = n(&v)?,
            "-n" => a.n_gen = n(&v)?,
            "-r" => a.reps = n(&v)?.max(1),
            "-t" => a.threads = v.split(',').map(n).collect::<Result<_, _>>()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.model.is_empty() {
        return Err("usage: rocmforge_bench -m MODEL [-p N] [-n N] [-t 1,2] [-r REPS]".into());
    }
    Ok(a)
}

/// Deterministic pseudo-random token ids (xorshift), avoiding the special ids at the start.
fn tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (100 + s % (n_vocab as u64 - 100)) as u32
        })
        .collect()
}

fn run(a: Args) -> Result<(), String> {
    let model = Model::load(&a.model, ModelParams::default()).map_err(|e| e.to_string())?;
    let n_vocab = model.hparams().n_vocab;
    tokenizer_rate(&model);
    for &t in &a.threads {
        let params = ContextParams {
            n_ctx: (a.n_prompt + a.n_gen + 16).max(256),
            n_batch: a.n_prompt.max(1),
            n_seq_max: 1,
            n_threads: t,
        };
        let mut ctx = Context::new(&model, params).map_err(|e| e.to_string())?;
        if a.n_prompt > 0 {
            let prompt = tokens(a.n_prompt, n_vocab);
            let batch = Batch::for_sequence(&prompt, 0, 0);
            ctx.decode(&batch).map_err(|e| e.to_string())?; // warm-up
            let mut rates = Vec::new();
            for _ in 0..a.reps {
                ctx.kv_clear();
                let start = Instant::now();
                ctx.decode(&batch).map_err(|e| e.to_string())?;
                rates.push(a.n_prompt as f64 / start.elapsed().as_secs_f64());
            }
            print_result(t, "pp", a.n_prompt, &rates);
        }
        if a.n_gen > 0 {
            let gen = tokens(a.n_gen, n_vocab);
            let mut rates = Vec::new();
            for rep in 0..=a.reps {
                ctx.kv_clear();
                let start = Instant::now();
                for (i, &tok) in gen.iter().enumerate() {
                    ctx.decode(&Batch::for_sequence(&[tok], i as i32, 0))
                        .map_err(|e| e.to_string())?;
                }
                if rep > 0 {
                    rates.push(a.n_gen as f64 / start.elapsed().as_secs_f64());
                }
            }
            print_result(t, "tg", a.n_gen, &rates);
        }
    }
    Ok(())
}

/// Tokenizer throughput on a fixed multi-paragraph text (best of 5 runs).
fn tokenizer_rate(model: &Model) {
    let paragraph = "The committee met on Tuesday, 14 March 2023, to review 1,250 proposals. \
        Don't panic: résumés, naïve café owners and 東京 visitors 🙂 were all welcome!\n\n";
    let text = paragraph.repeat(20);
    let tok = model.tokenizer();
    let n = tok.encode(&text, false, true).len();
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(tok.encode(&text, false, true));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    println!(
        "{{\"engine\":\"rocmforge\",\"test\":\"tokenize{n}\",\"tokens_per_second\":{:.0}}}",
        n as f64 / best
    );
}

fn print_result(threads: usize, test: &str, n: usize, rates: &[f64]) {
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let var = rates.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / rates.len() as f64;
    println!(
        "{{\"engine\":\"rocmforge\",\"threads\":{threads},\"test\":\"{test}{n}\",\"tokens_per_second\":{mean:.2},\"stddev\":{:.2}}}",
        var.sqrt()
    );
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
