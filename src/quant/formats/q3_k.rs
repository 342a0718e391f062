//! Q3_K: super-blocks of 256 weights in 16 sub-blocks of 16, 3-bit quants, a 6-bit scale per
//! sub-block (stored + 32) and an f16 super-block factor `d`;
//! value = (d * (sc_j - 32)) * (q - 4), q in 0..=7. Dotted with Q8_K activations.
//!
//! Layout (llama.cpp's), per half h of 128 elements and element r = 32 k + l of it: the low
//! two bits of q are bits 2k..2k+2 of `qs[32 h + l]`, the third bit is bit 4h + k of
//! `hmask[l]` (set: q >= 4, so the -4 applies when it is clear). The 16 scales are packed
//! into 12 bytes, see [`scale`].

use super::fit;
use super::q8_k::{BlockQ8K, GROUP};
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK_K};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// Elements per sub-block (one scale each), the Q8_K group size.
pub const SUB: usize = 16;
const _: () = assert!(SUB == GROUP);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ3K>() == GgmlType::Q3K.block_bytes());

// SAFETY: repr(C) struct of u8/f16 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3K;
}

/// Signed scale (sc - 32, in -32..=31) of sub-block `j` (0..16): its low 4 bits are the low
/// nibble of byte j (j < 8) or the high nibble of byte j - 8, its top 2 bits are bits
/// 2(j / 4)..+2 of byte 8 + j % 4.
pub fn scale(j: usize, packed: &[u8; 12]) -> i32 {
    let low = if j < 8 {
        packed[j] & 0x0F
    } else {
        packed[j - 8] >> 4
    };
    let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// The 256 quants (q - 4 or q: -4..=3) in element order.
fn quants(b: &BlockQ3K) -> [i8; QK_K] {
    std::array::from_fn(|i| {
        let (h, r) = (i / 128, i % 128);
        let (k, l) = (r / 32, r % 32);
        let low = ((b.qs[32 * h + l] >> (2 * k)) & 3) as i8;
        let high_set = (b.hmask[l] >> (4 * h + k)) & 1 == 1;
        if high_set {
            low
        } else {
            low - 4
        }
    })
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ3K, out: &mut [f32; QK_K]| {
        let d = b.d.to_f32();
        let scales: [f32; QK_K / SUB] = std::array::from_fn(|j| d * scale(j, &b.scales) as f32);
        for (i, (o, q)) in out.iter_mut().zip(quants(b)).enumerate() {
            *o = scales[i / SUB] * q as f32;
        }
    });
}

/// Quantizes weights as GGML's reference quantizer does: per sub-block of 16 the symmetric
/// grid that [`fit::symmetric_refined`] finds (quants -4..=3), the sub-block scales coded as
/// 6-bit multiples of `d` (the largest exactly -32 d), each weight rounded on the coded grid.
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        const N: usize = QK_K / SUB;
        // quants + 4, in 0..8
        let mut q = [0i8; QK_K];
        let want: [f32; N] = std::array::from_fn(|j| {
            fit::symmetric_refined(&x[j * SUB..][..SUB], 4, &mut q[j * SUB..][..SUB])
        });
        let max_scale = fit::signed_max(&want);
        let mut scales = [0u8; 12];
        let mut d = f16::from_f32(0.0);
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in want.iter().enumerate() {
                let stored = (fit::nearest(iscale * s).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    scales[j] |= stored & 0x0F;
                } else {
                    scales[j - 8] |= (stored & 0x0F) << 4;
                }
                scales[8 + j % 4] |= (stored >> 4) << (2 * (j / 4));
            }
            d = f16::from_f32(1.0 / iscale);
        }
        for j in 0..N {
            let step = d.to_f32() * scale(j, &scales) as f32;
            // (a sub-block coded to scale 0 keeps the search's quants: any decode to 0)
            if step == 0.0 {
                continue;
            }
            for i in j * SUB..(j + 1) * SUB {
                q[i] = (fit::nearest(x[i] / step).clamp(-4, 3) + 4) as i8;
            }
        }
        // Inverse of `quants`: element 128 h + 32 k + l has its low bits at bits 2k of
        // qs[32 h + l] and its high bit at bit 4h + k of hmask[l].
        let at = |h: usize, k: usize, l: usize| q[128 * h + 32 * k + l] as u8;
        BlockQ3K {
            hmask: std::array::from_fn(|l| {
                (0..8).fold(0u8, |acc, b| acc | (((at(b / 4, b % 4, l) >> 2) & 1) << b))
            }),
            qs: std::array::from_fn(|b| {
                let (h, l) = (b / 32, b % 32);
                (0..4).fold(0u8, |acc, k| acc | ((at(h, k, l) & 3) << (2 * k)))
            }),
            scales,
            d,
        }
    });
}

/// The exact integer sum of one super-block pair: Σ_j (sc_j - 32) · Σ q·a.
fn isum(w: &BlockQ3K, a: &BlockQ8K) -> i32 {
    let q = quants(w);
    (0..QK_K / SUB)
        .map(|j| {
            let dot: i32 = (j * SUB..(j + 1) * SUB)
                .map(|i| q[i] as i32 * a.qs[i] as i32)
                .sum();
            scale(j, &w.scales) * dot
        })
        .sum()
}

/// The f64 reference dot with a Q8_K row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ3K, a: &BlockQ8K, acc| {
        acc + w.d.to_f64() * a.d as f64 * isum(w, a) as f64
    })
}

/// The canonical dot with a Q8_K row (see [`scalar`]): Q6_K's order.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ3K, a: &BlockQ8K, acc| {
        let dd = w.d.to_f32() * a.d;
        (isum(w, a) as f32).mul_add(dd, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q3_k*q8_k scalar", Q3K);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_scales_decode_to_known_values() {
        // low nibbles: scale j has low bits j % 16; top bits: byte 8 + j % 4, bits 2(j/4).
        let mut packed = [0u8; 12];
        for j in 0..16 {
            let (low, high) = (j as u8 % 16, (j / 4) as u8 % 4);
            if j < 8 {
                packed[j] |= low;
            } else {
                packed[j - 8] |= low << 4;
            }
            packed[8 + j % 4] |= high << (2 * (j / 4));
        }
        for j in 0..16 {
            let want = ((j as i32 % 16) | ((j as i32 / 4) << 4)) - 32;
            assert_eq!(scale(j, &packed), want, "scale {j}");
        }
    }
}
