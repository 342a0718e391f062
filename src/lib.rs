//! ROCmForge: an LLM inference engine for AMD GPUs (ROCm/HIP) with a CPU backend everywhere
//! else, shipped as a C-ABI library.
//!
//! Layers, bottom up:
//! - [`gguf`]: reads model files (untrusted input) over a memory map;
//! - [`quant`]: tensor block formats, dequantization and fast dot products;
//! - [`tokenizer`]: BPE and SentencePiece vocabularies from GGUF metadata;
//! - [`model`]: architectures (hyperparameters and weight views);
//! - [`kv_cache`]: the cells of the KV cache and their sequences, and [`batch`]es of tokens;
//! - [`backend`]: the compute behind one executor interface (CPU, and HIP with a GPU feature);
//! - [`sampler`]: token selection;
//! - [`api`]: the safe Rust API (`Model`, `Context`, `Batch`) that the C ABI wraps;
//! - [`chat`]: chat templates (Jinja, rendered with minijinja);
//! - [`scheduler`]: continuous batching of many requests over one context, with prefix caching;
//! - [`ffi`]: the C ABI (`include/rocmforge.h`).

pub mod api;
pub mod backend;
pub mod batch;
pub mod cancel;
pub mod chat;
pub mod error;
pub mod ffi;
pub mod fileio;
pub mod gguf;
pub mod kv_cache;
pub mod model;
pub mod quant;
pub mod sampler;
pub mod scheduler;
pub mod tokenizer;

pub use api::{Backend, Batch, Context, ContextParams, Model, ModelParams};
pub use error::{Error, Result};
