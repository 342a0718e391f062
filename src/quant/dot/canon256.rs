//! The canonical summation order (see scalar.rs) with 256-bit integer dots, shared by the
//! AVX2, AVX-VNNI and AVX-512 VNNI kernel sets: one 32-element block is exactly one ymm of
//! quant bytes, so the only thing that differs between them is the u8 x s8 -> i32 primitive.
//!
//! Per block, the integer dots leave 8 i32 partial sums per tile cell. Those of four cells
//! are reduced exactly into one xmm of four block sums; then one convert, one multiply for
//! the four `dd` scales and one fused multiply-add into the lane accumulators follow, exactly
//! the float steps of the scalar definition:
//! - `four` / `rows4`: lane c of the sums = tile cell c. Two cells share their dots by
//!   interleaving their 4-byte groups ([`interleave`]), which does half the reduction for
//!   free; two consecutive blocks (b even) share the float steps on one ymm, and the 32 lane
//!   accumulators are 16 ymm of lane pairs ([`butterfly_cells`]);
//! - `one`: lane k of the sums = block b + k of a group of four (b % 4 == 0), and the 32
//!   lane accumulators are 8 xmm (`acc[g]` lane k = lane 4g + k).
//!
//! A block past the row's end (the last `one` group, or the odd last block of a tile) is an
//! integer sum of 0 with `dd` = 0: the fused multiply-add then adds +0.0, which leaves every
//! accumulator unchanged (they are never -0.0).

use std::arch::x86_64::*;

/// `acc + sum(u8 x s8 over groups of 4)`, AVX2 way. `u` <= 128 and |s| <= 127 keep the
/// intermediate i16 pair sums (<= 2 * 128 * 127 = 32512) from saturating.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn dot_maddubs(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
    )
}

/// The same with AVX-VNNI (VEX `vpdpbusd`), exact with no saturation.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
pub(super) fn dot_avxvnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, u, s)
}

/// The same with AVX-512 VNNI (EVEX `vpdpbusd` on a ymm).
#[target_feature(enable = "avx512f,avx512vl,avx512vnni")]
#[inline]
pub(super) fn dot_avx512vnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, s)
}

/// Reads 2 bytes at `p` as a little-endian u16 (widened: it indexes the f16 table).
///
/// # Safety
/// `p..p + 2` must be readable.
#[inline(always)]
pub(super) unsafe fn load_u16(p: *const u8) -> u64 {
    // SAFETY: caller guarantees 2 readable bytes; read_unaligned has no alignment needs.
    unsafe { p.cast::<u16>().read_unaligned() as u64 }
}

/// Four f16 bit patterns (lane k in bits 16k..16k + 16) -> four f32 (exact).
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) fn f16x4(bits: u64) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// The first f16 (the scale `d`) of the blocks at `p[k] + offset`, packed (lane k in bits
/// 16k..16k + 16) for [`f16x4`]: four scalar loads, cheaper here than a gather.
///
/// # Safety
/// 2 bytes readable at each `p[k] + offset`.
#[inline(always)]
pub(super) unsafe fn gpr_headers(p: [*const u8; 4], offset: usize) -> u64 {
    // SAFETY: caller guarantees the 4 two-byte ranges are readable.
    unsafe {
        load_u16(p[0].add(offset))
            | load_u16(p[1].add(offset)) << 16
            | load_u16(p[2].add(offset)) << 32
            | load_u16(p[3].add(offset)) << 48
    }
}

/// Both f16 halves of each of 4 loaded header dwords -> (4 low ones, 4 high ones) as f32
/// (exact): a block's [d, m] or [d, s] header.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) fn both_f16x4(g: __m128i) -> (__m128, __m128) {
    let x = _mm256_cvtph_ps(pack_headers(g)); // [lo0..lo3, hi0..hi3]
    (_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x))
}

/// 4 header dwords [lo0 | hi0 << 16, ..] -> 8 u16 [lo0..lo3, hi0..hi3]: a block's
/// d's in the low 64 bits, its m's (or s's) in the high ones.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn pack_headers(g: __m128i) -> __m128i {
    _mm_shuffle_epi8(
        g,
        _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15),
    )
}

