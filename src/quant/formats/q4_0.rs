//! Q4_0: blocks of 32 weights, 4-bit quants and one f16 scale; value = (q - 8) * d.
//! Dotted with Q8_0 activations.

use super::q8_0::BlockQ8_0;
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// Element j < 16 is the low nibble of `qs[j]`, element j + 16 its high nibble.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == GgmlType::Q4_0.block_bytes());

// SAFETY: repr(C) struct of f16/u8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ4_0, out: &mut [f32; QK]| {
        let d = b.d.to_f32();
        for j in 0..QK / 2 {
            out[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            out[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    });
}

/// GGML's reference quantizer: d = (signed value of largest magnitude) / -8,
/// q = x/d + 8 in 0..=15.
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let max = x
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs: std::array::from_fn(|j| q(x[j]) | (q(x[j + QK / 2]) << 4)),
        }
    });
}

/// The exact integer sum of one block pair (weight nibble q stands for q - 8).
fn isum(w: &BlockQ4_0, a: &BlockQ8_0) -> i32 {
    let mut isum = 0i32;
    for j in 0..QK / 2 {
        isum += ((w.qs[j] & 0x0F) as i32 - 8) * a.qs[j] as i32;
        isum += ((w.qs[j] >> 4) as i32 - 8) * a.qs[j + QK / 2] as i32;
    }
    isum
}

/// The f64 reference dot with a Q8_0 row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ4_0, a: &BlockQ8_0, acc| {
        acc + (w.d.to_f32() * a.d.to_f32()) as f64 * isum(w, a) as f64
    })
}

/// The canonical dot with a Q8_0 row (see [`scalar`]).
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ4_0, a: &BlockQ8_0, acc| {
        let dd = w.d.to_f32() * a.d.to_f32();
        (isum(w, a) as f32).mul_add(dd, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q4_0*q8_0 scalar", Q4_0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        // Low nibble j, high nibble 15 - j: elements 0..16 = j - 8, elements 16..32 = 7 - j.
        let mut src = f16::from_f32(2.0).to_le_bytes().to_vec();
        src.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize(&src, &mut out);
        assert_eq!(out[0], -16.0); // (0 - 8) * 2
        assert_eq!(out[8], 0.0);
        assert_eq!(out[16], 14.0); // (15 - 8) * 2
        assert_eq!(out[31], -16.0); // high nibble of qs[15] is 0
    }
}
