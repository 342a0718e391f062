//! The super-block kernels (the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS against Q8_K)
//! in their canonical order (scalar.rs) with 256-bit integer dots, shared by the AVX2, AVX-VNNI
//! and AVX-512 VNNI tables: they differ only in the i16 x i16 -> i32 multiply-accumulate
//! (`vpmaddwd + vpaddd`, or one `vpdpwssd`).
//!
//! Per super-block and tile cell the integer work leaves 8 i32 partial sums of `isum` (and
//! of `msum` for Q4_K): unsigned quants times activation bytes with `vpmaddubsw` (pair sums
//! at most 2 * 63 * 127, no saturation), then times the sub-block scales with `vpmaddwd`.
//! The partial sums of the tile's cells are reduced exactly into one xmm (lane c = cell c,
//! [`hsum_cells`]); then one convert, one multiply per factor and one fused multiply-add per
//! term update the lane accumulator `acc[b % 32]` of all cells at once: exactly the float
//! steps of the scalar definition. Q6_K's -32 enters through the Q8_K group sums
//! (Σ_j sc_j · 32 · bsum_j), in the integer domain, so the sum stays exact.

use std::arch::x86_64::*;

/// Bytes of one Q8_K block: d (f32), 256 quants, 16 group sums (i16).
pub(super) const Q8K_BYTES: usize = 292;
/// Offset of the quants in a Q8_K block.
pub(super) const Q8K_QS: usize = 4;
/// Offset of the group sums in a Q8_K block.
pub(super) const Q8K_BSUMS: usize = 260;

/// `acc + Σ pairs of i16 products`, AVX2 way.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn madd_add(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(x, y))
}

/// The same with AVX-VNNI (VEX `vpdpwssd`): one instruction.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
pub(super) fn madd_avxvnni(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpwssd_avx_epi32(acc, x, y)
}

/// The same with AVX-512 VNNI (EVEX `vpdpwssd` on a ymm).
#[target_feature(enable = "avx512f,avx512vl,avx512vnni")]
#[inline]
pub(super) fn madd_avx512vnni(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpwssd_epi32(acc, x, y)
}

/// The exact i32 totals of the cells' partial-sum vectors: lane c = Σ v[c] for C = 4 cells;
/// every lane = Σ v[0] for one cell.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn hsum_cells<const C: usize>(v: [__m256i; 4]) -> __m128i {
    if C == 4 {
        // Per 128-bit half: [v0 01, v0 23, v1 01, v1 23], then [v0, v1, v2, v3] partials.
        let s01 = _mm256_hadd_epi32(v[0], v[1]);
        let s23 = _mm256_hadd_epi32(v[2], v[3]);
        let s = _mm256_hadd_epi32(s01, s23);
        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
    } else {
        let x = _mm_add_epi32(
            _mm256_castsi256_si128(v[0]),
            _mm256_extracti128_si256::<1>(v[0]),
        );
        let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b0100_1110>(x));
        _mm_add_epi32(x, _mm_shuffle_epi32::<0b1011_0001>(x))
    }
}

/// Reads 2 bytes at `p` as a little-endian u16, widened.
///
/// # Safety
/// `p..p + 2` must be readable.
#[inline(always)]
pub(super) unsafe fn load_u16(p: *const u8) -> u64 {
    // SAFETY: caller guarantees 2 readable bytes; read_unaligned has no alignment needs.
    unsafe { p.cast::<u16>().read_unaligned() as u64 }
}

/// The f16 at `p[k] + offset` for each cell k, as four f32 (exact).
///
/// # Safety
/// 2 bytes readable at each `p[k] + offset`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) unsafe fn f16_cells(p: [*const u8; 4], offset: usize) -> __m128 {
    // SAFETY: caller guarantees the 4 two-byte ranges are readable.
    let bits = unsafe {
        load_u16(p[0].add(offset))
            | (load_u16(p[1].add(offset)) << 16)
            | (load_u16(p[2].add(offset)) << 32)
            | (load_u16(p[3].add(offset)) << 48)
    };
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// The f32 at `p[k] + offset` for each cell k (the Q8_K `d`).
///
/// # Safety
/// 4 bytes readable at each `p[k] + offset`.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn f32_cells(p: [*const u8; 4], offset: usize) -> __m128 {
    // SAFETY: caller guarantees the 4 four-byte ranges are readable.
    let rd = |k: usize| unsafe { p[k].add(offset).cast::<f32>().read_unaligned() };
    _mm_setr_ps(rd(0), rd(1), rd(2), rd(3))
}

