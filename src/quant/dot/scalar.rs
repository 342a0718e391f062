//! The scalar reference kernels (see [`crate::quant::reference::dot`]) as a kernel table.

use super::DotKernels;
use crate::quant::reference::dot as r;
use crate::quant::GgmlType;

macro_rules! four {
    ($name:ident, $one:path) => {
        fn $name(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            for (o, a) in out.iter_mut().zip(a) {
                *o = $one(n, w, a);
            }
        }
    };
}
macro_rules! rows4 {
    ($name:ident, $one:path) => {
        fn $name(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32; 4]) {
            for (o, w) in out.iter_mut().zip(w) {
                *o = $one(n, w, a);
            }
        }
    };
}
rows4!(q4_0_r4, r::q4_0_q8_0);
rows4!(q4_1_r4, r::q4_1_q8_1);
rows4!(q8_0_r4, r::q8_0_q8_0);
rows4!(f16_r4, r::f16_f16);
rows4!(bf16_r4, r::bf16_bf16);
rows4!(f32_r4, r::f32_f32);

four!(q4_0_4, r::q4_0_q8_0);
four!(q4_1_4, r::q4_1_q8_1);
four!(q8_0_4, r::q8_0_q8_0);
four!(f16_4, r::f16_f16);
four!(bf16_4, r::bf16_bf16);
four!(f32_4, r::f32_f32);

pub(super) static KERNELS: &[DotKernels] = &[
    DotKernels {
        one: r::q4_0_q8_0,
        four: q4_0_4,
        rows4: q4_0_r4,
        name: "q4_0*q8_0 scalar",
        weight: GgmlType::Q4_0,
    },
    DotKernels {
        one: r::q4_1_q8_1,
        four: q4_1_4,
        rows4: q4_1_r4,
        name: "q4_1*q8_1 scalar",
        weight: GgmlType::Q4_1,
    },
    DotKernels {
        one: r::q8_0_q8_0,
        four: q8_0_4,
        rows4: q8_0_r4,
        name: "q8_0*q8_0 scalar",
        weight: GgmlType::Q8_0,
    },
    DotKernels {
        one: r::f16_f16,
        four: f16_4,
        rows4: f16_r4,
        name: "f16*f16 scalar",
        weight: GgmlType::F16,
    },
    DotKernels {
        one: r::bf16_bf16,
        four: bf16_4,
        rows4: bf16_r4,
        name: "bf16*bf16 scalar",
        weight: GgmlType::Bf16,
    },
    DotKernels {
        one: r::f32_f32,
        four: f32_4,
        rows4: f32_r4,
        name: "f32*f32 scalar",
        weight: GgmlType::F32,
    },
];
