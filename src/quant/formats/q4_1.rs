//! Q4_1: blocks of 32 weights, 4-bit quants, an f16 scale and an f16 offset;
//! value = q * d + m. Dotted with Q8_1 activations, whose block sum folds in the offset.

use super::q8_1::BlockQ8_1;
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// Nibble order as [`super::q4_0::BlockQ4_0`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == GgmlType::Q4_1.block_bytes());

// SAFETY: repr(C) struct of f16/u8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ4_1, out: &mut [f32; QK]| {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for j in 0..QK / 2 {
            out[j] = (b.qs[j] & 0x0F) as f32 * d + m;
            out[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
        }
    });
}

/// GGML's reference quantizer: d = (max - min) / 15, m = min, q = (x - min)/d in 0..=15.
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs: std::array::from_fn(|j| q(x[j]) | (q(x[j + QK / 2]) << 4)),
        }
    });
}

/// The exact integer sum of the quant products of one block pair (without the offset).
fn isum(w: &BlockQ4_1, a: &BlockQ8_1) -> i32 {
    let mut isum = 0i32;
    for j in 0..QK / 2 {
        isum += (w.qs[j] & 0x0F) as i32 * a.qs[j] as i32;
        isum += (w.qs[j] >> 4) as i32 * a.qs[j + QK / 2] as i32;
    }
    isum
}

/// The f64 reference dot with a Q8_1 row:
/// sum((q*d + m) * a) = d*da*sum(q*qa) + m*(da*sum(qa)) = ... + m*s.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ4_1, a: &BlockQ8_1, acc| {
        let acc = acc + (w.d.to_f32() * a.d.to_f32()) as f64 * isum(w, a) as f64;
        acc + (w.m.to_f32() * a.s.to_f32()) as f64
    })
}

/// The canonical dot with a Q8_1 row (see [`scalar`]): the block term d*da*isum, then the
/// offset term m * s.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ4_1, a: &BlockQ8_1, acc| {
        let dd = w.d.to_f32() * a.d.to_f32();
        let acc = (isum(w, a) as f32).mul_add(dd, acc);
        w.m.to_f32().mul_add(a.s.to_f32(), acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q4_1*q8_1 scalar", Q4_1);

#[cfg(test)]
mod tests {
    use super::*;

    fn block(d: f32, m: f32, qs: [u8; 16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        v.extend_from_slice(&f16::from_f32(m).to_le_bytes());
        v.extend_from_slice(&qs);
        v
    }

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        // Low nibble j, high nibble 15 - j: elements 0..16 = j, elements 16..32 = 15 - j.
        let qs: [u8; 16] = std::array::from_fn(|j| (j as u8) | ((15 - j as u8) << 4));
        let mut out = [0f32; 32];
        dequantize(&block(0.5, -1.0, qs), &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as f32 * 0.5 - 1.0);
            assert_eq!(out[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }
    }

    #[test]
    fn reference_dot_of_hand_built_block() {
        // weights: all q = 1, d = 1, m = 0.5 -> every value 1.5; activations: q = 2, d = 0.5 -> 1.0
        let w = block(1.0, 0.5, [0x11; 16]);
        let mut a = f16::from_f32(0.5).to_le_bytes().to_vec();
        a.extend_from_slice(&f16::from_f32(0.5 * 64.0).to_le_bytes());
        a.extend_from_slice(&[2u8; 32]);
        assert_eq!(reference_dot(32, &w, &a), 48.0);
    }
}
