//! The CPU backend: the reference every other backend is checked against, and the embedded
//! default. Weights stay packed in the model mapping; activations are quantized per op.

pub mod attention;
mod forward;
pub mod matmul;
pub mod ops;
mod scratch;
pub mod threadpool;

pub use forward::{CpuContext, RUNS};
pub use scratch::Scratch;
pub use threadpool::ThreadPool;