/// The 8 scales and 8 mins of a Q4_K super-block from its 12 packed bytes at `p` (layout in
/// formats/q4_k.rs, `scale_min`): (scales as i16 [s0..s7] in both 128-bit halves, mins as
/// i16 [m0, m0, m1, m1, .., m7, m7], each beside the two Q8_K group sums it multiplies).
///
/// # Safety
/// `p..p + 12` must be readable.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn q4k_scales(p: *const u8) -> (__m256i, __m256i) {
    // SAFETY: caller guarantees 12 readable bytes.
    let u = |k: usize| unsafe { p.add(4 * k).cast::<u32>().read_unaligned() };
    let (u0, u1, u2) = (u(0), u(1), u(2));
    const LOW6: u32 = 0x3F3F_3F3F;
    const TOP2: u32 = 0x0303_0303;
    const NIBBLES: u32 = 0x0F0F_0F0F;
    // Sub-blocks 0..4: the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); 4..8: the
    // nibbles of bytes 8..12 with the top 2 bits of bytes 0..4 / 4..8 above them.
    let sc_hi = (u2 & NIBBLES) | (((u0 >> 6) & TOP2) << 4);
    let mn_hi = ((u2 >> 4) & NIBBLES) | (((u1 >> 6) & TOP2) << 4);
    let sc = (u0 & LOW6) as u64 | ((sc_hi as u64) << 32);
    let mn = (u1 & LOW6) as u64 | ((mn_hi as u64) << 32);
    let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
    let mn8 = _mm_cvtsi64_si128(mn as i64);
    (sc16, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8)))
}

/// Stores the lane accumulators (lane c = cell c) and finishes each of the first `cells`
/// cells with the canonical butterfly.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn finish_cells(acc: &[__m128; 32], cells: usize, out: &mut [f32; 4]) {
    let mut lanes = [[0f32; 4]; 32];
    for (l, v) in lanes.iter_mut().zip(acc) {
        // SAFETY: `l` is 16 writable bytes; storeu has no alignment needs.
        unsafe { _mm_storeu_ps(l.as_mut_ptr(), *v) };
    }
    for (c, o) in out.iter_mut().enumerate().take(cells) {
        *o = crate::quant::dot::scalar::butterfly(std::array::from_fn(|l| lanes[l][c]));
    }
}

/// Bit `j` of each byte of `qh` moved to bit 4 (Q5_K's fifth bit of sub-block j), the rest
/// cleared. The 16-bit shifts carry bits across bytes only into bits 0..4 (left shifts of
/// at most 4) or 5..8 (right shifts of at most 3), which the mask drops.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn fifth_bit(qh: __m256i, j: usize) -> __m256i {
    let moved = match j {
        0 => _mm256_slli_epi16::<4>(qh),
        1 => _mm256_slli_epi16::<3>(qh),
        2 => _mm256_slli_epi16::<2>(qh),
        3 => _mm256_slli_epi16::<1>(qh),
        4 => qh,
        5 => _mm256_srli_epi16::<1>(qh),
        6 => _mm256_srli_epi16::<2>(qh),
        _ => _mm256_srli_epi16::<3>(qh),
    };
    _mm256_and_si256(moved, _mm256_set1_epi8(0x10))
}

