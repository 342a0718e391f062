//! AVX-512 kernels. The float kernels (F32/F16/BF16) use 512-bit registers, 16 elements per
//! load. The 32-element quantized kernels run the canonical summation order (canon256.rs) with
//! the EVEX `vpdpbusd` on ymm registers: the order works block by block, and a 32-element block
//! is exactly one ymm of quant bytes, so wider registers would only add cross-block shuffles.
//! Q4_K and Q6_K work in zmm: their 256-element super-blocks hold two sub-blocks per 64 bytes,
//! and all the integer work inside a super-block may be grouped freely.

use super::canon256::{canonical_kernels256, entries};
use super::kquant256::{kquant_entries, kquant_kernels256};
use super::{check_lengths, DotKernels};
use crate::quant::GgmlType;
use half::{bf16, f16};
use std::arch::x86_64::*;

pub(super) fn detected() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Reads a `T` (integer or float) from `p` in native (= file, little-endian) byte order.
///
/// # Safety
/// `p..p + size_of::<T>()` must be readable.
#[inline(always)]
unsafe fn rd<T: Copy>(p: *const u8) -> T {
    // SAFETY: caller guarantees the bytes are readable; read_unaligned has no alignment needs.
    unsafe { p.cast::<T>().read_unaligned() }
}

canonical_kernels256!(
    vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    crate::quant::dot::canon256::dot_avx512vnni,
    crate::quant::dot::canon256::unpack_q4_mask,
    4,
    128u8,
    crate::quant::dot::canon256::unpack_q5_masked
);

entries!(q4_0_one, q4_0_four, q4_0_rows4, vnni::q4_0, 18, 34);
entries!(q4_1_one, q4_1_four, q4_1_rows4, vnni::q4_1, 20, 36);
entries!(q8_0_one, q8_0_four, q8_0_rows4, vnni::q8_0, 34, 34);
entries!(q5_0_one, q5_0_four, q5_0_rows4, vnni::q5_0, 22, 34);
entries!(q5_1_one, q5_1_four, q5_1_rows4, vnni::q5_1, 24, 36);
entries!(iq4_nl_one, iq4_nl_four, iq4_nl_rows4, vnni::iq4_nl, 18, 34);

kquant_kernels256!(
    kvnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    crate::quant::dot::kquant256::madd_avx512vnni
);
/// Q4_K and Q6_K in zmm (`kquant256::q4k_cell_zmm`, `q6k_cell_zmm`). Zen 5, decode tiles of
/// 4096 (benches/quant_dot.rs): Q4_K 55 ns per row against the ymm kernel's 79 (`hot`; 38
/// GB/s against 26 streamed), Q6_K 53 against 79-103 (46 GB/s against 32-40 streamed).
mod kzmm {
    use crate::quant::dot::kquant256::{kquant_tile, q4k_cell_zmm, q6k_cell_zmm};
    kquant_tile!(
        q4_k,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        crate::quant::dot::kquant256::madd_avx512vnni,
        wb = 144,
        d = 0,
        dmin = Some(2),
        cell = q4k_cell_zmm
    );
    kquant_tile!(
        q6_k,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        crate::quant::dot::kquant256::madd_avx512vnni,
        wb = 210,
        d = 208,
        dmin = None,
        cell = q6k_cell_zmm
    );
}
kquant_entries!(q4_k_one, q4_k_four, q4_k_rows4, kzmm::q4_k, 144);
// The 256-bit one stays in the table behind it, for the benches and the bit-identity tests.
kquant_entries!(
    q4_k_ymm_one,
    q4_k_ymm_four,
    q4_k_ymm_rows4,
    kvnni::q4_k,
    144
);
kquant_entries!(q6_k_one, q6_k_four, q6_k_rows4, kzmm::q6_k, 210);
kquant_entries!(
    q6_k_ymm_one,
    q6_k_ymm_four,
    q6_k_ymm_rows4,
    kvnni::q6_k,
    210
);
kquant_entries!(q5_k_one, q5_k_four, q5_k_rows4, kvnni::q5_k, 176);
kquant_entries!(q2_k_one, q2_k_four, q2_k_rows4, kvnni::q2_k, 84);
kquant_entries!(q3_k_one, q3_k_four, q3_k_rows4, kvnni::q3_k, 110);
kquant_entries!(iq4_xs_one, iq4_xs_four, iq4_xs_rows4, kvnni::iq4_xs, 136);