/// The 4-byte headers of the blocks at `p[k] + offset`, lane k: four scalar loads. A gather
/// (`vpgatherqd`) did the same in one instruction but cost more than the loads on Zen 5:
/// Q4_1 decode tiles of 576 ran 14.6 ns per row with it, 11.6 without
/// (benches/quant_dot.rs, `hot`).
///
/// # Safety
/// 4 bytes readable at each `p[k] + offset`.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn load_headers(p: [*const u8; 4], offset: usize) -> __m128i {
    // SAFETY: caller guarantees the 4 four-byte ranges are readable; no alignment needed.
    let h = |k: usize| unsafe { p[k].add(offset).cast::<u32>().read_unaligned() } as i64;
    _mm_set_epi64x(h(2) | h(3) << 32, h(0) | h(1) << 32)
}

/// 16 packed nibble bytes -> 32 bytes: low nibbles then high nibbles (the block's order).
///
/// # Safety
/// `p..p + 16` must be readable.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn unpack_q4_shift(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 16 readable bytes; loadu has no alignment needs.
    let q = unsafe { _mm_loadu_si128(p.cast()) };
    // [q, q] >> [0, 0, 4, 4] (per 64-bit lane), masked to nibbles: [lo(q), hi(q)].
    let both = _mm256_srlv_epi64(
        _mm256_broadcastsi128_si256(q),
        _mm256_setr_epi64x(0, 0, 4, 4),
    );
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// A Q5_0 / Q5_1 block's 32 quants (0..=31) in element order: the nibbles at `qs` as
/// [`unpack_q4_shift`] gives them, with bit j of the little-endian u32 at `qh` as bit 4 of
/// byte j.
///
/// # Safety
/// `qs..qs + 16` and `qh..qh + 4` must be readable.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn unpack_q5(qs: *const u8, qh: *const u8) -> __m256i {
    // SAFETY: caller guarantees 16 bytes at qs and 4 at qh; neither load needs alignment.
    let (nibbles, high) = unsafe { (unpack_q4_shift(qs), qh.cast::<u32>().read_unaligned()) };
    // Byte j of the register gets byte j / 8 of qh, then keeps only its bit j % 8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(high as i32),
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_or_si256(nibbles, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
}

/// [`unpack_q5`] with AVX-512 BW/VL: `qh` is the byte mask of the fifth bits, so one masked
/// add puts 16 on the bytes that have it (2 instructions instead of 7; Q5_0 decode tiles of
/// 576 on Zen 5: 15.2 ns per row against 19.0, benches/quant_dot.rs `hot`).
///
/// # Safety
/// `qs..qs + 16` and `qh..qh + 4` must be readable.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
#[inline]
pub(super) unsafe fn unpack_q5_masked(qs: *const u8, qh: *const u8) -> __m256i {
    // SAFETY: caller guarantees 16 bytes at qs and 4 at qh; neither load needs alignment.
    let (nibbles, high) = unsafe { (unpack_q4_shift(qs), qh.cast::<u32>().read_unaligned()) };
    _mm256_mask_add_epi8(nibbles, high, nibbles, _mm256_set1_epi8(0x10))
}

/// The IQ4 table (formats/iq4_nl.rs `VALUES`) in both 128-bit halves, for [`iq4_lookup`].
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn iq4_table() -> __m256i {
    let v = crate::quant::formats::iq4_nl::VALUES;
    // SAFETY: 16 readable bytes; loadu has no alignment needs.
    let t = unsafe { _mm_loadu_si128(v.as_ptr().cast()) };
    _mm256_broadcastsi128_si256(t)
}

/// 32 indices (0..=15, e.g. from [`unpack_q4_shift`]) -> their IQ4 table values as s8: one
/// byte shuffle per 32 elements.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn iq4_lookup(idx: __m256i) -> __m256i {
    _mm256_shuffle_epi8(iq4_table(), idx)
}

