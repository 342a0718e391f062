//! Micro-benchmark of the row dot-product kernels (not a test): ns per row-dot and GB/s of
//! weight bytes, for every kernel variant this CPU runs, in two regimes:
//! - `hot`: one weight row dotted over and over (L1-resident: pure kernel speed);
//! - `stream`: a 64 MiB weight matrix swept row by row (DRAM-bound, like decode).
//!
//! Then the tiled prompt kernels (quant/dot/gemm): one panel of weight rows against 64 tokens,
//! L1/L2-resident, in ns per (row, token) pair and multiply-adds per second.
//!
//! Run: `cargo bench --bench quant_dot` (optionally `-- q4_1` to filter by kernel name).

use rocmforge::quant::dot::available_kernels;
use rocmforge::quant::dot::gemm::{
    act_meta, available_gemm_kernels, takes_activations, ActMeta, GemmArgs,
};
use rocmforge::quant::{activation_type, quantize_activations, GgmlType};
use std::hint::black_box;
use std::time::Instant;

const STREAM_BYTES: usize = 64 << 20;
/// The weight types measured, in this order.
const TYPES: [GgmlType; 11] = [
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
    GgmlType::F16,
    GgmlType::F32,
];
const TRIALS: usize = 100;
/// Sweeps of the streamed matrix (each a trial of one iteration).
const STREAM_TRIALS: usize = 8;

fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// A weight matrix of `rows` rows of `n` elements: random quants with sane f16 scales, or
/// small normal floats (random bit patterns would hit slow denormal/NaN paths).
fn weights(ty: GgmlType, n: usize, rows: usize) -> Vec<u8> {
    let row_bytes = ty.row_bytes(n as u64).unwrap_or(0) as usize;
    let mut w = pseudo_random_bytes(row_bytes * rows, 7);
    let float = |b: &[u8]| (b[0] as f32 - 127.5) / 128.0;
    match ty {
        GgmlType::F32 => {
            w.chunks_exact_mut(4)
                .for_each(|b| b.copy_from_slice(&float(b).to_le_bytes()));
            return w;
        }
        GgmlType::F16 => {
            let h = |b: &[u8]| half::f16::from_f32(float(b)).to_le_bytes();
            w.chunks_exact_mut(2).for_each(|b| b.copy_from_slice(&h(b)));
            return w;
        }
        _ => {}
    }
    let bb = ty.block_bytes();
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    // The f16 factors of each block: d (and m / dmin); Q6_K keeps its d at the end.
    let factors: &[usize] = match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[0],
    };
    for blk in w.chunks_exact_mut(bb) {
        for &at in factors {
            blk[at..at + 2].copy_from_slice(&scale);
        }
    }
    w
}

/// Seconds per call of `f`: the best of many short trials, so that other processes on a
/// shared machine (or a busy hyperthread sibling) inflate the figure as little as possible.
fn time_per_iter(trials: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    (0..trials)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "{:<24} {:>5} {:>6} {:>8} {:>6} {:>8} {:>6} {:>8} {:>6}",
        "kernel", "n", "mode", "one ns", "GB/s", "four ns", "GB/s", "rows4 ns", "GB/s"
    );
    for ty in TYPES {
        let Some(act_ty) = activation_type(ty) else {
            continue;
        };
        // (576-element rows are not whole K-quant super-blocks.)
        for n in [576usize, 1536, 4096]
            .into_iter()
            .filter(|n| n % ty.block_elems() == 0)
        {
            let row_bytes = ty.row_bytes(n as u64).unwrap_or(0) as usize;
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut acts = vec![vec![0u8; act_ty.row_bytes(n as u64).unwrap_or(0) as usize]; 4];
            for a in &mut acts {
                quantize_activations(act_ty, &x, a).expect("activation row");
            }
            let a4 = [&acts[0][..], &acts[1][..], &acts[2][..], &acts[3][..]];
            let stream_rows = STREAM_BYTES / row_bytes;
            let w_stream = weights(ty, n, stream_rows);
            let w_hot = &w_stream[..row_bytes];
            for k in available_kernels(ty) {
                if filter.as_deref().is_some_and(|f| !k.name.contains(f)) {
                    continue;
                }
                let scalar = k.name.contains("scalar");
                let hot_iters = if scalar { 100 } else { 10_000 }; // per trial
                let one = time_per_iter(TRIALS, hot_iters, || {
                    black_box((k.one)(n, black_box(w_hot), black_box(&acts[0])));
                });
                let mut out = [0f32; 4];
                let four = time_per_iter(TRIALS, hot_iters / 4, || {
                    (k.four)(n, black_box(w_hot), a4, &mut out);
                    black_box(&out);
                }) / 4.0;
                let w4: [&[u8]; 4] =
                    std::array::from_fn(|r| &w_stream[r * row_bytes..][..row_bytes]);
                let rows4 = time_per_iter(TRIALS, hot_iters / 4, || {
                    (k.rows4)(n, black_box(w4), &acts[0], &mut out);
                    black_box(&out);
                }) / 4.0;
                report(k.name, n, "hot", [one, four, rows4], row_bytes);
                if scalar {
                    continue;
                }
                let sweep = |f: &mut dyn FnMut(&[u8])| {
                    for row in w_stream.chunks_exact(row_bytes) {
                        f(row);
                    }
                };
                let one = time_per_iter(STREAM_TRIALS, 1, || {
                    let mut s = 0f32;
                    sweep(&mut |row| s += (k.one)(n, row, &acts[0]));
                    black_box(s);
                }) / stream_rows as f64;
                let four = time_per_iter(STREAM_TRIALS, 1, || {
                    sweep(&mut |row| {
                        (k.four)(n, row, a4, &mut out);
                        black_box(&out);
                    });
                }) / stream_rows as f64
                    / 4.0;
                let rows4 = time_per_iter(STREAM_TRIALS, 1, || {
                    for quad in w_stream.chunks_exact(4 * row_bytes) {
                        let w4: [&[u8]; 4] =
                            std::array::from_fn(|r| &quad[r * row_bytes..][..row_bytes]);
                        (k.rows4)(n, w4, &acts[0], &mut out);
                        black_box(&out);
                    }
                }) / (stream_rows / 4 * 4) as f64;
                report(k.name, n, "stream", [one, four, rows4], row_bytes);
            }
        }
    }
    for ty in TYPES {
        bench_gemm(ty, filter.as_deref());
    }
}

