//! Q2_K: super-blocks of 256 weights in 16 sub-blocks of 16, 2-bit quants, a 4-bit scale and
//! a 4-bit min per sub-block, and f16 super-block factors `d` and `dmin`;
//! value = (d * sc_j) * q - dmin * m_j. Dotted with Q8_K activations.
//!
//! Layout (llama.cpp's): `scales[j]` holds sub-block j's scale (low nibble) and min (high
//! nibble); per half h of 128 elements, element r = 32 k + l of it is bits 2k..2k+2 of
//! `qs[32 h + l]`.

use super::q4_k;
use super::q8_k::{BlockQ8K, GROUP};
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK_K};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// Elements per sub-block (one scale and min each), the Q8_K group size.
pub const SUB: usize = 16;
const _: () = assert!(SUB == GROUP);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / SUB],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ2K>() == GgmlType::Q2K.block_bytes());

// SAFETY: repr(C) struct of u8/f16 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2K;
}

/// The 256 quants (0..=3) in element order.
fn quants(b: &BlockQ2K) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (h, r) = (i / 128, i % 128);
        let (k, l) = (r / 32, r % 32);
        (b.qs[32 * h + l] >> (2 * k)) & 3
    })
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ2K, out: &mut [f32; QK_K]| {
        let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
        for (i, (o, q)) in out.iter_mut().zip(quants(b)).enumerate() {
            let packed = b.scales[i / SUB];
            let (scale, min) = (d * (packed & 0x0F) as f32, dmin * (packed >> 4) as f32);
            *o = scale * q as f32 - min;
        }
    });
}

/// Quantizes weights (the quantizer's Q2_K). Like Q4_K's [`q4_k::quantize_with_mins`] it is a
/// direct grid fit, not llama.cpp's iterative search, so its bytes differ from llama-quantize's:
/// per sub-block of 16 the min (never above 0) and the max bound the grid; the 4-bit mins and
/// then the 4-bit scales round up, so every value lies within the grid and is off by at most
/// half a step.
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        const N: usize = QK_K / SUB;
        let sub = |j: usize| &x[j * SUB..][..SUB];
        let sub_min: [f32; N] =
            std::array::from_fn(|j| -sub(j).iter().copied().fold(0.0f32, f32::min));
        let sub_max: [f32; N] =
            std::array::from_fn(|j| sub(j).iter().copied().fold(0.0f32, f32::max));
        let dmin = f16::from_f32(sub_min.iter().copied().fold(0.0f32, f32::max) / 15.0);
        let m: [u8; N] = std::array::from_fn(|j| up(sub_min[j], dmin.to_f32()));
        let offset: [f32; N] = std::array::from_fn(|j| dmin.to_f32() * m[j] as f32);
        let range: [f32; N] = std::array::from_fn(|j| sub_max[j] + offset[j]);
        let d = f16::from_f32(range.iter().copied().fold(0.0f32, f32::max) / (3.0 * 15.0));
        let sc: [u8; N] = std::array::from_fn(|j| up(range[j], 3.0 * d.to_f32()));
        let q: [u8; QK_K] = std::array::from_fn(|i| {
            let step = d.to_f32() * sc[i / SUB] as f32;
            if step > 0.0 {
                (((x[i] + offset[i / SUB]) / step).round() as i32).clamp(0, 3) as u8
            } else {
                0
            }
        });
        BlockQ2K {
            scales: std::array::from_fn(|j| sc[j] | (m[j] << 4)),
            // Inverse of `quants`: element 128 h + 32 k + l sits at bits 2k of qs[32 h + l].
            qs: std::array::from_fn(|b| {
                let (h, l) = (b / 32, b % 32);
                (0..4).fold(0u8, |acc, k| acc | (q[128 * h + 32 * k + l] << (2 * k)))
            }),
            d,
            dmin,
        }
    });
}

/// `value / unit` rounded up into 0..=15 (0 when the unit is 0).
fn up(value: f32, unit: f32) -> u8 {
    if unit > 0.0 {
        ((value / unit).ceil() as i32).clamp(0, 15) as u8
    } else {
        0
    }
}

/// The exact integer parts of one super-block pair: (Σ_j sc_j · Σ q·a, Σ_j m_j · bsum_j).
fn integer_parts(w: &BlockQ2K, a: &BlockQ8K) -> (i32, i32) {
    let q = quants(w);
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..QK_K / SUB {
        let dot: i32 = (j * SUB..(j + 1) * SUB)
            .map(|i| q[i] as i32 * a.qs[i] as i32)
            .sum();
        isum += (w.scales[j] & 0x0F) as i32 * dot;
        msum += (w.scales[j] >> 4) as i32 * a.bsums[j] as i32;
    }
    (isum, msum)
}

/// The f64 reference dot with a Q8_K row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ2K, a: &BlockQ8K, acc| {
        q4_k::reference_step(w.d, w.dmin, a, integer_parts(w, a), acc)
    })
}

/// The canonical dot with a Q8_K row (see [`scalar`]): Q4_K's order.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ2K, a: &BlockQ8K, acc| {
        q4_k::canonical_step(w.d, w.dmin, a, integer_parts(w, a), acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q2_k*q8_k scalar", Q2K);