/// Like [`unpack_q4_shift`] but without the shift: [lo(q), 16 * hi(q)]. The high half's dot
/// products (i32 lanes 4..8) come out exactly 16x too large, which [`sum4`] undoes in the
/// integer domain (`HI_SHIFT` = 4). Only for `vpdpbusd`: 16 * 15 * 127 would saturate
/// `vpmaddubsw`'s i16 pair sums.
///
/// # Safety
/// `p..p + 16` must be readable.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn unpack_q4_mask(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 16 readable bytes; loadu has no alignment needs.
    let q = unsafe { _mm_loadu_si128(p.cast()) };
    let mask = _mm256_setr_epi64x(
        0x0F0F0F0F0F0F0F0F,
        0x0F0F0F0F0F0F0F0F,
        -0x0F0F0F0F0F0F0F10,
        -0x0F0F0F0F0F0F0F10,
    );
    _mm256_and_si256(_mm256_broadcastsi128_si256(q), mask)
}

/// [sum(v[0]), sum(v[1]), sum(v[2]), sum(v[3])] of four vectors of 8 i32 lanes, exactly.
/// Lanes 4..8 of every vector are first divided by 2^HI_SHIFT (they hold exact multiples of
/// it, see [`unpack_q4_mask`]). Step 1 is written with 64-bit shifts and blends, which run
/// on any vector port (the shuffle port is the kernels' bottleneck).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn sum4<const HI_SHIFT: i32>(v: [__m256i; 4]) -> __m128i {
    // [x0 + x1, y0 + y1, x2 + x3, y2 + y3] per 128-bit half: x's pair sums land in the even
    // lanes, y's in the odd ones.
    let pair = |x: __m256i, y: __m256i| {
        let xs = _mm256_add_epi32(x, _mm256_srli_epi64::<32>(x));
        let ys = _mm256_add_epi32(y, _mm256_slli_epi64::<32>(y));
        _mm256_blend_epi32::<0b1010_1010>(xs, ys)
    };
    sum_pairs::<HI_SHIFT>(pair(v[0], v[1]), pair(v[2], v[3]))
}

/// The rest of [`sum4`], from two vectors of pair sums laid out as its step 1 leaves them
/// (`p01` = [v0, v1, v0, v1, ..], `p23` likewise): [sum(v0), sum(v1), sum(v2), sum(v3)].
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn sum_pairs<const HI_SHIFT: i32>(p01: __m256i, p23: __m256i) -> __m128i {
    let q = fold_pairs(p01, p23);
    let hi = _mm_srai_epi32::<HI_SHIFT>(_mm256_extracti128_si256::<1>(q));
    _mm_add_epi32(_mm256_castsi256_si128(q), hi)
}

/// Step 2 of [`sum4`]: [v0, v1, v2, v3] sums of each 128-bit half (the high half's still
/// 2^HI_SHIFT times too large).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn fold_pairs(p01: __m256i, p23: __m256i) -> __m256i {
    let keep = _mm256_blend_epi32::<0b1100_1100>(p01, p23);
    let swap = _mm256_blend_epi32::<0b1100_1100>(p23, p01);
    _mm256_add_epi32(keep, _mm256_shuffle_epi32::<0b0100_1110>(swap))
}

/// Step 3 of [`sum4`] for two blocks at once: from their [`fold_pairs`] results, the four
/// sums of block 0 in lanes 0..4 and of block 1 in lanes 4..8.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn halves2<const HI_SHIFT: i32>(q0: __m256i, q1: __m256i) -> __m256i {
    let (h, z) = (HI_SHIFT, 0);
    let lo = _mm256_blend_epi32::<0b1111_0000>(q0, q1); // [q0 lo, q1 hi]
    let hi = _mm256_permute2x128_si256::<0x21>(q0, q1); // [q0 hi, q1 lo]
    let lo = _mm256_srav_epi32(lo, _mm256_setr_epi32(z, z, z, z, h, h, h, h));
    let hi = _mm256_srav_epi32(hi, _mm256_setr_epi32(h, h, h, h, z, z, z, z));
    _mm256_add_epi32(lo, hi)
}

