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

/// Decides whether a model loads onto the GPU: `Gpu` insists (error when impossible), `Auto`
/// takes the GPU when one is there.
pub(crate) fn resolve_backend(backend: Backend, device: usize) -> Result<bool> {
    match backend {
        Backend::Cpu => Ok(false),
        Backend::Gpu if !gpu_built_in() => Err(gpu::not_built_in()),
        Backend::Gpu => {
            let found = devices()?;
            if device < found.len() {
                Ok(true)
            } else {
                Err(Error::BackendUnavailable(format!(
                    "GPU device {device} requested, {} present",
                    found.len()
                )))
            }
        }
        Backend::Auto => Ok(gpu_built_in() && devices().is_ok_and(|d| device < d.len())),
    }
}
