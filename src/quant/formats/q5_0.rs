//! Q5_0: blocks of 32 weights, 5-bit quants and one f16 scale; value = (q - 16) * d.
//! Dotted with Q8_0 activations.
//!
//! The low four bits of each quant are packed as in Q4_0 (`qs`), the fifth bits are the 32
//! bits of `qh`, read as a little-endian u32: bit j is the high bit of element j.

use super::q8_0::BlockQ8_0;
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_0 {
    pub d: f16,
    /// Fifth bits, element j at bit j of the little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles: element j < 16 in the low nibble of `qs[j]`, element j + 16 in its high
    /// nibble.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == GgmlType::Q5_0.block_bytes());

// SAFETY: repr(C) struct of f16/u8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
}

/// The 32 unsigned 5-bit quants (0..=31) of a Q5_0 or Q5_1 block, in element order.
pub(super) fn unpack5(qh: [u8; 4], qs: &[u8; QK / 2]) -> [u8; QK] {
    let high = u32::from_le_bytes(qh);
    std::array::from_fn(|j| {
        let nibble = if j < QK / 2 {
            qs[j] & 0x0F
        } else {
            qs[j - QK / 2] >> 4
        };
        nibble | (((high >> j) & 1) as u8) << 4
    })
}

/// Packs 32 quants (0..=31) into (`qh`, `qs`), the inverse of [`unpack5`].
pub(super) fn pack5(q: &[u8; QK]) -> ([u8; 4], [u8; QK / 2]) {
    let high = (0..QK).fold(0u32, |h, j| h | (((q[j] >> 4) & 1) as u32) << j);
    let qs = std::array::from_fn(|j| (q[j] & 0x0F) | (q[j + QK / 2] << 4));
    (high.to_le_bytes(), qs)
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ5_0, out: &mut [f32; QK]| {
        let d = b.d.to_f32();
        for (o, q) in out.iter_mut().zip(unpack5(b.qh, &b.qs)) {
            *o = (q as i32 - 16) as f32 * d;
        }
    });
}

/// GGML's reference quantizer: d = (signed value of largest magnitude) / -16,
/// q = x/d + 16 in 0..=31 (truncated after adding one half, as GGML does).
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let max = x
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = x.map(|v| ((v * id + 16.5) as i32).clamp(0, 31) as u8);
        let (qh, qs) = pack5(&q);
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh,
            qs,
        }
    });
}

/// The exact integer sum of one block pair (weight quant q stands for q - 16).
fn isum(w: &BlockQ5_0, a: &BlockQ8_0) -> i32 {
    unpack5(w.qh, &w.qs)
        .iter()
        .zip(&a.qs)
        .map(|(&q, &a)| (q as i32 - 16) * a as i32)
        .sum()
}

/// The f64 reference dot with a Q8_0 row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ5_0, a: &BlockQ8_0, acc| {
        acc + (w.d.to_f32() * a.d.to_f32()) as f64 * isum(w, a) as f64
    })
}

/// The canonical dot with a Q8_0 row (see [`scalar`]): Q4_0's order.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ5_0, a: &BlockQ8_0, acc| {
        let dd = w.d.to_f32() * a.d.to_f32();
        (isum(w, a) as f32).mul_add(dd, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q5_0*q8_0 scalar", Q5_0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        // Nibbles as Q4_0's test; fifth bits set on the odd elements.
        let mut src = f16::from_f32(2.0).to_le_bytes().to_vec();
        src.extend(0xAAAA_AAAAu32.to_le_bytes());
        src.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize(&src, &mut out);
        assert_eq!(out[0], -32.0); // (0 - 16) * 2
        assert_eq!(out[1], 2.0); // (1 + 16 - 16) * 2
        assert_eq!(out[16], -2.0); // (15 - 16) * 2
        assert_eq!(out[31], 0.0); // (0 + 16 - 16) * 2
    }

    #[test]
    fn pack5_inverts_unpack5() {
        let q: [u8; 32] = std::array::from_fn(|j| (j as u8 * 7 + 3) % 32);
        let (qh, qs) = pack5(&q);
        assert_eq!(unpack5(qh, &qs), q);
    }
}
