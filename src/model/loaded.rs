//! A model as the backends see it: the parsed file, its description, typed weight views and
//! the RoPE frequencies, immutable and shared by every context of the model.

use super::{Hparams, RopeScaling, RopeSpec, Weights};
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
}

impl LoadedModel {
    pub fn new(gguf: GgufFile) -> Result<LoadedModel> {
        let hparams = Hparams::from_gguf(&gguf)?;
        let weights = Weights::from_gguf(&gguf, &hparams)?;
        let rope_inv_freq = (hparams.ropes.iter())
            .map(|r| rope_inv_freq(hparams.head_dim, r, weights.rope_freq_factors.as_deref()))
            .collect();
        Ok(LoadedModel {
            gguf,
            hparams,
            weights,
            rope_inv_freq,
        })
    }
}

/// theta_i = base^(-2i/d) * freq_scale / factor_i, built by repeated multiplication as the
/// reference implementation does, so angles round the same way.
fn rope_inv_freq(head_dim: usize, rope: &RopeSpec, factors: Option<&[f32]>) -> Vec<f32> {
    let half = head_dim / 2;
    let step = rope.base.powf(-2.0 / head_dim as f32);
    let freq_scale = match rope.scaling {
        RopeScaling::None => 1.0,
        RopeScaling::Linear { factor } => 1.0 / factor,
    };
    let factors = factors.filter(|_| rope.freq_factors);
    let mut theta = 1.0f32;
    (0..half)
        .map(|i| {
            let f = theta * freq_scale / factors.map_or(1.0, |f| f[i]);
            theta *= step;
            f
        })
        .collect()
}