/// Interleaves the 4-byte groups of two cells' operands so that two chained dots leave the
/// pair sums of [`sum4`]'s step 1 directly: returns (x, y) with x = [a0, b1, a2, b3, ..]
/// and y = [a1, b0, a3, b2, ..] (groups of `a` and `b`). Every per-group operation (unpack,
/// sign, dot) commutes with this; a side shared by both cells (a == b) costs one shuffle.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn interleave(a: __m256i, b: __m256i) -> (__m256i, __m256i) {
    let x = _mm256_blend_epi32::<0b1010_1010>(a, b);
    let y = _mm256_shuffle_epi32::<0b1011_0001>(_mm256_blend_epi32::<0b1010_1010>(b, a));
    (x, y)
}

/// The butterfly of the scalar definition over 32 lane sums held as 8 xmm (`acc[g]` lane k
/// = lane 4g + k): m = 16 and 8 are whole-vector adds, m = 4, 2, 1 within one vector.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn butterfly_groups(mut acc: [__m128; 8]) -> f32 {
    for g in 0..4 {
        acc[g] = _mm_add_ps(acc[g], acc[g + 4]);
    }
    for g in 0..2 {
        acc[g] = _mm_add_ps(acc[g], acc[g + 2]);
    }
    let x = _mm_add_ps(acc[0], acc[1]);
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}

/// The same butterfly for four tile cells side by side, lanes in pairs: `acc[j]` lanes 0..4
/// = the cells' lane 2j, lanes 4..8 = their lane 2j + 1.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn butterfly_cells(acc: &mut [__m256; 16]) -> __m128 {
    let mut m = 8; // in units of lane pairs: m = 16, 8, 4, 2
    while m > 0 {
        for j in 0..m {
            acc[j] = _mm256_add_ps(acc[j], acc[j + m]);
        }
        m /= 2;
    }
    // m = 1
    _mm_add_ps(
        _mm256_castps256_ps128(acc[0]),
        _mm256_extractf128_ps::<1>(acc[0]),
    )
}

