//! Prometheus text metrics: counters the handlers keep, and the scheduler's own statistics.

use rocmforge::scheduler::StatsSnapshot;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A latency histogram in seconds with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            inner: Mutex::new((vec![0; bounds.len()], 0.0, 0)),
        }
    }

    pub fn observe(&self, seconds: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (i, &b) in self.bounds.iter().enumerate() {
            if seconds <= b {
                g.0[i] += 1;
            }
        }
        g.1 += seconds;
        g.2 += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&g.0) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", g.2);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", g.1, g.2);
    }
}

const TTFT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const ITL_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// How a request ended, a label of `rocmforge_requests_total`.
#[derive(Clone, Copy)]
pub enum Outcome {
    Ok,
    /// Answered with a 4xx.
    Rejected,
    /// The client went away or the server shut down first.
    Cancelled,
    Error,
}

const OUTCOMES: [&str; 4] = ["ok", "rejected", "cancelled", "error"];

pub struct Metrics {
    requests: [AtomicU64; 4],
    pub ttft: Histogram,
    pub itl: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            requests: Default::default(),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
        }
    }

    pub fn request(&self, outcome: Outcome) {
        self.requests[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, stats: Option<StatsSnapshot>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP rocmforge_requests_total Requests by outcome.\n\
             # TYPE rocmforge_requests_total counter"
        );
        for (name, c) in OUTCOMES.iter().zip(&self.requests) {
            let v = c.load(Ordering::Relaxed);
            let _ = writeln!(out, "rocmforge_requests_total{{outcome=\"{name}\"}} {v}");
        }
        let s = stats.unwrap_or_default();
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "rocmforge_prompt_tokens_total",
            "counter",
            "Prompt tokens evaluated (not counting prefix-cache hits).",
            s.prompt_tokens_computed,
        );
        one(
            "rocmforge_generation_tokens_total",
            "counter",
            "Tokens generated.",
            s.generated_tokens,
        );
        one(
            "rocmforge_queue_depth",
            "gauge",
            "Requests waiting for a sequence slot.",
            s.queued as u64,
        );
        one(
            "rocmforge_running_sequences",
            "gauge",
            "Requests being generated.",
            s.running as u64,
        );
        one(
            "rocmforge_kv_cells_used",
            "gauge",
            "KV cache cells in use (running and idle prefix-cache sequences).",
            s.kv_cells_used as u64,
        );
        one(
            "rocmforge_kv_cells_total",
            "gauge",
            "KV cache cells.",
            s.kv_cells_total as u64,
        );
        one(
            "rocmforge_prefix_cache_hits_total",
            "counter",
            "Requests that reused cached prompt cells.",
            s.prefix_hits,
        );
        one(
            "rocmforge_prefix_cache_tokens_total",
            "counter",
            "Prompt tokens taken from the prefix cache.",
            s.prefix_tokens_reused,
        );
        one(
            "rocmforge_preemptions_total",
            "counter",
            "Requests preempted for lack of cells.",
            s.preemptions,
        );
        one(
            "rocmforge_scheduler_steps_total",
            "counter",
            "Batches evaluated.",
            s.steps,
        );
        self.ttft.render(
            "rocmforge_time_to_first_token_seconds",
            "Time from request to first token.",
            &mut out,
        );
        self.itl.render(
            "rocmforge_inter_token_latency_seconds",
            "Time between consecutive tokens of a request.",
            &mut out,
        );
        out
    }
}
