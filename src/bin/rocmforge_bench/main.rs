//! `rocmforge_bench`: prompt-processing and generation speed, measured like llama-bench
//! (pp: N random tokens in one batch on an empty cache; tg: N tokens one at a time from an
//! empty cache), printed as one JSON object per (threads, test) line.
//!
//! rocmforge_bench -m MODEL [-p 128[,512..]] [-n 64[,128..]] [-t 1,2] [-r 3] [-d 0[,4096..]]
//!                 [-ctk f16|f32|q8_0]
//! (lists as llama-bench takes them; 0 skips the test). `-d D`, as llama-bench's: each test
//! runs after D tokens already in the cache (filled once in batches of 512, then restored
//! from a saved state before every repetition), named e.g. `tg128@d4096`. `-ctk T`: the KV
//! cache type of keys and values both (llama-bench's `-ctk T -ctv T`; f16 by default).
//!
//! The first line says where it ran: the CPU model, its SIMD flags, the ISA choice
//! (`ROCMFORGE_CPU_ISA`, e.g. `avx2` to measure the AVX2 table on an AVX-512 machine) and the
//! dot-product kernels of each tensor type in the model's matrices.
//!
//! `rocmforge_bench batched ...`: many sequences at once, in llama-batched-bench's shape
//! (see [`batched`]).

mod batched;

