//! The safe Rust API that the C ABI wraps: a shared immutable [`Model`], a [`Context`] per
//! conversation (or per set of parallel sequences) and [`Batch`]es of tokens.

mod context;
mod model;

pub use crate::engine::Batch;
pub use context::{Context, ContextParams};
pub use model::{Model, ModelParams, ProgressFn};
