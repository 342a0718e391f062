//! aarch64 NEON kernels (NEON is baseline on aarch64). Kept deliberately plain: widening
//! multiplies (`smull`) and pairwise adds, no `sdot` (unstable in Rust's std::arch), one block
//! per step. Types without a kernel here (F16, BF16) fall back to the scalar table.
//!
//! The quantized kernels follow the canonical order of scalar.rs bit for bit: the block's
//! exact integer sum from the vector unit, then the scalar float steps (`f32::mul_add` is
//! the fused `fmadd` here) into 32 lane accumulators, then the same butterfly.
//! Q5_0 / Q5_1 are Q4_0 / Q4_1 with the fifth bits spread from `qh` (`vtst`). The K-quants
//! (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) do the same per 256-element super-block: the sub-blocks'
//! integer dots times their integer scales, summed exactly in i32, then the scalar float
//! steps of their canonical order.
//! IQ4_NL / IQ4_XS look their indices up in the 16-byte table with one `tbl` per 16
//! elements, then dot as Q4_0 / the K-quants do.
//! Tested under qemu-aarch64 (see tests.rs).

use super::scalar::{butterfly, LANES};
use super::{check_lengths, DotKernels};
use crate::quant::GgmlType;
use std::arch::aarch64::*;

/// 16 x (s8 * s8) summed into 4 i32 lanes (|product| <= 128 * 128 fits i16).
#[target_feature(enable = "neon")]
#[inline]
fn dot16(x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    let hi = vmull_high_s8(x, y);
    vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi))
}

/// Reads a `T` from `p` (native = little-endian byte order).
///
/// # Safety
/// `size_of::<T>()` bytes readable at `p`.
#[inline(always)]
unsafe fn rd<T: Copy>(p: *const u8) -> T {
    // SAFETY: caller guarantees the bytes are readable; read_unaligned has no alignment needs.
    unsafe { p.cast::<T>().read_unaligned() }
}

fn h(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// A Q4 block's 16 nibble bytes -> (elements 0..16, elements 16..32) as s8, minus `offset`.
///
/// # Safety
/// 16 bytes readable at p.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn unpack_q4(p: *const u8, offset: i8) -> (int8x16_t, int8x16_t) {
    // SAFETY: caller guarantees 16 readable bytes.
    let q = unsafe { vld1q_u8(p) };
    let lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q));
    (
        vsubq_s8(lo, vdupq_n_s8(offset)),
        vsubq_s8(hi, vdupq_n_s8(offset)),
    )
}

/// # Safety
/// 32 bytes readable at p.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load32(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: caller guarantees 32 readable bytes.
    unsafe { (vld1q_s8(p.cast()), vld1q_s8(p.add(16).cast())) }
}

fn q4_0_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 32, 18, 34);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q4_0_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q4_0_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 32 {
        // SAFETY: block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 18), a.add(i * 34));
            let (x0, x1) = unpack_q4(wp.add(2), 8);
            let (y0, y1) = load32(ap.add(2));
            let isum = vaddvq_s32(vaddq_s32(dot16(x0, y0), dot16(x1, y1)));
            let dd = h(rd(wp)) * h(rd(ap));
            acc[i % LANES] = (isum as f32).mul_add(dd, acc[i % LANES]);
        }
    }
    butterfly(acc)
}

fn q4_1_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 32, 20, 36);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q4_1_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q4_1_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 32 {
        // SAFETY: block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 20), a.add(i * 36));
            let (x0, x1) = unpack_q4(wp.add(4), 0);
            let (y0, y1) = load32(ap.add(4));
            let isum = vaddvq_s32(vaddq_s32(dot16(x0, y0), dot16(x1, y1)));
            let dd = h(rd(wp)) * h(rd(ap));
            let l = i % LANES;
            acc[l] = (isum as f32).mul_add(dd, acc[l]);
            acc[l] = h(rd(wp.add(2))).mul_add(h(rd(ap.add(2))), acc[l]);
        }
    }
    butterfly(acc)
}

