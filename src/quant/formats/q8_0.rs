//! Q8_0: blocks of 32 signed 8-bit quants and one f16 scale; value = q * d. A weight format
//! dotted with Q8_0 activations, and the activation format of Q4_0 and Q8_0 weights.

use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == GgmlType::Q8_0.block_bytes());

// SAFETY: repr(C) struct of f16/i8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
}

/// value = q * d, for the Q8 blocks (Q8_0 and Q8_1 decode alike).
pub(super) fn decode_q8(d: f16, qs: &[i8; QK], out: &mut [f32; QK]) {
    let d = d.to_f32();
    for (o, &q) in out.iter_mut().zip(qs) {
        *o = q as f32 * d;
    }
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ8_0, out| decode_q8(b.d, &b.qs, out));
}

/// GGML's reference quantizer, as weights are written: d = amax / 127, q = round(x / d)
/// (half away from zero).
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs: x.map(|v| (v * id).round() as i8),
        }
    });
}

/// The activation quantizer of one block: (f16 scale, f32 scale, quants). Rounding follows
/// llama.cpp's x86 path so our activations are bit-identical to its: `id = 127 / amax`,
/// `q = round_half_even(x * id)`, `d = f16(amax / 127)` (the scale is rounded to f16 for
/// storage only; quantization uses the f32 `id`). The f32 scale is what the Q8_1 block sum
/// is computed with, as in llama.cpp.
pub fn quantize_block_q8(x: &[f32; QK]) -> (f16, f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    // |v * id| <= 127 (up to one rounding), so the cast never saturates meaningfully.
    let qs = x.map(|v| super::fit::nearest(v * id) as i8);
    (f16::from_f32(d), d, qs)
}

/// Quantizes activations (whole blocks, lengths checked by the caller): the reference of the
/// fast quantizers in [`crate::quant::activation`].
pub fn quantize_activations(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let (d, _, qs) = quantize_block_q8(x);
        BlockQ8_0 { d, qs }
    });
}

fn isum(w: &BlockQ8_0, a: &BlockQ8_0) -> i32 {
    w.qs.iter()
        .zip(&a.qs)
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum()
}

/// The f64 reference dot with a Q8_0 row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ8_0, a: &BlockQ8_0, acc| {
        acc + (w.d.to_f32() * a.d.to_f32()) as f64 * isum(w, a) as f64
    })
}

/// The canonical dot with a Q8_0 row (see [`scalar`]).
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ8_0, a: &BlockQ8_0, acc| {
        let dd = w.d.to_f32() * a.d.to_f32();
        (isum(w, a) as f32).mul_add(dd, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q8_0*q8_0 scalar", Q8_0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        let mut src = f16::from_f32(0.25).to_le_bytes().to_vec();
        src.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let mut out = [0f32; 32];
        dequantize(&src, &mut out);
        assert_eq!(out[0], -4.0);
        assert_eq!(out[31], 3.75);
    }
}
