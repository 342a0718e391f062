//! Per-context working buffers, sized for the largest batch seen and reused across calls.

use crate::backend::cpu::matmul::PackedActivations;
use crate::model::Hparams;

#[derive(Default)]
pub struct Scratch {
    /// Residual stream: (n_tokens, n_embd)
    pub x: Vec<f32>,
    /// Normalised residual: (n_tokens, n_embd)
    pub xn: Vec<f32>,
    /// Queries: (n_tokens, q_dim)
    pub q: Vec<f32>,
    /// Keys and values of the new tokens: (n_tokens, kv_dim)
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// Attention output: (n_tokens, q_dim)
    pub attn: Vec<f32>,
    /// Output of a projection back to the residual width: (n_tokens, n_embd)
    pub proj: Vec<f32>,
    /// Feed-forward hidden: (n_tokens, n_ff)
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    /// Activations packed for the current weight type.
    pub acts: PackedActivations,
    /// Cache cells each token attends to.
    pub visible: Vec<Vec<usize>>,
    /// The same for sliding-window layers, per distinct window: (window, (n_tokens, cells)).
    pub windowed: Vec<(usize, Vec<Vec<usize>>)>,
    /// Each token's RoPE rotations per RoPE of the model, (sin, cos) per pair:
    /// (n_ropes, n_tokens, head_dim / 2).
    pub rope: Vec<Vec<Vec<(f32, f32)>>>,
}

impl Scratch {
    /// Sizes every buffer for `n_tokens` tokens.
    pub fn prepare(&mut self, hp: &Hparams, n_tokens: usize) {
        self.x.resize(n_tokens * hp.n_embd, 0.0);
        self.xn.resize(n_tokens * hp.n_embd, 0.0);
        self.q.resize(n_tokens * hp.q_dim(), 0.0);
        self.k.resize(n_tokens * hp.kv_dim(), 0.0);
        self.v.resize(n_tokens * hp.kv_dim(), 0.0);
        self.attn.resize(n_tokens * hp.q_dim(), 0.0);
        self.proj.resize(n_tokens * hp.n_embd, 0.0);
        self.gate.resize(n_tokens * hp.n_ff, 0.0);
        self.up.resize(n_tokens * hp.n_ff, 0.0);
        self.visible.resize_with(n_tokens, Vec::new);
        self.rope.resize_with(hp.ropes.len(), Vec::new);
        for r in &mut self.rope {
            r.resize_with(n_tokens, Vec::new);
        }
    }
}
