//! The two loops of the scalar dot products, which each format's file fills with its block
//! arithmetic (`formats/*.rs`): [`canonical`], the summation order that every quantized kernel
//! (SIMD, and the GPU mat-vec) reproduces bit for bit, and [`reference`], the f64 accuracy
//! reference.
//!
//! # The canonical order (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL)
//! It is the order of the GPU mat-vec, where one 32-lane team computes a (weight row,
//! activation row) dot: lane `L` takes blocks `L, L + 32, L + 64, ...` and the 32 lane sums
//! are then combined by a butterfly. Per block `b`, in ascending order:
//!
//! ```text
//! isum   = exact i32 sum of w_j * a_j over the block's 32 elements
//! dd     = f32(w.d) * f32(a.d)                   (one rounded multiply)
//! acc[L] = fma(isum as f32, dd, acc[L])          (L = b % 32, one rounding)
//! acc[L] = fma(f32(w.m), f32(a.s), acc[L])       (Q4_1 and Q5_1 only)
//! ```
//!
//! and the result is `butterfly(acc)`. Here w_j is the weight's integer quant as its value
//! formula uses it (q - 8 for Q4_0, q - 16 for Q5_0, q for Q4_1 / Q5_1, the byte for Q8_0,
//! the table value for IQ4_NL) and a_j the activation's. The integer sums are exact in any
//! order, so SIMD kernels may reduce them however is fastest; only the float steps are pinned.
//!
//! # The canonical order of the K-quants (Q2_K ... Q6_K and IQ4_XS against Q8_K)
//! The same lanes and butterfly, one super-block of 256 elements where the formats above
//! have one block: super-block `b` goes to lane `L = b % 32`, in ascending order. Per
//! super-block, with sub-blocks `j` (8 of 32 elements for Q4_K / Q5_K / IQ4_XS, 16 of 16 for
//! Q2_K, Q3_K, Q6_K), their integer scales `sc_j` (Q3_K, IQ4_XS: the stored 6 bits - 32) and
//! mins `m_j`, the weight quants `q` as the value formula uses them (0..=3 for Q2_K, -4..=3
//! for Q3_K, 0..=15 for Q4_K, 0..=31 for Q5_K, q - 32 for Q6_K, the table value for IQ4_XS),
//! the activation quants `a` and group sums `bsum_j` (the Q8_K `bsums` covering sub-block j,
//! summed):
//!
//! ```text
//! isum   = exact i32: Σ_j sc_j · (Σ_{i in j} q_i · a_i)
//! msum   = exact i32: Σ_j m_j · bsum_j                 (Q2_K, Q4_K, Q5_K)
//! dd     = f32(w.d) * a.d                             (one rounded multiply; a.d is f32)
//! dm     = f32(w.dmin) * a.d                          (Q2_K, Q4_K, Q5_K)
//! acc[L] = fma(isum as f32, dd, acc[L])               (isum as f32: round to nearest even)
//! acc[L] = fma(-(msum as f32), dm, acc[L])            (Q2_K, Q4_K, Q5_K)
//! ```
//!
//! and the result is `butterfly(acc)`. Both integer parts fit i32 with room to spare (|isum|
//! <= 2^27 for Q6_K, < 2^27 for IQ4_XS, < 2^26 for Q5_K, less for the others), so any
//! grouping of the integer work gives the same numbers: SIMD kernels may use
//! unsigned-by-signed byte dots (`vpdpbusd`, `dp4a`), fold Q6_K's -32 (and Q3_K's -4) in
//! through the group sums, and sum sub-blocks in any order. The float work is two multiplies
//! and two FMAs per 256 elements (one and one without mins); `isum as f32` rounds only for
//! |isum| > 2^24, alike on every backend.

use crate::quant::blocks::{read_block, Block};

/// Accumulators of the canonical order (one per lane of the GPU team) and their butterfly:
/// the definitions both backends share.
pub(crate) use crate::backend::numerics::{butterfly32 as butterfly, LANES};

/// The canonical dot of one row pair: `step(w_block, a_block, acc[L])` returns the new
/// `acc[L]` for each block in ascending order. Panics on rows shorter than `n` implies
/// (the kernels' contract, see [`super::check_lengths`]).
#[inline(always)]
pub(crate) fn canonical<W: Block, A: Block>(
    n: usize,
    w: &[u8],
    a: &[u8],
    step: impl Fn(&W, &A, f32) -> f32,
) -> f32 {
    super::check_lengths(n, w, a, W::ELEMS, W::BYTES, A::BYTES);
    let mut acc = [0f32; LANES];
    for b in 0..n / W::ELEMS {
        // Lengths are checked above, so both reads succeed.
        if let (Some(wb), Some(ab)) = (read_block::<W>(w, b), read_block::<A>(a, b)) {
            acc[b % LANES] = step(&wb, &ab, acc[b % LANES]);
        }
    }
    butterfly(acc)
}

/// The f64 reference dot of one row pair: `step(w_block, a_block, acc)` returns the new
/// accumulator for each block in ascending order. Each block's integer sum is exact and the
/// scaled block terms are accumulated in f64, so this is the most accurate value our kernels
/// can aim at. Panics on rows shorter than `n` implies (a caller bug, like slice indexing).
pub(crate) fn reference<W: Block, A: Block>(
    n: usize,
    w: &[u8],
    a: &[u8],
    step: impl Fn(&W, &A, f64) -> f64,
) -> f32 {
    let qk = W::ELEMS;
    assert!(
        n.is_multiple_of(qk),
        "row length {n} is not a multiple of {qk}"
    );
    let nb = n / qk;
    assert!(
        w.len() >= nb * W::BYTES && a.len() >= nb * A::BYTES,
        "row too short"
    );
    let mut acc = 0f64;
    for i in 0..nb {
        // Lengths are checked above, so both reads succeed.
        if let (Some(wb), Some(ab)) = (read_block::<W>(w, i), read_block::<A>(a, i)) {
            acc = step(&wb, &ab, acc);
        }
    }
    acc as f32
}