/// Float kernels: 16 elements per load, two accumulators per row, scalar tail.
macro_rules! float_kernel {
    ($name:ident, $size:expr, $load16:ident, $load1:ident) => {
        /// # Safety
        /// CPU has the features; rows hold n elements.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name<const R: usize>(
            n: usize,
            w: *const u8,
            a: [*const u8; 4],
            out: &mut [f32; 4],
        ) {
            let mut acc = [[_mm512_setzero_ps(); 2]; 4];
            let mut i = 0;
            while i + 32 <= n {
                // SAFETY: elements i..i + 32 are readable in each row.
                unsafe {
                    let w0 = $load16(w.add(i * $size));
                    let w1 = $load16(w.add((i + 16) * $size));
                    for r in 0..R {
                        acc[r][0] = _mm512_fmadd_ps(w0, $load16(a[r].add(i * $size)), acc[r][0]);
                        acc[r][1] =
                            _mm512_fmadd_ps(w1, $load16(a[r].add((i + 16) * $size)), acc[r][1]);
                    }
                }
                i += 32;
            }
            for r in 0..R {
                let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
                for j in i..n {
                    // SAFETY: element j < n is readable in each row.
                    unsafe {
                        let x: f32 = $load1(w.add(j * $size));
                        let y: f32 = $load1(a[r].add(j * $size));
                        s += x * y;
                    }
                }
                out[r] = s;
            }
        }
    };
}

/// # Safety
/// 64 readable bytes at p.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn ld_f32(p: *const u8) -> __m512 {
    // SAFETY: caller guarantees 64 readable bytes.
    unsafe { _mm512_loadu_ps(p.cast()) }
}
/// # Safety
/// 32 readable bytes at p.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn ld_f16(p: *const u8) -> __m512 {
    // SAFETY: caller guarantees 32 readable bytes.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}
