//! What a model and a context will need in memory, and what the host can give: a context is
//! refused up front when its buffers cannot fit, instead of filling memory until the host's
//! out-of-memory killer ends the process.

use super::ContextParams;
use crate::gguf::GgufFile;
use crate::kv_cache::HostKv;
use crate::model::Hparams;
use crate::{Error, Result};
use std::path::Path;

/// Bytes a model plus one context need on the backend that runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    /// Working buffers of one batch of `n_batch` tokens over `n_ctx` cached cells.
    pub compute_bytes: u64,
    pub total_bytes: u64,
}

impl MemoryEstimate {
    /// For a model with these hyperparameters and weights, and a context with `params`
    /// (`n_ctx` 0 = the training context, `n_batch` capped at `n_ctx`, as `Context::new` does).
    pub fn new(hp: &Hparams, weights_bytes: u64, params: &ContextParams) -> MemoryEstimate {
        let n_ctx = if params.n_ctx == 0 {
            hp.n_ctx_train
        } else {
            params.n_ctx
        };
        let n_batch = params.n_batch.min(n_ctx) as u64;
        // Global layers hold every cell; with a ring, the sliding-window layers its cells.
        let ring = RingPlan::new(hp, n_ctx, params);
        let (n_ring_layer, n_ring) = ring.map_or((0, 0), |r| (r.n_layer, r.cells));
        let kv_cache_bytes = HostKv::bytes_needed(
            hp.n_layer - n_ring_layer,
            n_ctx,
            n_ring_layer,
            n_ring,
            hp.kv_dim(),
            params.cache_type,
        );
        let per_token = 3 * hp.n_embd + 2 * hp.q_dim() + 2 * hp.kv_dim() + 2 * hp.n_ff + hp.n_vocab;
        // Attention scores and the visible-cell list, per token.
        let scores = n_ctx as u64 * 8;
        let compute_bytes = n_batch.saturating_mul(per_token as u64 * 4 + scores);
        MemoryEstimate {
            weights_bytes,
            kv_cache_bytes,
            compute_bytes,
            total_bytes: weights_bytes
                .saturating_add(kv_cache_bytes)
                .saturating_add(compute_bytes),
        }
    }

    /// Reads only the header and metadata of the file at `path`.
    pub fn for_file(path: &Path, params: &ContextParams) -> Result<MemoryEstimate> {
        let gguf = GgufFile::open(path)?;
        let hp = Hparams::from_gguf(&gguf)?;
        let weights: u64 = gguf.tensors().iter().map(|t| t.n_bytes).sum();
        Ok(MemoryEstimate::new(&hp, weights, params))
    }

    /// The context's own share: cache plus working buffers (the weights are already loaded).
    pub fn context_bytes(&self) -> u64 {
        self.kv_cache_bytes.saturating_add(self.compute_bytes)
    }
}

/// The ring of a context's sliding-window layers ([`crate::kv_cache::Cells::with_ring`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPlan {
    /// Cells of the ring ([`crate::kv_cache::ring_cells`]).
    pub cells: usize,
    /// The largest window of the model's layers: the positions each sequence keeps.
    pub window: usize,
    /// Layers with a window, whose keys and values live in the ring.
    pub n_layer: usize,
}

impl RingPlan {
    /// The ring a context of `n_ctx` cells with `params` gets: None for a model without
    /// sliding-window layers, with `swa_full`, or when a ring would not be smaller than the
    /// full table.
    pub fn new(hp: &Hparams, n_ctx: usize, params: &ContextParams) -> Option<RingPlan> {
        let window = hp.layers.iter().filter_map(|l| l.window).max()?;
        if params.swa_full {
            return None;
        }
        let n_batch = params.n_batch.clamp(1, n_ctx.max(1));
        let chunk = crate::backend::numerics::ATTENTION_CHUNK;
        let cells =
            crate::kv_cache::ring_cells(window, n_ctx, params.n_seq_max.max(1), n_batch, chunk)?;
        Some(RingPlan {
            cells,
            window,
            n_layer: hp.layers.iter().filter(|l| l.window.is_some()).count(),
        })
    }
}

/// Host memory a new allocation of this process can still get: the smaller of what the kernel
/// reports available (free plus reclaimable page cache) and what is left under the process's
/// address-space limit. `None` where the host does not say (then only allocation failures,
/// which are all fallible, guard).
pub fn host_memory_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo
        .as_deref()
        .and_then(|m| meminfo_kib(m, "MemAvailable:"));
    let under_limit = address_space_left();
    match (available, under_limit) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    }
}

/// `key`'s value in /proc/meminfo, in bytes.
fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// RLIMIT_AS minus the address space already mapped; `None` without a limit.
#[cfg(target_os = "linux")]
fn address_space_left() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let mapped = meminfo_kib(&status, "VmSize:")?;
    Some(limit.rlim_cur.saturating_sub(mapped))
}

#[cfg(not(target_os = "linux"))]
fn address_space_left() -> Option<u64> {
    None
}

/// Refuses a context whose cache and buffers (`needed` bytes) cannot fit in host memory.
pub(crate) fn check_host_fits(needed: u64, what: &str) -> Result<()> {
    match host_memory_available() {
        Some(available) if needed > available => Err(Error::OutOfMemory(format!(
            "{what} needs {} of host memory, {} is available",
            human_bytes(needed),
            human_bytes(available)
        ))),
        _ => Ok(()),
    }
}

fn human_bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if n as f64 >= GIB {
        format!("{:.2} GiB ({n} bytes)", n as f64 / GIB)
    } else {
        format!("{:.1} MiB ({n} bytes)", n as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_values_are_read_in_bytes() {
        let m = "MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n";
        assert_eq!(meminfo_kib(m, "MemAvailable:"), Some(1_024_000));
        assert_eq!(meminfo_kib(m, "SwapFree:"), None);
    }

    #[test]
    fn the_host_reports_some_memory_and_absurd_requests_are_refused() {
        let available = host_memory_available().expect("Linux reports MemAvailable");
        assert!(available > 0);
        let e = check_host_fits(u64::MAX / 2, "a test cache").unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
        assert!(e.to_string().contains("available"), "{e}");
        check_host_fits(4096, "a page").unwrap();
    }
}