/// Generates one quantized tile kernel `$name::<RW, RA>` (1 x 1, 1 x 4 or 4 x 1 cells) in
/// the canonical order. Per type it is given: the block sizes, the high-lane shift of its
/// unpacking, whether it has the Q4_1 offset term (`m` at weight byte 2, `s` at activation
/// byte 2), and three block steps: `wprep` (weight block pointer -> quants), `aprep`
/// (activation block pointer -> quants and what the type derives from them) and `idot`
/// (the 8 i32 partial sums of one weight block x one activation block).
macro_rules! tile_kernel {
    (
        $name:ident, $feat:literal, wb = $wb:literal, ab = $ab:literal, hi = $hi:literal,
        offset_term = $offset:literal,
        wprep = |$wp:ident| -> $wty:ty $wprep:block,
        aprep = |$ap:ident| -> $aty:ty $aprep:block,
        offset_dot = |$oacc:ident, $oa:ident| $odot:block,
        idot = |$acc:ident, $q:ident, $a:ident| $idot:block $(,)?
    ) => {
        /// # Safety
        /// The CPU has the features; rows `w[..RW]` and `a[..RA]` hold n/32 blocks; `t` is
        /// the f16 table.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const RW: usize, const RA: usize>(
            n: usize,
            w: [*const u8; 4],
            a: [*const u8; 4],
            out: &mut [f32; 4],
            t: *const f32,
        ) {
            use std::arch::x86_64::*;
            use $crate::quant::dot::canon256::{
                both_f16x4, butterfly_cells, butterfly_groups, f16x4, fold_pairs, gpr_headers,
                halves2, interleave, load_headers, load_u16, pack_headers, sum4,
            };
            // SAFETY (both): callers pass pointers to whole blocks inside the rows.
            let wprep = |$wp: *const u8| -> $wty { unsafe { $wprep } };
            let aprep = |$ap: *const u8| -> $aty { unsafe { $aprep } };
            let idot = |$acc: __m256i, $q: $wty, $a: $aty| -> __m256i { $idot };
            // What the type subtracts per lane, summed into the accumulator (Q4_0's offset).
            let offset_dot = |$oacc: __m256i, $oa: $aty| -> __m256i { $odot };
            let zero = _mm256_setzero_si256();
            // SAFETY (all loads below): block b < nb lies inside each used row (caller
            // contract); table indices are 16-bit and the table has 65536 entries.
            let nb = n / 32;
            if RW == 1 && RA == 1 {
                // acc[g] lane k = canonical lane 4g + k; a group is blocks b..b + 4.
                let mut acc = [_mm_setzero_ps(); 8];
                let mut group = |b: usize, count: usize| unsafe {
                    let mut v = [_mm256_setzero_si256(); 4];
                    let (wp, ap) = (w[0].add(b * $wb), a[0].add(b * $ab));
                    let (dw, da, mw, sa);
                    if count == 4 {
                        for k in 0..4 {
                            let av = aprep(ap.add(k * $ab));
                            let start = _mm256_sub_epi32(zero, offset_dot(zero, av));
                            v[k] = idot(start, wprep(wp.add(k * $wb)), av);
                        }
                        if $offset {
                            let blocks = |p: *const u8, step: usize| {
                                load_headers([p, p.add(step), p.add(2 * step), p.add(3 * step)], 0)
                            };
                            (dw, mw) = both_f16x4(blocks(wp, $wb));
                            (da, sa) = both_f16x4(blocks(ap, $ab));
                        } else {
                            let steps = |p: *const u8, step: usize| {
                                gpr_headers([p, p.add(step), p.add(2 * step), p.add(3 * step)], 0)
                            };
                            (dw, da) = (f16x4(steps(wp, $wb)), f16x4(steps(ap, $ab)));
                            (mw, sa) = (dw, da);
                        }
                    } else {
                        // The last, partial group: missing blocks get isum 0 and dd 0.
                        let (mut wd, mut ad, mut wm, mut as_) = (0u64, 0u64, 0u64, 0u64);
                        for k in 0..count {
                            let (wp, ap) = (wp.add(k * $wb), ap.add(k * $ab));
                            let av = aprep(ap);
                            let start = _mm256_sub_epi32(zero, offset_dot(zero, av));
                            v[k] = idot(start, wprep(wp), av);
                            wd |= load_u16(wp) << (16 * k);
                            ad |= load_u16(ap) << (16 * k);
                            if $offset {
                                wm |= load_u16(wp.add(2)) << (16 * k);
                                as_ |= load_u16(ap.add(2)) << (16 * k);
                            }
                        }
                        (dw, da, mw, sa) = (f16x4(wd), f16x4(ad), f16x4(wm), f16x4(as_));
                    }
                    let g = b % 32 / 4;
                    let isum = _mm_cvtepi32_ps(sum4::<$hi>(v));
                    acc[g] = _mm_fmadd_ps(isum, _mm_mul_ps(dw, da), acc[g]);
                    if $offset {
                        acc[g] = _mm_fmadd_ps(mw, sa, acc[g]);
                    }
                };
                let mut b = 0;
                while b + 4 <= nb {
                    group(b, 4);
                    b += 4;
                }
                if b < nb {
                    group(b, nb - b);
                }
                out[0] = butterfly_groups(acc);
            } else {
                // acc[L] lane c = tile cell c's canonical lane L.
                // acc[j] lanes 0..4 = the cells' lane 2j, lanes 4..8 their lane 2j + 1: two
                // consecutive blocks (the first even) share one convert, multiply and fma.
                let mut acc = [_mm256_setzero_ps(); 16];
                // 4 x 1 (decode): the mat-vec passes 4 consecutive rows of one matrix, and
                // calls again for the 4 after them. Each block step prefetches the same block
                // of a later call's rows (`prefetch_offset`: about 16 KiB on) into L2, so that
                // tile is near when it starts (`PREFETCH_AHEAD_BYTES`): with 4 rows read side
                // by side, the hardware prefetchers of Zen 3 fell to half the bandwidth of one
                // sequential row.
                // Prefetches never fault, so an address past the matrix is harmless.
                let next_tile = $crate::quant::dot::prefetch_offset(
                    (w[1] as isize).wrapping_sub(w[0] as isize),
                );
                // Block b: its 4 cells' integer sums before `halves2`; the varying side's
                // four headers ([d, m/s] dwords, or the four d's in the low 64
                // bits); the shared side's d and m/s bits (table indices).
                let block = |b: usize| {
                    // Operands of the 4 cells (one side shared), then their dots two cells
                    // at a time, interleaved.
                    let (mut vw, mut va) = ([zero; 4], [(zero, zero); 4]);
                    let (g, sd, sm);
                    unsafe {
                        let (wp, ap) = (w[0].add(b * $wb), a[0].add(b * $ab));
                        if RA == 1 {
                            let av = aprep(ap);
                            for r in 0..4 {
                                _mm_prefetch::<_MM_HINT_T1>(
                                    w[r].wrapping_offset(next_tile).wrapping_add(b * $wb).cast(),
                                );
                                vw[r] = wprep(w[r].add(b * $wb));
                                va[r] = av;
                            }
                            g = if $offset {
                                load_headers(w, b * $wb)
                            } else {
                                _mm_cvtsi64_si128(gpr_headers(w, b * $wb) as i64)
                            };
                            (sd, sm) = (load_u16(ap), load_u16(ap.add(2)));
                        } else {
                            let wv = wprep(wp);
                            for r in 0..4 {
                                vw[r] = wv;
                                va[r] = aprep(a[r].add(b * $ab));
                            }
                            g = if $offset {
                                load_headers(a, b * $ab)
                            } else {
                                _mm_cvtsi64_si128(gpr_headers(a, b * $ab) as i64)
                            };
                            (sd, sm) = (load_u16(wp), load_u16(wp.add(2)));
                        }
                    }
                    let pair = |i: usize, j: usize| {
                        let (wx, wy) = interleave(vw[i], vw[j]);
                        let (ax0, ay0) = interleave(va[i].0, va[j].0);
                        let (ax1, ay1) = interleave(va[i].1, va[j].1);
                        let (ax, ay) = ((ax0, ax1), (ay0, ay1));
                        let start = _mm256_sub_epi32(zero, offset_dot(offset_dot(zero, ax), ay));
                        idot(idot(start, wx, ax), wy, ay)
                    };
                    (fold_pairs(pair(0, 1), pair(2, 3)), g, sd, sm)
                };
                let mut step = |b: usize, (q0, g0, sd0, sm0), (q1, g1, sd1, sm1)| {
                    // Factors of blocks b (lanes 0..4) and b + 1 (lanes 4..8): the varying
                    // side converted once for both, the shared side two table broadcasts.
                    let (vd, vm) = if $offset {
                        let (x0, x1) = (pack_headers(g0), pack_headers(g1));
                        let d = _mm256_cvtph_ps(_mm_unpacklo_epi64(x0, x1));
                        (d, _mm256_cvtph_ps(_mm_unpackhi_epi64(x0, x1)))
                    } else {
                        let d = _mm256_cvtph_ps(_mm_unpacklo_epi64(g0, g1));
                        (d, d)
                    };
                    // SAFETY: table indices are 16-bit; the table has 65536 entries.
                    let shared = |i0: u64, i1: u64| unsafe {
                        _mm256_set_m128(
                            _mm_broadcast_ss(&*t.add(i1 as usize)),
                            _mm_broadcast_ss(&*t.add(i0 as usize)),
                        )
                    };
                    let (sd, sm) = (shared(sd0, sd1), shared(sm0, sm1));
                    let j = b % 32 / 2;
                    let isum = _mm256_cvtepi32_ps(halves2::<$hi>(q0, q1));
                    acc[j] = _mm256_fmadd_ps(isum, _mm256_mul_ps(vd, sd), acc[j]);
                    if $offset {
                        acc[j] = _mm256_fmadd_ps(vm, sm, acc[j]);
                    }
                };
                let mut b = 0;
                while b + 2 <= nb {
                    step(b, block(b), block(b + 1));
                    b += 2;
                }
                if b < nb {
                    // The odd last block: the pair's second half gets isum 0 and all its
                    // factors 0 (table entry 0 is +0.0).
                    step(b, block(b), (zero, _mm_setzero_si128(), 0, 0));
                }
                _mm_storeu_ps(out.as_mut_ptr(), butterfly_cells(&mut acc));
            }
        }
    };
}
pub(super) use tile_kernel;

