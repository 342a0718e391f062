//! GPU devices and backend selection, with the same public types whether or not this library
//! was built with a GPU backend.

use super::Backend;
use crate::{Error, Result};

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

/// Whether this library was built with a GPU backend (features `rocm` or `cuda`).
pub fn gpu_built_in() -> bool {
    cfg!(any(feature = "rocm", feature = "cuda"))
}

/// The GPUs present; empty when there are none or no GPU backend is built in.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    #[cfg(any(feature = "rocm", feature = "cuda"))]
    {
        Ok(crate::backend::hip::devices()?
            .into_iter()
            .map(|d| DeviceInfo {
                index: d.index,
                name: d.name,
                arch: d.arch,
                total_mem: d.total_mem,
                free_mem: d.free_mem,
            })
            .collect())
    }
    #[cfg(not(any(feature = "rocm", feature = "cuda")))]
    Ok(Vec::new())
}

pub(crate) fn not_built_in() -> Error {
    Error::BackendUnavailable("this library was built without a GPU backend (not built in)".into())
}

/// Decides whether a model loads onto the GPU: `Gpu` insists (error when impossible), `Auto`
/// takes the GPU when one is there.
pub(crate) fn resolve_backend(backend: Backend, device: usize) -> Result<bool> {
    match backend {
        Backend::Cpu => Ok(false),
        Backend::Gpu if !gpu_built_in() => Err(not_built_in()),
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
