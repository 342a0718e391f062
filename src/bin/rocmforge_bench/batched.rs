//! `rocmforge_bench batched`: many sequences at once, in the shape of llama.cpp's
//! `llama-batched-bench` (prompt not shared), through the public API.
//!
//! For each B of `-npl`: the cache is cleared; B prompts of PP pseudo-random tokens (one per
//! sequence, logits for each prompt's last token) go in as one batch of B * PP tokens, cut into
//! decode calls of at most `-b` tokens as llama-batched-bench cuts its batch (T_PP); then TG
//! steps, each one batch holding the next token of every sequence with its logits (T_TG).
//! S_PP = B * PP / T_PP, S_TG = B * TG / T_TG, S = B * (PP + TG) / (T_PP + T_TG).
//!
//! Cache layout (`--layout`): `regions` (default) gives each sequence its own region of the
//! cache (`Context::set_seq_regions`, a stride of PP + TG rounded up to the attention chunk),
//! which is what a multi-sequence user such as our scheduler does, and what llama.cpp's default
//! (non-unified) cache does with one stream per sequence; `pool` puts every sequence in one
//! shared pool of cells (llama.cpp's `-kvu`).
//!
//! rocmforge_bench batched -m MODEL [-npp 128] [-ntg 64] [-npl 1,4,8,16,32] [-t THREADS]
//!     [-b 2048] [-r 1] [--layout regions|pool] [--gpu] [--jsonl]

use rocmforge::backend::numerics::ATTENTION_CHUNK;
use rocmforge::{Backend, Batch, Context, ContextParams, Model, ModelParams};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Regions,
    Pool,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Regions => "regions",
            Layout::Pool => "pool",
        }
    }
}

struct Args {
    model: String,
    n_pp: Vec<usize>,
    n_tg: Vec<usize>,
    n_pl: Vec<usize>,
    threads: usize,
    n_batch: usize,
    reps: usize,
    layout: Layout,
    gpu: bool,
    jsonl: bool,
}

