//! Huge context sizes (`n_ctx`), each created in a child process under an address-space limit:
//! refused with a status when the cache cannot fit, and not touched up front when it can.

use crate::common::capi::{ok, Ctx, CtxOpts, Model};
use crate::common::child::{self, Limits, GIB};
use crate::{
    child_after, expect_report, panic_text, report_status, run_child, smollm2, timed, PROMPT_RETURN,
};
use rocmforge::ffi::params::*;
use rocmforge::ffi::status::rocmforge_status::*;
use std::time::Duration;

/// Resident memory of this process in bytes (VmRSS).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// arg: n_ctx. Reports "create" (message: the library's, or "rss_growth=<bytes>" on success)
/// and, when created, "eval".
pub(crate) fn child_n_ctx(arg: &str) {
    let n_ctx: u32 = arg.parse().unwrap();
    let model = Model::load(&smollm2().unwrap(), true).unwrap();
    let before = rss_bytes();
    let (r, t) = timed(|| {
        Ctx::new(
            &model,
            CtxOpts {
                n_ctx,
                ..CtxOpts::default()
            },
        )
    });
    match &r {
        Ok(_) => child::report(
            "create",
            0,
            t,
            &format!("rss_growth={}", rss_bytes().saturating_sub(before)),
        ),
        Err(f) => child::report("create", f.status as i32, t, &f.message),
    }
    if let Ok(ctx) = r {
        let (s, t) = timed(|| ctx.eval(&model.tokenize("Hello there"), 0));
        report_status("eval", s, t);
    }
    drop(model);
    child_after();
}

/// SmolLM2's KV cache: 30 layers x 192 (keys) + 192 (values) per cell, f16 (the default
/// cache type).
const SMOLLM2_KV_BYTES_PER_CELL: u64 = 30 * 192 * 2 * 2;

fn mem_available() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[test]
fn huge_n_ctx_is_refused_with_a_status_and_a_fitting_one_is_not_touched_up_front() {
    let Some(_) = smollm2() else {
        return;
    };
    // Past the documented maximum: refused by the setter.
    let mut p = std::ptr::null_mut();
    // SAFETY: valid out-pointer; the object is freed below.
    unsafe {
        ok(rocmforge_context_params_create(&mut p));
        assert_eq!(
            rocmforge_context_params_set_n_ctx(p, (1 << 22) + 1),
            ROCMFORGE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            rocmforge_context_params_set_n_ctx(p, u32::MAX),
            ROCMFORGE_ERR_INVALID_ARGUMENT
        );
        rocmforge_context_params_free(p);
    }

    let mut failures = Vec::new();
    let mut case = |n_ctx: u64, limit: u64, expect_ok: bool| {
        let o = run_child(
            "n_ctx",
            &n_ctx.to_string(),
            Limits {
                address_space: Some(limit),
                timeout: Duration::from_secs(30),
            },
        );
        let r = std::panic::catch_unwind(|| {
            o.assert_clean_exit();
            let create = o.report("create");
            eprintln!(
                "n_ctx {n_ctx} ({:.2} GiB of cache) under {} GiB: {create:?}",
                (n_ctx * SMOLLM2_KV_BYTES_PER_CELL) as f64 / GIB as f64,
                limit / GIB
            );
            if expect_ok {
                expect_report(&o, "create", &[ROCMFORGE_OK], PROMPT_RETURN);
                expect_report(&o, "eval", &[ROCMFORGE_OK], Duration::MAX);
                let growth: u64 = create
                    .message
                    .strip_prefix("rss_growth=")
                    .and_then(|v| v.parse().ok())
                    .unwrap();
                let cache = n_ctx * SMOLLM2_KV_BYTES_PER_CELL;
                assert!(
                    growth < cache / 4,
                    "n_ctx {n_ctx}: creating the context made {growth} bytes resident for a \
                     {cache}-byte cache: it touched the pages up front"
                );
            } else {
                expect_report(&o, "create", &[ROCMFORGE_ERR_OUT_OF_MEMORY], PROMPT_RETURN);
                assert!(
                    create.message.chars().any(|c| c.is_ascii_digit()),
                    "the message should say how much was needed and available: {}",
                    create.message
                );
            }
            expect_report(&o, "after", &[ROCMFORGE_OK], Duration::MAX);
        });
        if let Err(e) = r {
            failures.push(panic_text(e));
        }
    };
    // 4194304 cells: 180 GiB of cache. Only ever tried under a limit: without one, a library
    // that does not refuse it would take the machine down.
    case(1 << 22, 2 * GIB, false);
    // 131072 cells: 2.8 GiB, over the 2 GiB limit.
    case(131072, 2 * GIB, false);
    // 16384 cells: 0.35 GiB, fits under 2 GiB.
    case(16384, 2 * GIB, true);
    // 131072 cells under a roomy limit (rather than none, so that a regression cannot take the
    // machine's memory), when the machine has the memory.
    if mem_available() > 6 * GIB {
        case(131072, 8 * GIB, true);
    } else {
        eprintln!("skipping n_ctx 131072 under 8 GiB: not enough memory available");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
