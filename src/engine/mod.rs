//! Drives a batch of tokens through the model on the CPU backend.

mod batch;
mod forward;
mod scratch;

pub use batch::{Batch, MAX_POSITION};
pub use forward::{decode, LoadedModel};
pub use scratch::Scratch;
