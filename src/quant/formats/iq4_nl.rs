//! IQ4_NL: blocks of 32 weights, 4-bit indices into a fixed non-linear table of 16 int8 values
//! ([`VALUES`]) and one f16 scale; value = d * VALUES[q]. Dotted with Q8_0 activations, like
//! Q4_0 (its integer sum is Σ VALUES[q] · a).
//!
//! Layout (GGML's): element j < 16 indexes by the low nibble of `qs[j]`, element j + 16 by its
//! high nibble. IQ4_XS (iq4_xs.rs) stores its 32-element sub-blocks' indices the same way.

use super::q8_0::BlockQ8_0;
use crate::quant::blocks::{decode_blocks, encode_blocks, Block, QK};
use crate::quant::dot::{scalar, scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::f16;

/// The 16 levels of the IQ4 formats (GGML's `kvalues_iq4nl`), ascending: denser near zero,
/// where most weights are.
pub const VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIq4Nl {
    pub d: f16,
    /// Indices into [`VALUES`], packed as Q4_0's nibbles.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == GgmlType::Iq4Nl.block_bytes());

// SAFETY: repr(C) struct of f16/u8 fields without padding (size asserted above equals the sum
// of its fields); every bit pattern is a valid value.
unsafe impl Block for BlockIq4Nl {
    const TYPE: GgmlType = GgmlType::Iq4Nl;
}

/// The 32 table values of one packed group of 16 index bytes, in element order (low nibbles,
/// then high nibbles).
pub(super) fn values32(qs: &[u8; 16]) -> [i8; 32] {
    std::array::from_fn(|j| {
        let nibble = if j < 16 {
            qs[j] & 0x0F
        } else {
            qs[j - 16] >> 4
        };
        VALUES[nibble as usize]
    })
}

/// Packs 32 indices (0..=15) as [`values32`] reads them.
pub(super) fn pack32(l: &[u8]) -> [u8; 16] {
    std::array::from_fn(|j| l[j] | (l[j + 16] << 4))
}

/// Decodes whole blocks (lengths checked by the caller).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |b: &BlockIq4Nl, out: &mut [f32; QK]| {
        let d = b.d.to_f32();
        for (o, v) in out.iter_mut().zip(values32(&b.qs)) {
            *o = d * v as f32;
        }
    });
}

/// Groups whose largest magnitude is below this are all zero (GGML's GROUP_MAX_EPS).
const GROUP_MAX_EPS: f32 = 1e-15;
/// Scale candidates tried on each side of the one spanning the values (GGML's `ntry` as
/// llama-quantize's quantizer passes it).
const NTRY: i32 = 7;

