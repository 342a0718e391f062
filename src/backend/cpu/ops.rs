//! Element-wise and row-wise ops of the transformer on f32 rows (single-threaded per row;
//! callers parallelise over rows where it pays). Every sum and transcendental function goes
//! through [`crate::backend::numerics`], so the GPU can reproduce these results bit for bit.

use crate::backend::numerics;

/// `out = x / rms(x) * weight`, the RMSNorm of one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == weight.len() && x.len() == out.len());
    let mean_square = numerics::sum_squares(x) / x.len() as f32;
    let scale = 1.0 / (mean_square + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// RMSNorm of each `weight.len()`-wide slice of `x` in place (QK-norm: every head of a row),
/// the same operations as [`rms_norm`].
pub fn rms_norm_heads_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    for head in x.chunks_exact_mut(weight.len()) {
        let mean_square = numerics::sum_squares(head) / head.len() as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for (v, &w) in head.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// `row += bias` for each `bias.len()`-wide row of `x`.
pub fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_in_place(row, bias);
    }
}

/// `x = cap * tanh(x / cap)`: soft-capping of logits.
pub fn softcap_in_place(x: &mut [f32], cap: f32) {
    for v in x.iter_mut() {
        *v = cap * numerics::tanh(*v / cap);
    }
}

/// `x += y`
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// SwiGLU: `gate = silu(gate) * up`, in place in `gate`.
pub fn silu_mul_in_place(gate: &mut [f32], up: &[f32]) {
    debug_assert_eq!(gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + numerics::exp(-*g)) * u;
    }
}

/// GeGLU: `gate = gelu(gate) * up` (tanh approximation), in place in `gate`.
pub fn gelu_mul_in_place(gate: &mut [f32], up: &[f32]) {
    debug_assert_eq!(gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = numerics::gelu(*g) * u;
    }
}

/// Rotary position embedding, "normal" mode (llama): adjacent pairs `(x[2i], x[2i+1])` of each
/// head rotate by `pos * theta_i`, with `table` from [`numerics::rope_table`] for that position (its
/// frequencies already fold in the base, any scaling and per-dimension factors).
/// `x`: (n_heads * head_dim).
pub fn rope_in_place(x: &mut [f32], head_dim: usize, table: &[(f32, f32)]) {
    debug_assert_eq!(table.len() * 2, head_dim);
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(sin, cos)) in head.chunks_exact_mut(2).zip(table) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

/// Rotary position embedding, NEOX mode (Qwen, Phi-3, Gemma): element `i` of each head's
/// first half pairs with element `i + head_dim / 2`, rotated by `pos * theta_i` as in
/// [`rope_in_place`]. `x`: (n_heads * head_dim).
pub fn rope_neox_in_place(x: &mut [f32], head_dim: usize, table: &[(f32, f32)]) {
    debug_assert_eq!(table.len() * 2, head_dim);
    for head in x.chunks_exact_mut(head_dim) {
        let (lo, hi) = head.split_at_mut(head_dim / 2);
        for ((a, b), &(sin, cos)) in lo.iter_mut().zip(hi.iter_mut()).zip(table) {
            let (x0, x1) = (*a, *b);
            *a = x0 * cos - x1 * sin;
            *b = x0 * sin + x1 * cos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::numerics::rope_table;

    #[test]
    fn rms_norm_of_constant_row_is_the_weight() {
        let x = [2.0f32; 8];
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut out = [0.0; 8];
        rms_norm(&x, &w, 0.0, &mut out);
        for (o, w) in out.iter().zip(w) {
            assert!((o - w).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_norm() {
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        let inv_freq = [1.0f32, 0.5];
        let mut table = Vec::new();
        rope_table(std::f32::consts::FRAC_PI_2, &inv_freq, 1.0, &mut table);
        rope_in_place(&mut x, 4, &table);
        assert!(x[0].abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6);
        let angle = std::f32::consts::FRAC_PI_4;
        assert!((x[2] + angle.sin()).abs() < 1e-6 && (x[3] - angle.cos()).abs() < 1e-6);
    }

    #[test]
    fn neox_rope_is_normal_rope_on_interleaved_halves() {
        // NEOX on (a0 a1 | b0 b1) is normal RoPE on (a0 b0 a1 b1), bit for bit.
        let mut table = Vec::new();
        rope_table(3.0, &[1.0, 0.25], 1.0, &mut table);
        let head = [0.5f32, -1.5, 2.0, 0.75];
        let mut neox = head;
        rope_neox_in_place(&mut neox, 4, &table);
        let mut normal = [head[0], head[2], head[1], head[3]];
        rope_in_place(&mut normal, 4, &table);
        assert_eq!(neox, [normal[0], normal[2], normal[1], normal[3]]);
    }

    #[test]
    fn qk_norm_is_rms_norm_per_head() {
        let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
        let w = [0.5f32, 1.0, 1.5, 2.0];
        let mut got = x.clone();
        rms_norm_heads_in_place(&mut got, &w, 1e-6);
        for (h, head) in x.chunks(4).enumerate() {
            let mut want = [0.0f32; 4];
            rms_norm(head, &w, 1e-6, &mut want);
            assert_eq!(&got[h * 4..h * 4 + 4], &want);
        }
    }

    #[test]
    fn bias_softcap_and_gelu_match_formulas() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        add_bias_rows(&mut x, &[0.5, -1.0]);
        assert_eq!(x, [1.5, 1.0, 3.5, 3.0]);
        let mut l = [0.0f32, 10.0, -1000.0];
        softcap_in_place(&mut l, 30.0);
        assert_eq!(l[0], 0.0);
        assert!((l[1] - 30.0 * (10.0f32 / 30.0).tanh()).abs() < 1e-5);
        assert_eq!(l[2], -30.0);
        let mut g = [0.0f32, 1.0, -3.0];
        gelu_mul_in_place(&mut g, &[2.0, 2.0, 1.0]);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 2.0 * 0.841_192).abs() < 1e-5, "{}", g[1]);
        assert!((g[2] + 0.003_637_4).abs() < 1e-5, "{}", g[2]);
    }

    #[test]
    fn silu_mul_matches_formula() {
        let mut g = [0.0f32, 1.0, -2.0];
        silu_mul_in_place(&mut g, &[3.0, 2.0, 1.0]);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 2.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        assert!((g[2] - (-2.0 / (1.0 + 2.0f32.exp()))).abs() < 1e-6);
    }
}
