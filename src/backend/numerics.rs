//! The arithmetic both backends share, rounding for rounding.
//!
//! The GPU backend reproduces the CPU backend's logits bit for bit on the decode path (see
//! docs/BENCHMARKS.md, "GPU-vs-CPU parity"). That works only if every floating-point sum is
//! taken in the same order and every transcendental function is the same sequence of
//! correctly rounded operations on both sides. This module is that definition for the CPU;
//! `kernels/numerics.h` is its GPU mirror, and a change to one must be made to the other.
//!
//! The summation order is the GPU's natural one: element `i` of a row goes to partial sum
//! `i % 32` (one per lane of a 32-lane team), each partial adds its elements in ascending order,
//! and the 32 partials meet in a butterfly (`v[i] += v[i ^ m]` for m = 16, 8, 4, 2, 1, read
//! at lane 0). On the CPU the 32 partials are four 8-wide vectors, so the sums vectorise.
//!
//! No fused multiply-adds appear here: Rust never contracts `a * b + c`, and the kernels are
//! compiled with contraction off (`--fmad=false`, `-ffp-contract=off`); where a kernel wants
//! a fused one it writes it explicitly on both sides (the quantized dot products).

/// Lanes of a team: the number of partial sums of every canonical reduction.
pub const LANES: usize = 32;

/// Combines 32 partial sums in butterfly order (the value lane 0 ends with after
/// `v += shfl_xor(v, m)` for m = 16, 8, 4, 2, 1).
#[inline(always)]
pub fn butterfly32(mut v: [f32; LANES]) -> f32 {
    let mut m = LANES / 2;
    while m > 0 {
        for i in 0..m {
            v[i] += v[i + m];
        }
        m /= 2;
    }
    v[0]
}

/// `sum(x[i] * y[i])` in canonical order (each product rounded, then added).
#[inline(always)] // into callers compiled for wider vectors (same operations, same bits)
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [0.0f32; LANES];
    let (cx, cy) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (tx, ty) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for i in 0..LANES {
            acc[i] += a[i] * b[i];
        }
    }
    for (i, (a, b)) in tx.iter().zip(ty).enumerate() {
        acc[i] += a * b;
    }
    butterfly32(acc)
}

/// `sum(x[i]^2)` in canonical order.
#[inline(always)]
pub fn sum_squares(x: &[f32]) -> f32 {
    dot(x, x)
}

// exp: Cody-Waite reduction to r in [-ln2/2, ln2/2], a degree-7 Taylor polynomial, and a
// scale by 2^n built from bits. Only correctly rounded + - * on f32: the GPU gets the same bits.
pub(crate) const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that n * LN2_HI is exact for |n| <= 2^9 (LN2_HI has 15 significant bits).
pub(crate) const LN2_HI: f32 = 0.693_145_75;
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (ties to even).
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// Inputs are clamped here so that 2^n stays a normal float; e^-87 and e^88 are as far as
/// the callers' results can tell (softmax of a shifted row, SiLU).
pub(crate) const EXP_MIN: f32 = -87.0;
pub(crate) const EXP_MAX: f32 = 88.0;

/// e^x to about 2 ulp, the same bits on CPU and GPU. NaN maps to e^-87.
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp keeps NaN; max/min map it to EXP_MIN, as fmaxf/fminf do
pub fn exp(x: f32) -> f32 {
    let x = x.max(EXP_MIN).min(EXP_MAX);
    let n = (x * LOG2_E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)) through [`exp`]: the same bits on both sides,
/// within about 1e-7 of the exact value (absolute; relative accuracy is lower near 0, where
/// its callers add it to 1 or scale it by a cap).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let t = 1.0 - 2.0 / (exp(2.0 * x.abs()) + 1.0);
    if x < 0.0 {
        -t
    } else {
        t
    }
}

/// GELU, tanh approximation (Gemma's GeGLU): `0.5 x (1 + tanh(√(2/π) x (1 + 0.044715 x²)))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)))
}

/// (sin, cos) of an f32 angle, evaluated in f64 and rounded once: both libms are accurate to
/// well under an f32 rounding step, so the rounded results agree (a disagreement needs the
/// exact value within ~2^-50 of an f32 rounding boundary).
#[inline]
pub fn sin_cos(theta: f32) -> (f32, f32) {
    let (s, c) = (theta as f64).sin_cos();
    (s as f32, c as f32)
}

/// The rotation of every pair of one position: (sin, cos) of `pos * inv_freq[i]`, each times
/// `attn_factor` (the RoPE's, 1 for most models: then exact), computed once per token and
/// shared by all heads and layers. `out`: (head_dim / 2).
pub fn rope_table(pos: f32, inv_freq: &[f32], attn_factor: f32, out: &mut Vec<(f32, f32)>) {
    out.clear();
    out.extend(inv_freq.iter().map(|&f| {
        let (s, c) = sin_cos(pos * f);
        (s * attn_factor, c * attn_factor)
    }));
}

/// Cache cells per chunk of the split attention softmax (kernels/attention.hip: ATT_CHUNK):
/// both backends split a long cache at the same cells, so the joined softmax has one order.
pub const ATTENTION_CHUNK: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn butterfly_is_the_lane_zero_order() {
        // Values whose sum depends on the order: big cancelling terms and a small one.
        let mut v = [0.0f32; LANES];
        v[0] = 1.0e8;
        v[16] = -1.0e8;
        v[1] = 3.0;
        v[17] = 0.25;
        // (v0 + v16) first = 0, then v1 + v17 = 3.25, ... so the exact 3.25 survives.
        assert_eq!(butterfly32(v), 3.25);
        // A sequential left-to-right sum would lose the 0.25 to rounding at 1e8 + 3.
        let seq: f32 = v.iter().sum();
        assert_ne!(seq, 3.25);
    }

    #[test]
    fn dot_assigns_elements_by_index_modulo_32() {
        let x: Vec<f32> = (0..70).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = (0..70).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut acc = [0.0f32; LANES];
        for i in 0..70 {
            acc[i % LANES] += x[i] * y[i];
        }
        assert_eq!(dot(&x, &y).to_bits(), butterfly32(acc).to_bits());
        assert_eq!(sum_squares(&x).to_bits(), dot(&x, &x).to_bits());
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        // 2 ulp of f32 is 2.4e-7 relative.
        assert!(worst < 2.4e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1.0e-37);
        assert!(exp(1000.0) > 1.0e38 && exp(1000.0).is_finite());
    }

    #[test]
    fn tanh_and_gelu_are_accurate() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = (x as f64).tanh();
            assert!((tanh(x) as f64 - want).abs() < 2.5e-7, "tanh({x})");
            let xd = x as f64;
            let g = 0.5 * xd * (1.0 + (0.797_884_560_8 * xd * (1.0 + 0.044_715 * xd * xd)).tanh());
            assert!(
                (gelu(x) as f64 - g).abs() < 1e-6 * (1.0 + xd.abs()),
                "gelu({x})"
            );
            x += 0.0093;
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

    #[test]
    fn sin_cos_matches_f64() {
        for i in 0..1000 {
            let t = i as f32 * 7.31;
            let (s, c) = sin_cos(t);
            assert_eq!(s, (t as f64).sin() as f32);
            assert_eq!(c, (t as f64).cos() as f32);
        }
    }
}