use rocmforge::kv_cache::KvType;
use rocmforge::{Batch, Context, ContextParams, Model, ModelParams};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    model: String,
    n_prompt: Vec<usize>,
    n_gen: Vec<usize>,
    threads: Vec<usize>,
    reps: usize,
    depths: Vec<usize>,
    cache_type: KvType,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        n_prompt: vec![128],
        n_gen: vec![64],
        threads: vec![1, 2],
        reps: 3,
        depths: vec![0],
        cache_type: KvType::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n = |s: &str| s.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "-m" => a.model = v,
            "-p" => a.n_prompt = v.split(',').map(n).collect::<Result<_, _>>()?,
            "-n" => a.n_gen = v.split(',').map(n).collect::<Result<_, _>>()?,
            "-r" => a.reps = n(&v)?.max(1),
            "-t" => a.threads = v.split(',').map(n).collect::<Result<_, _>>()?,
            "-d" => a.depths = v.split(',').map(n).collect::<Result<_, _>>()?,
            "-ctk" | "--cache-type" => {
                a.cache_type = v.parse().map_err(|e| format!("{flag}: {e}"))?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.model.is_empty() {
        return Err(
            "usage: rocmforge_bench -m MODEL [-p N[,N..]] [-n N[,N..]] [-t 1,2] [-r REPS] \
             [-d DEPTH[,DEPTH..]] [-ctk f16|f32|q8_0]"
                .into(),
        );
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
    print_machine(&model)?;
    tokenizer_rate(&model);
    for &t in &a.threads {
        for &depth in &a.depths {
            bench_at_depth(&model, &a, t, depth)?;
        }
    }
    Ok(())
}

/// Batches that fill the cache before a test at depth.
const FILL_BATCH: usize = 512;

/// Every test of `a` on `threads` threads after `depth` tokens in the cache.
fn bench_at_depth(model: &Model, a: &Args, threads: usize, depth: usize) -> Result<(), String> {
    let n_vocab = model.hparams().n_vocab;
    let max_prompt = a.n_prompt.iter().copied().max().unwrap_or(0);
    let max_gen = a.n_gen.iter().copied().max().unwrap_or(0);
    let n_ctx = (depth + max_prompt + max_gen + 16).max(256);
    let fill = if depth > 0 { FILL_BATCH } else { 1 };
    let params = ContextParams {
        n_ctx,
        n_batch: max_prompt.max(fill).min(n_ctx),
        n_seq_max: 1,
        n_threads: threads,
        cache_type: a.cache_type,
        ..Default::default()
    };
    let mut ctx = Context::new(model, params).map_err(|e| e.to_string())?;
    // The cache at depth, saved once: each repetition starts from it.
    let filled = if depth > 0 {
        let toks = tokens(depth, n_vocab);
        for (k, chunk) in toks.chunks(FILL_BATCH).enumerate() {
            let batch = Batch::for_sequence(chunk, (k * FILL_BATCH) as i32, 0);
            ctx.decode(&batch).map_err(|e| e.to_string())?;
        }
        Some(ctx.state_save(None).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let reset = |ctx: &mut Context| -> Result<(), String> {
        match &filled {
            Some(state) => ctx.state_restore(state, None).map_err(|e| e.to_string()),
            None => {
                ctx.kv_clear();
                Ok(())
            }
        }
    };
    let name = |test: &str, n: usize| match depth {
        0 => format!("{test}{n}"),
        d => format!("{test}{n}@d{d}"),
    };
    let at = depth as i32;
    for &n_prompt in a.n_prompt.iter().filter(|&&n| n > 0) {
        let prompt = tokens(n_prompt, n_vocab);
        let batch = Batch::for_sequence(&prompt, at, 0);
        reset(&mut ctx)?;
        ctx.decode(&batch).map_err(|e| e.to_string())?; // warm-up
        let mut rates = Vec::new();
        for _ in 0..a.reps {
            reset(&mut ctx)?;
            let start = Instant::now();
            ctx.decode(&batch).map_err(|e| e.to_string())?;
            rates.push(n_prompt as f64 / start.elapsed().as_secs_f64());
        }
        print_result(threads, a.cache_type, &name("pp", n_prompt), &rates);
    }
    for &n_gen in a.n_gen.iter().filter(|&&n| n > 0) {
        let gen = tokens(n_gen, n_vocab);
        let mut rates = Vec::new();
        for rep in 0..=a.reps {
            reset(&mut ctx)?;
            let start = Instant::now();
            for (i, &tok) in gen.iter().enumerate() {
                ctx.decode(&Batch::for_sequence(&[tok], at + i as i32, 0))
                    .map_err(|e| e.to_string())?;
            }
            if rep > 0 {
                rates.push(n_gen as f64 / start.elapsed().as_secs_f64());
            }
        }
        print_result(threads, a.cache_type, &name("tg", n_gen), &rates);
    }
    Ok(())
}

/// One JSON line: CPU model and flags, ISA choice, the kernels each matrix type runs on.
fn print_machine(model: &Model) -> Result<(), String> {
    use rocmforge::quant::dot::{check_isa_choice, isa_choice, IsaChoice};
    check_isa_choice().map_err(|e| e.to_string())?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map_or(String::new(), |(_, v)| v.trim().to_string())
    };
    let all_flags = field("flags");
    let simd: Vec<&str> = all_flags
        .split_whitespace()
        .filter(|f| f.starts_with("avx") || f.starts_with("amx") || *f == "fma" || *f == "f16c")
        .collect();
    let flags = simd.join(" ");
    let mut types: Vec<_> = model.gguf().tensors().iter().map(|t| t.ty).collect();
    types.sort_by_key(|t| t.name());
    types.dedup();
    let kernels: Vec<String> = types
        .iter()
        .filter_map(|&t| rocmforge::quant::kernels_for(t))
        .map(|k| format!("\"{}\"", k.name))
        // The tiled kernels that steps of 4 tokens or more take, where a type has one.
        .chain(
            types
                .iter()
                .filter_map(|&t| rocmforge::quant::dot::gemm::gemm_kernels_for(t))
                .map(|k| format!("\"{}\"", k.name)),
        )
        .collect();
    let isa = match isa_choice() {
        IsaChoice::Auto => "auto",
        IsaChoice::Forced(i) => i.name(),
    };
    // Virtual machines often name only the vendor ("AMD EPYC"); family and model tell the
    // generation (AMD family 25 is Zen 3 or Zen 4: model 1 is Milan, Zen 3; 17 is Genoa, Zen 4).
    let cpu = format!(
        "{} (family {}, model {})",
        field("model name").replace('"', "'"),
        field("cpu family"),
        field("model")
    );
    println!(
        "{{\"engine\":\"rocmforge\",\"cpu\":\"{cpu}\",\"flags\":\"{flags}\",\"isa\":\"{isa}\",\"kernels\":[{}]}}",
        kernels.join(",")
    );
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

fn print_result(threads: usize, cache_type: KvType, test: &str, rates: &[f64]) {
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let var = rates.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / rates.len() as f64;
    println!(
        "{{\"engine\":\"rocmforge\",\"threads\":{threads},\"type_kv\":\"{cache_type}\",\"test\":\"{test}\",\"tokens_per_second\":{mean:.2},\"stddev\":{:.2}}}",
        var.sqrt()
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().is_some_and(|a| a == "batched") {
        batched::run(&args[1..])
    } else {
        parse().and_then(run)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
