//! Q8_1: Q8_0 with the block sum; value = q * d, and `s` = d * sum(qs), which the Q4_1 dot
//! product uses to fold in the weight offset `m`. An activation format only (of Q4_1).

use super::q8_0::{decode_q8, quantize_block_q8};
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK};
use crate::quant::GgmlType;
use half::f16;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == GgmlType::Q8_1.block_bytes());

// SAFETY: repr(C) struct of f16/i8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ8_1, out| decode_q8(b.d, &b.qs, out));
}

/// Quantizes activations (whole blocks, lengths checked by the caller): as Q8_0's activation
/// quantizer, plus `s = f16(d * sum(qs))` with the f32 `d`.
pub fn quantize_activations(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let (d, d32, qs) = quantize_block_q8(x);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        let s = f16::from_f32(d32 * sum as f32);
        BlockQ8_1 { d, s, qs }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::blocks::read_block;
    use crate::quant::formats::q8_0;

    #[test]
    fn q8_quantizers_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let mut q0 = vec![0u8; 8 * 34];
        let mut q1 = vec![0u8; 8 * 36];
        q8_0::quantize_activations(&x, &mut q0);
        quantize_activations(&x, &mut q1);
        let (mut y0, mut y1) = (vec![0f32; 256], vec![0f32; 256]);
        q8_0::dequantize(&q0, &mut y0);
        dequantize(&q1, &mut y1);
        assert_eq!(y0, y1);
        for (b, xb) in x.chunks(32).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            // half a quantization step, plus the f16 rounding of d (2^-11 relative) times 127
            let bound = amax / 127.0 * 0.5 + amax * 2f32.powi(-11) * 1.01;
            for j in 0..32 {
                let e = (y0[b * 32 + j] - xb[j]).abs();
                assert!(e <= bound, "block {b} elem {j}: err {e} > {bound}");
            }
        }
    }

    #[test]
    fn s_is_scale_times_quant_sum() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.7).sin() + 0.3).collect();
        let mut q1 = vec![0u8; 2 * 36];
        quantize_activations(&x, &mut q1);
        for i in 0..2 {
            let b: BlockQ8_1 = read_block(&q1, i).unwrap();
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            let amax = x[i * 32..][..32].iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(b.s, f16::from_f32(amax / 127.0 * sum as f32));
            assert!(b.qs.iter().any(|&q| q == 127 || q == -127));
            // s approximates the block's float sum
            let fsum: f32 = x[i * 32..][..32].iter().sum();
            assert!((b.s.to_f32() - fsum).abs() < 0.05 * fsum.abs().max(1.0));
        }
        // all-zero block: d = 0, q = 0, s = 0
        let mut z = vec![0xEEu8; 36];
        quantize_activations(&[0.0; 32], &mut z);
        assert!(z.iter().all(|&b| b == 0));
    }
}
