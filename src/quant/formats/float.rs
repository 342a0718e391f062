//! The float types F32, F16 and BF16, as blocks of one value. Each is dotted with activations
//! rounded to its own type (as llama.cpp does); their dot products have no pinned summation
//! order: the f64 reference is the scalar kernel.

use crate::quant::blocks::{decode_blocks, encode_blocks, read_block, Block};
use crate::quant::dot::{scalar_kernels, DotKernels};
use crate::quant::GgmlType;
use half::{bf16, f16};
use std::mem::size_of;

// SAFETY (all three): a primitive or one of `half`'s `repr(transparent)` u16 wrappers, so no
// padding, and every bit pattern is a valid value.
unsafe impl Block for f32 {
    const TYPE: GgmlType = GgmlType::F32;
}
// SAFETY: see above.
unsafe impl Block for f16 {
    const TYPE: GgmlType = GgmlType::F16;
}
// SAFETY: see above.
unsafe impl Block for bf16 {
    const TYPE: GgmlType = GgmlType::Bf16;
}

const _: () = assert!(size_of::<f32>() == GgmlType::F32.block_bytes());
const _: () = assert!(size_of::<f16>() == GgmlType::F16.block_bytes());
const _: () = assert!(size_of::<bf16>() == GgmlType::Bf16.block_bytes());

/// A float element type: its conversions from and to f32 (round to nearest even).
pub trait Float: Block {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl Float for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Float for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Float for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Decodes a row (lengths checked by the caller).
pub fn dequantize<T: Float>(src: &[u8], dst: &mut [f32]) {
    decode_blocks(src, dst, |v: &T, out: &mut [f32; 1]| out[0] = v.to_f32());
}

/// Rounds a row to `T`, as weights and as activations (lengths checked by the caller).
pub fn quantize<T: Float>(x: &[f32], out: &mut [u8]) {
    encode_blocks(x, out, |x: &[f32; 1]| T::from_f32(x[0]));
}

/// The f64 reference dot of two rows of `T`; panics on rows shorter than `n` implies.
pub fn reference_dot<T: Float>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() >= n * T::BYTES && a.len() >= n * T::BYTES,
        "row too short"
    );
    let get = |row: &[u8], i| read_block::<T>(row, i).map_or(0.0, T::to_f32);
    (0..n)
        .map(|i| get(w, i) as f64 * get(a, i) as f64)
        .sum::<f64>() as f32
}

pub fn f32_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    reference_dot::<f32>(n, w, a)
}

pub fn f16_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    reference_dot::<f16>(n, w, a)
}

pub fn bf16_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    reference_dot::<bf16>(n, w, a)
}

// The scalar kernels: the f64 reference (four calls of it for the 4-row shapes).
pub static SCALAR_F32: DotKernels = scalar_kernels!(f32_dot, "f32*f32 scalar", F32);
pub static SCALAR_F16: DotKernels = scalar_kernels!(f16_dot, "f16*f16 scalar", F16);
pub static SCALAR_BF16: DotKernels = scalar_kernels!(bf16_dot, "bf16*bf16 scalar", Bf16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_rows_decode_to_known_values() {
        let f16s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let mut two = [0f32; 2];
        dequantize::<f16>(&f16s, &mut two);
        assert_eq!(two, [1.5, -2.0]);
        dequantize::<bf16>(&[0x80, 0x3F, 0x00, 0xC0], &mut two);
        assert_eq!(two, [1.0, -2.0]);
    }
}
