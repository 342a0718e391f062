//! GGUF model files: a validating reader over a memory map, and a writer.
//!
//! A GGUF file (versions 2 and 3, little-endian) is laid out as:
//!
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count × (key: string, type: u32, value)
//! tensor_count × (name: string, n_dims: u32, dims: n_dims × u64, type: u32, offset: u64)
//! zero padding to the alignment
//! data section: each tensor's bytes at data_offset + offset (offset aligned)
//! ```
//!
//! where a string is a u64 byte length followed by UTF-8 bytes, and an array value is an
//! element type u32, a count u64 and the elements.
//!
//! The file is untrusted input. Every count, length and offset is checked against the bytes
//! that remain before it is used or sizes an allocation, and every problem becomes a
//! [`GgufError`] naming the field and its byte offset; nothing in here panics on bad input.
//! Tensor bytes are never copied: [`GgufFile::tensor_data`] borrows them from the mapping.

mod cursor;
mod error;
mod file;
mod metadata;
mod tensor;
mod value;
pub mod writer;

#[cfg(test)]
mod tests;

pub use error::{GgufError, GgufErrorKind};
pub use file::GgufFile;
pub use tensor::TensorInfo;
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Alignment of the data section and tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The metadata key that overrides the alignment (a u32 power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Most dimensions a tensor may have (GGML_MAX_DIMS).
pub const MAX_DIMS: usize = 4;

/// Deepest nesting of arrays inside arrays the reader accepts; deeper files are rejected
/// rather than recursed into, so a hostile file cannot exhaust the stack.
pub const MAX_ARRAY_DEPTH: usize = 16;