/// One Q4_K (`$five` false) or Q5_K (`$five` true) super-block at `$wp` against one Q8_K
/// block at `$ap`: the 8 i32 partial sums of `isum` and of `msum`, with `$madd` the i16
/// multiply-accumulate. The two types differ only in where the nibbles start and Q5_K's
/// fifth bits (bit j of `qh[l]` for element l of sub-block j).
macro_rules! q45k_cell {
    ($wp:expr, $ap:expr, $madd:path, $five:literal) => {{
        let (wp, ap): (*const u8, *const u8) = ($wp, $ap);
        let (sc, mn) = q4k_scales(wp.add(4));
        let low = _mm256_set1_epi8(0x0F);
        let qs = if $five { 48 } else { 16 };
        let qh = if $five {
            _mm256_loadu_si256(wp.add(16).cast())
        } else {
            _mm256_setzero_si256()
        };
        let mut acc = _mm256_setzero_si256();
        // Chunk c of 32 quant bytes: sub-block 2c in the low nibbles, 2c + 1 in the high.
        for c in 0..4 {
            let q = _mm256_loadu_si256(wp.add(qs + 32 * c).cast());
            let a0 = _mm256_loadu_si256(ap.add(Q8K_QS + 64 * c).cast());
            let a1 = _mm256_loadu_si256(ap.add(Q8K_QS + 64 * c + 32).cast());
            let mut lo = _mm256_and_si256(q, low);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
            if $five {
                lo = _mm256_or_si256(lo, fifth_bit(qh, 2 * c));
                hi = _mm256_or_si256(hi, fifth_bit(qh, 2 * c + 1));
            }
            // The i16 scale of sub-block j in every i16 lane.
            let pick =
                |j: i16| _mm256_shuffle_epi8(sc, _mm256_set1_epi16((2 * j) | ((2 * j + 1) << 8)));
            acc = $madd(acc, _mm256_maddubs_epi16(lo, a0), pick(2 * c as i16));
            acc = $madd(acc, _mm256_maddubs_epi16(hi, a1), pick(2 * c as i16 + 1));
        }
        let bsums = _mm256_loadu_si256(ap.add(Q8K_BSUMS).cast());
        (acc, _mm256_madd_epi16(bsums, mn))
    }};
}
pub(super) use q45k_cell;

/// [`q4k_cell`] in zmm registers (AVX-512 BW and VNNI): one 32-byte chunk of quants holds
/// sub-blocks 2c (low nibbles) and 2c + 1 (high), so its two nibble halves side by side and
/// the 64 activation bytes they meet are one zmm each, one `vpmaddubsw` and one `vpdpwssd`
/// per 64 elements. Its 16 i32 partial sums fold into the 8 of [`q4k_cell`] (exact).
macro_rules! q4k_cell_zmm {
    ($wp:expr, $ap:expr, $madd:path) => {{
        let (wp, ap): (*const u8, *const u8) = ($wp, $ap);
        let (sc, mn) = q4k_scales(wp.add(4));
        // [s0..s7] as i16 in every 128-bit lane; chunk c's picks: s_2c in the low 256 bits,
        // s_2c+1 in the high.
        let scz = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sc));
        let pick = |c: i16| {
            let (j0, j1) = (2 * c, 2 * c + 1);
            let lo = _mm256_set1_epi16((2 * j0) | ((2 * j0 + 1) << 8));
            let hi = _mm256_set1_epi16((2 * j1) | ((2 * j1 + 1) << 8));
            _mm512_shuffle_epi8(scz, _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi))
        };
        let low = _mm512_set1_epi8(0x0F);
        let mut acc = _mm512_setzero_si512();
        for c in 0..4 {
            let q = _mm256_loadu_si256(wp.add(16 + 32 * c).cast());
            let both =
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q), _mm256_srli_epi16::<4>(q));
            let a = _mm512_loadu_si512(ap.add(Q8K_QS + 64 * c).cast());
            let prod = _mm512_maddubs_epi16(_mm512_and_si512(both, low), a);
            acc = _mm512_dpwssd_epi32(acc, prod, pick(c as i16));
        }
        let acc = _mm256_add_epi32(
            _mm512_castsi512_si256(acc),
            _mm512_extracti64x4_epi64::<1>(acc),
        );
        let bsums = _mm256_loadu_si256(ap.add(Q8K_BSUMS).cast());
        (acc, _mm256_madd_epi16(bsums, mn))
    }};
}
pub(super) use q4k_cell_zmm;

/// [`q45k_cell`] for Q4_K.
macro_rules! q4k_cell {
    ($wp:expr, $ap:expr, $madd:path) => {
        q45k_cell!($wp, $ap, $madd, false)
    };
}
pub(super) use q4k_cell;

