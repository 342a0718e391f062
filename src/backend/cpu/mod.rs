//! The CPU backend: the reference every other backend is checked against, and the embedded
//! default. Weights stay packed in the model mapping; activations are quantized per op.

pub mod attention;
pub mod matmul;
pub mod ops;
pub mod threadpool;

pub use threadpool::ThreadPool;