fn q8_0_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 32, 34, 34);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q8_0_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q8_0_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 32 {
        // SAFETY: block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 34), a.add(i * 34));
            let (x0, x1) = load32(wp.add(2));
            let (y0, y1) = load32(ap.add(2));
            let isum = vaddvq_s32(vaddq_s32(dot16(x0, y0), dot16(x1, y1)));
            let dd = h(rd(wp)) * h(rd(ap));
            acc[i % LANES] = (isum as f32).mul_add(dd, acc[i % LANES]);
        }
    }
    butterfly(acc)
}

/// A Q5_0 / Q5_1 block's quants (nibbles at `qs`, fifth bits in the little-endian u32 at
/// `qh`, bit j for element j) -> (elements 0..16, elements 16..32) as s8, minus `offset`.
///
/// # Safety
/// 16 bytes readable at qs, 4 at qh.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn unpack_q5(qs: *const u8, qh: *const u8, offset: i8) -> (int8x16_t, int8x16_t) {
    // SAFETY: caller guarantees 16 readable bytes at qs and 4 at qh.
    let (q, high) = unsafe { (vld1q_u8(qs), qh.cast::<[u8; 4]>().read_unaligned()) };
    // Byte j of a half gets the qh byte holding its bit, then keeps only that bit (as 0x10).
    let bit = vcombine_u8(
        vcreate_u8(0x8040_2010_0804_0201),
        vcreate_u8(0x8040_2010_0804_0201),
    );
    let fifth = |b0: u8, b1: u8| {
        let spread = vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1));
        vandq_u8(vtstq_u8(spread, bit), vdupq_n_u8(0x10))
    };
    let lo = vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0F)), fifth(high[0], high[1]));
    let hi = vorrq_u8(vshrq_n_u8::<4>(q), fifth(high[2], high[3]));
    (
        vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(offset)),
        vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(offset)),
    )
}

fn q5_0_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 32, 22, 34);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q5_0_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q5_0_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 32 {
        // SAFETY: block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 22), a.add(i * 34));
            let (x0, x1) = unpack_q5(wp.add(6), wp.add(2), 16);
            let (y0, y1) = load32(ap.add(2));
            let isum = vaddvq_s32(vaddq_s32(dot16(x0, y0), dot16(x1, y1)));
            let dd = h(rd(wp)) * h(rd(ap));
            acc[i % LANES] = (isum as f32).mul_add(dd, acc[i % LANES]);
        }
    }
    butterfly(acc)
}

fn q5_1_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 32, 24, 36);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q5_1_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q5_1_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 32 {
        // SAFETY: block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 24), a.add(i * 36));
            let (x0, x1) = unpack_q5(wp.add(8), wp.add(4), 0);
            let (y0, y1) = load32(ap.add(4));
            let isum = vaddvq_s32(vaddq_s32(dot16(x0, y0), dot16(x1, y1)));
            let dd = h(rd(wp)) * h(rd(ap));
            let l = i % LANES;
            acc[l] = (isum as f32).mul_add(dd, acc[l]);
            acc[l] = h(rd(wp.add(2))).mul_add(h(rd(ap.add(2))), acc[l]);
        }
    }
    butterfly(acc)
}