/// Generates module `$m` with the 32-element tile kernels (`q4_0`, `q4_1`, `q5_0`, `q5_1`,
/// `q8_0`, `iq4_nl`) of one flavour: `$dot` the u8 x s8 primitive (with accumulator input),
/// `$unpack` the nibble expansion, `$hi` its high-lane shift (0, or 4 for [`unpack_q4_mask`]),
/// `$off_hi` the Q4_0 offset byte of the high lanes (8, or 8 * 16 = 128).
macro_rules! canonical_kernels256 {
    ($m:ident, $feat:literal, $dot:path, $unpack:path, $hi:literal, $off_hi:literal) => {
        $crate::quant::dot::canon256::canonical_kernels256!(
            $m,
            $feat,
            $dot,
            $unpack,
            $hi,
            $off_hi,
            $crate::quant::dot::canon256::unpack_q5
        );
    };
    ($m:ident, $feat:literal, $dot:path, $unpack:path, $hi:literal, $off_hi:literal,
     $unpack5:path) => {
        mod $m {
            // Q4_1 x Q8_1 (headers: w [d, m], a [d, s]): isum = sum(q * a).
            $crate::quant::dot::canon256::tile_kernel!(
                q4_1,
                $feat,
                wb = 20,
                ab = 36,
                hi = $hi,
                offset_term = true,
                wprep = |wp| -> __m256i { $unpack(wp.add(4)) },
                aprep = |ap| -> (__m256i, __m256i) {
                    (_mm256_loadu_si256(ap.add(4).cast()), _mm256_setzero_si256())
                },
                offset_dot = |acc, _a| { acc },
                idot = |acc, q, a| { $dot(acc, q, a.0) },
            );

            // Q4_0 x Q8_0: isum = sum(q * a) - sum(8 * a), the second dot as the first's
            // (negated) starting value.
            $crate::quant::dot::canon256::tile_kernel!(
                q4_0,
                $feat,
                wb = 18,
                ab = 34,
                hi = $hi,
                offset_term = false,
                wprep = |wp| -> __m256i { $unpack(wp.add(2)) },
                aprep = |ap| -> (__m256i, __m256i) {
                    (_mm256_loadu_si256(ap.add(2).cast()), _mm256_setzero_si256())
                },
                offset_dot = |acc, a| {
                    let off =
                        _mm256_setr_m128i(_mm_set1_epi8(8), _mm_set1_epi8(($off_hi as u8) as i8));
                    $dot(acc, off, a.0)
                },
                idot = |acc, q, a| { $dot(acc, q, a.0) },
            );

            // Q5_1 x Q8_1 (headers: w [d, m], a [d, s]): isum = sum(q * a), q 0..=31 in
            // both halves (no high-lane shift: 16 * 31 would not fit a byte).
            $crate::quant::dot::canon256::tile_kernel!(
                q5_1,
                $feat,
                wb = 24,
                ab = 36,
                hi = 0,
                offset_term = true,
                wprep = |wp| -> __m256i { $unpack5(wp.add(8), wp.add(4)) },
                aprep = |ap| -> (__m256i, __m256i) {
                    (_mm256_loadu_si256(ap.add(4).cast()), _mm256_setzero_si256())
                },
                offset_dot = |acc, _a| { acc },
                idot = |acc, q, a| { $dot(acc, q, a.0) },
            );

            // Q5_0 x Q8_0: isum = sum(q * a) - sum(16 * a), as Q4_0 with offset 16.
            $crate::quant::dot::canon256::tile_kernel!(
                q5_0,
                $feat,
                wb = 22,
                ab = 34,
                hi = 0,
                offset_term = false,
                wprep = |wp| -> __m256i { $unpack5(wp.add(6), wp.add(2)) },
                aprep = |ap| -> (__m256i, __m256i) {
                    (_mm256_loadu_si256(ap.add(2).cast()), _mm256_setzero_si256())
                },
                offset_dot = |acc, a| { $dot(acc, _mm256_set1_epi8(16), a.0) },
                idot = |acc, q, a| { $dot(acc, q, a.0) },
            );

            // IQ4_NL x Q8_0: the table values (s8, never 0) x a, as Q8_0's s8 x s8: |v| (u8)
            // x (a with v's sign); |v| <= 127 and |a| <= 127 keep `vpmaddubsw` exact.
            $crate::quant::dot::canon256::tile_kernel!(
                iq4_nl,
                $feat,
                wb = 18,
                ab = 34,
                hi = 0,
                offset_term = false,
                wprep = |wp| -> __m256i {
                    $crate::quant::dot::canon256::iq4_lookup(
                        $crate::quant::dot::canon256::unpack_q4_shift(wp.add(2)),
                    )
                },
                aprep = |ap| -> (__m256i, __m256i) {
                    (_mm256_loadu_si256(ap.add(2).cast()), _mm256_setzero_si256())
                },
                offset_dot = |acc, _a| { acc },
                idot = |acc, wq, a| { $dot(acc, _mm256_abs_epi8(wq), _mm256_sign_epi8(a.0, wq)) },
            );

            // Q8_0 x Q8_0: s8 x s8 as |w| (u8) x (a with w's sign).
            $crate::quant::dot::canon256::tile_kernel!(
                q8_0,
                $feat,
                wb = 34,
                ab = 34,
                hi = 0,
                offset_term = false,
                wprep = |wp| -> __m256i { _mm256_loadu_si256(wp.add(2).cast()) },
                aprep = |ap| -> (__m256i, __m256i) {
                    (_mm256_loadu_si256(ap.add(2).cast()), _mm256_setzero_si256())
                },
                offset_dot = |acc, _a| { acc },
                idot = |acc, wq, a| { $dot(acc, _mm256_abs_epi8(wq), _mm256_sign_epi8(a.0, wq)) },
            );
        }
    };
}
pub(super) use canonical_kernels256;

