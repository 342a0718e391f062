//! 512-bit x86 kernels (AVX-512 F/BW/VL + VNNI): two 32-element blocks per zmm register,
//! the odd last block with the 256-bit EVEX form.

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

/// Two f16 (low half first) -> f32 lanes 0 and 1.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn f16x2(bits: u32) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
}

/// Lanes 0..8 = v[0], lanes 8..16 = v[2]: one scale per block of a pair.
#[target_feature(enable = "avx512f")]
#[inline]
fn spread_pair(v: __m128) -> __m512 {
    let idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
}

/// Two blocks' 32 quant bytes (at p0, p1) as one zmm.
///
/// # Safety
/// 32 bytes readable at p0 and at p1.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_pair(p0: *const u8, p1: *const u8) -> __m512i {
    // SAFETY: caller guarantees both 32-byte ranges are readable; loadu has no alignment needs.
    unsafe {
        let lo = _mm512_castsi256_si512(_mm256_loadu_si256(p0.cast()));
        _mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(p1.cast()))
    }
}

/// Two Q4 blocks' 16 nibble bytes -> [lo(q0), hi(q0), lo(q1), hi(q1)].
///
/// # Safety
/// 16 bytes readable at p0 and at p1.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn unpack_q4_pair(p0: *const u8, p1: *const u8) -> __m512i {
    // SAFETY: caller guarantees both 16-byte ranges are readable.
    let (q0, q1) = unsafe { (_mm_loadu_si128(p0.cast()), _mm_loadu_si128(p1.cast())) };
    let both = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(q0)),
        _mm256_broadcastsi128_si256(q1),
    );
    let shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    _mm512_and_si512(_mm512_srlv_epi64(both, shifts), _mm512_set1_epi8(0x0F))
}

/// One Q4 block's nibbles -> ymm [lo(q), hi(q)].
///
/// # Safety
/// 16 bytes readable at p.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpack_q4(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 16 readable bytes.
    let q = unsafe { _mm_loadu_si128(p.cast()) };
    let both = _mm256_srlv_epi64(
        _mm256_broadcastsi128_si256(q),
        _mm256_setr_epi64x(0, 0, 4, 4),
    );
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot512(u: __m512i, s: __m512i) -> __m512i {
    _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot256(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// Adds a ymm of 8 partial sums into the low half of a zmm accumulator.
#[target_feature(enable = "avx512f")]
#[inline]
fn widen(v: __m256) -> __m512 {
    _mm512_castps256_ps512(v)
}

/// Q4_1 x Q8_1 for R activation rows.
///
/// # Safety
/// CPU has the features; each row holds n/32 blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_1<const R: usize>(n: usize, w: *const u8, a: [*const u8; 4], out: &mut [f32; 4]) {
    let nb = n / 32;
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut accm = [_mm_setzero_ps(); 4];
    let mut i = 0;
    while i + 2 <= nb {
        // SAFETY: blocks i, i + 1 lie inside each row (caller contract).
        unsafe {
            let (w0, w1) = (w.add(i * 20), w.add(i * 20 + 20));
            let q = unpack_q4_pair(w0.add(4), w1.add(4));
            let (dm0, dm1) = (f16x2(rd(w0)), f16x2(rd(w1)));
            for r in 0..R {
                let (a0, a1) = (a[r].add(i * 36), a[r].add(i * 36 + 36));
                let isum = dot512(q, load_pair(a0.add(4), a1.add(4)));
                // [d_w*d_a, m_w*s_a] of each block, side by side
                let p = _mm_movelh_ps(
                    _mm_mul_ps(dm0, f16x2(rd(a0))),
                    _mm_mul_ps(dm1, f16x2(rd(a1))),
                );
                accm[r] = _mm_add_ps(accm[r], p);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), spread_pair(p), acc[r]);
            }
        }
        i += 2;
    }
    if i < nb {
        // SAFETY: block i lies inside each row.
        unsafe {
            let w0 = w.add(i * 20);
            let q = unpack_q4(w0.add(4));
            let dm = f16x2(rd(w0));
            for r in 0..R {
                let a0 = a[r].add(i * 36);
                let isum = dot256(q, _mm256_loadu_si256(a0.add(4).cast()));
                let p = _mm_mul_ps(dm, f16x2(rd(a0)));
                accm[r] = _mm_add_ps(accm[r], _mm_movelh_ps(p, _mm_setzero_ps()));
                let part = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(p));
                acc[r] = _mm512_add_ps(acc[r], widen(part));
            }
        }
    }
    for r in 0..R {
        let m = accm[r];
        out[r] = _mm512_reduce_add_ps(acc[r])
            + _mm_cvtss_f32(_mm_movehdup_ps(_mm_add_ps(m, _mm_movehl_ps(m, m))));
    }
}

/// Scales d_w*d_a of blocks (w0, a0) and (w1, a1) in lanes 0 and 2.
///
/// # Safety
/// 2 bytes readable at each pointer.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn scales_pair(w0: *const u8, a0: *const u8, w1: *const u8, a1: *const u8) -> __m128 {
    // SAFETY: caller guarantees each 2-byte scale is readable.
    let bits = unsafe {
        rd::<u16>(w0) as u64
            | (rd::<u16>(a0) as u64) << 16
            | (rd::<u16>(w1) as u64) << 32
            | (rd::<u16>(a1) as u64) << 48
    };
    let v = _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)); // [dw0, da0, dw1, da1]
    _mm_mul_ps(v, _mm_movehdup_ps(v))
}

