//! Model architectures: hyperparameters from GGUF metadata and typed views of the weights.
//!
//! One file per architecture; [`LoadedModel`] is what the backends run. The forward passes over
//! a batch live in the backends.

pub mod hparams;
pub mod llama;
mod loaded;

pub use hparams::{Architecture, Hparams, RopeScaling};
pub use llama::{LayerWeights, LlamaWeights, WeightRef};
pub use loaded::LoadedModel;
