//! Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32, 4-bit quants, a 6-bit scale and a
//! 6-bit min per sub-block, and f16 super-block factors `d` and `dmin`;
//! value = (d * sc_j) * q - dmin * m_j. Dotted with Q8_K activations.
//!
//! Layout (llama.cpp's): the 8 scales and 8 mins are packed into 12 bytes (see
//! [`scale_min`]); quants of sub-blocks 2c and 2c + 1 share the 32 bytes `qs[32c..32c + 32]`,
//! the even one in the low nibbles, the odd one in the high nibbles.

use super::fit;
use super::q8_k::{BlockQ8K, GROUP};
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK_K};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// Elements per sub-block.
pub const SUB: usize = 32;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    /// 8 six-bit scales and 8 six-bit mins, see [`scale_min`].
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4K>() == GgmlType::Q4K.block_bytes());

// SAFETY: repr(C) struct of f16/u8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;
}

/// The (scale, min) of sub-block `j` (0..8) from the 12 packed bytes shared by Q4_K and Q5_K:
/// for j < 4 the low 6 bits of bytes j (scale) and j + 4 (min); for j >= 4 the nibbles of
/// byte j + 4 (low: scale, high: min) with the top two bits of bytes j - 4 (scale) and j
/// (min) above them.
pub fn scale_min(j: usize, packed: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// Packs 8 scales and 8 mins (each 0..=63), the inverse of [`scale_min`].
pub fn pack_scale_min(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    packed
}

/// The 8 scales and 8 mins of a super-block.
pub fn scales_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let both: [(u8, u8); 8] = std::array::from_fn(|j| scale_min(j, packed));
    (both.map(|p| p.0), both.map(|p| p.1))
}

/// The 256 quants (0..=15) in element order.
fn quants(b: &BlockQ4K) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (j, l) = (i / SUB, i % SUB);
        let byte = b.qs[j / 2 * SUB + l];
        if j % 2 == 0 {
            byte & 0x0F
        } else {
            byte >> 4
        }
    })
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ4K, out: &mut [f32; QK_K]| {
        decode_with_mins(b.d, b.dmin, &b.scales, &quants(b), out)
    });
}

/// value = (d * sc_j) * q - dmin * m_j over 8 sub-blocks of 32, each product rounded to f32
/// (llama.cpp's decode): shared by Q4_K and Q5_K.
pub(super) fn decode_with_mins(
    d: f16,
    dmin: f16,
    packed: &[u8; 12],
    q: &[u8; QK_K],
    out: &mut [f32; QK_K],
) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    let (sc, m) = scales_mins(packed);
    for (i, (o, &q)) in out.iter_mut().zip(q).enumerate() {
        let (scale, min) = (d * sc[i / SUB] as f32, dmin * m[i / SUB] as f32);
        *o = scale * q as f32 - min;
    }
}

/// Quantizes a super-block with `levels` quant steps (15 for Q4_K, 31 for Q5_K) as GGML's
/// reference quantizers do: per sub-block of 32 the affine grid of least squared error under
/// weights rms + |x| (the sub-block's rms; [`fit::affine`] with GGML's per-format search
/// parameters), its scale and min coded in 6 bits as multiples of the largest / 63, each
/// weight rounded on the coded grid. Returns (d, dmin, packed scales, quants).
pub fn quantize_with_mins(x: &[f32; QK_K], levels: u8) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let (rmin, nsteps) = if levels == 15 { (-1.0, 20) } else { (-0.5, 15) };
    let mut q = [0u8; QK_K];
    let (mut scale, mut offset) = ([0f32; 8], [0f32; 8]);
    for j in 0..8 {
        let sub = &x[j * SUB..][..SUB];
        let mut sum_x2 = 0f32;
        for v in sub {
            sum_x2 += v * v;
        }
        let av = (sum_x2 / SUB as f32).sqrt();
        let w: [f32; SUB] = std::array::from_fn(|i| av + sub[i].abs());
        let qs = &mut q[j * SUB..][..SUB];
        (scale[j], offset[j]) = fit::affine(sub, &w, levels, rmin, 0.1, nsteps, false, qs);
    }
    let (max_scale, max_offset) = (super::q2_k::largest(&scale), super::q2_k::largest(&offset));
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_offset = if max_offset > 0.0 {
        63.0 / max_offset
    } else {
        0.0
    };
    let sc: [u8; 8] = std::array::from_fn(|j| (fit::nearest(inv_scale * scale[j]) as u8).min(63));
    let m: [u8; 8] = std::array::from_fn(|j| (fit::nearest(inv_offset * offset[j]) as u8).min(63));
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_offset / 63.0);
    for j in 0..8 {
        let step = d.to_f32() * sc[j] as f32;
        // (a sub-block coded to scale 0 keeps the search's quants: any decode to -min)
        if step == 0.0 {
            continue;
        }
        let shift = dmin.to_f32() * m[j] as f32;
        for i in j * SUB..(j + 1) * SUB {
            q[i] = fit::nearest((x[i] + shift) / step).clamp(0, levels as i32) as u8;
        }
    }
    (d, dmin, pack_scale_min(&sc, &m), q)
}