/// Safe `DotFn`/`Dot4Fn`/`DotRows4Fn` entry points around a tile kernel of
/// [`canonical_kernels256`]: one length check per row, then the call. Only for kernel
/// tables handed out when the CPU has the kernel's features.
macro_rules! entries {
    ($one:ident, $four:ident, $rows4:ident, $m:ident :: $k:ident, $wb:expr, $ab:expr) => {
        fn $one(n: usize, w: &[u8], a: &[u8]) -> f32 {
            $crate::quant::dot::check_lengths(n, w, a, 32, $wb, $ab);
            let mut out = [0f32; 4];
            let t = $crate::quant::dot::f16_table::f16_table().as_ptr();
            // SAFETY: lengths checked above; this table is only handed out when the CPU has
            // the kernel's features (see dot::available_kernels).
            unsafe { $m::$k::<1, 1>(n, [w.as_ptr(); 4], [a.as_ptr(); 4], &mut out, t) };
            out[0]
        }
        fn $four(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            for r in a {
                $crate::quant::dot::check_lengths(n, w, r, 32, $wb, $ab);
            }
            let t = $crate::quant::dot::f16_table::f16_table().as_ptr();
            // SAFETY: as above, for all four rows.
            unsafe { $m::$k::<1, 4>(n, [w.as_ptr(); 4], a.map(|r| r.as_ptr()), out, t) };
        }
        fn $rows4(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32; 4]) {
            for r in w {
                $crate::quant::dot::check_lengths(n, r, a, 32, $wb, $ab);
            }
            let t = $crate::quant::dot::f16_table::f16_table().as_ptr();
            // SAFETY: as above, for all four rows.
            unsafe { $m::$k::<4, 1>(n, w.map(|r| r.as_ptr()), [a.as_ptr(); 4], out, t) };
        }
    };
}
pub(super) use entries;
