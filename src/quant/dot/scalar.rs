//! The scalar kernels: for the quantized weight types, the definition of the canonical
//! summation order (below) that every SIMD kernel reproduces bit for bit; for the float
//! types, the f64 reference dots of [`crate::quant::reference::dot`].
//!
//! # The canonical order (Q4_0, Q4_1, Q8_0)
//! It is the order of the GPU mat-vec, where one 32-lane team computes a (weight row,
//! activation row) dot: lane `L` takes blocks `L, L + 32, L + 64, ...` and the 32 lane sums
//! are then combined by a butterfly. Per block `b`, in ascending order:
//!
//! ```text
//! isum   = exact i32 sum of w_j * a_j over the block's 32 elements
//! dd     = f32(w.d) * f32(a.d)                   (one rounded multiply)
//! acc[L] = fma(isum as f32, dd, acc[L])          (L = b % 32, one rounding)
//! acc[L] = fma(f32(w.m), f32(a.s), acc[L])       (Q4_1 only)
//! ```
//!
//! and the result is `butterfly(acc)`. The integer sums are exact in any order, so SIMD
//! kernels may reduce them however is fastest; only the float steps are pinned.

use super::DotKernels;
use crate::quant::blocks::{read_block, Block, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};
use crate::quant::reference::dot as r;
use crate::quant::GgmlType;

/// Accumulators of the canonical order (one per lane of the GPU team) and their butterfly:
/// the definitions both backends share.
pub(crate) use crate::backend::numerics::{butterfly32 as butterfly, LANES};

/// The canonical dot of one row pair: `step(w_block, a_block, acc[L])` returns the new
/// `acc[L]` for each block in ascending order. Panics on rows shorter than `n` implies
/// (the kernels' contract, see [`super::check_lengths`]).
#[inline(always)]
fn canonical<W: Block, A: Block>(
    n: usize,
    w: &[u8],
    a: &[u8],
    step: impl Fn(&W, &A, f32) -> f32,
) -> f32 {
    super::check_lengths(n, w, a, QK, W::BYTES, A::BYTES);
    let mut acc = [0f32; LANES];
    for b in 0..n / QK {
        // Lengths are checked above, so both reads succeed.
        if let (Some(wb), Some(ab)) = (read_block::<W>(w, b), read_block::<A>(a, b)) {
            acc[b % LANES] = step(&wb, &ab, acc[b % LANES]);
        }
    }
    butterfly(acc)
}

/// Canonical Q4_0 x Q8_0 (weight nibble q stands for q - 8).
pub(crate) fn q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    canonical(n, w, a, |wb: &BlockQ4_0, ab: &BlockQ8_0, acc| {
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            isum += ((wb.qs[j] & 0x0F) as i32 - 8) * ab.qs[j] as i32;
            isum += ((wb.qs[j] >> 4) as i32 - 8) * ab.qs[j + QK / 2] as i32;
        }
        let dd = wb.d.to_f32() * ab.d.to_f32();
        (isum as f32).mul_add(dd, acc)
    })
}

/// Canonical Q4_1 x Q8_1: the block term d*da*isum, then the offset term m * s.
pub(crate) fn q4_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    canonical(n, w, a, |wb: &BlockQ4_1, ab: &BlockQ8_1, acc| {
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            isum += (wb.qs[j] & 0x0F) as i32 * ab.qs[j] as i32;
            isum += (wb.qs[j] >> 4) as i32 * ab.qs[j + QK / 2] as i32;
        }
        let dd = wb.d.to_f32() * ab.d.to_f32();
        let acc = (isum as f32).mul_add(dd, acc);
        wb.m.to_f32().mul_add(ab.s.to_f32(), acc)
    })
}

/// Canonical Q8_0 x Q8_0.
pub(crate) fn q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    canonical(n, w, a, |wb: &BlockQ8_0, ab: &BlockQ8_0, acc| {
        let isum: i32 = wb
            .qs
            .iter()
            .zip(&ab.qs)
            .map(|(&x, &y)| x as i32 * y as i32)
            .sum();
        let dd = wb.d.to_f32() * ab.d.to_f32();
        (isum as f32).mul_add(dd, acc)
    })
}

macro_rules! four {
    ($name:ident, $one:path) => {
        fn $name(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            for (o, a) in out.iter_mut().zip(a) {
                *o = $one(n, w, a);
            }
        }
    };
}
macro_rules! rows4 {
    ($name:ident, $one:path) => {
        fn $name(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32; 4]) {
            for (o, w) in out.iter_mut().zip(w) {
                *o = $one(n, w, a);
            }
        }
    };
}
rows4!(q4_0_r4, q4_0_q8_0);
rows4!(q4_1_r4, q4_1_q8_1);
rows4!(q8_0_r4, q8_0_q8_0);
rows4!(f16_r4, r::f16_f16);
rows4!(bf16_r4, r::bf16_bf16);
rows4!(f32_r4, r::f32_f32);

four!(q4_0_4, q4_0_q8_0);
four!(q4_1_4, q4_1_q8_1);
four!(q8_0_4, q8_0_q8_0);
four!(f16_4, r::f16_f16);
four!(bf16_4, r::bf16_bf16);
four!(f32_4, r::f32_f32);

pub(super) static KERNELS: &[DotKernels] = &[
    DotKernels {
        one: q4_0_q8_0,
        four: q4_0_4,
        rows4: q4_0_r4,
        name: "q4_0*q8_0 scalar",
        weight: GgmlType::Q4_0,
    },
    DotKernels {
        one: q4_1_q8_1,
        four: q4_1_4,
        rows4: q4_1_r4,
        name: "q4_1*q8_1 scalar",
        weight: GgmlType::Q4_1,
    },
    DotKernels {
        one: q8_0_q8_0,
        four: q8_0_4,
        rows4: q8_0_r4,
        name: "q8_0*q8_0 scalar",
        weight: GgmlType::Q8_0,
    },
    DotKernels {
        one: r::f16_f16,
        four: f16_4,
        rows4: f16_r4,
        name: "f16*f16 scalar",
        weight: GgmlType::F16,
    },
    DotKernels {
        one: r::bf16_bf16,
        four: bf16_4,
        rows4: bf16_r4,
        name: "bf16*bf16 scalar",
        weight: GgmlType::Bf16,
    },
    DotKernels {
        one: r::f32_f32,
        four: f32_4,
        rows4: f32_r4,
        name: "f32*f32 scalar",
        weight: GgmlType::F32,
    },
];