/// [`q45k_cell`] for Q5_K.
macro_rules! q5k_cell {
    ($wp:expr, $ap:expr, $madd:path) => {
        q45k_cell!($wp, $ap, $madd, true)
    };
}
pub(super) use q5k_cell;

/// One Q6_K super-block against one Q8_K block: the 8 i32 partial sums of
/// `isum = Σ_j sc_j (Σ q·a - 32 · bsum_j)` (q unsigned 0..=63), and no `msum`.
macro_rules! q6k_cell {
    ($wp:expr, $ap:expr, $madd:path) => {{
        let (wp, ap): (*const u8, *const u8) = ($wp, $ap);
        let sc8 = _mm_loadu_si128(wp.add(192).cast());
        let halves = half_scales(sc8);
        let (low, top) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let qh = _mm256_loadu_si256(wp.add(128 + 32 * h).cast());
            let ql0 = _mm256_loadu_si256(wp.add(64 * h).cast());
            let ql1 = _mm256_loadu_si256(wp.add(64 * h + 32).cast());
            // Quarter k of the half: its nibble and its 2 top bits (bits 2k..2k+2 of qh)
            // moved to bits 4..6 (the mask drops what the 16-bit shifts carry over).
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, low),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), top),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, low),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), top),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low),
                    _mm256_and_si256(qh, top),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), top),
                ),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let av = _mm256_loadu_si256(ap.add(Q8K_QS + 128 * h + 32 * k).cast());
                let s = quarter_scales(halves[h], k);
                acc = $madd(acc, _mm256_maddubs_epi16(qk, av), s);
            }
        }
        let bsums = _mm256_loadu_si256(ap.add(Q8K_BSUMS).cast());
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(sc8)));
        (_mm256_sub_epi32(acc, offset), _mm256_setzero_si256())
    }};
}
pub(super) use q6k_cell;

/// [`q6k_cell`] in zmm registers (AVX-512 BW and VNNI): per 128-element half, quarters 0|1
/// and 2|3 side by side, built from one 64-byte load of `ql` and `qh` in both 256-bit halves
/// (the two quarters of a pair differ only in their `qh` shift), each pair one `vpmaddubsw`
/// and one `vpdpwssd` against 64 contiguous activation bytes. Its 16 i32 partial sums fold
/// into the 8 of [`q6k_cell`] (exact).
macro_rules! q6k_cell_zmm {
    ($wp:expr, $ap:expr, $madd:path) => {{
        let (wp, ap): (*const u8, *const u8) = ($wp, $ap);
        let sc8 = _mm_loadu_si128(wp.add(192).cast());
        let (low, top) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
        // i16 lanes: the low 256 bits shift by the first count, the high by the second.
        let counts = |x: i16, y: i16| {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi16(x)),
                _mm256_set1_epi16(y),
            )
        };
        // Quarter k's scale picks (see `quarter_scales`) for quarters k0 | k1.
        let picks = |k0: i16, k1: i16| {
            let ctrl = |k: i16| {
                _mm256_setr_m128i(
                    _mm_set1_epi16((4 * k) | ((4 * k + 1) << 8)),
                    _mm_set1_epi16((4 * k + 2) | ((4 * k + 3) << 8)),
                )
            };
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ctrl(k0)), ctrl(k1))
        };
        let mut acc = _mm512_setzero_si512();
        for h in 0..2 {
            // This half's 8 scales as i16, in every 128-bit lane.
            let half = _mm512_broadcast_i32x4(_mm_cvtepi8_epi16(if h == 0 {
                sc8
            } else {
                _mm_srli_si128::<8>(sc8)
            }));
            let ql = _mm512_loadu_si512(wp.add(64 * h).cast()); // [ql0 | ql1]
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(wp.add(128 + 32 * h).cast()));
            let q01 = _mm512_or_si512(
                _mm512_and_si512(ql, low),
                _mm512_and_si512(_mm512_sllv_epi16(qh, counts(4, 2)), top),
            );
            let q23 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low),
                _mm512_and_si512(_mm512_srlv_epi16(qh, counts(0, 2)), top),
            );
            for (pair, q) in [q01, q23].into_iter().enumerate() {
                let av = _mm512_loadu_si512(ap.add(Q8K_QS + 128 * h + 64 * pair).cast());
                let s = _mm512_shuffle_epi8(half, picks(2 * pair as i16, 2 * pair as i16 + 1));
                acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(q, av), s);
            }
        }
        let acc = _mm256_add_epi32(
            _mm512_castsi512_si256(acc),
            _mm512_extracti64x4_epi64::<1>(acc),
        );
        let bsums = _mm256_loadu_si256(ap.add(Q8K_BSUMS).cast());
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(sc8)));
        (_mm256_sub_epi32(acc, offset), _mm256_setzero_si256())
    }};
}
pub(super) use q6k_cell_zmm;