/// Tokens per tiled call: a prompt chunk's worth, so the panel's unpacking is amortised as in
/// prompt processing.
const GEMM_TOKENS: usize = 64;

/// The tiled kernels of `ty`, one panel of rows against [`GEMM_TOKENS`] tokens: the types
/// with 32-element activation blocks (the K-quants' kernels take Q8_K rows and are not
/// measured here; types without tiled kernels have none to measure).
fn bench_gemm(ty: GgmlType, filter: Option<&str>) {
    let kernels = available_gemm_kernels(ty);
    let Some(act_ty) = activation_type(ty).filter(|&a| takes_activations(a)) else {
        return;
    };
    if kernels.is_empty() {
        return;
    }
    for n in [576usize, 1536] {
        let act_row = act_ty.row_bytes(n as u64).unwrap_or(0) as usize;
        let row_bytes = ty.row_bytes(n as u64).unwrap_or(0) as usize;
        let mut acts = vec![0u8; act_row * GEMM_TOKENS];
        let mut meta = vec![ActMeta::default(); GEMM_TOKENS * n / 32];
        for (t, row) in acts.chunks_exact_mut(act_row).enumerate() {
            let x: Vec<f32> = (0..n)
                .map(|i| (((i + 31 * t) * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            quantize_activations(act_ty, &x, row).expect("activation row");
            assert!(act_meta(act_ty, row, &mut meta[t * n / 32..][..n / 32]));
        }
        for &k in &kernels {
            if filter.is_some_and(|f| !k.name.contains(f)) {
                continue;
            }
            let w = weights(ty, n, k.panel);
            let args = GemmArgs {
                n,
                w: &w,
                row_bytes,
                rows: k.panel,
                acts: &acts,
                act_row_bytes: act_row,
                meta: &meta,
                kmeta: &[],
                n_tokens: GEMM_TOKENS,
            };
            let mut out = vec![0f32; GEMM_TOKENS * k.panel];
            let mut scratch = Vec::new();
            let call = time_per_iter(TRIALS, 200, || {
                (k.run)(black_box(&args), &mut out, &mut scratch);
                black_box(&out);
            });
            let pairs = (GEMM_TOKENS * k.panel) as f64;
            println!(
                "{:<24} {n:>5} {:>6} {:>8.2} ns/(row,token) {:>7.1} GMAC/s",
                k.name,
                "gemm",
                call / pairs * 1e9,
                pairs * n as f64 / call / 1e9
            );
        }
    }
}

/// Prints ns per row-dot and weight GB/s for the three kernel shapes: `one` (1 weight row x 1
/// activation), `four` (1 x 4; per (row, activation) pair, GB/s counting each weight byte once
/// per 4 dots, which is what the engine streams) and `rows4` (4 x 1; per weight row).
fn report(name: &str, n: usize, mode: &str, [one, four, rows4]: [f64; 3], row_bytes: usize) {
    let gbs = |s: f64| row_bytes as f64 / s / 1e9;
    println!(
        "{name:<24} {n:>5} {mode:>6} {:>8.1} {:>6.2} {:>8.1} {:>6.2} {:>8.1} {:>6.2}",
        one * 1e9,
        gbs(one),
        four * 1e9,
        gbs(four * 4.0),
        rows4 * 1e9,
        gbs(rows4),
    );
}
