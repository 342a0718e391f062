//! IQ4_XS: super-blocks of 256 weights in 8 sub-blocks of 32, 4-bit indices into the IQ4 table
//! ([`super::iq4_nl::VALUES`], shared with IQ4_NL), a 6-bit scale per sub-block stored offset
//! by 32, and an f16 super-block factor `d`; value = (d * (ls_j - 32)) * VALUES[q]. Dotted with
//! Q8_K activations, like the K-quants.
//!
//! Layout (GGML's): `scales_l[j / 2]` holds the low 4 bits of ls_j (even j in the low nibble),
//! bits 2j..2j + 2 of the little-endian `scales_h` its top 2 bits; sub-block j's indices are
//! `qs[16 j..16 j + 16]`, packed as one IQ4_NL block's.

use super::iq4_nl::{best_index, group_scale, pack32, values32};
use super::q8_k::BlockQ8K;
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK_K};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// Elements per sub-block.
pub const SUB: usize = 32;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIq4Xs {
    pub d: f16,
    /// Top 2 bits of each sub-block's stored scale, see [`scales`].
    pub scales_h: u16,
    /// Low 4 bits of the stored scales, two per byte.
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == GgmlType::Iq4Xs.block_bytes());

// SAFETY: repr(C) struct of f16/u16/u8 fields without padding (size asserted above equals the
// sum of its fields, 2 + 2 + 4 + 128, every field at an offset aligned for it); every bit
// pattern is a valid value.
unsafe impl Block for BlockIq4Xs {
    const TYPE: GgmlType = GgmlType::Iq4Xs;
}

/// The 8 signed sub-block scales (stored 6 bits - 32, in -32..=31).
pub fn scales(scales_h: u16, scales_l: &[u8; 4]) -> [i32; 8] {
    std::array::from_fn(|j| {
        let low = (scales_l[j / 2] >> (4 * (j % 2))) & 0x0F;
        let high = ((scales_h >> (2 * j)) & 3) as u8;
        (low | (high << 4)) as i32 - 32
    })
}

/// Packs 8 scales (-32..=31) as [`scales`] reads them: (scales_h, scales_l).
pub fn pack_scales(sc: &[i32; 8]) -> (u16, [u8; 4]) {
    let stored = sc.map(|s| (s + 32) as u8);
    let high = (0..8).fold(0u16, |h, j| h | (((stored[j] >> 4) as u16) << (2 * j)));
    let low = std::array::from_fn(|k| (stored[2 * k] & 0x0F) | ((stored[2 * k + 1] & 0x0F) << 4));
    (high, low)
}

/// The 256 table values in element order.
fn values(b: &BlockIq4Xs) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    for (j, chunk) in out.chunks_exact_mut(SUB).enumerate() {
        let qs: &[u8; 16] = b.qs[16 * j..][..16].try_into().unwrap_or(&[0; 16]);
        chunk.copy_from_slice(&values32(qs));
    }
    out
}

/// Decodes whole blocks (lengths checked by the caller): each sub-block's factor d * sc_j
/// rounded to f32, then times the table value (GGML's decode).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockIq4Xs, out: &mut [f32; QK_K]| {
        let d = b.d.to_f32();
        let sc = scales(b.scales_h, &b.scales_l);
        for (i, (o, v)) in out.iter_mut().zip(values(b)).enumerate() {
            *o = (d * sc[i / SUB] as f32) * v as f32;
        }
    });
}

/// GGML's quantizer as llama-quantize runs it without an importance matrix: each sub-block's
/// scale searched as IQ4_NL's ([`group_scale`]), the super-block factor d = -(the scale of
/// largest magnitude) / 32, each scale coded as the nearest multiple of d in -32..=31, and the
/// indices nearest x / (d * code) (with the unrounded d, as GGML does).
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        let mut l = [0u8; QK_K];
        let mut sub_scale = [0f32; 8];
        let (mut max_scale, mut amax_scale) = (0f32, 0f32);
        for (j, s) in sub_scale.iter_mut().enumerate() {
            *s = group_scale(&x[j * SUB..][..SUB], &mut l[j * SUB..][..SUB]);
            if s.abs() > amax_scale {
                (amax_scale, max_scale) = (s.abs(), *s);
            }
        }
        let d = -max_scale / 32.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut codes = [0i32; 8];
        for (j, code) in codes.iter_mut().enumerate() {
            *code = super::fit::nearest(id * sub_scale[j]).clamp(-32, 31);
            let dl = d * *code as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for i in j * SUB..(j + 1) * SUB {
                l[i] = best_index(idl * x[i]);
            }
        }
        let (scales_h, scales_l) = pack_scales(&codes);
        let mut qs = [0u8; QK_K / 2];
        for (q, l) in qs.chunks_exact_mut(16).zip(l.chunks_exact(SUB)) {
            q.copy_from_slice(&pack32(l));
        }
        BlockIq4Xs {
            d: f16::from_f32(d),
            scales_h,
            scales_l,
            qs,
        }
    });
}

/// The exact integer part of one super-block pair: Σ_j sc_j · (Σ_{i in j} VALUES[q_i] · a_i).
fn isum(w: &BlockIq4Xs, a: &BlockQ8K) -> i32 {
    let sc = scales(w.scales_h, &w.scales_l);
    let v = values(w);
    (0..QK_K / SUB)
        .map(|j| {
            let dot: i32 = (j * SUB..(j + 1) * SUB)
                .map(|i| v[i] as i32 * a.qs[i] as i32)
                .sum();
            sc[j] * dot
        })
        .sum()
}

/// The f64 reference dot with a Q8_K row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockIq4Xs, a: &BlockQ8K, acc| {
        acc + w.d.to_f64() * a.d as f64 * isum(w, a) as f64
    })
}

/// The canonical dot with a Q8_K row (see [`scalar`]): the K-quants' order without mins.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockIq4Xs, a: &BlockQ8K, acc| {
        let dd = w.d.to_f32() * a.d;
        (isum(w, a) as f32).mul_add(dd, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "iq4_xs*q8_k scalar", Iq4Xs);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_scales_round_trip() {
        let sc = [-32, 31, 0, -1, 17, -20, 5, 31];
        let (h, l) = pack_scales(&sc);
        assert_eq!(scales(h, &l), sc);
    }

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        // d = 0.25; sub-block j: scale j - 3; every low nibble 0 (-127), every high nibble
        // 8 (1).
        let sc: [i32; 8] = std::array::from_fn(|j| j as i32 - 3);
        let (h, l) = pack_scales(&sc);
        let mut src = f16::from_f32(0.25).to_le_bytes().to_vec();
        src.extend(h.to_le_bytes());
        src.extend(l);
        src.extend([0x80u8; 128]);
        let mut out = [0f32; 256];
        dequantize(&src, &mut out);
        for (i, &v) in out.iter().enumerate() {
            let (j, r) = (i / 32, i % 32);
            let q = if r < 16 { -127.0 } else { 1.0 };
            assert_eq!(v, 0.25 * (j as f32 - 3.0) * q, "element {i}");
        }
    }

    #[test]
    fn quantized_super_blocks_come_back_close() {
        // Sub-blocks of different spreads, so their scales differ.
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * (1 + i / 32 % 5) as f32 / 64.0)
            .collect();
        let mut packed = vec![0u8; 2 * 136];
        quantize(&x, &mut packed);
        let mut back = vec![0f32; 512];
        dequantize(&packed, &mut back);
        let err: f32 = x.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum();
        let norm: f32 = x.iter().map(|a| a * a).sum();
        assert!(err / norm < 0.01, "relative squared error {}", err / norm);
    }
}
