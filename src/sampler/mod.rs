//! Token sampling: a chain of stages that turns one row of logits into the next token.
//!
//! Modelled on llama.cpp's sampler chain: [`SamplerChain`] holds [`Stage`]s that run in order
//! over a candidate buffer (id, logit, p) reused for every token; filtering stages
//! (penalties, top-k, top-p, min-p, temperature) narrow or rescale it and a terminal stage
//! (greedy or dist) picks the token. [`SamplerChain::from_params`] builds the conventional
//! order from [`SamplerParams`]:
//!
//! penalties → top-k → top-p → min-p → temperature → dist (greedy when temperature <= 0).
//!
//! Determinism: candidates are ranked by logit, ties by lowest token id, with a total order,
//! and the dist stage draws from xoshiro256** seeded through splitmix64, so the same seed gives
//! the same tokens on every platform. [`RANDOM_SEED`] asks for a seed from OS entropy.
//!
//! ```
//! use rocmforge::sampler::{SamplerChain, Stage};
//! let mut chain = SamplerChain::new();
//! chain.push(Stage::TopK(2))?.push(Stage::Dist { seed: 7 })?;
//! let token = chain.sample(&[0.1, 2.0, 1.5, -3.0])?;
//! assert!(token == 1 || token == 2);
//! chain.accept(token);
//! # Ok::<(), rocmforge::Error>(())
//! ```

mod candidates;
mod chain;
mod penalties;
mod rng;
mod stages;

#[cfg(test)]
mod tests;

pub use candidates::TokenData;
pub use chain::{SamplerChain, SamplerParams};
pub use rng::RANDOM_SEED;
pub use stages::Stage;
