//! Activation ("vec dot") types: the format a weight type's dot product wants its activation
//! row in, and the fast quantizers that produce it.
//!
//! The pairing is each weight format's registry row ([`crate::quant::registry`]); it follows
//! llama.cpp so our numerics match its: a Q4_1 or Q5_1 weight row is dotted with a Q8_1
//! activation row, Q4_0, Q5_0 and Q8_0 with Q8_0, the K-quants (Q2_K ... Q6_K) with Q8_K,
//! F16 with F16 (activations rounded to f16), BF16 with BF16, F32 with F32.

#[cfg(target_arch = "x86_64")]
mod x86;

use super::formats::{q8_0, q8_1};
use super::GgmlType;
use crate::quant::dot::{isa_choice, Isa};
use crate::{Error, Result};
use std::sync::OnceLock;

/// Quantizes a whole number of 32-blocks of f32 into packed blocks; lengths pre-checked.
pub type QuantizeFn = fn(x: &[f32], out: &mut [u8]);

/// The activation type llama.cpp pairs with weight type `weight`; `None` if we have no
/// dot product for it.
pub fn activation_type(weight: GgmlType) -> Option<GgmlType> {
    weight.format()?.activation
}

/// Converts one activation row `x` into `act_ty` (one of the types [`activation_type`]
/// returns). `out.len()` must equal `act_ty.row_bytes(x.len())`.
///
/// Q8_0 and Q8_1 go through the fastest quantizers of this CPU, bit-identical to the
/// registry's reference ones for finite inputs (tested); results for NaN/inf inputs are
/// unspecified but memory-safe. Other types use the registry's quantizer.
pub fn quantize_activations(act_ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<()> {
    let n = x.len();
    match act_ty.row_bytes(n as u64) {
        Some(b) if b == out.len() as u64 => {}
        _ => {
            return Err(Error::InvalidArgument(format!(
                "{act_ty} activation row of {n} elements cannot fill {} bytes",
                out.len()
            )))
        }
    }
    let quantize = match act_ty {
        GgmlType::Q8_0 => quantizers().q8_0,
        GgmlType::Q8_1 => quantizers().q8_1,
        other => other
            .format()
            .and_then(|f| f.quantize_activation)
            .ok_or_else(|| Error::InvalidArgument(format!("{other} is not an activation type")))?,
    };
    quantize(x, out);
    Ok(())
}

/// The fastest Q8_0 quantizer of this CPU (bit-identical to the registry's reference
/// [`q8_0::quantize_activations`]): whole 32-blocks of `x` into `out`, lengths checked by the
/// caller. The q8_0 KV cache writes its rows with it, as llama.cpp's CPU does.
pub fn q8_0_quantizer() -> QuantizeFn {
    quantizers().q8_0
}

/// A set of Q8 activation quantizers for one ISA.
#[derive(Clone, Copy)]
pub struct Quantizers {
    pub q8_0: QuantizeFn,
    pub q8_1: QuantizeFn,
    pub name: &'static str,
    /// The table it belongs to, for [`crate::quant::dot::IsaChoice`].
    pub isa: Isa,
}

/// The registry's reference quantizers.
const SCALAR: Quantizers = Quantizers {
    q8_0: q8_0::quantize_activations,
    q8_1: q8_1::quantize_activations,
    name: "scalar",
    isa: Isa::Scalar,
};

/// Every quantizer set this CPU can run, best first (the scalar reference last).
pub fn available_quantizers() -> Vec<Quantizers> {
    #[cfg(target_arch = "x86_64")]
    let simd = x86::available();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = Vec::new();
    simd.into_iter().chain([SCALAR]).collect()
}

fn quantizers() -> &'static Quantizers {
    static BEST: OnceLock<Quantizers> = OnceLock::new();
    BEST.get_or_init(|| {
        let choice = isa_choice();
        let usable = available_quantizers();
        usable
            .iter()
            .copied()
            .find(|q| choice.allows(q.isa))
            .unwrap_or(SCALAR)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn lcg_floats(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    #[test]
    fn every_q8_quantizer_is_bit_identical_to_the_reference() {
        for n in [32, 64, 576, 1536, 4096] {
            for (seed, scale) in [(1, 2.0), (2, 1e-3), (3, 300.0)] {
                let mut x = lcg_floats(seed + n as u64, n, scale);
                x[3] = 0.0;
                if n >= 64 {
                    x[32..64].fill(0.0); // an all-zero block
                }
                let mut r0 = vec![0u8; n / 32 * 34];
                let mut r1 = vec![0u8; n / 32 * 36];
                q8_0::quantize_activations(&x, &mut r0);
                q8_1::quantize_activations(&x, &mut r1);
                for q in available_quantizers() {
                    let mut o0 = vec![0xEEu8; r0.len()];
                    let mut o1 = vec![0xEEu8; r1.len()];
                    (q.q8_0)(&x, &mut o0);
                    (q.q8_1)(&x, &mut o1);
                    assert_eq!(o0, r0, "{} q8_0 n={n}", q.name);
                    assert_eq!(o1, r1, "{} q8_1 n={n}", q.name);
                }
            }
        }
    }

    #[test]
    fn activation_types_pair_as_llama_cpp() {
        assert_eq!(activation_type(GgmlType::Q4_1), Some(GgmlType::Q8_1));
        assert_eq!(activation_type(GgmlType::Q4_0), Some(GgmlType::Q8_0));
        assert_eq!(activation_type(GgmlType::Q8_0), Some(GgmlType::Q8_0));
        assert_eq!(activation_type(GgmlType::F16), Some(GgmlType::F16));
        assert_eq!(activation_type(GgmlType::Q5_0), Some(GgmlType::Q8_0));
        assert_eq!(activation_type(GgmlType::Q5_1), Some(GgmlType::Q8_1));
        assert_eq!(activation_type(GgmlType::Iq4Nl), Some(GgmlType::Q8_0));
        for k in [
            GgmlType::Q2K,
            GgmlType::Q3K,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
            GgmlType::Iq4Xs,
        ] {
            assert_eq!(activation_type(k), Some(GgmlType::Q8K), "{k}");
        }
        assert_eq!(activation_type(GgmlType::Iq3S), None);
    }

    #[test]
    fn quantize_activations_checks_lengths_and_rounds_floats() {
        let x = [1.0f32, 1.0 + 1e-4, -2.5, 65536.0];
        let mut f16s = [0u8; 8];
        quantize_activations(GgmlType::F16, &x, &mut f16s).unwrap();
        assert_eq!(&f16s[0..2], &f16::from_f32(1.0).to_le_bytes()); // 1+1e-4 rounds to 1 too
        assert_eq!(&f16s[2..4], &f16::from_f32(1.0).to_le_bytes());
        assert_eq!(&f16s[6..8], &f16::INFINITY.to_le_bytes());
        let mut bf = [0u8; 8];
        quantize_activations(GgmlType::Bf16, &x, &mut bf).unwrap();
        assert_eq!(&bf[4..6], &[0x20, 0xC0]); // -2.5
        assert!(quantize_activations(GgmlType::F16, &x, &mut [0u8; 6]).is_err());
        assert!(quantize_activations(GgmlType::Q8_0, &x, &mut [0u8; 34]).is_err());
        assert!(quantize_activations(GgmlType::Q4_1, &[0.0; 32], &mut [0u8; 20]).is_err());
    }
}
