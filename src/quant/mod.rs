//! Tensor element formats: the type table, the format registry, block layouts, dequantization
//! and dot products.
//!
//! - [`types`]: GGUF type ids and block geometry of every GGML type;
//! - [`registry`]: one row per format we decode: its entry points, the activation format it
//!   pairs with, and where it computes (CPU dot, GPU mat-vec, GPU GEMM);
//! - [`formats`]: one file per format: block struct, dequantizer, quantizer, reference and
//!   scalar dot products (the numerics);
//! - [`blocks`]: reading blocks from unaligned bytes, the row loops the formats share;
//! - [`activation`]: the fast quantizers producing activation rows;
//! - [`dot`]: SIMD row dot-product kernels chosen once per CPU.

pub mod activation;
pub mod blocks;
pub mod dot;
pub mod formats;
pub mod quantize;
pub mod registry;
pub mod types;

pub use activation::{activation_type, quantize_activations};
pub use dot::{kernels_for, scalar_kernels_for, Dot4Fn, DotFn, DotKernels};
pub use registry::{dequantize_row, Format, GpuMatvec, FORMATS};
pub use types::GgmlType;
