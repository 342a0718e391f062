//! Tensor element formats: the type table, block layouts, dequantization and dot products.
//!
//! - [`types`]: GGUF type ids and block geometry;
//! - [`blocks`]: `#[repr(C)]` block structs, read from unaligned bytes;
//! - [`reference`]: scalar dequantization, quantizers and dot products (the numerics);
//! - [`activation`]: which activation format each weight type is dotted with, and fast
//!   quantizers producing it;
//! - [`dot`]: SIMD row dot-product kernels chosen once per CPU.

pub mod activation;
pub mod blocks;
pub mod dot;
pub mod quantize;
pub mod reference;
pub mod types;

pub use activation::{activation_type, quantize_activations};
pub use dot::{kernels_for, scalar_kernels_for, Dot4Fn, DotFn, DotKernels};
pub use reference::dequantize_row;
pub use types::GgmlType;