/// The index of the table value nearest `x` (GGML's `best_index_int8`: values outside the
/// table clamp to its ends; a tie goes to the larger value).
pub(super) fn best_index(x: f32) -> u8 {
    if x <= VALUES[0] as f32 {
        return 0;
    }
    if x >= VALUES[15] as f32 {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < VALUES[mid] as f32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - (VALUES[hi - 1] as f32) < VALUES[hi] as f32 - x {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// The scale of least weighted squared error (weights x²) for one 32-element group on the
/// IQ4 table, as GGML's quantizer searches it: the scale mapping the value of largest
/// magnitude onto the table's end, refined by least squares on the indices it gives, then
/// 2 * NTRY + 1 further candidates `max / (VALUES[0] + t)`, each refined likewise, the best
/// kept. Writes the indices of the first candidate to `l` (callers re-derive them from the
/// final scale). Operations in GGML's order, unfused, so the bits agree with llama-quantize.
pub(super) fn group_scale(x: &[f32], l: &mut [u8]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = VALUES[0] as f32;
    // Σ w·q·x and Σ w·q² over the group for inverse scale `id` (w = x²).
    let sums = |id: f32, mut keep: Option<&mut [u8]>| {
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for (j, &v) in x.iter().enumerate() {
            let i = best_index(id * v);
            if let Some(l) = keep.as_deref_mut() {
                l[j] = i;
            }
            let q = VALUES[i as usize] as f32;
            let w = v * v;
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let d = -max / v0;
    let (sumqx, sumq2) = sums(1.0 / d, Some(l));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for t in -NTRY..=NTRY {
        let id = (t + VALUES[0] as i32) as f32 / max;
        let (sumqx, sumq2) = sums(id, None);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// GGML's quantizer as llama-quantize runs it without an importance matrix: the scale of
/// [`group_scale`] stored as f16, the indices nearest x / scale (the unrounded scale, as GGML
/// does).
pub fn quantize(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; QK]| {
        let mut l = [0u8; QK];
        let d = group_scale(x, &mut l);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (l, &v) in l.iter_mut().zip(x) {
            *l = best_index(id * v);
        }
        BlockIq4Nl {
            d: f16::from_f32(d),
            qs: pack32(&l),
        }
    });
}

/// The exact integer sum of one block pair: Σ VALUES[q] · a.
fn isum(w: &BlockIq4Nl, a: &BlockQ8_0) -> i32 {
    values32(&w.qs)
        .iter()
        .zip(&a.qs)
        .map(|(&v, &a)| v as i32 * a as i32)
        .sum()
}

/// The f64 reference dot with a Q8_0 row.
pub fn reference_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::reference(n, w, a, |w: &BlockIq4Nl, a: &BlockQ8_0, acc| {
        acc + (w.d.to_f32() * a.d.to_f32()) as f64 * isum(w, a) as f64
    })
}

/// The canonical dot with a Q8_0 row (see [`scalar`]): Q4_0's order.
pub fn canonical_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    scalar::canonical(n, w, a, |w: &BlockIq4Nl, a: &BlockQ8_0, acc| {
        let dd = w.d.to_f32() * a.d.to_f32();
        (isum(w, a) as f32).mul_add(dd, acc)
    })
}

pub static SCALAR: DotKernels = scalar_kernels!(canonical_dot, "iq4_nl*q8_0 scalar", Iq4Nl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_block_decodes_to_table_values() {
        // Low nibble j, high nibble 15 - j.
        let mut src = f16::from_f32(0.5).to_le_bytes().to_vec();
        src.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize(&src, &mut out);
        assert_eq!(out[0], -63.5); // -127 * 0.5
        assert_eq!(out[8], 0.5); // 1 * 0.5
        assert_eq!(out[15], 56.5); // 113 * 0.5
        assert_eq!(out[16], 56.5); // high nibble of qs[0] is 15
        assert_eq!(out[31], -63.5);
    }

    #[test]
    fn best_index_is_the_nearest_level_and_clamps() {
        for (i, &v) in VALUES.iter().enumerate() {
            assert_eq!(best_index(v as f32), i as u8);
        }
        assert_eq!(best_index(-1000.0), 0);
        assert_eq!(best_index(1000.0), 15);
        assert_eq!(best_index(0.0), 8); // 1 is nearer than -10
        assert_eq!(best_index(-4.5), 8); // the midpoint of -10 and 1 goes up
        assert_eq!(best_index(-4.6), 7);
        assert_eq!(best_index(100.0), 14); // |89 - 100| < |113 - 100|
        assert_eq!(best_index(101.0), 15); // the midpoint goes up
    }

    #[test]
    fn quantized_blocks_come_back_close() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) / 8.0)
            .collect();
        let mut packed = vec![0u8; 36];
        quantize(&x, &mut packed);
        let mut back = vec![0f32; 64];
        dequantize(&packed, &mut back);
        let err: f32 = x.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum();
        let norm: f32 = x.iter().map(|a| a * a).sum();
        assert!(err / norm < 0.01, "relative squared error {}", err / norm);
        // An all-zero block: scale 0, every index the level nearest 0.
        let mut zero = vec![0u8; 18];
        quantize(&[0.0; 32], &mut zero);
        assert_eq!(&zero[..2], &[0, 0]);
        assert!(zero[2..].iter().all(|&b| b == 0x88));
    }
}
