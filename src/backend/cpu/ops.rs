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
        rope_table(std::f32::consts::FRAC_PI_2, &inv_freq, &mut table);
        rope_in_place(&mut x, 4, &table);
        assert!(x[0].abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6);
        let angle = std::f32::consts::FRAC_PI_4;
        assert!((x[2] + angle.sin()).abs() < 1e-6 && (x[3] - angle.cos()).abs() < 1e-6);
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