fn q4_k_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 256, 144, 292);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q4_k_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q4_k_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    use crate::quant::formats::q4_k::scales_mins;
    let mut acc = [0f32; LANES];
    for i in 0..n / 256 {
        // SAFETY: super-block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 144), a.add(i * 292));
            let (sc, m) = scales_mins(&rd::<[u8; 12]>(wp.add(4)));
            let mut iacc = vdupq_n_s32(0);
            // Bytes 32c..32c + 32 of the quants: sub-block 2c low nibbles, 2c + 1 high.
            for c in 0..4 {
                let q0 = vld1q_u8(wp.add(16 + 32 * c));
                let q1 = vld1q_u8(wp.add(16 + 32 * c + 16));
                let lo = |q: uint8x16_t| vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));
                let hi = |q: uint8x16_t| vreinterpretq_s8_u8(vshrq_n_u8::<4>(q));
                let (a0, a1) = load32(ap.add(4 + 64 * c));
                let (a2, a3) = load32(ap.add(4 + 64 * c + 32));
                let even = vaddq_s32(dot16(lo(q0), a0), dot16(lo(q1), a1));
                let odd = vaddq_s32(dot16(hi(q0), a2), dot16(hi(q1), a3));
                iacc = vmlaq_n_s32(iacc, even, sc[2 * c] as i32);
                iacc = vmlaq_n_s32(iacc, odd, sc[2 * c + 1] as i32);
            }
            let msum = msum_pairs(&m, rd(ap.add(260)));
            step_with_mins(
                &mut acc[i % LANES],
                vaddvq_s32(iacc),
                msum,
                wp,
                wp.add(2),
                ap,
            );
        }
    }
    butterfly(acc)
}

/// Σ_j m_j · (Q8_K group sums 2j and 2j + 1): the min term of a super-block of 8 sub-blocks
/// of 32 (Q4_K, Q5_K), exact in i32.
fn msum_pairs(m: &[u8; 8], bsums: [i16; 16]) -> i32 {
    (0..8)
        .map(|j| m[j] as i32 * (bsums[2 * j] as i32 + bsums[2 * j + 1] as i32))
        .sum()
}

/// The canonical float steps of one super-block with mins (formats/q4_k.rs
/// `canonical_step`): `acc += isum * (d * a.d)`, then `acc += -msum * (dmin * a.d)`, each a
/// fused multiply-add, with the f16 `d` at `d`, `dmin` at `dmin` and the Q8_K block at `ap`.
///
/// # Safety
/// 2 bytes readable at `d` and `dmin`, 4 at `ap`.
#[inline(always)]
unsafe fn step_with_mins(
    acc: &mut f32,
    isum: i32,
    msum: i32,
    d: *const u8,
    dmin: *const u8,
    ap: *const u8,
) {
    // SAFETY: caller guarantees the reads.
    let (d, dmin, ad): (u16, u16, f32) = unsafe { (rd(d), rd(dmin), rd(ap)) };
    *acc = (isum as f32).mul_add(h(d) * ad, *acc);
    *acc = (-(msum as f32)).mul_add(h(dmin) * ad, *acc);
}

fn q5_k_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 256, 176, 292);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q5_k_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// Q4_K's kernel with the fifth bits: bit j of `qh[l]` (bytes 16..48) is bit 4 of element l
/// of sub-block j, moved there by one `vtst` against `1 << j` and a mask.
///
/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q5_k_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    use crate::quant::formats::q4_k::scales_mins;
    let mut acc = [0f32; LANES];
    for i in 0..n / 256 {
        // SAFETY: super-block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 176), a.add(i * 292));
            let (sc, m) = scales_mins(&rd::<[u8; 12]>(wp.add(4)));
            // Fifth bits of elements 0..16 and 16..32 of every sub-block.
            let (qh0, qh1) = (vld1q_u8(wp.add(16)), vld1q_u8(wp.add(32)));
            let mut iacc = vdupq_n_s32(0);
            // Bytes 32c..32c + 32 of the nibbles: sub-block 2c low, 2c + 1 high.
            for c in 0..4 {
                let q0 = vld1q_u8(wp.add(48 + 32 * c));
                let q1 = vld1q_u8(wp.add(48 + 32 * c + 16));
                let five = |nibbles: uint8x16_t, qh: uint8x16_t, j: usize| {
                    let bit = vandq_u8(vtstq_u8(qh, vdupq_n_u8(1 << j)), vdupq_n_u8(0x10));
                    vreinterpretq_s8_u8(vorrq_u8(nibbles, bit))
                };
                let lo = |q: uint8x16_t| vandq_u8(q, vdupq_n_u8(0x0F));
                let hi = |q: uint8x16_t| vshrq_n_u8::<4>(q);
                let (a0, a1) = load32(ap.add(4 + 64 * c));
                let (a2, a3) = load32(ap.add(4 + 64 * c + 32));
                let (je, jo) = (2 * c, 2 * c + 1);
                let even = vaddq_s32(
                    dot16(five(lo(q0), qh0, je), a0),
                    dot16(five(lo(q1), qh1, je), a1),
                );
                let odd = vaddq_s32(
                    dot16(five(hi(q0), qh0, jo), a2),
                    dot16(five(hi(q1), qh1, jo), a3),
                );
                iacc = vmlaq_n_s32(iacc, even, sc[je] as i32);
                iacc = vmlaq_n_s32(iacc, odd, sc[jo] as i32);
            }
            let msum = msum_pairs(&m, rd(ap.add(260)));
            step_with_mins(
                &mut acc[i % LANES],
                vaddvq_s32(iacc),
                msum,
                wp,
                wp.add(2),
                ap,
            );
        }
    }
    butterfly(acc)
}