/// The i16 scales of quarter `k` (32 elements, sub-blocks 2k and 2k + 1 of a 128-element
/// half) from `half` = that half's 8 scales as i16 in both 128-bit halves: sub-block 2k's
/// in the low 8 lanes (elements 0..16), 2k + 1's in the high 8.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn quarter_scales(half: __m256i, k: usize) -> __m256i {
    let k = k as i16;
    let ctrl = _mm256_setr_m128i(
        _mm_set1_epi16((4 * k) | ((4 * k + 1) << 8)),
        _mm_set1_epi16((4 * k + 2) | ((4 * k + 3) << 8)),
    );
    _mm256_shuffle_epi8(half, ctrl)
}

/// 16 i8 scales -> the i16 scales of each 128-element half, for [`quarter_scales`].
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn half_scales(sc8: __m128i) -> [__m256i; 2] {
    [
        _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8)),
        _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128::<8>(sc8))),
    ]
}

/// Q3_K's 16 signed scales (stored 6 bits - 32) from its 12 packed bytes at `p` (layout in
/// formats/q3_k.rs, `scale`): the low nibbles of bytes 0..8 (sub-blocks 0..8) and their
/// high nibbles (8..16), with bits 2(j / 4)..+2 of byte 8 + j % 4 above them.
///
/// # Safety
/// `p..p + 12` must be readable.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn q3k_scales(p: *const u8) -> __m128i {
    // SAFETY: caller guarantees 12 readable bytes.
    let u = |k: usize| unsafe { p.add(4 * k).cast::<u32>().read_unaligned() };
    let (u0, u1, u2) = (u(0), u(1), u(2));
    const NIBBLES: u32 = 0x0F0F_0F0F;
    const TWO: u32 = 0x0303_0303;
    let s0 = (u0 & NIBBLES) | ((u2 & TWO) << 4);
    let s1 = (u1 & NIBBLES) | (((u2 >> 2) & TWO) << 4);
    let s2 = ((u0 >> 4) & NIBBLES) | (((u2 >> 4) & TWO) << 4);
    let s3 = ((u1 >> 4) & NIBBLES) | (((u2 >> 6) & TWO) << 4);
    let stored = _mm_setr_epi32(s0 as i32, s1 as i32, s2 as i32, s3 as i32);
    _mm_sub_epi8(stored, _mm_set1_epi8(32))
}

/// Bit `s` (0..8) of each byte of `x` moved to bit `t` (0..8), the rest cleared: a 16-bit
/// shift by `t - s` then the mask of bit t; what the shift carries across bytes lands
/// outside bit t (left shifts fill only bits below the shift, right ones only bits above
/// 7 - shift).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn move_bit(x: __m256i, s: i32, t: i32) -> __m256i {
    let moved = match t - s {
        6 => _mm256_slli_epi16::<6>(x),
        5 => _mm256_slli_epi16::<5>(x),
        4 => _mm256_slli_epi16::<4>(x),
        3 => _mm256_slli_epi16::<3>(x),
        2 => _mm256_slli_epi16::<2>(x),
        1 => _mm256_slli_epi16::<1>(x),
        0 => x,
        -1 => _mm256_srli_epi16::<1>(x),
        -2 => _mm256_srli_epi16::<2>(x),
        -3 => _mm256_srli_epi16::<3>(x),
        -4 => _mm256_srli_epi16::<4>(x),
        -5 => _mm256_srli_epi16::<5>(x),
        -6 => _mm256_srli_epi16::<6>(x),
        _ => _mm256_srli_epi16::<7>(x),
    };
    _mm256_and_si256(moved, _mm256_set1_epi8(1 << t))
}

