//! GPU speed on one model (ignored by default; scripts/gpu/bench.sh runs it):
//! prompt processing of 512 tokens (pp512) and batch-1 decode of 128 tokens from an empty
//! context (tg128), as llama-bench measures them (tg: a pseudo-random token per step, logits
//! read back, no sampling), plus the decode ceiling: measured copy
//! bandwidth ÷ weight bytes read per token. `ROCMFORGE_BENCH_MODEL` names the GGUF.
#![cfg(any(feature = "cuda", feature = "rocm"))]

use rocmforge::backend::hip::{devices, measure_copy_bandwidth, GpuContext, GpuModel};
use rocmforge::backend::Engine;
use rocmforge::batch::Batch;
use rocmforge::cancel::CancelFlag;
use rocmforge::gguf::GgufFile;
use rocmforge::kv_cache::{Cells, KvType};
use rocmforge::model::LoadedModel;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// ROCMFORGE_BENCH_CACHE_TYPE: the KV cache type (f16, the default, f32 or q8_0).
fn cache_type() -> KvType {
    let t = std::env::var("ROCMFORGE_BENCH_CACHE_TYPE")
        .map_or(Ok(KvType::default()), |s| s.parse())
        .expect("ROCMFORGE_BENCH_CACHE_TYPE");
    eprintln!("KV cache type: {t}");
    t
}

