//! Tensor element formats: the type table, block layouts, dequantization and dot products.

pub mod types;

pub use types::GgmlType;