/// # Safety
/// 32 readable bytes at p. bf16 -> f32 is exact: the bits shifted up by 16.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn ld_bf16(p: *const u8) -> __m512 {
    // SAFETY: caller guarantees 32 readable bytes.
    let h = unsafe { _mm256_loadu_si256(p.cast()) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

/// # Safety
/// 4 readable bytes at p.
unsafe fn sc_f32(p: *const u8) -> f32 {
    // SAFETY: caller guarantees 4 readable bytes.
    unsafe { rd(p) }
}
/// # Safety
/// 2 readable bytes at p.
unsafe fn sc_f16(p: *const u8) -> f32 {
    // SAFETY: caller guarantees 2 readable bytes.
    f16::from_bits(unsafe { rd(p) }).to_f32()
}
/// # Safety
/// 2 readable bytes at p.
unsafe fn sc_bf16(p: *const u8) -> f32 {
    // SAFETY: caller guarantees 2 readable bytes.
    bf16::from_bits(unsafe { rd(p) }).to_f32()
}

float_kernel!(f32k, 4, ld_f32, sc_f32);
float_kernel!(f16k, 2, ld_f16, sc_f16);
float_kernel!(bf16k, 2, ld_bf16, sc_bf16);

/// Safe `DotFn`/`Dot4Fn` entry points around a raw float kernel: one length check, then the call.
macro_rules! float_entries {
    ($one:ident, $four:ident, $k:ident, $blk:expr, $wb:expr, $ab:expr) => {
        fn $one(n: usize, w: &[u8], a: &[u8]) -> f32 {
            check_lengths(n, w, a, $blk, $wb, $ab);
            let mut out = [0f32; 4];
            // SAFETY: lengths checked above; this table is only handed out when `detected()`.
            unsafe { $k::<1>(n, w.as_ptr(), [a.as_ptr(); 4], &mut out) };
            out[0]
        }
        fn $four(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            for r in a {
                check_lengths(n, w, r, $blk, $wb, $ab);
            }
            // SAFETY: as above, for all four rows.
            unsafe { $k::<4>(n, w.as_ptr(), a.map(|r| r.as_ptr()), out) };
        }
    };
}

float_entries!(f32_one, f32_four, f32k, 1, 4, 4);
float_entries!(f16_one, f16_four, f16k, 1, 2, 2);
float_entries!(bf16_one, bf16_four, bf16k, 1, 2, 2);

// One float row is as wide as a register pair here; rows4 stays a loop of one-row calls.
super::rows4_from_one!(f32_rows4, f32_one);
super::rows4_from_one!(f16_rows4, f16_one);
super::rows4_from_one!(bf16_rows4, bf16_one);

macro_rules! k {
    ($one:ident, $four:ident, $rows4:ident, $name:literal, $t:ident) => {
        DotKernels {
            one: $one,
            four: $four,
            rows4: $rows4,
            name: $name,
            weight: GgmlType::$t,
        }
    };
}

pub(super) static KERNELS: &[DotKernels] = &[
    k!(
        q4_0_one,
        q4_0_four,
        q4_0_rows4,
        "q4_0*q8_0 avx512-vnni",
        Q4_0
    ),
    k!(
        q4_1_one,
        q4_1_four,
        q4_1_rows4,
        "q4_1*q8_1 avx512-vnni",
        Q4_1
    ),
    k!(
        q8_0_one,
        q8_0_four,
        q8_0_rows4,
        "q8_0*q8_0 avx512-vnni",
        Q8_0
    ),
    k!(q5_0_one, q5_0_four, q5_0_rows4, "q5_0*q8_0 avx512", Q5_0),
    k!(q5_1_one, q5_1_four, q5_1_rows4, "q5_1*q8_1 avx512", Q5_1),
    k!(q4_k_one, q4_k_four, q4_k_rows4, "q4_k*q8_k avx512", Q4K),
    k!(
        q4_k_ymm_one,
        q4_k_ymm_four,
        q4_k_ymm_rows4,
        "q4_k*q8_k avx512-ymm",
        Q4K
    ),
    k!(q6_k_one, q6_k_four, q6_k_rows4, "q6_k*q8_k avx512", Q6K),
    k!(
        q6_k_ymm_one,
        q6_k_ymm_four,
        q6_k_ymm_rows4,
        "q6_k*q8_k avx512-ymm",
        Q6K
    ),
    k!(q5_k_one, q5_k_four, q5_k_rows4, "q5_k*q8_k avx512", Q5K),
    k!(q2_k_one, q2_k_four, q2_k_rows4, "q2_k*q8_k avx512", Q2K),
    k!(q3_k_one, q3_k_four, q3_k_rows4, "q3_k*q8_k avx512", Q3K),
    k!(
        iq4_nl_one,
        iq4_nl_four,
        iq4_nl_rows4,
        "iq4_nl*q8_0 avx512",
        Iq4Nl
    ),
    k!(
        iq4_xs_one,
        iq4_xs_four,
        iq4_xs_rows4,
        "iq4_xs*q8_k avx512",
        Iq4Xs
    ),
    k!(f16_one, f16_four, f16_rows4, "f16*f16 avx512", F16),
    k!(bf16_one, bf16_four, bf16_rows4, "bf16*bf16 avx512", Bf16),
    k!(f32_one, f32_four, f32_rows4, "f32*f32 avx512", F32),
];
