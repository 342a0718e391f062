//! Model architectures: hyperparameters from GGUF metadata and typed views of the weights.
//!
//! One file per architecture; the forward pass over a batch lives in `crate::engine`.

pub mod hparams;
pub mod llama;

pub use hparams::{Architecture, Hparams, RopeScaling};
pub use llama::{LayerWeights, LlamaWeights, WeightRef};
