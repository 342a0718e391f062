//! Q8_K: super-blocks of 256 signed 8-bit quants with an f32 scale and the sums of each group
//! of 16 quants; value = q * d. The activation format of the K-quants (Q2_K ... Q6_K), whose
//! dot products take the group sums for their offset ("min") terms instead of summing the
//! activation quants again.

use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK_K};
use crate::quant::GgmlType;

/// Quants per group sum.
pub const GROUP: usize = 16;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// `bsums[g]` = the sum of `qs[16 g .. 16 g + 16]`.
    pub bsums: [i16; QK_K / GROUP],
}

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == GgmlType::Q8K.block_bytes());

// SAFETY: repr(C) struct of f32/i8/i16 fields without padding (size asserted above equals the
// sum of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8K;
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ8K, out: &mut [f32; QK_K]| {
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = q as f32 * b.d;
        }
    });
}

/// Quantizes activations (whole blocks, lengths checked by the caller), with llama.cpp's
/// rounding so our activations are bit-identical to its: the element of largest magnitude
/// (the first one on ties) maps to -127, `iscale = -127 / max`,
/// `q = min(127, round_half_even(iscale * x))`, `d = 1 / iscale` (so `d` is negative when
/// that element is positive); an all-zero block is all zeros.
pub fn quantize_activations(x: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected just above.
        unsafe { quantize_avx2(x, out) };
        return;
    }
    quantize(x, out);
}

/// [`quantize`] compiled for AVX2 (which implies SSE4.1): the same operations, but
/// `round_ties_even` becomes a `vroundps` instead of a call of libm's `rintf` per element
/// (a tenth of a 128-token prompt step of a Q6_K file went into those calls).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(x: &[f32], out: &mut [u8]) {
    quantize(x, out)
}

/// `y.round_ties_even()` for the values the quantizer rounds, without a libm call and without
/// a branch (so the block loop vectorizes): adding and subtracting 1.5 * 2^23 rounds to an
/// integer, ties to even, for |y| < 2^22. Here |y| <= 127 (plus an ulp: |v| <= |max| and
/// `iscale = -127 / max`), or `iscale` overflowed (a tiny block maximum) and y is infinite or
/// NaN, which pass through both ways unchanged.
#[inline(always)]
fn round_small(y: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (y + MAGIC) - MAGIC
}

#[inline(always)]
fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            return BlockQ8K {
                d: 0.0,
                qs: [0; QK_K],
                bsums: [0; QK_K / GROUP],
            };
        }
        let iscale = -127.0 / max;
        let qs = x.map(|v| (round_small(iscale * v) as i32).min(127) as i8);
        let bsums = std::array::from_fn(|g| {
            qs[g * GROUP..][..GROUP]
                .iter()
                .map(|&q| q as i16)
                .sum::<i16>()
        });
        BlockQ8K {
            d: 1.0 / iscale,
            qs,
            bsums,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_small_rounds_ties_to_even_like_libm() {
        // Every quarter step over the range the quantizer rounds (ties included), a few
        // in-between values, and the non-finite inputs of an overflowed `iscale`.
        let mut ys: Vec<f32> = (-520..=520).map(|i| i as f32 * 0.25).collect();
        ys.extend([0.49999997, -0.49999997, 126.50001, -127.00002, 1e-30, -0.0]);
        ys.extend([f32::INFINITY, f32::NEG_INFINITY]);
        for y in ys {
            // Compared as the quantizer uses them: as i32 (-0.0 and +0.0 alike).
            let (got, want) = (round_small(y), y.round_ties_even());
            assert_eq!(got as i32, want as i32, "{y}: {got} vs {want}");
        }
        assert!(round_small(f32::NAN).is_nan());
    }
    use crate::quant::blocks::read_block;

    #[test]
    fn quantizer_maps_the_largest_magnitude_to_minus_127_and_sums_groups() {
        let mut x: Vec<f32> = (0..512)
            .map(|i| ((i * 29 % 97) as f32 - 48.0) * 0.01)
            .collect();
        x[300] = 2.0; // the largest magnitude of block 1, positive
        let mut q = vec![0u8; 2 * 292];
        quantize_activations(&x, &mut q);
        let b1: BlockQ8K = read_block(&q, 1).unwrap();
        assert_eq!(b1.qs[300 - 256], -127);
        assert_eq!(b1.d, 1.0 / (-127.0 / 2.0));
        for g in 0..16 {
            let sum: i32 = b1.qs[g * 16..][..16].iter().map(|&q| q as i32).sum();
            assert_eq!(b1.bsums[g] as i32, sum);
        }
        let mut back = vec![0f32; 512];
        dequantize(&q, &mut back);
        for (b, xb) in x.chunks(256).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (j, (&y, &v)) in back[b * 256..][..256].iter().zip(xb).enumerate() {
                assert!(
                    (y - v).abs() <= amax / 127.0 * 0.501,
                    "block {b} elem {j}: {y} vs {v}"
                );
            }
        }
        let mut z = vec![0xEEu8; 292];
        quantize_activations(&[0.0; 256], &mut z);
        assert!(z.iter().all(|&b| b == 0));
    }

    /// Activations and their Q8_K blocks from llama.cpp's own quantizer
    /// (tools/reference/q8k_fixture.c): noise, a positive largest value, zeros, and exact ties.
    #[test]
    fn quantizer_matches_llama_cpp_bit_for_bit() {
        let x: Vec<f32> = include_bytes!("../../../tests/fixtures/dequant/q8_k_activations.f32")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let want = include_bytes!("../../../tests/fixtures/dequant/q8_k_activations.blocks");
        let mut got = vec![0xEEu8; want.len()];
        quantize_activations(&x, &mut got);
        for (i, (g, w)) in got.chunks(292).zip(want.chunks(292)).enumerate() {
            assert_eq!(g, w, "block {i}");
        }
    }
}