/// One Q2_K super-block against one Q8_K block: the 8 i32 partial sums of `isum` and of
/// `msum`. Sub-block j's scale is the low nibble of byte j, its min the high nibble; quarter
/// k of half h is bits 2k..2k+2 of `qs[32 h + l]`.
macro_rules! q2k_cell {
    ($wp:expr, $ap:expr, $madd:path) => {{
        let (wp, ap): (*const u8, *const u8) = ($wp, $ap);
        let packed = _mm_loadu_si128(wp.cast());
        let nib = _mm_set1_epi8(0x0F);
        let halves = half_scales(_mm_and_si128(packed, nib));
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(packed), nib));
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let qs = _mm256_loadu_si256(wp.add(16 + 32 * h).cast());
            for k in 0..4 {
                let q = _mm256_and_si256(
                    match k {
                        0 => qs,
                        1 => _mm256_srli_epi16::<2>(qs),
                        2 => _mm256_srli_epi16::<4>(qs),
                        _ => _mm256_srli_epi16::<6>(qs),
                    },
                    _mm256_set1_epi8(3),
                );
                let av = _mm256_loadu_si256(ap.add(Q8K_QS + 128 * h + 32 * k).cast());
                acc = $madd(
                    acc,
                    _mm256_maddubs_epi16(q, av),
                    quarter_scales(halves[h], k),
                );
            }
        }
        let bsums = _mm256_loadu_si256(ap.add(Q8K_BSUMS).cast());
        (acc, _mm256_madd_epi16(bsums, mins))
    }};
}
pub(super) use q2k_cell;

/// One Q3_K super-block against one Q8_K block: the 8 i32 partial sums of
/// `isum = Σ_j sc_j (Σ q·a - 4 · bsum_j)` with q = low bits | hmask bit << 2 in 0..=7, and
/// no `msum`. Quarter k of half h: bits 2k..2k+2 of `qs[32 h + l]` and bit 4h + k of
/// `hmask[l]`.
macro_rules! q3k_cell {
    ($wp:expr, $ap:expr, $madd:path) => {{
        let (wp, ap): (*const u8, *const u8) = ($wp, $ap);
        let sc8 = q3k_scales(wp.add(96));
        let halves = half_scales(sc8);
        let hmask = _mm256_loadu_si256(wp.cast());
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let qs = _mm256_loadu_si256(wp.add(32 + 32 * h).cast());
            for k in 0..4 {
                let low = _mm256_and_si256(
                    match k {
                        0 => qs,
                        1 => _mm256_srli_epi16::<2>(qs),
                        2 => _mm256_srli_epi16::<4>(qs),
                        _ => _mm256_srli_epi16::<6>(qs),
                    },
                    _mm256_set1_epi8(3),
                );
                let q = _mm256_or_si256(low, move_bit(hmask, (4 * h + k) as i32, 2));
                let av = _mm256_loadu_si256(ap.add(Q8K_QS + 128 * h + 32 * k).cast());
                acc = $madd(
                    acc,
                    _mm256_maddubs_epi16(q, av),
                    quarter_scales(halves[h], k),
                );
            }
        }
        let bsums = _mm256_loadu_si256(ap.add(Q8K_BSUMS).cast());
        let offset = _mm256_slli_epi32::<2>(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(sc8)));
        (_mm256_sub_epi32(acc, offset), _mm256_setzero_si256())
    }};
}
pub(super) use q3k_cell;

/// IQ4_XS's 8 signed sub-block scales (stored 6 bits - 32) from its `scales_h` (u16 at `p`)
/// and `scales_l` (4 bytes at `p + 2`), layout in formats/iq4_xs.rs: as i16 [s0..s7] in both
/// 128-bit halves.
///
/// # Safety
/// `p..p + 6` must be readable.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn iq4xs_scales(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 6 readable bytes.
    let (h, l) = unsafe { (load_u16(p), p.add(2).cast::<u32>().read_unaligned() as u64) };
    // Byte j of the stored scales: nibble j of `l` (even j low nibbles), bits 2j..2j + 2 of
    // `h` above it.
    let mut stored = 0u64;
    for j in 0..8 {
        let low = (l >> (4 * j)) & 0x0F;
        let high = (h >> (2 * j)) & 3;
        stored |= (low | (high << 4)) << (8 * j);
    }
    let s8 = _mm_sub_epi8(_mm_cvtsi64_si128(stored as i64), _mm_set1_epi8(32));
    _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8))
}

