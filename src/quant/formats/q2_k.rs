//! Q2_K: super-blocks of 256 weights in 16 sub-blocks of 16, 2-bit quants, a 4-bit scale and
//! a 4-bit min per sub-block, and f16 super-block factors `d` and `dmin`;
//! value = (d * sc_j) * q - dmin * m_j. Dotted with Q8_K activations.
//!
//! Layout (llama.cpp's): `scales[j]` holds sub-block j's scale (low nibble) and min (high
//! nibble); per half h of 128 elements, element r = 32 k + l of it is bits 2k..2k+2 of
//! `qs[32 h + l]`.

use super::q4_k;
use super::q8_k::{BlockQ8K, GROUP};
use crate::quant::blocks::{decode_blocks, Block, QK_K};
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
