//! The format registry: one row per tensor format the engine can decode, saying what its
//! entry points are and where it can compute. Every capability question ("can the CPU
//! multiply by this weight?", "does the GPU need it rearranged?") is answered from this table,
//! and the HIP kernels' own table (`RF_QUANT_TYPES` in kernels/quant.h) is checked against it
//! by a test below, so the two cannot drift.
//!
//! Adding a tensor type: one file under `formats/` (block struct, dequantize / quantize,
//! reference and scalar dots), its `mod` line in `formats/mod.rs`, and a row here. For the GPU,
//! its `Fmt<T>` (and, for an int8 mat-vec, `QGroup<T>`) in the kernels and a row of
//! `RF_QUANT_TYPES`. Faster CPU kernels are rows in the ISA tables of [`super::dot`].

use super::dot::{DotFn, DotKernels};
use super::formats::{
    float, iq4_nl, iq4_xs, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0, q8_1, q8_k,
};
use super::GgmlType;
use crate::{Error, Result};
use half::{bf16, f16};

/// A row codec over whole blocks: lengths are checked by the callers ([`dequantize_row`],
/// [`super::quantize::quantize_row`], [`super::quantize_activations`]).
pub type DecodeFn = fn(src: &[u8], dst: &mut [f32]);
pub type EncodeFn = fn(x: &[f32], out: &mut [u8]);

/// What the GPU mat-vec (decode, up to 8 tokens) dots a weight of this type with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMatvec {
    /// int8 activations with their scales (4-way int8 dot products, the CPU's bits); the
    /// weights are rearranged into quants and scales at upload (`rf_repack`).
    Int8,
    /// f32 activations, the weights as stored.
    F32,
}

/// One tensor format.
pub struct Format {
    /// Its GGUF type, which gives the block geometry (elements and bytes per block).
    pub ty: GgmlType,
    /// The format a weight row is dotted with on the CPU (llama.cpp's pairing); `None` for
    /// formats that are only activations.
    pub activation: Option<GgmlType>,
    pub dequantize: DecodeFn,
    /// f32 into this format as model files are written (GGML's reference rounding); `None`
    /// where we write no weights of it.
    pub quantize: Option<EncodeFn>,
    /// f32 into this format as activations (the reference of the fast quantizers); `None`
    /// when it is no weight's activation format.
    pub quantize_activation: Option<EncodeFn>,
    /// The f64 reference dot with a row of `activation`.
    pub reference_dot: Option<DotFn>,

    // Capabilities.
    /// CPU dot products (the scalar set; faster ones are chosen per CPU): the CPU backend
    /// accepts weights of this type exactly when this is `Some`.
    pub cpu_dot: Option<&'static DotKernels>,
    /// GPU mat-vec for small batches, and what it reads.
    pub gpu_matvec: Option<GpuMatvec>,
    /// GPU GEMM for large batches (dequantized to f16 on the device, multiplied by BLAS).
    pub gpu_gemm: bool,
}

impl Format {
    /// Whether the GPU backend takes weights of this type (it needs both product paths).
    pub fn on_gpu(&self) -> bool {
        self.gpu_matvec.is_some() && self.gpu_gemm
    }

    /// Whether the GPU mat-vec reads int8 activations for this type (and its weights are
    /// rearranged at upload).
    pub fn gpu_int8(&self) -> bool {
        self.gpu_matvec == Some(GpuMatvec::Int8)
    }
}