/// One IQ4_XS super-block against one Q8_K block: the 8 i32 partial sums of
/// `isum = Σ_j sc_j · Σ VALUES[q] · a` and no `msum`. Each 32-element sub-block's indices are
/// 16 bytes (formats/iq4_nl.rs order), looked up with one byte shuffle; the s8 x s8 products
/// go through `vpmaddubsw` as |v| x (a with v's sign) (pair sums <= 2 * 127 * 127).
macro_rules! iq4xs_cell {
    ($wp:expr, $ap:expr, $madd:path) => {{
        use $crate::quant::dot::canon256::{iq4_lookup, unpack_q4_shift};
        let (wp, ap): (*const u8, *const u8) = ($wp, $ap);
        let sc = iq4xs_scales(wp.add(2));
        let mut acc = _mm256_setzero_si256();
        for j in 0..8 {
            let v = iq4_lookup(unpack_q4_shift(wp.add(8 + 16 * j)));
            let av = _mm256_loadu_si256(ap.add(Q8K_QS + 32 * j).cast());
            let prod = _mm256_maddubs_epi16(_mm256_abs_epi8(v), _mm256_sign_epi8(av, v));
            let j = j as i16;
            let pick = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((2 * j) | ((2 * j + 1) << 8)));
            acc = $madd(acc, prod, pick);
        }
        (acc, _mm256_setzero_si256())
    }};
}
pub(super) use iq4xs_cell;

/// Generates the tile kernel `$name::<RW, RA>` (1 x 1, 1 x 4 or 4 x 1 cells) of one K-quant
/// against Q8_K: `$wb` its super-block bytes, `$d` / `$dmin` the offsets of its f16 factors
/// (`$dmin` only with a min term), `$cell` its per-block integer macro.
macro_rules! kquant_tile {
    ($name:ident, $feat:literal, $madd:path, wb = $wb:literal, d = $d:literal,
     dmin = $dmin:expr, cell = $cell:ident) => {
        /// # Safety
        /// The CPU has the features; rows `w[..RW]` and `a[..RA]` (the others repeat them)
        /// hold n/256 blocks.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const RW: usize, const RA: usize>(
            n: usize,
            w: [*const u8; 4],
            a: [*const u8; 4],
            out: &mut [f32; 4],
        ) {
            use std::arch::x86_64::*;
            use $crate::quant::dot::kquant256::*;
            let cells = if RW == 4 || RA == 4 { 4 } else { 1 };
            let reduce = |v: [__m256i; 4]| {
                if cells == 4 {
                    hsum_cells::<4>(v)
                } else {
                    hsum_cells::<1>(v)
                }
            };
            let dmin: Option<usize> = $dmin;
            let zero = _mm256_setzero_si256();
            let neg = _mm_set1_ps(-0.0);
            let mut acc = [_mm_setzero_ps(); 32];
            // 4 x 1 (decode): prefetch the same block of a later call's 4 rows, as the
            // 32-element kernels do (canon256.rs); prefetches never fault.
            let next_tile =
                $crate::quant::dot::prefetch_offset((w[1] as isize).wrapping_sub(w[0] as isize));
            for b in 0..n / 256 {
                let (wb, ab) = (
                    w.map(|p| p.wrapping_add(b * $wb)),
                    a.map(|p| p.wrapping_add(b * Q8K_BYTES)),
                );
                let (mut iv, mut mv) = ([zero; 4], [zero; 4]);
                for c in 0..cells {
                    let wp = wb[if RW == 4 { c } else { 0 }];
                    let ap = ab[if RA == 4 { c } else { 0 }];
                    if RW == 4 {
                        let next = wp.wrapping_offset(next_tile);
                        for line in (0..$wb).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(line).cast());
                        }
                    }
                    // SAFETY: block b lies inside each used row (caller contract).
                    (iv[c], mv[c]) = unsafe { $cell!(wp, ap, $madd) };
                }
                // SAFETY: as above, for the blocks' factors.
                let (wd, ad) = unsafe { (f16_cells(wb, $d), f32_cells(ab, 0)) };
                let l = b % 32;
                let isum = _mm_cvtepi32_ps(reduce(iv));
                acc[l] = _mm_fmadd_ps(isum, _mm_mul_ps(wd, ad), acc[l]);
                if let Some(at) = dmin {
                    // SAFETY: as above.
                    let dm = _mm_mul_ps(unsafe { f16_cells(wb, at) }, ad);
                    let msum = _mm_xor_ps(_mm_cvtepi32_ps(reduce(mv)), neg);
                    acc[l] = _mm_fmadd_ps(msum, dm, acc[l]);
                }
            }
            finish_cells(&acc, cells, out);
        }
    };
}
pub(super) use kquant_tile;

