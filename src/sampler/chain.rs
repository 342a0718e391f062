//! The sampler chain: stages run in order over one reusable candidate buffer.

use super::candidates::{Candidates, TokenData};
use super::rng::RANDOM_SEED;
use super::stages::{ActiveStage, Stage};
use crate::error::{Error, Result};

/// The usual sampling knobs, turned into a chain by [`SamplerChain::from_params`].
/// Defaults follow common llama.cpp practice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerParams {
    /// Seed for [`Stage::Dist`]; [`RANDOM_SEED`] draws one from OS entropy.
    pub seed: u64,
    /// <= 0 selects greedy decoding.
    pub temperature: f32,
    /// <= 0 = off.
    pub top_k: i32,
    /// >= 1 = off.
    pub top_p: f32,
    /// <= 0 = off.
    pub min_p: f32,
    /// Lower bound on the candidates top-p and min-p leave.
    pub min_keep: usize,
    /// Window of accepted tokens the penalties look at; 0 = off.
    pub penalty_last_n: usize,
    /// 1.0 = off.
    pub penalty_repeat: f32,
    /// 0.0 = off.
    pub penalty_frequency: f32,
    /// 0.0 = off.
    pub penalty_presence: f32,
}

impl Default for SamplerParams {
    fn default() -> Self {
        Self {
            seed: RANDOM_SEED,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            min_keep: 0,
            penalty_last_n: 64,
            penalty_repeat: 1.0,
            penalty_frequency: 0.0,
            penalty_presence: 0.0,
        }
    }
}

/// Token selection as an ordered list of stages, like llama.cpp's sampler chain.
///
/// Per token: [`Self::sample`] fills the candidates from the logits, runs each stage in turn,
/// and the last (terminal) stage picks the token. The caller then reports the token it keeps
/// with [`Self::accept`] (the chain does not accept on its own, so prompt tokens can be fed to
/// the penalty window too, and a rejected draft token is never recorded).
#[derive(Debug, Default)]
pub struct SamplerChain {
    /// The stages as configured, for inspection; parallel to `stages`.
    config: Vec<Stage>,
    stages: Vec<ActiveStage>,
    /// Reused for every token: no allocation after the first call.
    candidates: Candidates,
}

impl SamplerChain {
    /// An empty chain; add stages with [`Self::push`] and end with a terminal stage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a stage. Errors if its parameters are invalid or the chain already ends in a
    /// terminal stage (nothing after it could have an effect).
    pub fn push(&mut self, stage: Stage) -> Result<&mut Self> {
        stage.validate()?;
        if self.is_complete() {
            return Err(Error::InvalidArgument(format!(
                "cannot add {stage:?} after the chain's terminal stage"
            )));
        }
        self.config.push(stage);
        self.stages.push(ActiveStage::from(stage));
        Ok(self)
    }

    /// The conventional chain for `params`, in this order:
    ///
    /// penalties → top-k → top-p → min-p → temperature → dist,
    ///
    /// or penalties → greedy when `temperature <= 0` (the filters never remove the best token,
    /// so greedy alone gives the same choice). Stages whose settings mean "off" are left out.
    /// Filters run before temperature, so top-p and min-p see the model's own probabilities.
    pub fn from_params(params: &SamplerParams) -> Result<Self> {
        let mut chain = Self::new();
        let penalties_on = params.penalty_last_n > 0
            && (params.penalty_repeat != 1.0
                || params.penalty_frequency != 0.0
                || params.penalty_presence != 0.0);
        if penalties_on {
            chain.push(Stage::Penalties {
                last_n: params.penalty_last_n,
                repeat: params.penalty_repeat,
                frequency: params.penalty_frequency,
                presence: params.penalty_presence,
            })?;
        }
        Stage::Temperature(params.temperature).validate()?;
        if params.temperature <= 0.0 {
            chain.push(Stage::Greedy)?;
            return Ok(chain);
        }
        if params.top_k > 0 {
            chain.push(Stage::TopK(params.top_k))?;
        }
        Stage::TopP {
            p: params.top_p,
            min_keep: params.min_keep,
        }
        .validate()?;
        if params.top_p < 1.0 {
            chain.push(Stage::TopP {
                p: params.top_p,
                min_keep: params.min_keep,
            })?;
        }
        Stage::MinP {
            p: params.min_p,
            min_keep: params.min_keep,
        }
        .validate()?;
        if params.min_p > 0.0 {
            chain.push(Stage::MinP {
                p: params.min_p,
                min_keep: params.min_keep,
            })?;
        }
        if params.temperature != 1.0 {
            chain.push(Stage::Temperature(params.temperature))?;
        }
        chain.push(Stage::Dist { seed: params.seed })?;
        Ok(chain)
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The stages in the order they run, as configured.
    pub fn stages(&self) -> &[Stage] {
        &self.config
    }

    /// True once the chain ends in a terminal stage and so can sample.
    fn is_complete(&self) -> bool {
        matches!(
            self.stages.last(),
            Some(ActiveStage::Greedy | ActiveStage::Dist(_))
        )
    }

    /// The seed the chain's [`Stage::Dist`] draws from (the random one if it was asked for
    /// [`RANDOM_SEED`]), or None without a dist stage.
    pub fn seed(&self) -> Option<u64> {
        self.stages.iter().find_map(|s| match s {
            ActiveStage::Dist(d) => Some(d.seed()),
            _ => None,
        })
    }

    /// Picks the next token from one row of logits (shape (n_vocab,)).
    ///
    /// NaN logits are never picked. Errors: empty logits, no logit that is neither NaN nor
    /// -inf, or a chain without a terminal stage. Does not [`Self::accept`] the token.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if !self.is_complete() {
            return Err(Error::InvalidArgument(
                "sampler chain has no terminal stage (greedy or dist)".into(),
            ));
        }
        self.candidates.fill(logits)?;
        for stage in &mut self.stages {
            if let Some(i) = stage.apply(&mut self.candidates) {
                return self
                    .candidates
                    .as_slice()
                    .get(i)
                    .map(|t| t.id)
                    .ok_or_else(|| Error::InvalidArgument("sampler selected no token".into()));
            }
        }
        Err(Error::InvalidArgument("sampler selected no token".into()))
    }

    /// [`Self::sample`] then [`Self::accept`] of the chosen token.
    pub fn sample_and_accept(&mut self, logits: &[f32]) -> Result<u32> {
        let token = self.sample(logits)?;
        self.accept(token);
        Ok(token)
    }

    /// Records a token appended to the sequence (updates the penalty windows).
    pub fn accept(&mut self, token: u32) {
        for stage in &mut self.stages {
            stage.accept(token);
        }
    }

    /// Forgets accepted tokens and restarts the generator from its seed, so the chain then
    /// repeats the token sequence it produced after creation.
    pub fn reset(&mut self) {
        for stage in &mut self.stages {
            stage.reset();
        }
    }

    /// The candidates left by the last [`Self::sample`] (probabilities are set if a stage
    /// computed a softmax, e.g. dist or top-p). Empty before the first call.
    pub fn candidates(&self) -> &[TokenData] {
        self.candidates.as_slice()
    }
}
