//! Q6_K: super-blocks of 256 weights in 16 sub-blocks of 16, 6-bit quants, a signed 8-bit
//! scale per sub-block and an f16 super-block factor `d`; value = (d * sc_j) * (q - 32).
//! Dotted with Q8_K activations.
//!
//! Layout (llama.cpp's), per half h of 128 elements and element r = 32 k + l of it
//! (k in 0..4, l in 0..32): the low 4 bits are a nibble of `ql[64 h + l + 32 (k % 2)]` (low
//! nibble for k < 2, high for k >= 2), the top 2 bits are bits 2k..2k+2 of `qh[32 h + l]`.

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
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / SUB],
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ6K>() == GgmlType::Q6K.block_bytes());

// SAFETY: repr(C) struct of u8/i8/f16 fields without padding (size asserted above equals the
// sum of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;
}

/// Where element i's bits live: (index into ql, nibble shift, index into qh, bit shift).
fn position(i: usize) -> (usize, u32, usize, u32) {
    let (h, r) = (i / 128, i % 128);
    let (k, l) = (r / 32, r % 32);
    (
        64 * h + l + 32 * (k % 2),
        4 * (k / 2) as u32,
        32 * h + l,
        2 * k as u32,
    )
}

/// The 256 quants (q - 32, in -32..=31) in element order.
fn quants(b: &BlockQ6K) -> [i8; QK_K] {
    std::array::from_fn(|i| {
        let (lo, lo_shift, hi, hi_shift) = position(i);
        let q = ((b.ql[lo] >> lo_shift) & 0x0F) | (((b.qh[hi] >> hi_shift) & 3) << 4);
        q as i8 - 32
    })
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockQ6K, out: &mut [f32; QK_K]| {
        let d = b.d.to_f32();
        for (i, (o, q)) in out.iter_mut().zip(quants(b)).enumerate() {
            *o = (d * b.scales[i / SUB] as f32) * q as f32;
        }
    });
}

/// Quantizes weights as GGML's reference quantizer does: per sub-block of 16 the symmetric grid
/// of least x²-weighted error ([`fit::symmetric`], quants -32..=31), the sub-block scales coded
/// as 8-bit multiples of `d` (the largest exactly -128 d), each weight rounded on the coded
/// grid; an all-zero super-block is all zero bytes.
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK_K]| {
        const N: usize = QK_K / SUB;
        // quants + 32, in 0..64
        let mut q = [0i8; QK_K];
        let sub_scale: [f32; N] = std::array::from_fn(|j| {
            fit::symmetric(&x[j * SUB..][..SUB], 32, &mut q[j * SUB..][..SUB])
        });
        let max_scale = fit::signed_max(&sub_scale);
        let mut b = BlockQ6K {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: [0; N],
            d: f16::from_f32(0.0),
        };
        if max_scale.abs() < 1e-15 {
            return b;
        }
        let iscale = -128.0 / max_scale;
        b.d = f16::from_f32(1.0 / iscale);
        b.scales = std::array::from_fn(|j| fit::nearest(iscale * sub_scale[j]).min(127) as i8);
        for j in 0..N {
            let step = b.d.to_f32() * b.scales[j] as f32;
            // (a sub-block coded to scale 0 keeps the search's quants: any decode to 0)
            if step == 0.0 {
                continue;
            }
            for i in j * SUB..(j + 1) * SUB {
                q[i] = (fit::nearest(x[i] / step).clamp(-32, 31) + 32) as i8;
            }
        }
        for (i, &v) in q.iter().enumerate() {
            let v = v as u8;
            let (lo, lo_shift, hi, hi_shift) = position(i);
            b.ql[lo] |= (v & 0x0F) << lo_shift;
            b.qh[hi] |= (v >> 4) << hi_shift;
        }
        b
    });
}

/// The exact integer sum of one super-block pair: Σ_j sc_j · Σ (q - 32)·a.
fn isum(w: &BlockQ6K, a: &BlockQ8K) -> i32 {
    let q = quants(w);
    (0..QK_K / SUB)
        .map(|j| {
            let dot: i32 = (j * SUB..(j + 1) * SUB)
                .map(|i| q[i] as i32 * a.qs[i] as i32)
                .sum();
            w.scales[j] as i32 * dot
        })
        .sum()
}

/// The f64 reference dot with a Q8_K row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockQ6K, a: &BlockQ8K, acc| {
        acc + w.d.to_f64() * a.d as f64 * isum(w, a) as f64
    })
}

/// The canonical dot with a Q8_K row (see [`scalar`]).
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockQ6K, a: &BlockQ8K, acc| {
        let dd = w.d.to_f32() * a.d;
        (isum(w, a) as f32).mul_add(dd, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "q6_k*q8_k scalar", Q6K);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_block_decodes_to_known_values() {
        // ql low nibbles 1, high nibbles 2; qh = 0b11_10_01_00: quarter k gets top bits k.
        let mut src = vec![0x21u8; 128];
        src.extend([0b1110_0100u8; 64]);
        src.extend((0..16).map(|j| (j as i8 - 8) as u8));
        src.extend(f16::from_f32(0.5).to_le_bytes());
        let mut out = [0f32; 256];
        dequantize(&src, &mut out);
        for (i, &v) in out.iter().enumerate() {
            let k = i % 128 / 32;
            let low = if k < 2 { 1 } else { 2 };
            let q = (low | (k << 4)) as i32 - 32;
            let sc = (i / 16) as i32 - 8;
            assert_eq!(v, 0.5 * sc as f32 * q as f32, "element {i}");
        }
    }
}
