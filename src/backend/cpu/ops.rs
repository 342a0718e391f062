//! Element-wise and row-wise ops of the transformer on f32 rows (single-threaded per row;
//! callers parallelise over rows where it pays).

/// `out = x / rms(x) * weight`, the RMSNorm of one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == weight.len() && x.len() == out.len());
    let mean_square = sum_squares(x) / x.len() as f32;
    let scale = 1.0 / (mean_square + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// Sum of squares with several accumulators so the compiler can vectorise it.
fn sum_squares(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i] * c[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in tail {
        sum += v * v;
    }
    sum
}

/// Dot product of two f32 rows (several accumulators: vectorises).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ta.iter().zip(tb) {
        sum += x * y;
    }
    sum
}

/// `acc += scale * x`
pub fn axpy(acc: &mut [f32], scale: f32, x: &[f32]) {
    debug_assert_eq!(acc.len(), x.len());
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += scale * v;
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
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// In-place softmax of one row; returns nothing, the row sums to 1 afterwards.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Rotary position embedding, "normal" mode (llama): adjacent pairs `(x[2i], x[2i+1])` of each
/// head rotate by `pos * theta_i`. `inv_freq[i]` already folds in the base, any frequency
/// scaling and per-dimension factors. `x`: (n_heads * head_dim).
pub fn rope_in_place(x: &mut [f32], head_dim: usize, pos: f32, inv_freq: &[f32]) {
    debug_assert_eq!(inv_freq.len() * 2, head_dim);
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &f) in head.chunks_exact_mut(2).zip(inv_freq) {
            let (sin, cos) = (pos * f).sin_cos();
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn softmax_sums_to_one_and_orders() {
        let mut x = [1.0f32, 2.0, 3.0, -1e30];
        softmax_in_place(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0] && x[3] == 0.0);
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_norm() {
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        let inv_freq = [1.0f32, 0.5];
        rope_in_place(&mut x, 4, std::f32::consts::FRAC_PI_2, &inv_freq);
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

    #[test]
    fn dot_handles_tails() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b = vec![2.0f32; 37];
        assert_eq!(dot_f32(&a, &b), 2.0 * (36.0 * 37.0 / 2.0));
    }
}
