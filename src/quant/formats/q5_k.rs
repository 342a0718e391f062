//! Q5_K: Q4_K with a fifth bit per quant; value = (d * sc_j) * q - dmin * m_j, q in 0..=31.
//! Dotted with Q8_K activations.
//!
//! Layout (llama.cpp's): `d`, `dmin` and the 12 packed scale/min bytes as Q4_K
//! ([`super::q4_k::scale_min`]); the low nibbles in `qs` as Q4_K's quants; the fifth bit of
//! element l of sub-block j is bit j of `qh[l]`.

use super::q4_k::{self, SUB};
use super::q8_k::BlockQ8K;
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK_K};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5K>() == GgmlType::Q5K.block_bytes());

// SAFETY: repr(C) struct of f16/u8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;
}

/// The 256 quants (0..=31) in element order.
fn quants(b: &BlockQ5K) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (j, l) = (i / SUB, i % SUB);
        let byte = b.qs[j / 2 * SUB + l];
        let low = if j % 2 == 0 { byte & 0x0F } else { byte >> 4 };
        low | ((b.qh[l] >> j) & 1) << 4
    })
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ5K, out: &mut [f32; QK_K]| {
        q4_k::decode_with_mins(b.d, b.dmin, &b.scales, &quants(b), out)
    });
}

/// Quantizes weights: Q4_K's quantizer with 31 steps (llama.cpp's approach, not its bytes, see
/// [`q4_k::quantize_with_mins`]).
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        let (d, dmin, scales, q) = q4_k::quantize_with_mins(x, 31);
        BlockQ5K {
            d,
            dmin,
            scales,
            qh: std::array::from_fn(|l| (0..8).fold(0u8, |h, j| h | ((q[j * SUB + l] >> 4) << j))),
            qs: std::array::from_fn(|k| {
                let (c, l) = (k / SUB, k % SUB);
                (q[2 * c * SUB + l] & 0x0F) | ((q[(2 * c + 1) * SUB + l] & 0x0F) << 4)
            }),
        }
    });
}

/// The f64 reference dot with a Q8_K row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ5K, a: &BlockQ8K, acc| {
        let parts = q4_k::integer_parts(&w.scales, &quants(w), a);
        q4_k::reference_step(w.d, w.dmin, a, parts, acc)
    })
}

/// The canonical dot with a Q8_K row (see [`scalar`]): Q4_K's order.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ5K, a: &BlockQ8K, acc| {
        let parts = q4_k::integer_parts(&w.scales, &quants(w), a);
        q4_k::canonical_step(w.d, w.dmin, a, parts, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q5_k*q8_k scalar", Q5K);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_bits_come_from_bit_j_of_qh() {
        let sc = [1u8; 8];
        let m = [0u8; 8];
        let mut src = f16::from_f32(1.0).to_le_bytes().to_vec();
        src.extend(f16::from_f32(0.0).to_le_bytes());
        src.extend(q4_k::pack_scale_min(&sc, &m));
        // qh[l] = 1 << (l % 8): element l of sub-block l % 8 gets 16 added.
        src.extend((0..32).map(|l| 1u8 << (l % 8)));
        src.extend([0x21u8; 128]); // low nibbles 1, high nibbles 2
        let mut out = [0f32; 256];
        dequantize(&src, &mut out);
        for (i, &v) in out.iter().enumerate() {
            let (j, l) = (i / 32, i % 32);
            let low = if j % 2 == 0 { 1.0 } else { 2.0 };
            let high = if l % 8 == j { 16.0 } else { 0.0 };
            assert_eq!(v, low + high, "element {i}");
        }
    }
}
