//! GPU devices and backend selection, with the same public types whether or not this library
//! was built with a GPU backend.

use super::Backend;
use crate::backend::gpu;
use crate::{Error, Result};

pub use crate::backend::gpu::DeviceInfo;

/// Whether this library was built with a GPU backend (features `rocm` or `cuda`).
pub fn gpu_built_in() -> bool {
    gpu::built_in()
}

/// The GPUs present; empty when there are none or no GPU backend is built in.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    gpu::devices()
}

/// GPU `device` if this library can compute on it, else `BackendUnavailable` saying why: no GPU
/// backend built in, the GPU runtime or its BLAS library not installed (the dynamic loader's
/// words), no device, or fewer devices than `device + 1`.
pub fn gpu_device(device: usize) -> Result<DeviceInfo> {
    let mut found = gpu::usable_devices()?;
    if device < found.len() {
        Ok(found.swap_remove(device))
    } else {
        Err(Error::BackendUnavailable(format!(
            "GPU device {device} requested, {} present",
            found.len()
        )))
    }
}

/// Decides whether a model loads onto the GPU: `Gpu` insists (the reason as the error when
/// impossible), `Auto` takes the GPU when it is usable.
pub(crate) fn resolve_backend(backend: Backend, device: usize) -> Result<bool> {
    match backend {
        Backend::Cpu => Ok(false),
        Backend::Gpu => gpu_device(device).map(|_| true),
        Backend::Auto => Ok(gpu_device(device).is_ok()),
    }
}
