//! Model architectures as descriptions: what a model computes, read once from its GGUF file.
//!
//! - [`Hparams`]: the model-level description (shapes, RoPE style, activation, embedding
//!   scale, soft-capping) with one [`LayerSpec`] per layer (its RoPE, attention window,
//!   optional biases and norms);
//! - [`Weights`]: one weights type for every family, its optional tensors present exactly
//!   when the description names them;
//! - one short file per family (`llama.rs`, ...) maps the family's keys and tensors onto the
//!   description, and [`FAMILIES`] lists them: adding a family is one file and one row;
//! - [`Feature`]: the ways a description departs from plain llama, against which each backend
//!   states what it runs ([`Hparams::check_backend`]), so a model is refused, not misrun.
//!
//! [`LoadedModel`] is what the backends run; the forward passes live in the backends.
//!
//! Adding a family: a file here with a `pub const FAMILY: Family` (its name, a `describe`
//! that sets what differs from llama from the family's keys and tensors, the fused layouts
//! its files may use), its `mod` line and its row in [`FAMILIES`]. When it needs a feature a
//! backend does not run, that backend refuses it by name until the feature is written there
//! (its `RUNS` list: `backend::cpu::RUNS`, `backend::gpu::RUNS`); a description field that
//! is new to every family also gets a [`Feature`], which [`Hparams::features`] forces.

pub mod arch;
pub mod hparams;
pub mod layer;
mod loaded;
pub mod weights;

mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;

pub use arch::{Architecture, Family, Fused, Source};
pub use hparams::{Activation, Hparams, RopeScaling, RopeStyle};
pub use layer::{Feature, FreqFactors, LayerSpec, RopeSpec};
pub use loaded::LoadedModel;
pub use weights::{LayerWeights, QkvBias, WeightRef, Weights};

/// The families this build runs, one row each (`general.architecture` is the family's name).
pub const FAMILIES: &[&Family] = &[
    &llama::FAMILY,
    &qwen2::FAMILY,
    &qwen3::FAMILY,
    &gemma3::FAMILY,
    &phi3::FAMILY,
];

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gemma3;