/// Bits 2k..2k + 2 of each byte of `q` (k in 0..4), as s8: the 2-bit fields of Q2_K and Q3_K
/// (element 32k + l of a 128-element half sits in byte l).
#[target_feature(enable = "neon")]
#[inline]
fn two_bits(q: uint8x16_t, k: usize) -> uint8x16_t {
    vandq_u8(vshlq_u8(q, vdupq_n_s8(-2 * k as i8)), vdupq_n_u8(3))
}

fn q2_k_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 256, 84, 292);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q2_k_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// Per half h and field k the 32 bytes `qs[32h..32h + 32]` hold sub-blocks 8h + 2k (bytes
/// 0..16) and 8h + 2k + 1 (16..32); the scale is the low nibble of `scales[j]`, the min the
/// high one (times Q8_K group sum j).
///
/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q2_k_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 256 {
        // SAFETY: super-block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 84), a.add(i * 292));
            let scales: [u8; 16] = rd(wp);
            let mut iacc = vdupq_n_s32(0);
            for half in 0..2 {
                let q0 = vld1q_u8(wp.add(16 + 32 * half));
                let q1 = vld1q_u8(wp.add(16 + 32 * half + 16));
                for k in 0..4 {
                    let (a0, a1) = load32(ap.add(4 + 128 * half + 32 * k));
                    let j = 8 * half + 2 * k;
                    let x0 = vreinterpretq_s8_u8(two_bits(q0, k));
                    let x1 = vreinterpretq_s8_u8(two_bits(q1, k));
                    iacc = vmlaq_n_s32(iacc, dot16(x0, a0), (scales[j] & 0x0F) as i32);
                    iacc = vmlaq_n_s32(iacc, dot16(x1, a1), (scales[j + 1] & 0x0F) as i32);
                }
            }
            let bsums: [i16; 16] = rd(ap.add(260));
            let msum: i32 = (0..16)
                .map(|j| (scales[j] >> 4) as i32 * bsums[j] as i32)
                .sum();
            step_with_mins(
                &mut acc[i % LANES],
                vaddvq_s32(iacc),
                msum,
                wp.add(80),
                wp.add(82),
                ap,
            );
        }
    }
    butterfly(acc)
}

