//! Weight quantizers: f32 rows into the packed formats, for tools that write models (the
//! synthetic-model tool, tests that build tiny models in code). Rounding follows GGML's
//! reference quantizers, so files we write load the same way in llama.cpp.

use super::GgmlType;
use crate::{Error, Result};
use half::{bf16, f16};

const QK: usize = 32;

/// Appends the packed form of `x` (a whole number of blocks of `ty`) to `out`.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> Result<()> {
    if !x.len().is_multiple_of(ty.block_elems()) {
        return Err(Error::InvalidArgument(format!(
            "{} values are not whole {ty} blocks",
            x.len()
        )));
    }
    match ty {
        GgmlType::F32 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => x
            .iter()
            .for_each(|&v| out.extend_from_slice(&f16::from_f32(v).to_le_bytes())),
        GgmlType::Bf16 => x
            .iter()
            .for_each(|&v| out.extend_from_slice(&bf16::from_f32(v).to_le_bytes())),
        GgmlType::Q8_0 => x.chunks_exact(QK).for_each(|b| q8_0_block(b, out)),
        GgmlType::Q4_0 => x.chunks_exact(QK).for_each(|b| q4_0_block(b, out)),
        GgmlType::Q4_1 => x.chunks_exact(QK).for_each(|b| q4_1_block(b, out)),
        other => {
            return Err(Error::UnsupportedTensorType {
                tensor: "(quantize)".into(),
                ty: other.name().into(),
            })
        }
    }
    Ok(())
}

fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// Q4_0: d = (signed value of largest magnitude) / -8, q = x/d + 8 in 0..=15.
fn q4_0_block(x: &[f32], out: &mut Vec<u8>) {
    let max = x
        .iter()
        .copied()
        .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
    out.extend((0..QK / 2).map(|j| q(x[j]) | (q(x[j + QK / 2]) << 4)));
}

/// Q4_1: d = (max - min) / 15, m = min, q = (x - min)/d in 0..=15.
fn q4_1_block(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
    let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
    out.extend((0..QK / 2).map(|j| q(x[j]) | (q(x[j + QK / 2]) << 4)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize_row;

    #[test]
    fn round_trips_within_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) / 10.0)
            .collect();
        for (ty, step) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 0.01),
            (GgmlType::Bf16, 0.05),
            (GgmlType::Q8_0, 3.15 / 127.0),
            // Q4_0 spans -8d..7d: the extreme opposite the largest one clips by up to one step.
            (GgmlType::Q4_0, 2.0 * 3.15 / 8.0),
            (GgmlType::Q4_1, 6.3 / 15.0),
        ] {
            let mut packed = Vec::new();
            quantize_row(ty, &x, &mut packed).unwrap();
            assert_eq!(packed.len() as u64, ty.row_bytes(64).unwrap());
            let mut back = vec![0.0; 64];
            dequantize_row(ty, &packed, &mut back).unwrap();
            for (a, b) in x.iter().zip(&back) {
                assert!((a - b).abs() <= step * 0.5 + 1e-3, "{ty}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn partial_blocks_and_k_quants_are_errors() {
        assert!(quantize_row(GgmlType::Q4_0, &[0.0; 31], &mut Vec::new()).is_err());
        assert!(quantize_row(GgmlType::Q4K, &[0.0; 256], &mut Vec::new()).is_err());
    }
}
