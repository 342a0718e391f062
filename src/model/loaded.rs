//! A model as the backends see it: the parsed file, its description, typed weight views and
//! the RoPE frequencies, immutable and shared by every context of the model.

use super::{FreqFactors, Hparams, RopeScaling, RopeSpec, Weights};
use crate::gguf::GgufFile;
use crate::Result;

/// Everything immutable the forward pass needs; shared by all contexts of a model.
pub struct LoadedModel {
    pub gguf: GgufFile,
    pub hparams: Hparams,
    pub weights: Weights,
    /// RoPE angle per position unit for each rotated pair, one table per RoPE of the
    /// description (`hparams.ropes`): (n_ropes, head_dim / 2).
    pub rope_inv_freq: Vec<Vec<f32>>,
    /// The same for contexts longer than a [`FreqFactors::ByContext`] RoPE's original length
    /// (its long factors); equal to `rope_inv_freq` for every other RoPE.
    pub rope_inv_freq_long: Vec<Vec<f32>>,
}

impl LoadedModel {
    pub fn new(gguf: GgufFile) -> Result<LoadedModel> {
        let hparams = Hparams::from_gguf(&gguf)?;
        let weights = Weights::from_gguf(&gguf, &hparams)?;
        let tables = |long: bool| {
            (hparams.ropes.iter())
                .map(|r| {
                    let factors = match r.freq_factors {
                        FreqFactors::None => None,
                        FreqFactors::Fixed => weights.rope_freq_factors.as_deref(),
                        FreqFactors::ByContext { .. } if long => {
                            weights.rope_freq_factors_long.as_deref()
                        }
                        FreqFactors::ByContext { .. } => weights.rope_freq_factors.as_deref(),
                    };
                    rope_inv_freq(hparams.head_dim, r, factors)
                })
                .collect()
        };
        let (rope_inv_freq, rope_inv_freq_long) = (tables(false), tables(true));
        Ok(LoadedModel {
            gguf,
            hparams,
            weights,
            rope_inv_freq,
            rope_inv_freq_long,
        })
    }

    /// The RoPE tables of a context with `n_ctx_seq` cells per sequence: the long factors'
    /// beyond a RoPE's original context length, as llama.cpp chooses them.
    pub fn rope_tables(&self, n_ctx_seq: usize) -> &[Vec<f32>] {
        if self.hparams.long_rope_factors(n_ctx_seq) {
            &self.rope_inv_freq_long
        } else {
            &self.rope_inv_freq
        }
    }
}

/// theta_i = base^(-2i/d) * freq_scale / factor_i, built by repeated multiplication as the
/// reference implementation does, so angles round the same way; `factors` as the RoPE's
/// [`FreqFactors`] chose them.
fn rope_inv_freq(head_dim: usize, rope: &RopeSpec, factors: Option<&[f32]>) -> Vec<f32> {
    let half = head_dim / 2;
    let step = rope.base.powf(-2.0 / head_dim as f32);
    let freq_scale = match rope.scaling {
        RopeScaling::None => 1.0,
        RopeScaling::Linear { factor } => 1.0 / factor,
    };
    let mut theta = 1.0f32;
    (0..half)
        .map(|i| {
            let f = theta * freq_scale / factors.map_or(1.0, |f| f[i]);
            theta *= step;
            f
        })
        .collect()
}