#[test]
#[ignore]
fn gpu_pp512_tg128() {
    let Ok(path) = std::env::var("ROCMFORGE_BENCH_MODEL") else {
        eprintln!("ROCMFORGE_BENCH_MODEL not set");
        return;
    };
    let reps: usize = std::env::var("ROCMFORGE_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dev = devices().expect("devices");
    let card = dev.first().map_or("none".to_string(), |d| d.name.clone());
    let model = LoadedModel::new(GgufFile::open(Path::new(&path)).expect("open")).expect("load");
    let t0 = Instant::now();
    let gm = Arc::new(GpuModel::upload(&model, 0, &mut |_, _| Ok(())).expect("upload"));
    let upload_s = t0.elapsed().as_secs_f64();
    let bw = measure_copy_bandwidth(1 << 30, 20).expect("bandwidth");
    let weight_bytes = gm.weight_bytes_per_token();
    // ROCMFORGE_BENCH_DEPTH: also decode 128 tokens after a prompt of that many (as
    // llama-bench -d), where attention reads a long cache.
    let depth: usize = std::env::var("ROCMFORGE_BENCH_DEPTH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let n_ctx = (depth + 256).max(1024);
    let exec = GpuContext::new(Arc::clone(&gm), n_ctx, n_ctx, cache_type(), None).expect("context");
    let mut ctx = Engine::new(Box::new(exec), n_ctx, 1).expect("cells");
    let vocab = model.hparams.n_vocab;
    let cancel = CancelFlag::new();
    let mut logits = Vec::new();
    let n_vocab = gm.hparams.n_vocab as u32;

    let prompt: Vec<u32> = (0..512u32).map(|i| (i * 7919 + 13) % n_vocab).collect();
    let mut pp_best = f64::MAX;
    for rep in 0..=reps {
        ctx.edit_cells(Cells::clear);
        let t = Instant::now();
        ctx.decode(
            &Batch::for_sequence(&prompt, 0, 0),
            vocab,
            &cancel,
            &mut logits,
        )
        .expect("prefill");
        let s = t.elapsed().as_secs_f64();
        if rep > 0 {
            pp_best = pp_best.min(s); // rep 0 warms up
        }
    }
    let mut tg_best = f64::MAX;
    for rep in 0..=reps {
        ctx.edit_cells(Cells::clear);
        let n = if rep == 0 { 16 } else { 128 };
        let t = Instant::now();
        for i in 0..n {
            // As llama-bench's tg: each step decodes a pseudo-random token and reads its logits
            // back; no sampling in the timed loop.
            let tok = (i as u32 * 7919 + 13) % n_vocab;
            ctx.decode(
                &Batch::for_sequence(&[tok], i, 0),
                vocab,
                &cancel,
                &mut logits,
            )
            .expect("decode");
        }
        assert!(
            logits.iter().all(|v| v.is_finite()),
            "decode produced non-finite logits"
        );
        let s = t.elapsed().as_secs_f64();
        if rep > 0 {
            tg_best = tg_best.min(s);
        }
    }
    // The GPU's own time per token: the captured pass replayed without host work in between.
    let replay_s = ctx.executor_mut().replay_decode_graph(128).expect("replay") / 128.0;
    let mut tg_depth = f64::NAN;
    if depth > 0 {
        let deep: Vec<u32> = (0..depth as u32)
            .map(|i| (i * 7919 + 13) % n_vocab)
            .collect();
        let mut best = f64::MAX;
        for _ in 0..2 {
            ctx.edit_cells(Cells::clear);
            ctx.decode(
                &Batch::for_sequence(&deep, 0, 0),
                vocab,
                &cancel,
                &mut logits,
            )
            .expect("prefill to depth");
            let t = Instant::now();
            for i in 0..128 {
                let tok = (i as u32 * 7919 + 13) % n_vocab;
                let pos = (depth + i) as i32;
                ctx.decode(
                    &Batch::for_sequence(&[tok], pos, 0),
                    vocab,
                    &cancel,
                    &mut logits,
                )
                .expect("decode at depth");
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        tg_depth = 128.0 / best;
    }
    let pp = 512.0 / pp_best;
    let tg = 128.0 / tg_best;
    let ceiling = bw / weight_bytes as f64;
    println!(
        "{{\"card\":\"{card}\",\"model\":\"{}\",\"upload_s\":{upload_s:.2},\"bandwidth_GBps\":{:.0},\
         \"weight_bytes_per_token\":{weight_bytes},\"ceiling_tok_s\":{ceiling:.0},\"pp512_tok_s\":{pp:.0},\
         \"tg128_tok_s\":{tg:.1},\"gpu_only_tok_s\":{:.1},\"tg_fraction_of_ceiling\":{:.3},\
         \"depth\":{depth},\"tg128_at_depth_tok_s\":{tg_depth:.1}}}",
        Path::new(&path).file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        bw / 1e9,
        1.0 / replay_s,
        tg / ceiling
    );
}

/// Many sequences, as llama-batched-bench measures them (ignored by default; scripts/gpu/bench.sh
/// runs it): for each N of `ROCMFORGE_BENCH_NPL` (default 1,8,32,64), N sequences each with its
/// own 128-token prompt, all prompts submitted as one batch (split into steps of
/// MAX_STEP_TOKENS), then 64 steps each holding the next token of every sequence; prints
/// prefill and generation tokens/s. Sequences keep their cells in regions of 256.
#[test]
#[ignore]
fn gpu_batched() {
    let Ok(path) = std::env::var("ROCMFORGE_BENCH_MODEL") else {
        eprintln!("ROCMFORGE_BENCH_MODEL not set");
        return;
    };
    let npl: Vec<usize> = std::env::var("ROCMFORGE_BENCH_NPL")
        .unwrap_or_else(|_| "1,8,32,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let (npp, ntg) = (128usize, 64usize);
    // ROCMFORGE_BENCH_LOGITS=last: read back only the last sequence's logits each step.
    let all_logits = std::env::var("ROCMFORGE_BENCH_LOGITS").map_or(true, |v| v != "last");
    let stride = (npp + ntg).next_multiple_of(256);
    let model = LoadedModel::new(GgufFile::open(Path::new(&path)).expect("open")).expect("load");
    let gm = Arc::new(GpuModel::upload(&model, 0, &mut |_, _| Ok(())).expect("upload"));
    let vocab = model.hparams.n_vocab;
    let n_vocab = vocab as u32;
    let cancel = CancelFlag::new();
    let mut logits = Vec::new();
    for &n in &npl {
        let n_ctx = n * stride;
        let exec =
            GpuContext::new(Arc::clone(&gm), n_ctx, n_ctx, cache_type(), None).expect("context");
        let mut ctx = Engine::new(Box::new(exec), n_ctx, n).expect("cells");
        ctx.edit_cells(|c| c.set_seq_regions(Some(stride)).expect("regions"));
        let mut best = (f64::MAX, f64::MAX);
        for rep in 0..2 {
            ctx.edit_cells(Cells::clear);
            let mut b = Batch::new();
            for s in 0..n {
                for i in 0..npp {
                    let tok = ((s * 1000 + i) as u32 * 7919 + 13) % n_vocab;
                    b.push(tok, i as i32, s as u32, i + 1 == npp);
                }
            }
            let t = Instant::now();
            ctx.decode(&b, vocab, &cancel, &mut logits)
                .expect("prefill");
            let pp = t.elapsed().as_secs_f64();
            let t = Instant::now();
            for i in 0..ntg {
                let mut b = Batch::new();
                for s in 0..n {
                    let tok = ((s * 31 + i) as u32 * 7919 + 17) % n_vocab;
                    b.push(tok, (npp + i) as i32, s as u32, all_logits || s + 1 == n);
                }
                ctx.decode(&b, vocab, &cancel, &mut logits)
                    .expect("generation step");
            }
            let tg = t.elapsed().as_secs_f64();
            assert!(logits.iter().all(|v| v.is_finite()), "non-finite logits");
            if rep > 0 {
                best = (best.0.min(pp), best.1.min(tg));
            }
        }
        println!(
            "{{\"model\":\"{}\",\"n_seq\":{n},\"npp\":{npp},\"ntg\":{ntg},\"pp_tok_s\":{:.0},\"tg_tok_s\":{:.0}}}",
            Path::new(&path).file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned()),
            (n * npp) as f64 / best.0,
            (n * ntg) as f64 / best.1
        );
    }
}