fn q3_k_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 256, 110, 292);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q3_k_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// Q2_K's field walk with a third bit: bit 4h + k of `hmask[l]` set means the quant is its
/// two low bits, clear means they minus 4 (`vbic` of 4 by the `vtst` mask). Scales are
/// signed (formats/q3_k.rs `scale`), the float step Q6_K's.
///
/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q3_k_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    use crate::quant::formats::q3_k::scale;
    let mut acc = [0f32; LANES];
    for i in 0..n / 256 {
        // SAFETY: super-block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 110), a.add(i * 292));
            let packed: [u8; 12] = rd(wp.add(96));
            let (hm0, hm1) = (vld1q_u8(wp), vld1q_u8(wp.add(16)));
            let mut iacc = vdupq_n_s32(0);
            for half in 0..2 {
                let q0 = vld1q_u8(wp.add(32 + 32 * half));
                let q1 = vld1q_u8(wp.add(32 + 32 * half + 16));
                for k in 0..4 {
                    let bit = vdupq_n_u8(1 << (4 * half + k));
                    let three = |q: uint8x16_t, hm: uint8x16_t| {
                        let minus = vbicq_u8(vdupq_n_u8(4), vtstq_u8(hm, bit));
                        vsubq_s8(
                            vreinterpretq_s8_u8(two_bits(q, k)),
                            vreinterpretq_s8_u8(minus),
                        )
                    };
                    let (a0, a1) = load32(ap.add(4 + 128 * half + 32 * k));
                    let j = 8 * half + 2 * k;
                    iacc = vmlaq_n_s32(iacc, dot16(three(q0, hm0), a0), scale(j, &packed));
                    iacc = vmlaq_n_s32(iacc, dot16(three(q1, hm1), a1), scale(j + 1, &packed));
                }
            }
            let dd = h(rd(wp.add(108))) * rd::<f32>(ap);
            let l = i % LANES;
            acc[l] = (vaddvq_s32(iacc) as f32).mul_add(dd, acc[l]);
        }
    }
    butterfly(acc)
}

/// 16 IQ4 index bytes at `p` -> the table values of (elements 0..16, elements 16..32) as s8,
/// one table lookup (`tbl`) each.
///
/// # Safety
/// 16 bytes readable at p.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn unpack_iq4(p: *const u8) -> (int8x16_t, int8x16_t) {
    let table = crate::quant::formats::iq4_nl::VALUES;
    // SAFETY: caller guarantees 16 readable bytes at p; the table is 16 bytes.
    let (q, t) = unsafe { (vld1q_u8(p), vld1q_s8(table.as_ptr())) };
    (
        vqtbl1q_s8(t, vandq_u8(q, vdupq_n_u8(0x0F))),
        vqtbl1q_s8(t, vshrq_n_u8::<4>(q)),
    )
}

fn iq4_nl_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 32, 18, 34);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { iq4_nl_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn iq4_nl_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 32 {
        // SAFETY: block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 18), a.add(i * 34));
            let (x0, x1) = unpack_iq4(wp.add(2));
            let (y0, y1) = load32(ap.add(2));
            let isum = vaddvq_s32(vaddq_s32(dot16(x0, y0), dot16(x1, y1)));
            let dd = h(rd(wp)) * h(rd(ap));
            acc[i % LANES] = (isum as f32).mul_add(dd, acc[i % LANES]);
        }
    }
    butterfly(acc)
}

fn iq4_xs_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 256, 136, 292);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { iq4_xs_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn iq4_xs_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    use crate::quant::formats::iq4_xs::scales;
    let mut acc = [0f32; LANES];
    for i in 0..n / 256 {
        // SAFETY: super-block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 136), a.add(i * 292));
            let sc = scales(rd(wp.add(2)), &rd::<[u8; 4]>(wp.add(4)));
            let mut iacc = vdupq_n_s32(0);
            for (j, &s) in sc.iter().enumerate() {
                let (x0, x1) = unpack_iq4(wp.add(8 + 16 * j));
                let (y0, y1) = load32(ap.add(4 + 32 * j));
                iacc = vmlaq_n_s32(iacc, vaddq_s32(dot16(x0, y0), dot16(x1, y1)), s);
            }
            let isum = vaddvq_s32(iacc);
            let dd = h(rd(wp)) * rd::<f32>(ap);
            acc[i % LANES] = (isum as f32).mul_add(dd, acc[i % LANES]);
        }
    }
    butterfly(acc)
}

