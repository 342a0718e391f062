//! The safe Rust API that the C ABI wraps: a shared immutable [`Model`], a [`Context`] per
//! conversation (or per set of parallel sequences) and [`Batch`]es of tokens.

mod context;
mod device;
mod memory;
mod model;
pub mod quantize;

pub use crate::batch::Batch;
pub use context::{Context, ContextParams};
pub use device::{devices, gpu_built_in, gpu_device, DeviceInfo};
pub use memory::{host_memory_available, MemoryEstimate};
pub use model::{Backend, Model, ModelParams, ProgressFn};
pub use quantize::{quantize_model, quantize_plan, FileType, QuantizeParams, QuantizeReport};
