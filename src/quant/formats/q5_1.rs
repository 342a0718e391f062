//! Q5_1: blocks of 32 weights, 5-bit quants, an f16 scale and an f16 offset;
//! value = q * d + m. Dotted with Q8_1 activations, whose block sum folds in the offset
//! (as for Q4_1).

use super::q5_0::{pack5, unpack5};
use super::q8_1::BlockQ8_1;
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// Bit order as [`super::q5_0::BlockQ5_0`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == GgmlType::Q5_1.block_bytes());

// SAFETY: repr(C) struct of f16/u8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ5_1, out: &mut [f32; QK]| {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for (o, q) in out.iter_mut().zip(unpack5(b.qh, &b.qs)) {
            *o = q as f32 * d + m;
        }
    });
}

/// GGML's reference quantizer: d = (max - min) / 31, m = min, q = (x - min)/d in 0..=31.
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = x.map(|v| (((v - min) * id + 0.5) as i32).clamp(0, 31) as u8);
        let (qh, qs) = pack5(&q);
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh,
            qs,
        }
    });
}

/// The exact integer sum of the quant products of one block pair (without the offset).
fn isum(w: &BlockQ5_1, a: &BlockQ8_1) -> i32 {
    unpack5(w.qh, &w.qs)
        .iter()
        .zip(&a.qs)
        .map(|(&q, &a)| q as i32 * a as i32)
        .sum()
}

/// The f64 reference dot with a Q8_1 row: d*da*sum(q*qa) + m*s, as Q4_1's.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ5_1, a: &BlockQ8_1, acc| {
        let acc = acc + (w.d.to_f32() * a.d.to_f32()) as f64 * isum(w, a) as f64;
        acc + (w.m.to_f32() * a.s.to_f32()) as f64
    })
}

/// The canonical dot with a Q8_1 row (see [`scalar`]): Q4_1's order, the block term
/// d*da*isum, then the offset term m * s.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ5_1, a: &BlockQ8_1, acc| {
        let dd = w.d.to_f32() * a.d.to_f32();
        let acc = (isum(w, a) as f32).mul_add(dd, acc);
        w.m.to_f32().mul_add(a.s.to_f32(), acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q5_1*q8_1 scalar", Q5_1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        let mut src = f16::from_f32(0.5).to_le_bytes().to_vec();
        src.extend(f16::from_f32(-1.0).to_le_bytes());
        src.extend(0x8000_0001u32.to_le_bytes()); // fifth bits of elements 0 and 31
        src.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize(&src, &mut out);
        assert_eq!(out[0], 16.0 * 0.5 - 1.0);
        assert_eq!(out[5], 5.0 * 0.5 - 1.0);
        assert_eq!(out[16], 15.0 * 0.5 - 1.0);
        assert_eq!(out[31], 16.0 * 0.5 - 1.0);
    }
}