fn q6_k_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 256, 210, 292);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { q6_k_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn q6_k_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n / 256 {
        // SAFETY: super-block i is inside both rows (caller contract).
        unsafe {
            let (wp, ap) = (w.add(i * 210), a.add(i * 292));
            let sc: [i8; 16] = rd(wp.add(192));
            let mut iacc = vdupq_n_s32(0);
            // Half `half`, 16-element part t of each 32-element quarter k: sub-block
            // 8 half + 2k + t; quant = nibble | (bits 2k..2k+2 of qh) << 4, minus 32.
            for half in 0..2 {
                for t in 0..2 {
                    let ql0 = vld1q_u8(wp.add(64 * half + 16 * t));
                    let ql1 = vld1q_u8(wp.add(64 * half + 32 + 16 * t));
                    let qh = vld1q_u8(wp.add(128 + 32 * half + 16 * t));
                    let low = vdupq_n_u8(0x0F);
                    let top = |bits: uint8x16_t| vshlq_n_u8::<4>(vandq_u8(bits, vdupq_n_u8(3)));
                    let q = [
                        vorrq_u8(vandq_u8(ql0, low), top(qh)),
                        vorrq_u8(vandq_u8(ql1, low), top(vshrq_n_u8::<2>(qh))),
                        vorrq_u8(vshrq_n_u8::<4>(ql0), top(vshrq_n_u8::<4>(qh))),
                        vorrq_u8(vshrq_n_u8::<4>(ql1), top(vshrq_n_u8::<6>(qh))),
                    ];
                    for (k, &qk) in q.iter().enumerate() {
                        let qs = vsubq_s8(vreinterpretq_s8_u8(qk), vdupq_n_s8(32));
                        let av = vld1q_s8(ap.add(4 + 128 * half + 32 * k + 16 * t).cast());
                        let j = 8 * half + 2 * k + t;
                        iacc = vmlaq_n_s32(iacc, dot16(qs, av), sc[j] as i32);
                    }
                }
            }
            let dd = h(rd(wp.add(208))) * rd::<f32>(ap);
            let l = i % LANES;
            acc[l] = (vaddvq_s32(iacc) as f32).mul_add(dd, acc[l]);
        }
    }
    butterfly(acc)
}

fn f32_one(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_lengths(n, w, a, 1, 4, 4);
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { f32_one_raw(n, w.as_ptr(), a.as_ptr()) }
}

/// # Safety
/// Rows hold `n` elements (checked by the caller).
#[target_feature(enable = "neon")]
unsafe fn f32_one_raw(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: elements i..i + 4 are inside both rows.
        unsafe {
            acc = vfmaq_f32(
                acc,
                vld1q_f32(w.add(i * 4).cast()),
                vld1q_f32(a.add(i * 4).cast()),
            );
        }
        i += 4;
    }
    let mut s = vaddvq_f32(acc);
    for j in i..n {
        // SAFETY: element j < n is inside both rows.
        unsafe { s += rd::<f32>(w.add(j * 4)) * rd::<f32>(a.add(j * 4)) };
    }
    s
}

