//! The GPU backend as the layers above see it, with the same names whether or not a GPU
//! feature is built in: without one, [`GpuModel`] cannot exist, [`upload`] answers
//! `BackendUnavailable` ("not built in") and [`devices`] is empty. So `api` has no `cfg`.

use super::Executor;
use crate::kv_cache::KvType;
use crate::model::{Feature, LoadedModel};
use crate::{Error, Result};
use std::sync::Arc;

/// One GPU as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub index: usize,
    pub name: String,
    /// "sm_90" on NVIDIA, "gfx90a:sramecc+:xnack-" style on AMD.
    pub arch: String,
    pub total_mem: u64,
    pub free_mem: u64,
}

/// What kernels/wave_check.hip found: `checks` comparisons of the cross-lane helpers
/// (kernels/arch.h) against exact values, `failed` of them wrong, on kernels compiled for
/// `wave`-lane waves (64 on AMD CDNA and in the wave-64 emulation build, else 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveCheck {
    pub checks: u64,
    pub failed: u64,
    pub wave: u32,
}

impl WaveCheck {
    /// The checks one run makes: per thread, one xor exchange per mask bit of the wave and six
    /// reductions/broadcasts, in two blocks each of 64, 256 and 1024 threads.
    pub fn expected_checks(&self) -> u64 {
        let threads = 2 * (64 + 256 + 1024);
        threads * (u64::from(self.wave.max(1).trailing_zeros()) + 6)
    }
}

/// Checks the kernels' cross-lane helpers on GPU `device` (see [`WaveCheck`]).
pub fn wave_check(device: usize) -> Result<WaveCheck> {
    #[cfg(any(feature = "rocm", feature = "cuda"))]
    return super::hip::wave_check(device);
    #[cfg(not(any(feature = "rocm", feature = "cuda")))]
    {
        let _ = device;
        Err(not_built_in())
    }
}

/// What the GPU backend runs beyond plain llama ([`Feature`]): the families' features, each
/// with its kernels and decode bit-identical to the CPU backend; a model that uses any other
/// feature is refused at upload (`Hparams::check_backend`).
pub const RUNS: &[Feature] = super::FAMILY_FEATURES;

/// Whether this library was built with a GPU backend (features `rocm` or `cuda`).
pub fn built_in() -> bool {
    cfg!(any(feature = "rocm", feature = "cuda"))
}

pub fn not_built_in() -> Error {
    Error::BackendUnavailable("this library was built without a GPU backend (not built in)".into())
}

#[cfg(any(feature = "rocm", feature = "cuda"))]
pub use super::hip::GpuModel;

/// The weights of a model on a GPU; without a GPU backend no value of it can exist.
#[cfg(not(any(feature = "rocm", feature = "cuda")))]
pub enum GpuModel {}

/// The GPUs present; empty when there are none or no GPU backend is built in.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    #[cfg(any(feature = "rocm", feature = "cuda"))]
    return super::hip::devices();
    #[cfg(not(any(feature = "rocm", feature = "cuda")))]
    Ok(Vec::new())
}

/// The GPUs this build can compute on, or `BackendUnavailable` saying why there are none (not
/// built in; the GPU runtime or BLAS library missing, in the dynamic loader's words; no device).
pub fn usable_devices() -> Result<Vec<DeviceInfo>> {
    #[cfg(any(feature = "rocm", feature = "cuda"))]
    return super::hip::usable();
    #[cfg(not(any(feature = "rocm", feature = "cuda")))]
    Err(not_built_in())
}

/// Whether the GPU backend would run `model` (features, tensor types, shapes), decided
/// without touching a device; the reason when not.
pub fn check(model: &LoadedModel) -> Result<()> {
    #[cfg(any(feature = "rocm", feature = "cuda"))]
    return GpuModel::check(model);
    #[cfg(not(any(feature = "rocm", feature = "cuda")))]
    {
        let _ = model;
        Err(not_built_in())
    }
}

/// Copies `model`'s weights to GPU `device`; `progress(done_bytes, total_bytes)` after each
/// tensor, whose error (a cancel) stops the upload there.
pub fn upload(
    model: &LoadedModel,
    device: usize,
    progress: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<GpuModel> {
    #[cfg(any(feature = "rocm", feature = "cuda"))]
    return GpuModel::upload(model, device, progress);
    #[cfg(not(any(feature = "rocm", feature = "cuda")))]
    {
        let _ = (model, device, progress);
        Err(not_built_in())
    }
}

/// Whether a GPU context can store its keys and values as `kv_type` for heads of `head_dim`:
/// every type has kernels that reproduce the CPU's bits (the RoPE / KV write, attention's
/// widening); q8_0 quantizes each head's rows 32 elements at a time, so it needs a head size
/// that is a multiple of 32, as the CPU's q8_0 cache does.
pub fn check_kv_type(kv_type: KvType, head_dim: usize) -> Result<()> {
    match kv_type {
        KvType::F32 | KvType::F16 => Ok(()),
        KvType::Q8_0 if head_dim.is_multiple_of(32) => Ok(()),
        KvType::Q8_0 => Err(Error::Unsupported(format!(
            "a q8_0 KV cache needs a head size that is a multiple of 32 (this model's is \
             {head_dim}); use f16 or f32"
        ))),
    }
}

/// A context on the GPU that holds `model`, with keys and values for `n_ctx` cache cells
/// (`n_ctx_seq` per sequence, which picks RoPE factors) stored as `kv_type`; with `ring` (the
/// cells of the table's sliding-window ring), the windowed layers keep only that many.
pub fn new_context(
    model: &Arc<GpuModel>,
    n_ctx: usize,
    n_ctx_seq: usize,
    kv_type: KvType,
    ring: Option<usize>,
) -> Result<Box<dyn Executor>> {
    // GpuContext::new checks kv_type against the model's heads (check_kv_type).
    #[cfg(any(feature = "rocm", feature = "cuda"))]
    return Ok(Box::new(super::hip::GpuContext::new(
        Arc::clone(model),
        n_ctx,
        n_ctx_seq,
        kv_type,
        ring,
    )?));
    #[cfg(not(any(feature = "rocm", feature = "cuda")))]
    {
        let _ = (n_ctx, n_ctx_seq, kv_type, ring);
        match **model {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_q8_0_cache_needs_heads_of_whole_blocks() {
        for t in KvType::ALL {
            check_kv_type(t, 64).unwrap();
            check_kv_type(t, 128).unwrap();
        }
        check_kv_type(KvType::F16, 80).unwrap();
        let e = check_kv_type(KvType::Q8_0, 80).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(
            e.to_string()
                .contains("multiple of 32 (this model's is 80)"),
            "{e}"
        );
    }
}