/// Every format the engine decodes, one row each.
pub static FORMATS: &[Format] = &[
    Format {
        ty: GgmlType::F32,
        activation: Some(GgmlType::F32),
        dequantize: float::dequantize::<f32>,
        quantize: Some(float::quantize::<f32>),
        quantize_activation: Some(float::quantize::<f32>),
        reference_dot: Some(float::f32_dot),
        cpu_dot: Some(&float::SCALAR_F32),
        gpu_matvec: Some(GpuMatvec::F32),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::F16,
        activation: Some(GgmlType::F16),
        dequantize: float::dequantize::<f16>,
        quantize: Some(float::quantize::<f16>),
        quantize_activation: Some(float::quantize::<f16>),
        reference_dot: Some(float::f16_dot),
        cpu_dot: Some(&float::SCALAR_F16),
        gpu_matvec: Some(GpuMatvec::F32),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Bf16,
        activation: Some(GgmlType::Bf16),
        dequantize: float::dequantize::<bf16>,
        quantize: Some(float::quantize::<bf16>),
        quantize_activation: Some(float::quantize::<bf16>),
        reference_dot: Some(float::bf16_dot),
        cpu_dot: Some(&float::SCALAR_BF16),
        gpu_matvec: Some(GpuMatvec::F32),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q4_0,
        activation: Some(GgmlType::Q8_0),
        dequantize: q4_0::dequantize,
        quantize: Some(q4_0::quantize),
        quantize_activation: None,
        reference_dot: Some(q4_0::reference_dot),
        cpu_dot: Some(&q4_0::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q4_1,
        activation: Some(GgmlType::Q8_1),
        dequantize: q4_1::dequantize,
        quantize: Some(q4_1::quantize),
        quantize_activation: None,
        reference_dot: Some(q4_1::reference_dot),
        cpu_dot: Some(&q4_1::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q8_0,
        activation: Some(GgmlType::Q8_0),
        dequantize: q8_0::dequantize,
        quantize: Some(q8_0::quantize),
        quantize_activation: Some(q8_0::quantize_activations),
        reference_dot: Some(q8_0::reference_dot),
        cpu_dot: Some(&q8_0::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q8_1,
        activation: None,
        dequantize: q8_1::dequantize,
        quantize: None,
        quantize_activation: Some(q8_1::quantize_activations),
        reference_dot: None,
        cpu_dot: None,
        gpu_matvec: None,
        gpu_gemm: false,
    },
    Format {
        ty: GgmlType::Q5_0,
        activation: Some(GgmlType::Q8_0),
        dequantize: q5_0::dequantize,
        quantize: Some(q5_0::quantize),
        quantize_activation: None,
        reference_dot: Some(q5_0::reference_dot),
        cpu_dot: Some(&q5_0::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q5_1,
        activation: Some(GgmlType::Q8_1),
        dequantize: q5_1::dequantize,
        quantize: Some(q5_1::quantize),
        quantize_activation: None,
        reference_dot: Some(q5_1::reference_dot),
        cpu_dot: Some(&q5_1::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    // The K-quants, dotted with Q8_K activations (256-element super-blocks).
    Format {
        ty: GgmlType::Q2K,
        activation: Some(GgmlType::Q8K),
        dequantize: q2_k::dequantize,
        quantize: Some(q2_k::quantize),
        quantize_activation: None,
        reference_dot: Some(q2_k::reference_dot),
        cpu_dot: Some(&q2_k::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q3K,
        activation: Some(GgmlType::Q8K),
        dequantize: q3_k::dequantize,
        quantize: Some(q3_k::quantize),
        quantize_activation: None,
        reference_dot: Some(q3_k::reference_dot),
        cpu_dot: Some(&q3_k::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q4K,
        activation: Some(GgmlType::Q8K),
        dequantize: q4_k::dequantize,
        quantize: Some(q4_k::quantize),
        quantize_activation: None,
        reference_dot: Some(q4_k::reference_dot),
        cpu_dot: Some(&q4_k::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q5K,
        activation: Some(GgmlType::Q8K),
        dequantize: q5_k::dequantize,
        quantize: Some(q5_k::quantize),
        quantize_activation: None,
        reference_dot: Some(q5_k::reference_dot),
        cpu_dot: Some(&q5_k::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q6K,
        activation: Some(GgmlType::Q8K),
        dequantize: q6_k::dequantize,
        quantize: Some(q6_k::quantize),
        quantize_activation: None,
        reference_dot: Some(q6_k::reference_dot),
        cpu_dot: Some(&q6_k::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    // The IQ4 types: IQ4_NL's 32-element blocks pair with Q8_0 as Q4_0's do, IQ4_XS's
    // super-blocks with Q8_K as the K-quants'.
    Format {
        ty: GgmlType::Iq4Nl,
        activation: Some(GgmlType::Q8_0),
        dequantize: iq4_nl::dequantize,
        quantize: Some(iq4_nl::quantize),
        quantize_activation: None,
        reference_dot: Some(iq4_nl::reference_dot),
        cpu_dot: Some(&iq4_nl::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Iq4Xs,
        activation: Some(GgmlType::Q8K),
        dequantize: iq4_xs::dequantize,
        quantize: Some(iq4_xs::quantize),
        quantize_activation: None,
        reference_dot: Some(iq4_xs::reference_dot),
        cpu_dot: Some(&iq4_xs::SCALAR),
        gpu_matvec: Some(GpuMatvec::Int8),
        gpu_gemm: true,
    },
    Format {
        ty: GgmlType::Q8K,
        activation: None,
        dequantize: q8_k::dequantize,
        quantize: None,
        quantize_activation: Some(q8_k::quantize_activations),
        reference_dot: None,
        cpu_dot: None,
        gpu_matvec: None,
        gpu_gemm: false,
    },
];

/// The row of `ty`; `None` for types the engine cannot decode.
pub fn format(ty: GgmlType) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.ty == ty)
}

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
    let f = format(ty).ok_or_else(|| {
        Error::InvalidArgument(format!("dequantization of {ty} is not supported"))
    })?;
    (f.dequantize)(src, dst);
    Ok(())
}

#[cfg(test)]
mod tests;
