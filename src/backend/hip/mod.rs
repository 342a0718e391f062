//! GPU backend in HIP (built with feature `rocm` for AMD, or `cuda` to run the same HIP sources
//! on NVIDIA through `kernels/hip_compat.h`).
//!
//! - [`devices`]: the GPUs present (name, architecture, memory);
//! - [`GpuModel`]: weights uploaded once from a [`crate::model::LoadedModel`];
//! - [`GpuContext`]: KV cache on the device and the forward pass, mirroring
//!   [`crate::backend::cpu::decode`]; it implements [`crate::backend::Executor`].

mod context;
mod device;
mod ffi;
mod model;

pub use context::{GpuContext, MAX_STEP_TOKENS};
pub use device::{devices, measure_copy_bandwidth, usable, wave_check, DeviceInfo};
pub use model::GpuModel;