/// Quantizes weights (see [`quantize_with_mins`]: llama.cpp's approach, not its bytes).
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        let (d, dmin, scales, q) = quantize_with_mins(x, 15);
        BlockQ4K {
            d,
            dmin,
            scales,
            qs: std::array::from_fn(|k| {
                let (c, l) = (k / SUB, k % SUB);
                q[2 * c * SUB + l] | (q[(2 * c + 1) * SUB + l] << 4)
            }),
        }
    });
}

/// The exact integer parts of one super-block pair with 8 sub-blocks of 32 and 6-bit
/// scales and mins (Q4_K, Q5_K): (Σ_j sc_j · Σ q·a, Σ_j m_j · bsum_j), bsum_j being the
/// activation quant sum of sub-block j (two Q8_K group sums).
pub(super) fn integer_parts(packed: &[u8; 12], q: &[u8; QK_K], a: &BlockQ8K) -> (i32, i32) {
    let (sc, m) = scales_mins(packed);
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..QK_K / SUB {
        let dot: i32 = (j * SUB..(j + 1) * SUB)
            .map(|i| q[i] as i32 * a.qs[i] as i32)
            .sum();
        isum += sc[j] as i32 * dot;
        let per_group = SUB / GROUP;
        let bsum: i32 = (0..per_group)
            .map(|g| a.bsums[j * per_group + g] as i32)
            .sum();
        msum += m[j] as i32 * bsum;
    }
    (isum, msum)
}

/// The f64 reference of one super-block with mins: d*da*isum - dmin*da*msum.
pub(super) fn reference_step(d: f16, dmin: f16, a: &BlockQ8K, parts: (i32, i32), acc: f64) -> f64 {
    let da = a.d as f64;
    acc + d.to_f64() * da * parts.0 as f64 - dmin.to_f64() * da * parts.1 as f64
}

/// The canonical float steps of one super-block with mins (see [`scalar`]).
pub(super) fn canonical_step(d: f16, dmin: f16, a: &BlockQ8K, parts: (i32, i32), acc: f32) -> f32 {
    let dd = d.to_f32() * a.d;
    let dm = dmin.to_f32() * a.d;
    let acc = (parts.0 as f32).mul_add(dd, acc);
    (-(parts.1 as f32)).mul_add(dm, acc)
}

/// The f64 reference dot with a Q8_K row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ4K, a: &BlockQ8K, acc| {
        let parts = integer_parts(&w.scales, &quants(w), a);
        reference_step(w.d, w.dmin, a, parts, acc)
    })
}

/// The canonical dot with a Q8_K row (see [`scalar`]).
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ4K, a: &BlockQ8K, acc| {
        let parts = integer_parts(&w.scales, &quants(w), a);
        canonical_step(w.d, w.dmin, a, parts, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q4_k*q8_k scalar", Q4K);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_scales_and_mins_round_trip() {
        let sc: [u8; 8] = [0, 1, 17, 63, 32, 48, 5, 63];
        let m: [u8; 8] = [63, 2, 0, 40, 63, 16, 33, 1];
        let packed = pack_scale_min(&sc, &m);
        assert_eq!(scales_mins(&packed), (sc, m));
    }

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        // d = 0.5, dmin = 0.25; sub-block j: scale j + 1, min 2 j; every low nibble 3, every
        // high nibble 12.
        let sc: [u8; 8] = std::array::from_fn(|j| j as u8 + 1);
        let m: [u8; 8] = std::array::from_fn(|j| 2 * j as u8);
        let mut src = f16::from_f32(0.5).to_le_bytes().to_vec();
        src.extend(f16::from_f32(0.25).to_le_bytes());
        src.extend(pack_scale_min(&sc, &m));
        src.extend([0xC3u8; 128]);
        let mut out = [0f32; 256];
        dequantize(&src, &mut out);
        for (i, &v) in out.iter().enumerate() {
            let j = i / 32;
            let q = if j % 2 == 0 { 3.0 } else { 12.0 };
            assert_eq!(
                v,
                0.5 * (j + 1) as f32 * q - 0.25 * (2 * j) as f32,
                "element {i}"
            );
        }
    }
}