macro_rules! four {
    ($name:ident, $one:ident) => {
        fn $name(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            for (o, a) in out.iter_mut().zip(a) {
                *o = $one(n, w, a);
            }
        }
    };
}
four!(q4_0_four, q4_0_one);
four!(q4_1_four, q4_1_one);
four!(q8_0_four, q8_0_one);
four!(f32_four, f32_one);
four!(q4_k_four, q4_k_one);
four!(q5_0_four, q5_0_one);
four!(q5_1_four, q5_1_one);
four!(q6_k_four, q6_k_one);
four!(q2_k_four, q2_k_one);
four!(q3_k_four, q3_k_one);
four!(q5_k_four, q5_k_one);
four!(iq4_nl_four, iq4_nl_one);
four!(iq4_xs_four, iq4_xs_one);
super::rows4_from_one!(q4_0_rows4, q4_0_one);
super::rows4_from_one!(q4_1_rows4, q4_1_one);
super::rows4_from_one!(q8_0_rows4, q8_0_one);
super::rows4_from_one!(f32_rows4, f32_one);
super::rows4_from_one!(q4_k_rows4, q4_k_one);
super::rows4_from_one!(q5_0_rows4, q5_0_one);
super::rows4_from_one!(q5_1_rows4, q5_1_one);
super::rows4_from_one!(q6_k_rows4, q6_k_one);
super::rows4_from_one!(q2_k_rows4, q2_k_one);
super::rows4_from_one!(q3_k_rows4, q3_k_one);
super::rows4_from_one!(q5_k_rows4, q5_k_one);
super::rows4_from_one!(iq4_nl_rows4, iq4_nl_one);
super::rows4_from_one!(iq4_xs_rows4, iq4_xs_one);

pub(super) static KERNELS: &[DotKernels] = &[
    DotKernels {
        one: q4_0_one,
        four: q4_0_four,
        rows4: q4_0_rows4,
        name: "q4_0*q8_0 neon",
        weight: GgmlType::Q4_0,
    },
    DotKernels {
        one: q4_1_one,
        four: q4_1_four,
        rows4: q4_1_rows4,
        name: "q4_1*q8_1 neon",
        weight: GgmlType::Q4_1,
    },
    DotKernels {
        one: q8_0_one,
        four: q8_0_four,
        rows4: q8_0_rows4,
        name: "q8_0*q8_0 neon",
        weight: GgmlType::Q8_0,
    },
    DotKernels {
        one: q5_0_one,
        four: q5_0_four,
        rows4: q5_0_rows4,
        name: "q5_0*q8_0 neon",
        weight: GgmlType::Q5_0,
    },
    DotKernels {
        one: q5_1_one,
        four: q5_1_four,
        rows4: q5_1_rows4,
        name: "q5_1*q8_1 neon",
        weight: GgmlType::Q5_1,
    },
    DotKernels {
        one: q4_k_one,
        four: q4_k_four,
        rows4: q4_k_rows4,
        name: "q4_k*q8_k neon",
        weight: GgmlType::Q4K,
    },
    DotKernels {
        one: q2_k_one,
        four: q2_k_four,
        rows4: q2_k_rows4,
        name: "q2_k*q8_k neon",
        weight: GgmlType::Q2K,
    },
    DotKernels {
        one: q3_k_one,
        four: q3_k_four,
        rows4: q3_k_rows4,
        name: "q3_k*q8_k neon",
        weight: GgmlType::Q3K,
    },
    DotKernels {
        one: q5_k_one,
        four: q5_k_four,
        rows4: q5_k_rows4,
        name: "q5_k*q8_k neon",
        weight: GgmlType::Q5K,
    },
    DotKernels {
        one: q6_k_one,
        four: q6_k_four,
        rows4: q6_k_rows4,
        name: "q6_k*q8_k neon",
        weight: GgmlType::Q6K,
    },
    DotKernels {
        one: iq4_nl_one,
        four: iq4_nl_four,
        rows4: iq4_nl_rows4,
        name: "iq4_nl*q8_0 neon",
        weight: GgmlType::Iq4Nl,
    },
    DotKernels {
        one: iq4_xs_one,
        four: iq4_xs_four,
        rows4: iq4_xs_rows4,
        name: "iq4_xs*q8_k neon",
        weight: GgmlType::Iq4Xs,
    },
    DotKernels {
        one: f32_one,
        four: f32_four,
        rows4: f32_rows4,
        name: "f32*f32 neon",
        weight: GgmlType::F32,
    },
];
