//! Grid searches shared by the K-quant quantizers: for one group of weights, the grid (a scale,
//! and for the formats with mins an offset) of least weighted error, with the group's quants.
//! These are GGML's reference searches, restated: candidate grids around the one spanning the
//! values, each refined by least squares on the quants it gives, with GGML's parameters and its
//! order of floating-point operations (so our files come out as llama-quantize's do) and its
//! round-half-to-even (`nearest`).

/// Groups whose largest magnitude is below this are all zero (GGML's GROUP_MAX_EPS).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Rounds half to even, as GGML's `nearest_int`. The searches round values of a few grid steps
/// (|v| up to about 2 nmax): for |v| < 2^22, adding and subtracting 1.5 * 2^23 rounds to an
/// integer, ties to even, as GGML's `nearest_int` itself does, without the call of libm's
/// `rintf` that `round_ties_even` is on baseline x86-64 (28 % of a Q6_K quantization's time).
#[inline]
pub fn nearest(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    if v.abs() < 4_194_304.0 {
        ((v + MAGIC) - MAGIC) as i32
    } else {
        nearest_large(v)
    }
}

/// [`nearest`] past 2^22 (and NaN). Not inlined: inlined, the compiler computed it (a call of
/// `rintf`) for every value and selected afterwards.
#[cold]
#[inline(never)]
fn nearest_large(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// The value of largest magnitude, with its sign (the first of equal magnitudes; 0 when all are
/// zero).
pub fn signed_max(x: &[f32]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    max
}

/// The affine grid `value = scale * q - offset` of least weighted error for `x` (GGML's
/// `make_qkx2_quants`), `q` in `0..=nmax`, the grid reaching 0 or below. Candidate inverse
/// scales are `(rmin + rdelta * s + nmax) / (max - min)` for `s` in `0..=nsteps`, the error is
/// weighted absolute (`mad`) or squared. Writes the quants to `q`; returns `(scale, offset)`.
// Eight arguments: GGML's search parameters stay one argument each, so each format's call
// reads like the reference's.
#[allow(clippy::too_many_arguments)]
pub fn affine(
    x: &[f32],
    w: &[f32],
    nmax: u8,
    rmin: f32,
    rdelta: f32,
    nsteps: usize,
    mad: bool,
    q: &mut [u8],
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (w[0], w[0] * x[0]);
    for (&v, &wt) in x.iter().zip(w).skip(1) {
        min = min.min(v);
        max = max.max(v);
        sum_w += wt;
        sum_x += wt * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        q.fill(0);
        return (0.0, -min);
    }
    let n = nmax as i32;
    // (`min` moves to each better candidate's, and later candidates are measured from it, as
    // in GGML)
    let quant = |iscale: f32, v: f32, min: f32| nearest(iscale * (v - min)).clamp(0, n);
    let penalty = |d: f32| if mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for (i, (&v, &wt)) in x.iter().zip(w).enumerate() {
        q[i] = quant(iscale, v, min) as u8;
        best_error += wt * penalty(scale * q[i] as f32 + min - v);
    }
    // (at most 32 weights per group)
    let mut aux = [0u8; 32];
    let aux = &mut aux[..x.len()];
    for s in 0..=nsteps {
        iscale = (rmin + rdelta * s as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for (i, (&v, &wt)) in x.iter().zip(w).enumerate() {
            let l = quant(iscale, v, min);
            aux[i] = l as u8;
            let l = l as f32;
            sum_l += wt * l;
            sum_l2 += wt * l * l;
            sum_xl += wt * l * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0.0f32;
            for (i, (&v, &wt)) in x.iter().zip(w).enumerate() {
                error += wt * penalty(this_scale * aux[i] as f32 + this_min - v);
            }
            if error < best_error {
                q.copy_from_slice(aux);
                (best_error, scale, min) = (error, this_scale, this_min);
            }
        }
    }
    (scale, -min)
}

/// The symmetric grid `value = scale * (q - nmax)` of least error weighted by `x²` for `x`
/// (GGML's `make_qx_quants` with its weights x²), `q` in `0..2 nmax`: the value of largest
/// magnitude maps to `-nmax`, then inverse scales stretched by ±0.1..0.9 steps are tried.
/// Writes the quants to `q` (all 0 for an all-zero group); returns the scale.
pub fn symmetric(x: &[f32], nmax: i32, q: &mut [i8]) -> f32 {
    let max = signed_max(x);
    if max.abs() < GROUP_MAX_EPS {
        q.fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let quant = |iscale: f32, v: f32| nearest(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| -> (f32, f32) {
        let (mut sum_lx, mut sum_l2) = (0f32, 0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sum_lx += w * v * l;
            sum_l2 += w * l * l;
        }
        (sum_lx, sum_l2)
    };
    let mut iscale = -nmax_f / max;
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = (quant(iscale, v) + nmax) as i8;
    }
    let (sum_lx, sum_l2) = sums(iscale);
    let mut scale = if sum_l2 != 0.0 { sum_lx / sum_l2 } else { 0.0 };
    let mut best = scale * sum_lx;
    for s in (-9..=9).filter(|&s| s != 0) {
        iscale = -(nmax_f + 0.1 * s as f32) / max;
        let (sum_lx, sum_l2) = sums(iscale);
        if sum_l2 > 0.0 && sum_lx * sum_lx > best * sum_l2 {
            for (qi, &v) in q.iter_mut().zip(x) {
                *qi = (quant(iscale, v) + nmax) as i8;
            }
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    scale
}

/// Q3_K's search (GGML's `make_q3_quants` with its refinement): the value of largest magnitude
/// maps to `-nmax`, then each quant in turn moves to the level that the least-squares scale of
/// the others asks for when that lowers the x²-weighted error, for up to 5 passes. Writes the
/// quants (`q + nmax`, in `0..2 nmax`; all 0 for an all-zero group) to `q`; returns the scale.
pub fn symmetric_refined(x: &[f32], nmax: i32, q: &mut [i8]) -> f32 {
    let max = signed_max(x);
    if max.abs() < GROUP_MAX_EPS {
        q.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sum_lx, mut sum_l2) = (0f32, 0f32);
    for (qi, &v) in q.iter_mut().zip(x) {
        let l = nearest(iscale * v).clamp(-nmax, nmax - 1);
        *qi = l as i8;
        let w = v * v;
        sum_lx += w * v * l as f32;
        sum_l2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (qi, &v) in q.iter_mut().zip(x) {
            let w = v * v;
            let l = *qi as f32;
            let mut slx = sum_lx - w * v * l;
            if slx > 0.0 {
                let mut sl2 = sum_l2 - w * l * l;
                let new_l = nearest(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *qi as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * sum_l2 > sum_lx * sum_lx * sl2 {
                        *qi = new_l as i8;
                        (sum_lx, sum_l2) = (slx, sl2);
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for qi in q.iter_mut() {
        *qi += nmax as i8;
    }
    if sum_l2 > 0.0 {
        sum_lx / sum_l2
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rounds_half_to_even_as_libm_does() {
        // Quarter steps (ties included) over the searches' range and far past it, values next
        // to the 2^22 switch, and the non-finite products of an overflowed inverse scale.
        let mut vs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.25).collect();
        vs.extend([0.49999997, -0.49999997, 2.5000002, -1e-30, -0.0]);
        vs.extend([
            4_194_303.5,
            4_194_304.0,
            -4_194_304.5,
            8_388_609.0,
            3e9,
            -3e9,
        ]);
        vs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        for v in vs {
            assert_eq!(nearest(v), v.round_ties_even() as i32, "{v}");
        }
    }

    #[test]
    fn values_on_a_grid_are_found_exactly() {
        // 0.5 q - 1.5, q in 0..=3: the affine search recovers the grid.
        let x: Vec<f32> = (0..16).map(|i| 0.5 * (i % 4) as f32 - 1.5).collect();
        let w = vec![1.0; 16];
        let mut q = [0u8; 16];
        let (scale, offset) = affine(&x, &w, 3, -0.5, 0.1, 15, true, &mut q);
        assert!((scale - 0.5).abs() < 1e-6 && (offset - 1.5).abs() < 1e-6);
        assert!(q.iter().enumerate().all(|(i, &q)| q as usize == i % 4));
        // 0.25 (q - 4), q in 0..8, the largest magnitude negative.
        let x: Vec<f32> = (0..16).map(|i| 0.25 * ((i % 8) as f32 - 4.0)).collect();
        for search in [symmetric, symmetric_refined] {
            let mut q = [0i8; 16];
            let scale = search(&x, 4, &mut q);
            assert!((scale - 0.25).abs() < 1e-6, "{scale}");
            assert!(q.iter().enumerate().all(|(i, &q)| q as usize == i % 8));
        }
    }

    #[test]
    fn the_searches_never_do_worse_than_the_spanning_grid() {
        let x: Vec<f32> = (0..32)
            .map(|i| ((i * 37 % 29) as f32 - 11.0) / 7.0)
            .collect();
        let w: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        let err = |scale: f32, offset: f32| -> f32 {
            let q = |v: f32| ((v + offset) / scale).round().clamp(0.0, 15.0);
            let e = |(&v, &wt): (&f32, &f32)| wt * (scale * q(v) - offset - v).powi(2);
            x.iter().zip(&w).map(e).sum()
        };
        let (lo, hi) = (-11.0 / 7.0f32, 17.0 / 7.0f32);
        let (scale, offset) = affine(&x, &w, 15, -1.0, 0.1, 20, false, &mut [0u8; 32]);
        assert!(err(scale, offset) <= err((hi - lo) / 15.0, -lo) + 1e-6);
        // Symmetric: x²-weighted squared error at or below the grid mapping the extreme to -32.
        let sym_err = |scale: f32| -> f32 {
            let q = |v: f32| (v / scale).round().clamp(-32.0, 31.0);
            x.iter().map(|&v| v * v * (scale * q(v) - v).powi(2)).sum()
        };
        let scale = symmetric(&x, 32, &mut [0i8; 32]);
        assert!(sym_err(scale) <= sym_err(hi / -32.0) + 1e-6);
    }
}
