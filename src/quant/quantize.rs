//! Weight quantizers: f32 rows into the packed formats, for tools that write models (the
//! synthetic-model tool, tests that build tiny models in code). Each format encodes through
//! its block struct (`formats/*.rs`, the registry's `quantize`); rounding follows GGML's
//! reference quantizers, so files we write load the same way in llama.cpp.

use super::GgmlType;
use crate::{Error, Result};

/// Appends the packed form of `x` (a whole number of blocks of `ty`) to `out`.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> Result<()> {
    let bytes = ty.row_bytes(x.len() as u64).ok_or_else(|| {
        Error::InvalidArgument(format!("{} values are not whole {ty} blocks", x.len()))
    })?;
    let quantize =
        ty.format()
            .and_then(|f| f.quantize)
            .ok_or_else(|| Error::UnsupportedTensorType {
                tensor: "(quantize)".into(),
                ty: ty.name().into(),
            })?;
    let start = out.len();
    out.resize(start + bytes as usize, 0);
    quantize(x, &mut out[start..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize_row;

    #[test]
    fn round_trips_within_half_a_step() {
        // 256 values (one K-quant super-block, 8 of the 32-element blocks) in -3.15..=3.15.
        let n = 256;
        let x: Vec<f32> = (0..n)
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
            (GgmlType::Q5_0, 2.0 * 3.15 / 16.0),
            (GgmlType::Q5_1, 6.3 / 31.0),
            // The K-quants' 6-bit sub-block scales round up, widening a step by up to 1/63.
            (GgmlType::Q4K, 6.3 / 15.0 * (1.0 + 1.0 / 63.0)),
            (GgmlType::Q5K, 6.3 / 31.0 * (1.0 + 1.0 / 63.0)),
            // Q2_K: 3 steps over a sub-block's range, its 4-bit scale rounded up by up to 1/15.
            (GgmlType::Q2K, 6.3 / 3.0 * (1.0 + 1.0 / 15.0)),
            // Q3_K clips like Q4_0 (-4..3 steps), its scale rounded to a 6-bit multiple.
            (GgmlType::Q3K, 2.0 * 3.15 / 4.0 * (1.0 + 1.0 / 32.0)),
            // Q6_K clips like Q4_0 (-32d..31d).
            (GgmlType::Q6K, 2.0 * 3.15 / 32.0),
        ] {
            let mut packed = Vec::new();
            quantize_row(ty, &x, &mut packed).unwrap();
            assert_eq!(packed.len() as u64, ty.row_bytes(n as u64).unwrap());
            let mut back = vec![0.0; n];
            dequantize_row(ty, &packed, &mut back).unwrap();
            for (a, b) in x.iter().zip(&back) {
                assert!((a - b).abs() <= step * 0.5 + 1e-3, "{ty}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn partial_blocks_and_unsupported_types_are_errors() {
        assert!(quantize_row(GgmlType::Q4_0, &[0.0; 31], &mut Vec::new()).is_err());
        assert!(quantize_row(GgmlType::Iq3S, &[0.0; 256], &mut Vec::new()).is_err());
    }
}
