//! Scalar reference implementations: dequantization, the activation quantizers and the dot
//! products. They define the numerics; every SIMD path is tested against them.
//!
//! Rounding of the 8-bit quantizers follows llama.cpp's x86 path so our activations are
//! bit-identical to its: `id = 127 / amax`, `q = round_half_even(x * id)`, `d = f16(amax / 127)`
//! (the scale is rounded to f16 for storage only; quantization uses the f32 `id`).

use super::blocks::{
    read_block, write_block, Block, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK,
};
use super::GgmlType;
use crate::{Error, Result};
use half::{bf16, f16};

/// Decodes a row of `dst.len()` elements of type `ty` from `src` (packed, file byte order).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let n = dst.len();
    let need = ty
        .row_bytes(n as u64)
        .ok_or_else(|| Error::InvalidArgument(format!("{n} elements is not whole {ty} blocks")))?;
    if (src.len() as u64) < need {
        return Err(Error::InvalidArgument(format!(
            "{ty} row of {n} elements needs {need} bytes, got {}",
            src.len()
        )));
    }
    match ty {
        GgmlType::F32 => {
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Bf16 => {
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => {
            for (i, out) in dst.chunks_exact_mut(QK).enumerate() {
                let b: BlockQ4_0 = block(src, i)?;
                let d = b.d.to_f32();
                for j in 0..QK / 2 {
                    out[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
                    out[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (i, out) in dst.chunks_exact_mut(QK).enumerate() {
                let b: BlockQ4_1 = block(src, i)?;
                let (d, m) = (b.d.to_f32(), b.m.to_f32());
                for j in 0..QK / 2 {
                    out[j] = (b.qs[j] & 0x0F) as f32 * d + m;
                    out[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (i, out) in dst.chunks_exact_mut(QK).enumerate() {
                let b: BlockQ8_0 = block(src, i)?;
                let d = b.d.to_f32();
                for (o, &q) in out.iter_mut().zip(b.qs.iter()) {
                    *o = q as f32 * d;
                }
            }
        }
        GgmlType::Q8_1 => {
            for (i, out) in dst.chunks_exact_mut(QK).enumerate() {
                let b: BlockQ8_1 = block(src, i)?;
                let d = b.d.to_f32();
                for (o, &q) in out.iter_mut().zip(b.qs.iter()) {
                    *o = q as f32 * d;
                }
            }
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "dequantization of {other} is not supported"
            )))
        }
    }
    Ok(())
}

fn block<B: Block>(src: &[u8], i: usize) -> Result<B> {
    read_block(src, i).ok_or_else(|| Error::InvalidArgument(format!("block {i} out of range")))
}

/// Quantizes one block of 32 values: (f16 scale, f32 scale, quants).
/// The f32 scale is what the Q8_1 block sum is computed with, as in llama.cpp.
pub fn quantize_block_q8(x: &[f32; QK]) -> (f16, f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; QK];
    for (q, &v) in qs.iter_mut().zip(x.iter()) {
        // |v * id| <= 127 (up to one rounding), so the cast never saturates meaningfully.
        *q = (v * id).round_ties_even() as i8;
    }
    (f16::from_f32(d), d, qs)
}

/// Quantizes `x` (a whole number of 32-blocks) into Q8_0 blocks in `out`.
/// Returns `false` and writes nothing useful if the lengths do not match.
pub fn quantize_row_q8_0(x: &[f32], out: &mut [u8]) -> bool {
    if !x.len().is_multiple_of(QK) || out.len() != x.len() / QK * <BlockQ8_0 as Block>::BYTES {
        return false;
    }
    for (i, xb) in x.chunks_exact(QK).enumerate() {
        let Ok(xb) = <&[f32; QK]>::try_from(xb) else {
            return false;
        };
        let (d, _, qs) = quantize_block_q8(xb);
        write_block(out, i, &BlockQ8_0 { d, qs });
    }
    true
}

/// Quantizes `x` into Q8_1 blocks: as Q8_0 plus `s = f16(d * sum(qs))`.
pub fn quantize_row_q8_1(x: &[f32], out: &mut [u8]) -> bool {
    if !x.len().is_multiple_of(QK) || out.len() != x.len() / QK * <BlockQ8_1 as Block>::BYTES {
        return false;
    }
    for (i, xb) in x.chunks_exact(QK).enumerate() {
        let Ok(xb) = <&[f32; QK]>::try_from(xb) else {
            return false;
        };
        let (d, d32, qs) = quantize_block_q8(xb);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        let s = f16::from_f32(d32 * sum as f32);
        write_block(out, i, &BlockQ8_1 { d, s, qs });
    }
    true
}

/// Reference dot products. Each block's integer sum is exact; the scaled block terms are
/// accumulated in f64, so these are the most accurate value our kernels can aim at.
/// All of them panic on rows shorter than `n` implies (a caller bug, like slice indexing).
pub mod dot {
    use super::*;

    fn blocks<'a, W: Block, A: Block>(
        n: usize,
        w: &'a [u8],
        a: &'a [u8],
    ) -> impl Iterator<Item = (W, A)> + 'a {
        assert!(
            n.is_multiple_of(QK),
            "row length {n} is not a multiple of {QK}"
        );
        let nb = n / QK;
        assert!(
            w.len() >= nb * W::BYTES && a.len() >= nb * A::BYTES,
            "row too short"
        );
        (0..nb).filter_map(move |i| Some((read_block(w, i)?, read_block(a, i)?)))
    }

    pub fn q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let mut acc = 0f64;
        for (wb, ab) in blocks::<BlockQ4_0, BlockQ8_0>(n, w, a) {
            let mut isum = 0i32;
            for j in 0..QK / 2 {
                isum += ((wb.qs[j] & 0x0F) as i32 - 8) * ab.qs[j] as i32;
                isum += ((wb.qs[j] >> 4) as i32 - 8) * ab.qs[j + QK / 2] as i32;
            }
            acc += (wb.d.to_f32() * ab.d.to_f32()) as f64 * isum as f64;
        }
        acc as f32
    }

    pub fn q4_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let mut acc = 0f64;
        for (wb, ab) in blocks::<BlockQ4_1, BlockQ8_1>(n, w, a) {
            let mut isum = 0i32;
            for j in 0..QK / 2 {
                isum += (wb.qs[j] & 0x0F) as i32 * ab.qs[j] as i32;
                isum += (wb.qs[j] >> 4) as i32 * ab.qs[j + QK / 2] as i32;
            }
            // sum((q*d + m) * a) = d*da*sum(q*qa) + m*(da*sum(qa)) = ... + m*s
            acc += (wb.d.to_f32() * ab.d.to_f32()) as f64 * isum as f64;
            acc += (wb.m.to_f32() * ab.s.to_f32()) as f64;
        }
        acc as f32
    }

    pub fn q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let mut acc = 0f64;
        for (wb, ab) in blocks::<BlockQ8_0, BlockQ8_0>(n, w, a) {
            let isum: i32 = wb
                .qs
                .iter()
                .zip(ab.qs.iter())
                .map(|(&x, &y)| x as i32 * y as i32)
                .sum();
            acc += (wb.d.to_f32() * ab.d.to_f32()) as f64 * isum as f64;
        }
        acc as f32
    }

    fn plain(n: usize, w: &[u8], a: &[u8], size: usize, get: fn(&[u8]) -> f32) -> f32 {
        assert!(w.len() >= n * size && a.len() >= n * size, "row too short");
        let w = w[..n * size].chunks_exact(size);
        let a = a[..n * size].chunks_exact(size);
        w.zip(a)
            .map(|(x, y)| get(x) as f64 * get(y) as f64)
            .sum::<f64>() as f32
    }

    pub fn f32_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
        plain(n, w, a, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn f16_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
        plain(n, w, a, 2, |b| f16::from_le_bytes([b[0], b[1]]).to_f32())
    }

    pub fn bf16_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
        plain(n, w, a, 2, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q4_1_block(d: f32, m: f32, qs: [u8; 16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        v.extend_from_slice(&f16::from_f32(m).to_le_bytes());
        v.extend_from_slice(&qs);
        v
    }

    #[test]
    fn hand_built_q4_blocks_decode_to_known_values() {
        // Low nibble j, high nibble 15 - j: elements 0..16 = j, elements 16..32 = 15 - j.
        let qs: [u8; 16] = std::array::from_fn(|j| (j as u8) | ((15 - j as u8) << 4));
        let src = q4_1_block(0.5, -1.0, qs);
        let mut out = [0f32; 32];
        dequantize_row(GgmlType::Q4_1, &src, &mut out).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], j as f32 * 0.5 - 1.0);
            assert_eq!(out[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }

        let mut src0 = f16::from_f32(2.0).to_le_bytes().to_vec();
        src0.extend_from_slice(&qs);
        dequantize_row(GgmlType::Q4_0, &src0, &mut out).unwrap();
        assert_eq!(out[0], -16.0); // (0 - 8) * 2
        assert_eq!(out[8], 0.0);
        assert_eq!(out[16], 14.0); // (15 - 8) * 2
        assert_eq!(out[31], -16.0); // high nibble of qs[15] is 0
    }

    #[test]
    fn hand_built_q8_and_float_rows_decode_to_known_values() {
        let mut src = f16::from_f32(0.25).to_le_bytes().to_vec();
        src.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let mut out = [0f32; 32];
        dequantize_row(GgmlType::Q8_0, &src, &mut out).unwrap();
        assert_eq!(out[0], -4.0);
        assert_eq!(out[31], 3.75);

        let f16s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let mut two = [0f32; 2];
        dequantize_row(GgmlType::F16, &f16s, &mut two).unwrap();
        assert_eq!(two, [1.5, -2.0]);
        dequantize_row(GgmlType::Bf16, &[0x80, 0x3F, 0x00, 0xC0], &mut two).unwrap();
        assert_eq!(two, [1.0, -2.0]);
    }

    #[test]
    fn dequantize_rejects_short_rows_and_unsupported_types() {
        let mut out = [0f32; 32];
        assert!(dequantize_row(GgmlType::Q4_1, &[0u8; 19], &mut out).is_err());
        assert!(dequantize_row(GgmlType::Q4K, &[0u8; 1000], &mut out).is_err());
        let mut odd = [0f32; 31];
        assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 34], &mut odd).is_err());
    }

    #[test]
    fn q8_quantizers_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let mut q0 = vec![0u8; 8 * 34];
        let mut q1 = vec![0u8; 8 * 36];
        assert!(quantize_row_q8_0(&x, &mut q0));
        assert!(quantize_row_q8_1(&x, &mut q1));
        let (mut y0, mut y1) = (vec![0f32; 256], vec![0f32; 256]);
        dequantize_row(GgmlType::Q8_0, &q0, &mut y0).unwrap();
        dequantize_row(GgmlType::Q8_1, &q1, &mut y1).unwrap();
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
        // wrong output length is refused
        assert!(!quantize_row_q8_0(&x, &mut q1));
    }

    #[test]
    fn q8_1_s_is_scale_times_quant_sum() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.7).sin() + 0.3).collect();
        let mut q1 = vec![0u8; 2 * 36];
        assert!(quantize_row_q8_1(&x, &mut q1));
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
        let mut z = vec![0u8; 36];
        assert!(quantize_row_q8_1(&[0.0; 32], &mut z));
        assert!(z.iter().all(|&b| b == 0));
    }

    #[test]
    fn reference_dot_of_hand_built_q4_1_block() {
        // weights: all q = 1, d = 1, m = 0.5 -> every value 1.5; activations: q = 2, d = 0.5 -> 1.0
        let w = q4_1_block(1.0, 0.5, [0x11; 16]);
        let mut a = f16::from_f32(0.5).to_le_bytes().to_vec();
        a.extend_from_slice(&f16::from_f32(0.5 * 64.0).to_le_bytes());
        a.extend_from_slice(&[2u8; 32]);
        assert_eq!(dot::q4_1_q8_1(32, &w, &a), 48.0);
    }
}