const USAGE: &str = "usage: rocmforge_bench batched -m MODEL [-npp 128[,..]] [-ntg 64[,..]] \
    [-npl 1,4,8,16,32] [-t THREADS] [-b 2048] [-r 1] [--layout regions|pool] [--gpu] [--jsonl]";

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        n_pp: vec![128],
        n_tg: vec![64],
        n_pl: vec![1, 4, 8, 16, 32],
        threads: 0,
        n_batch: 2048,
        reps: 1,
        layout: Layout::Regions,
        gpu: false,
        jsonl: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--gpu" => {
                a.gpu = true;
                continue;
            }
            "--jsonl" => {
                a.jsonl = true;
                continue;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => {}
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n = |s: &str| match s.parse::<usize>() {
            Ok(0) => Err(format!("{flag}: 0 is not allowed")),
            Ok(x) => Ok(x),
            Err(e) => Err(format!("{flag}: {e}")),
        };
        let list = |s: &str| s.split(',').map(n).collect::<Result<Vec<_>, _>>();
        match flag.as_str() {
            "-m" => a.model = v.clone(),
            "-npp" => a.n_pp = list(v)?,
            "-ntg" => a.n_tg = list(v)?,
            "-npl" => a.n_pl = list(v)?,
            "-t" => a.threads = n(v)?,
            "-b" => a.n_batch = n(v)?,
            "-r" => a.reps = n(v)?,
            "--layout" => {
                a.layout = match v.as_str() {
                    "regions" => Layout::Regions,
                    "pool" => Layout::Pool,
                    _ => return Err(format!("--layout: {v} is neither regions nor pool")),
                }
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.model.is_empty() {
        return Err(USAGE.into());
    }
    if a.n_pl
        .iter()
        .any(|&b| b > rocmforge::kv_cache::MAX_SEQUENCES)
    {
        return Err(format!(
            "-npl: at most {} sequences",
            rocmforge::kv_cache::MAX_SEQUENCES
        ));
    }
    Ok(a)
}

/// One (PP, TG, B) measurement, times in seconds (means over the repetitions).
struct Row {
    pp: usize,
    tg: usize,
    pl: usize,
    t_pp: f64,
    t_tg: f64,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let a = parse(args)?;
    let backend = if a.gpu { Backend::Gpu } else { Backend::Cpu };
    let params = ModelParams {
        backend,
        ..ModelParams::default()
    };
    let model = Model::load(&a.model, params).map_err(|e| e.to_string())?;
    let n_vocab = model.hparams().n_vocab;
    if a.jsonl {
        super::print_machine(&model)?;
    }
    let max_pl = a.n_pl.iter().copied().max().unwrap_or(1);
    let max_len = a.n_pp.iter().max().unwrap_or(&1) + a.n_tg.iter().max().unwrap_or(&1);
    // Regions: a multiple of the attention chunk, so each sequence computes what it would
    // alone; pool: exactly the cells the largest run needs, as llama-batched-bench's
    // N_KV = B * (PP + TG).
    let stride = max_len.div_ceil(ATTENTION_CHUNK) * ATTENTION_CHUNK;
    let n_ctx = match a.layout {
        Layout::Regions => max_pl * stride,
        Layout::Pool => max_pl * max_len,
    };
    let cparams = ContextParams {
        n_ctx,
        n_batch: a.n_batch,
        n_seq_max: max_pl,
        n_threads: a.threads,
        // The default cache type (f16), as llama-batched-bench's default -ctk/-ctv.
        ..ContextParams::default()
    };
    let mut ctx = Context::new(&model, cparams).map_err(|e| e.to_string())?;
    let n_threads = ctx.params().n_threads;
    let mut rng = Rng::new();
    let layout = |ctx: &mut Context| -> Result<(), String> {
        ctx.kv_clear();
        if a.layout == Layout::Regions {
            ctx.set_seq_regions(Some(stride))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };

    // Warm-up, as llama-batched-bench: 16 tokens of sequence 0; then a 112-token step, longer
    // than the GPU's int8 mat-mats take (64 tokens on NVIDIA), so that prompt-sized steps'
    // one-time costs (the BLAS path: its handle's first GEMMs, the dequantization kernels'
    // first launches) are not charged to the first prompt measured (with a 64-token warm-up
    // step, once those took the int8 path, one 128-token prompt measured 1,832 tok/s instead
    // of 5,405 on an H100). Both within the context, however small the runs make it.
    layout(&mut ctx)?;
    let warm: Vec<u32> = (0..n_ctx.min(128)).map(|_| rng.token(n_vocab)).collect();
    let first = warm.len().min(16);
    decode(
        &mut ctx,
        &Batch::for_sequence(&warm[..first], 0, 0),
        a.n_batch,
    )?;
    if warm.len() > first {
        decode(
            &mut ctx,
            &Batch::for_sequence(&warm[first..], first as i32, 0),
            a.n_batch,
        )?;
    }

    let device = if a.gpu { "gpu" } else { "cpu" };
    if !a.jsonl {
        println!(
            "\nrocmforge batched: device = {device}, n_kv_max = {n_ctx}, n_batch = {}, \
             cache = {}, layout = {} (stride {}), n_threads = {n_threads}, reps = {}\n",
            ctx.params().n_batch,
            ctx.params().cache_type.name(),
            a.layout.name(),
            if a.layout == Layout::Regions {
                stride
            } else {
                0
            },
            a.reps
        );
        println!(
            "|{:>6} | {:>6} | {:>4} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} |",
            "PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s"
        );
        println!(
            "|{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|",
            "-".repeat(6),
            "-".repeat(6),
            "-".repeat(4),
            "-".repeat(6),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8)
        );
    }
    for &pp in &a.n_pp {
        for &tg in &a.n_tg {
            for &pl in &a.n_pl {
                let (mut t_pp, mut t_tg) = (0.0, 0.0);
                for _ in 0..a.reps {
                    let (p, g) = one_run(&mut ctx, &mut rng, &layout, pp, tg, pl, a.n_batch)?;
                    t_pp += p;
                    t_tg += g;
                }
                let row = Row {
                    pp,
                    tg,
                    pl,
                    t_pp: t_pp / a.reps as f64,
                    t_tg: t_tg / a.reps as f64,
                };
                print_row(&row, &a, device, &ctx);
            }
        }
    }
    Ok(())
}

/// One llama-batched-bench step for B = `pl` sequences: (T_PP, T_TG) in seconds.
fn one_run(
    ctx: &mut Context,
    rng: &mut Rng,
    layout: &dyn Fn(&mut Context) -> Result<(), String>,
    pp: usize,
    tg: usize,
    pl: usize,
    n_batch: usize,
) -> Result<(f64, f64), String> {
    let n_vocab = ctx.model().hparams().n_vocab;
    let mut prompts = Batch::new();
    for s in 0..pl {
        for i in 0..pp {
            prompts.push(rng.token(n_vocab), i as i32, s as u32, i + 1 == pp);
        }
    }
    let steps: Vec<Batch> = (0..tg)
        .map(|i| {
            let mut b = Batch::new();
            for s in 0..pl {
                b.push(rng.token(n_vocab), (pp + i) as i32, s as u32, true);
            }
            b
        })
        .collect();
    layout(ctx)?;
    let start = Instant::now();
    decode(ctx, &prompts, n_batch)?;
    let t_pp = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for step in &steps {
        decode(ctx, step, n_batch)?;
        // Every sequence's logits are there to be read, as a sampler would.
        std::hint::black_box(ctx.logits(pl - 1).map(|l| l[0]));
    }
    let t_tg = start.elapsed().as_secs_f64();
    Ok((t_pp, t_tg))
}

/// Decodes `batch` in consecutive pieces of at most `n_batch` tokens (llama-batched-bench's
/// decode_helper).
fn decode(ctx: &mut Context, batch: &Batch, n_batch: usize) -> Result<(), String> {
    let n_batch = n_batch.min(ctx.params().n_batch);
    let mut piece = Batch::new();
    for start in (0..batch.len()).step_by(n_batch) {
        piece.clear();
        for i in start..(start + n_batch).min(batch.len()) {
            piece.push(batch.tokens[i], batch.pos[i], batch.seq[i], batch.logits[i]);
        }
        ctx.decode(&piece).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn print_row(r: &Row, a: &Args, device: &str, ctx: &Context) {
    let (n_ctx, n_threads, n_batch) = (
        ctx.params().n_ctx,
        ctx.params().n_threads,
        ctx.params().n_batch,
    );
    let cache = ctx.params().cache_type.name();
    let n_kv = r.pl * (r.pp + r.tg);
    let t = r.t_pp + r.t_tg;
    let s_pp = (r.pl * r.pp) as f64 / r.t_pp;
    let s_tg = (r.pl * r.tg) as f64 / r.t_tg;
    let s = n_kv as f64 / t;
    if a.jsonl {
        println!(
            "{{\"engine\":\"rocmforge\",\"test\":\"batched\",\"device\":\"{device}\",\
             \"layout\":\"{}\",\"cache\":\"{}\",\"n_kv_max\":{n_ctx},\"n_batch\":{n_batch},\
             \"n_threads\":{n_threads},\"reps\":{},\"pp\":{},\"tg\":{},\"pl\":{},\"n_kv\":{n_kv},\
             \"t_pp\":{:.6},\"speed_pp\":{s_pp:.3},\"t_tg\":{:.6},\"speed_tg\":{s_tg:.3},\
             \"t\":{t:.6},\"speed\":{s:.3}}}",
            a.layout.name(),
            cache,
            a.reps,
            r.pp,
            r.tg,
            r.pl,
            r.t_pp,
            r.t_tg
        );
    } else {
        println!(
            "|{:>6} | {:>6} | {:>4} | {:>6} | {:>8.3} | {:>8.2} | {:>8.3} | {:>8.2} | {:>8.3} | \
             {:>8.2} |",
            r.pp, r.tg, r.pl, n_kv, r.t_pp, s_pp, r.t_tg, s_tg, t, s
        );
    }
}

/// Pseudo-random token ids (xorshift, fixed seed), avoiding the special ids at the start, as
/// llama-batched-bench feeds random tokens instead of sampling.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15)
    }

    fn token(&mut self, n_vocab: usize) -> u32 {
        let s = &mut self.0;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (100 + *s % (n_vocab as u64 - 100)) as u32
    }
}