/// Q4_0 x Q8_0: isum = sum(q*a) - 8*sum(a).
///
/// # Safety
/// As [`q4_1`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_0<const R: usize>(n: usize, w: *const u8, a: [*const u8; 4], out: &mut [f32; 4]) {
    let nb = n / 32;
    let mut acc = [_mm512_setzero_ps(); 4];
    let eight = _mm512_set1_epi8(8);
    let mut i = 0;
    while i + 2 <= nb {
        // SAFETY: blocks i, i + 1 lie inside each row (caller contract).
        unsafe {
            let (w0, w1) = (w.add(i * 18), w.add(i * 18 + 18));
            let q = unpack_q4_pair(w0.add(2), w1.add(2));
            for r in 0..R {
                let (a0, a1) = (a[r].add(i * 34), a[r].add(i * 34 + 34));
                let av = load_pair(a0.add(2), a1.add(2));
                let isum = _mm512_sub_epi32(dot512(q, av), dot512(eight, av));
                let d = spread_pair(scales_pair(w0, a0, w1, a1));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc[r]);
            }
        }
        i += 2;
    }
    if i < nb {
        // SAFETY: block i lies inside each row.
        unsafe {
            let w0 = w.add(i * 18);
            let q = unpack_q4(w0.add(2));
            for r in 0..R {
                let a0 = a[r].add(i * 34);
                let av = _mm256_loadu_si256(a0.add(2).cast());
                let isum = _mm256_sub_epi32(dot256(q, av), dot256(_mm256_set1_epi8(8), av));
                let d = scales_pair(w0, a0, w0, a0);
                let part = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(d));
                acc[r] = _mm512_add_ps(acc[r], widen(part));
            }
        }
    }
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(acc[r]);
    }
}

/// Q8_0 x Q8_0: |w| (u8) x (a negated where w < 0).
///
/// # Safety
/// As [`q4_1`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q8_0<const R: usize>(n: usize, w: *const u8, a: [*const u8; 4], out: &mut [f32; 4]) {
    let nb = n / 32;
    let mut acc = [_mm512_setzero_ps(); 4];
    let zero = _mm512_setzero_si512();
    let mut i = 0;
    while i + 2 <= nb {
        // SAFETY: blocks i, i + 1 lie inside each row (caller contract).
        unsafe {
            let (w0, w1) = (w.add(i * 34), w.add(i * 34 + 34));
            let wq = load_pair(w0.add(2), w1.add(2));
            let neg = _mm512_movepi8_mask(wq);
            let wabs = _mm512_abs_epi8(wq);
            for r in 0..R {
                let (a0, a1) = (a[r].add(i * 34), a[r].add(i * 34 + 34));
                let av = load_pair(a0.add(2), a1.add(2));
                let signed = _mm512_mask_sub_epi8(av, neg, zero, av);
                let d = spread_pair(scales_pair(w0, a0, w1, a1));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot512(wabs, signed)), d, acc[r]);
            }
        }
        i += 2;
    }
    if i < nb {
        // SAFETY: block i lies inside each row.
        unsafe {
            let w0 = w.add(i * 34);
            let wq = _mm256_loadu_si256(w0.add(2).cast());
            for r in 0..R {
                let a0 = a[r].add(i * 34);
                let av = _mm256_sign_epi8(_mm256_loadu_si256(a0.add(2).cast()), wq);
                let isum = dot256(_mm256_abs_epi8(wq), av);
                let d = scales_pair(w0, a0, w0, a0);
                let part = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(d));
                acc[r] = _mm512_add_ps(acc[r], widen(part));
            }
        }
    }
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(acc[r]);
    }
}

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

/// Safe `DotFn`/`Dot4Fn` entry points around a raw kernel: one length check, then the call.
macro_rules! entries {
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

entries!(q4_0_one, q4_0_four, q4_0, 32, 18, 34);
entries!(q4_1_one, q4_1_four, q4_1, 32, 20, 36);
entries!(q8_0_one, q8_0_four, q8_0, 32, 34, 34);
entries!(f32_one, f32_four, f32k, 1, 4, 4);
entries!(f16_one, f16_four, f16k, 1, 2, 2);
entries!(bf16_one, bf16_four, bf16k, 1, 2, 2);

// One weight row is as wide as a block pair here; rows4 stays a loop of one-row calls.
super::rows4_from_one!(q4_0_rows4, q4_0_one);
super::rows4_from_one!(q4_1_rows4, q4_1_one);
super::rows4_from_one!(q8_0_rows4, q8_0_one);
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
    k!(f16_one, f16_four, f16_rows4, "f16*f16 avx512", F16),
    k!(bf16_one, bf16_four, bf16_rows4, "bf16*bf16 avx512", Bf16),
    k!(f32_one, f32_four, f32_rows4, "f32*f32 avx512", F32),
];
