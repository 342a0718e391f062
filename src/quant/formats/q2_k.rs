//! Q2_K: super-blocks of 256 weights in 16 sub-blocks of 16, 2-bit quants, a 4-bit scale and
//! a 4-bit min per sub-block, and f16 super-block factors `d` and `dmin`;
//! value = (d * sc_j) * q - dmin * m_j. Dotted with Q8_K activations.
//!
//! Layout (llama.cpp's): `scales[j]` holds sub-block j's scale (low nibble) and min (high
//! nibble); per half h of 128 elements, element r = 32 k + l of it is bits 2k..2k+2 of
//! `qs[32 h + l]`.

use super::q8_k::{BlockQ8K, GROUP};
use super::{fit, q4_k};
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

/// Quantizes weights as GGML's reference quantizer does (llama-quantize without an importance
/// matrix): per sub-block of 16 the affine grid of least |x|-weighted absolute error
/// ([`fit::affine`]), the sub-block scales and offsets then coded in 4 bits under `d` and
/// `dmin`, and each weight rounded on the coded grid.
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        const N: usize = QK_K / SUB;
        let mut q = [0u8; QK_K];
        let (mut scale, mut offset) = ([0f32; N], [0f32; N]);
        for j in 0..N {
            let sub = &x[j * SUB..][..SUB];
            let w: [f32; SUB] = std::array::from_fn(|i| sub[i].abs());
            let qs = &mut q[j * SUB..][..SUB];
            (scale[j], offset[j]) = fit::affine(sub, &w, 3, -0.5, 0.1, 15, true, qs);
        }
        let (max_scale, max_offset) = (largest(&scale), largest(&offset));
        // Each coded in 4 bits as a multiple of its largest / 15.
        let code = |v: f32, max: f32| {
            if max > 0.0 {
                fit::nearest(15.0 / max * v) as u8
            } else {
                0
            }
        };
        let sc: [u8; N] = std::array::from_fn(|j| code(scale[j], max_scale));
        let m: [u8; N] = std::array::from_fn(|j| code(offset[j], max_offset));
        let d = f16::from_f32(if max_scale > 0.0 {
            max_scale / 15.0
        } else {
            0.0
        });
        let dmin = f16::from_f32(if max_offset > 0.0 {
            max_offset / 15.0
        } else {
            0.0
        });
        for j in 0..N {
            let step = d.to_f32() * (sc[j] & 0x0F) as f32;
            // (a sub-block coded to scale 0 keeps the search's quants: any decode to -offset)
            if step == 0.0 {
                continue;
            }
            let shift = dmin.to_f32() * m[j] as f32;
            for i in j * SUB..(j + 1) * SUB {
                q[i] = fit::nearest((x[i] + shift) / step).clamp(0, 3) as u8;
            }
        }
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

/// The largest value, at least 0 (GGML's running maximum from 0).
pub(super) fn largest(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, &x| if x > m { x } else { m })
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