/// Generates module `$m` with the super-block tile kernels (`q2_k` .. `q6_k`, `iq4_xs`) of
/// one flavour.
macro_rules! kquant_kernels256 {
    ($m:ident, $feat:literal, $madd:path) => {
        mod $m {
            use $crate::quant::dot::kquant256::{
                iq4xs_cell, kquant_tile, q2k_cell, q3k_cell, q45k_cell, q4k_cell, q5k_cell,
                q6k_cell,
            };
            kquant_tile!(
                q2_k,
                $feat,
                $madd,
                wb = 84,
                d = 80,
                dmin = Some(82),
                cell = q2k_cell
            );
            kquant_tile!(
                q3_k,
                $feat,
                $madd,
                wb = 110,
                d = 108,
                dmin = None,
                cell = q3k_cell
            );
            kquant_tile!(
                q4_k,
                $feat,
                $madd,
                wb = 144,
                d = 0,
                dmin = Some(2),
                cell = q4k_cell
            );
            kquant_tile!(
                q5_k,
                $feat,
                $madd,
                wb = 176,
                d = 0,
                dmin = Some(2),
                cell = q5k_cell
            );
            kquant_tile!(
                iq4_xs,
                $feat,
                $madd,
                wb = 136,
                d = 0,
                dmin = None,
                cell = iq4xs_cell
            );
            kquant_tile!(
                q6_k,
                $feat,
                $madd,
                wb = 210,
                d = 208,
                dmin = None,
                cell = q6k_cell
            );
        }
    };
}
pub(super) use kquant_kernels256;

/// Safe `DotFn`/`Dot4Fn`/`DotRows4Fn` entry points around a K-quant tile kernel: one length
/// check per row, then the call. Only for tables handed out when the CPU has the features.
macro_rules! kquant_entries {
    ($one:ident, $four:ident, $rows4:ident, $m:ident :: $k:ident, $wb:expr) => {
        fn $one(n: usize, w: &[u8], a: &[u8]) -> f32 {
            $crate::quant::dot::check_lengths(n, w, a, 256, $wb, 292);
            let mut out = [0f32; 4];
            // SAFETY: lengths checked above; this table is only handed out when the CPU has
            // the kernel's features (see dot::available_kernels).
            unsafe { $m::$k::<1, 1>(n, [w.as_ptr(); 4], [a.as_ptr(); 4], &mut out) };
            out[0]
        }
        fn $four(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            for r in a {
                $crate::quant::dot::check_lengths(n, w, r, 256, $wb, 292);
            }
            // SAFETY: as above, for all four rows.
            unsafe { $m::$k::<1, 4>(n, [w.as_ptr(); 4], a.map(|r| r.as_ptr()), out) };
        }
        fn $rows4(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32; 4]) {
            for r in w {
                $crate::quant::dot::check_lengths(n, r, a, 256, $wb, 292);
            }
            // SAFETY: as above, for all four rows.
            unsafe { $m::$k::<4, 1>(n, w.map(|r| r.as_ptr()), [a.as_ptr(); 4], out) };
        }
    };
}
pub(super) use kquant_entries;
