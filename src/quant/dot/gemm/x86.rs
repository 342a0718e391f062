//! The tiled kernels of mod.rs on x86-64: 16-row panels in zmm registers (AVX-512 VNNI) and
//! 8-row panels in ymm registers (AVX-VNNI `vpdpbusd`, or AVX2 `vpmaddubsw + vpmaddwd`).
//!
//! Panel scratch, per block `b` of the row (aligned to 64 bytes), `V` = the vector's bytes:
//! `W[b][0..8]` (8 vectors: lane r = row r's unsigned quants of group k), then the rows'
//! `f32(d)` and, for Q4_1 / Q5_1, their `f32(m)`: 10 vectors per block.
//!
//! IQ4_NL is Q4_0's layout with a non-linear value map: its unpacked byte is the table value
//! plus 128 ([`IQ4_U8`], one byte shuffle per vector of nibbles), so it sums against the
//! activations like Q8_0's offset bytes, starting at `-128 * sum(a)`. On the AVX2 table, where
//! `vpmaddubsw` would saturate on those bytes, the panel holds the signed table values
//! ([`IQ4_S8`]) instead and the dot is [`dot_sign`].

use super::{ActMeta, GemmArgs, GemmKernels};
use crate::quant::dot::Isa;
use crate::quant::GgmlType;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// How a 32-element weight format is unpacked into unsigned bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 16 bytes of nibbles at `qs`: element j the low nibble of byte j, j + 16 the high one.
    Q4,
    /// Q4's nibbles plus bit 4 of element j in bit j of the u32 at `qh`.
    Q5,
    /// 32 signed bytes at `qs`, made unsigned by adding 128 (the format's offset), or left
    /// signed where the offset is 0 (the AVX2 table's [`dot_sign`]).
    Q8,
    /// Q4's nibbles as indices into the IQ4 table, made unsigned by adding 128 ([`IQ4_U8`]),
    /// or left signed ([`IQ4_S8`]) where the format's offset is 0 (the AVX2 table).
    Iq4,
}

/// The IQ4 table (formats/iq4_nl.rs `VALUES`, -127..=113) plus 128, as unsigned bytes (1..=241)
/// in 4 little-endian i32: the byte-shuffle table of IQ4_NL here and of IQ4_XS in kquant.rs,
/// whose offset `128 * Σ a` the kernels subtract exactly.
pub(super) const IQ4_U8: [i32; 4] = iq4_table(128);
/// The IQ4 table as signed bytes, packed the same way: the AVX2 table's (see [`dot_sign`]).
pub(super) const IQ4_S8: [i32; 4] = iq4_table(0);

const fn iq4_table(bias: i32) -> [i32; 4] {
    let v = crate::quant::formats::iq4_nl::VALUES;
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 16 {
        out[i / 4] |= (((v[i] as i32 + bias) as u8) as u32) << (8 * (i % 4));
        i += 1;
    }
    [out[0] as i32, out[1] as i32, out[2] as i32, out[3] as i32]
}

/// `acc + sum(w x a over groups of 4)` for signed weight bytes on the AVX2 table: `vpmaddubsw`
/// of |w| (<= 127 for the IQ4 table, <= 128 for Q8_0, where |-128| = 128 is still a valid
/// unsigned byte) against `a` with w's sign. The activation quantizers keep |a| <= 127, so
/// `sign(a, w)` is exact and the i16 pair sums (<= 2 * 128 * 127 = 32512) never saturate (the
/// row kernels rely on the same bound).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn dot_sign(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
}

/// One weight format: block bytes, where its quants are, the offset that makes them
/// unsigned (subtracted again as `offset * sum(a)`), whether it has the `m * s` term, and
/// its activation blocks' bytes and quant offset.
#[derive(Clone, Copy)]
struct Fmt {
    wb: usize,
    qs: usize,
    qh: usize,
    kind: Kind,
    offset: i32,
    has_m: bool,
    ab: usize,
    aq: usize,
}

const Q4_0: usize = 0;
const Q4_1: usize = 1;
const Q5_0: usize = 2;
const Q5_1: usize = 3;
const Q8_0: usize = 4;
const IQ4_NL: usize = 5;
/// IQ4_NL with signed values, for [`dot_sign`].
const IQ4_NL_SIGNED: usize = 6;
/// Q8_0 with signed quants, for [`dot_sign`].
const Q8_0_SIGNED: usize = 7;

#[rustfmt::skip]
const FMTS: [Fmt; 8] = [
    Fmt { wb: 18, qs: 2, qh: 0, kind: Kind::Q4, offset: 8, has_m: false, ab: 34, aq: 2 },
    Fmt { wb: 20, qs: 4, qh: 0, kind: Kind::Q4, offset: 0, has_m: true, ab: 36, aq: 4 },
    Fmt { wb: 22, qs: 6, qh: 2, kind: Kind::Q5, offset: 16, has_m: false, ab: 34, aq: 2 },
    Fmt { wb: 24, qs: 8, qh: 4, kind: Kind::Q5, offset: 0, has_m: true, ab: 36, aq: 4 },
    Fmt { wb: 34, qs: 2, qh: 0, kind: Kind::Q8, offset: 128, has_m: false, ab: 34, aq: 2 },
    Fmt { wb: 18, qs: 2, qh: 0, kind: Kind::Iq4, offset: 128, has_m: false, ab: 34, aq: 2 },
    Fmt { wb: 18, qs: 2, qh: 0, kind: Kind::Iq4, offset: 0, has_m: false, ab: 34, aq: 2 },
    Fmt { wb: 34, qs: 2, qh: 0, kind: Kind::Q8, offset: 0, has_m: false, ab: 34, aq: 2 },
];

/// Vectors of panel scratch per block.
const VECS_PER_BLOCK: usize = 10;

/// Panics unless the arguments describe readable rows and a large enough `out` (the one
/// check before the unchecked loads).
fn check(a: &GemmArgs<'_>, out: &[f32], panel: usize, f: Fmt) {
    let nb = a.n / 32;
    assert!(
        a.n.is_multiple_of(32)
            && (1..=panel).contains(&a.rows)
            && a.row_bytes >= nb * f.wb
            && a.w.len() >= (a.rows - 1) * a.row_bytes + nb * f.wb
            && panel * a.row_bytes <= i32::MAX as usize
            && a.act_row_bytes >= nb * f.ab
            && (a.n_tokens == 0 || a.acts.len() >= (a.n_tokens - 1) * a.act_row_bytes + nb * f.ab)
            && a.meta.len() >= a.n_tokens * nb
            && out.len() >= a.n_tokens * panel,
        "gemm kernel: bad arguments (n={}, rows={}, tokens={})",
        a.n,
        a.rows,
        a.n_tokens
    );
}

/// The 64-byte-aligned panel scratch of `nb` blocks of `vec` bytes per vector, in `scratch`.
fn panel_buf(scratch: &mut Vec<u8>, nb: usize, vec: usize) -> *mut u8 {
    aligned_panel(scratch, nb * VECS_PER_BLOCK * vec)
}

/// `bytes` of 64-byte-aligned panel scratch in `scratch` (the K-quant kernels' too).
pub(super) fn aligned_panel(scratch: &mut Vec<u8>, bytes: usize) -> *mut u8 {
    scratch.resize(bytes + 64, 0);
    let p = scratch.as_mut_ptr();
    p.wrapping_add(p.align_offset(64))
}

/// Byte offsets of the panel's rows from row 0 (rows past `rows` repeat the last one, so
/// every gather reads inside the matrix; their lanes are never written out).
pub(super) fn row_offsets<const P: usize>(rows: usize, row_bytes: usize) -> [i32; P] {
    std::array::from_fn(|r| (r.min(rows - 1) * row_bytes) as i32)
}

// ---------------------------------------------------------------------------------------
// AVX-512: 16-row panels.

/// `dst[k]` lane r = the little-endian dword at bytes 4k..4k + 4 of the `bytes`-byte
/// block at `blk + offs[r]` (bytes past `bytes` read as 0), for k < ceil(bytes / 4): each
/// row's block loaded whole (byte-masked past `bytes`, so nothing outside it is read)
/// and transposed, 16 dwords of 16 rows at a time. Gathering the dwords one offset at a
/// time (`vpgatherdd`) took 30 % of an 8B Q4_K_M prompt on Zen 5.
///
/// # Safety
/// `bytes` readable at each `blk + offs[r]`; `dst` holds ceil(bytes / 4) vectors.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(super) unsafe fn block_dwords16(
    blk: *const u8,
    offs: &[i32],
    bytes: usize,
    dst: &mut [__m512i],
) {
    let mut c = 0;
    while 64 * c < bytes {
        let left = bytes - 64 * c;
        let mask: u64 = if left >= 64 { !0 } else { (1u64 << left) - 1 };
        // SAFETY: the caller's contract; masked-off bytes are not read.
        let rows: [__m512i; 16] = std::array::from_fn(|r| unsafe {
            _mm512_maskz_loadu_epi8(mask, blk.offset(offs[r] as isize + 64 * c as isize).cast())
        });
        // Dword pairs, then quads, of row pairs and quads within each 128-bit lane.
        let t: [__m512i; 16] = std::array::from_fn(|i| {
            let (a, b) = (rows[i & !1], rows[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(a, b)
            } else {
                _mm512_unpackhi_epi32(a, b)
            }
        });
        // u[4q + j] lane L: rows 4q..4q + 4 at dword 4L + j.
        let u: [__m512i; 16] = std::array::from_fn(|i| {
            let (q, j) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + j / 2], t[4 * q + 2 + j / 2]);
            if j % 2 == 0 {
                _mm512_unpacklo_epi64(a, b)
            } else {
                _mm512_unpackhi_epi64(a, b)
            }
        });
        for j in 0..4 {
            let x0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
            let x1 = _mm512_shuffle_i32x4::<0xEE>(u[j], u[4 + j]);
            let y0 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
            let y1 = _mm512_shuffle_i32x4::<0xEE>(u[8 + j], u[12 + j]);
            let out = [
                _mm512_shuffle_i32x4::<0x88>(x0, y0),
                _mm512_shuffle_i32x4::<0xDD>(x0, y0),
                _mm512_shuffle_i32x4::<0x88>(x1, y1),
                _mm512_shuffle_i32x4::<0xDD>(x1, y1),
            ];
            for (l, v) in out.into_iter().enumerate() {
                let k = 16 * c + 4 * l + j;
                if k < dst.len() {
                    dst[k] = v;
                }
            }
        }
        c += 1;
    }
}

/// Unpacks the panel's rows into `panel` (see the module docs). Each row's block is loaded
/// whole and transposed ([`block_dwords16`]): gathering it a dword at a time (`vpgatherdd`,
/// 16 cache lines per instruction) took three quarters of the kernel on Zen 5.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI; `check` passed for `a`; `panel` holds nb * 10 aligned zmm.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pack16<const F: usize>(a: &GemmArgs<'_>, panel: *mut u8) {
    let f = FMTS[F];
    let offs = row_offsets::<16>(a.rows, a.row_bytes);
    // dw[k] lane r: the dword at bytes 4k..4k + 4 of row r's block (34 bytes at most: 9).
    let mut dw = [_mm512_setzero_si512(); 9];
    let n_dw = f.wb.div_ceil(4);
    // The dword at byte `o` of the block: every field starts at an even byte.
    let at = |dw: &[__m512i; 9], o: usize| {
        if o.is_multiple_of(4) {
            dw[o / 4]
        } else {
            _mm512_or_si512(
                _mm512_srli_epi32::<16>(dw[o / 4]),
                _mm512_slli_epi32::<16>(dw[o / 4 + 1]),
            )
        }
    };
    // SAFETY: `block_dwords16` reads block b of rows `check` verified (`wb` bytes each); the
    // stores stay inside the panel scratch the caller sized.
    unsafe {
        let nib = _mm512_set1_epi32(0x0F0F_0F0F);
        let [t0, t1, t2, t3] = IQ4_U8;
        let lut = _mm512_broadcast_i32x4(_mm_setr_epi32(t0, t1, t2, t3));
        for b in 0..a.n / 32 {
            let blk = a.w.as_ptr().add(b * f.wb);
            block_dwords16(blk, &offs, f.wb, &mut dw[..n_dw]);
            let dst = panel.add(b * VECS_PER_BLOCK * 64);
            let store = |i: usize, v: __m512i| _mm512_store_si512(dst.add(i * 64).cast(), v);
            let head = dw[0];
            let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head));
            store(8, _mm512_castps_si512(d));
            if f.has_m {
                let m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(head)));
                store(9, _mm512_castps_si512(m));
            }
            match f.kind {
                Kind::Q8 => {
                    let flip = _mm512_set1_epi8(if f.offset == 128 { -128 } else { 0 });
                    for k in 0..8 {
                        store(k, _mm512_xor_si512(at(&dw, f.qs + 4 * k), flip));
                    }
                }
                Kind::Q4 | Kind::Q5 | Kind::Iq4 => {
                    let qh = if f.kind == Kind::Q5 {
                        at(&dw, f.qh)
                    } else {
                        _mm512_setzero_si512()
                    };
                    // Bits 4k..4k + 4 of qh -> bit 4 of bytes 0..4: the multiply places
                    // bit i at 8i (i + 7i) with no carries (the 4-bit copies don't overlap).
                    let high = |k: usize| {
                        let bits = _mm512_and_si512(
                            _mm512_srlv_epi32(qh, _mm512_set1_epi32(4 * k as i32)),
                            _mm512_set1_epi32(0xF),
                        );
                        let spread = _mm512_and_si512(
                            _mm512_mullo_epi32(bits, _mm512_set1_epi32(0x0020_4081)),
                            _mm512_set1_epi32(0x0101_0101),
                        );
                        _mm512_slli_epi32::<4>(spread)
                    };
                    for k in 0..4 {
                        let q = at(&dw, f.qs + 4 * k);
                        let mut lo = _mm512_and_si512(q, nib);
                        let mut hi = _mm512_and_si512(_mm512_srli_epi32::<4>(q), nib);
                        if f.kind == Kind::Q5 {
                            lo = _mm512_or_si512(lo, high(k));
                            hi = _mm512_or_si512(hi, high(k + 4));
                        }
                        if f.kind == Kind::Iq4 {
                            // Nibbles 0..=15 index the table in every 128-bit lane.
                            lo = _mm512_shuffle_epi8(lut, lo);
                            hi = _mm512_shuffle_epi8(lut, hi);
                        }
                        store(k, lo);
                        store(k + 4, hi);
                    }
                }
            }
        }
    }
}

/// Tokens `t0..t0 + T` against the unpacked panel: `out[t * 16 + r]`.
///
/// # Safety
/// As [`pack16`], after it filled `panel`; `t0 + T <= a.n_tokens`; n >= 32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tokens16<const F: usize, const T: usize>(
    a: &GemmArgs<'_>,
    panel: *const u8,
    t0: usize,
    out: *mut f32,
) {
    let f = FMTS[F];
    let nb = a.n / 32;
    let used = nb.min(32);
    // lanes[L][t]: canonical lane accumulator L of token t0 + t, one row per vector lane.
    let mut lanes = [[MaybeUninit::<__m512>::uninit(); T]; 32];
    // SAFETY: panel reads are inside the nb blocks `pack16` wrote; activation and meta reads
    // are inside the rows of tokens < n_tokens that `check` verified; out has n_tokens * 16.
    unsafe {
        for (l, lane) in lanes.iter_mut().enumerate().take(used) {
            let mut acc = [_mm512_setzero_ps(); T];
            let mut b = l;
            while b < nb {
                let pb = panel.add(b * VECS_PER_BLOCK * 64);
                let w: [__m512i; 8] =
                    std::array::from_fn(|k| _mm512_load_si512(pb.add(k * 64).cast()));
                let wd = _mm512_load_ps(pb.add(8 * 64).cast());
                let wm = if f.has_m {
                    _mm512_load_ps(pb.add(9 * 64).cast())
                } else {
                    _mm512_setzero_ps()
                };
                for (t, acc) in acc.iter_mut().enumerate() {
                    let tok = t0 + t;
                    let m: ActMeta = *a.meta.get_unchecked(tok * nb + b);
                    let ap = a.acts.as_ptr().add(tok * a.act_row_bytes + b * f.ab + f.aq);
                    let mut s = _mm512_set1_epi32(-(f.offset * m.sum));
                    for (k, &wk) in w.iter().enumerate() {
                        let g = ap.add(4 * k).cast::<i32>().read_unaligned();
                        s = _mm512_dpbusd_epi32(s, wk, _mm512_set1_epi32(g));
                    }
                    let dd = _mm512_mul_ps(wd, _mm512_set1_ps(m.d));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, *acc);
                    if f.has_m {
                        *acc = _mm512_fmadd_ps(wm, _mm512_set1_ps(m.s), *acc);
                    }
                }
                b += 32;
            }
            for (dst, v) in lane.iter_mut().zip(acc) {
                dst.write(v);
            }
        }
        // The butterfly over the lanes some block reached (see mod.rs on the others).
        let (mut live, mut m) = (used, 16);
        while m > 0 {
            let (lo, hi) = lanes.split_at_mut(m);
            for (dst, src) in lo.iter_mut().zip(hi.iter()).take(live.saturating_sub(m)) {
                for (x, y) in dst.iter_mut().zip(src) {
                    x.write(_mm512_add_ps(x.assume_init(), y.assume_init()));
                }
            }
            live = live.min(m);
            m /= 2;
        }
        for (t, v) in lanes[0].iter().enumerate() {
            _mm512_storeu_ps(out.add((t0 + t) * 16), v.assume_init());
        }
    }
}

/// The whole product of [`GemmArgs`] with 16-row panels.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI; `check` passed.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn gemm16<const F: usize>(a: &GemmArgs<'_>, out: &mut [f32], scratch: &mut Vec<u8>) {
    let nb = a.n / 32;
    if nb == 0 {
        out[..a.n_tokens * 16].fill(0.0); // the butterfly of 32 zero lanes
        return;
    }
    let panel = panel_buf(scratch, nb, 64);
    let o = out.as_mut_ptr();
    // SAFETY: the caller's contract; token groups stay below n_tokens.
    unsafe {
        pack16::<F>(a, panel);
        let mut t = 0;
        while t + 8 <= a.n_tokens {
            tokens16::<F, 8>(a, panel, t, o);
            t += 8;
        }
        if t + 4 <= a.n_tokens {
            tokens16::<F, 4>(a, panel, t, o);
            t += 4;
        }
        while t < a.n_tokens {
            tokens16::<F, 1>(a, panel, t, o);
            t += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------
// 256-bit: 8-row panels, the u8 x s8 dot given per table.

/// [`block_dwords16`] for 8 rows (AVX2): `dst[k]` lane r = the dword at bytes 4k..4k + 4 of
/// the `bytes`-byte block at `blk + offs[r]`, for k < ceil(bytes / 4). Whole dwords are loaded
/// per row (`vpmaskmovd`, 8 at a time, nothing past them read) and transposed 8 x 8; a last,
/// partial dword is the one ending at `bytes`, gathered and shifted down (bytes past `bytes`
/// read as 0). Gathering every dword instead cost the tiled kernels more than their tokens'
/// work below 16 tokens on Zen 5 (see `GEMM_MIN_TOKENS_AMD` in backend/cpu/matmul.rs).
///
/// # Safety
/// `bytes` (>= 4) readable at each `blk + offs[r]`; `dst` holds ceil(bytes / 4) vectors.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn block_dwords8(
    blk: *const u8,
    offs: &[i32],
    bytes: usize,
    dst: &mut [__m256i],
) {
    let whole = bytes / 4;
    let mut c = 0;
    while 8 * c < whole {
        let left = (whole - 8 * c).min(8);
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(left as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: the caller's contract; the masked-off dwords are not read.
        let rows: [__m256i; 8] = std::array::from_fn(|r| unsafe {
            _mm256_maskload_epi32(blk.offset(offs[r] as isize + 32 * c as isize).cast(), mask)
        });
        // t[2p] / t[2p + 1]: rows 2p, 2p + 1 interleaved at dwords 0, 1, 4, 5 / 2, 3, 6, 7.
        let t: [__m256i; 8] = std::array::from_fn(|i| {
            let (a, b) = (rows[i & !1], rows[i | 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi32(a, b)
            } else {
                _mm256_unpackhi_epi32(a, b)
            }
        });
        // u[4q + j] lane L (of 4 in each half): row 4q + L at dword j (low half), j + 4 (high).
        let u: [__m256i; 8] = std::array::from_fn(|i| {
            let (q, j) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + j / 2], t[4 * q + 2 + j / 2]);
            if j % 2 == 0 {
                _mm256_unpacklo_epi64(a, b)
            } else {
                _mm256_unpackhi_epi64(a, b)
            }
        });
        for j in 0..4 {
            let out = [
                _mm256_permute2x128_si256::<0x20>(u[j], u[4 + j]),
                _mm256_permute2x128_si256::<0x31>(u[j], u[4 + j]),
            ];
            for (h, v) in out.into_iter().enumerate() {
                let k = 8 * c + 4 * h + j;
                if k < whole {
                    dst[k] = v;
                }
            }
        }
        c += 1;
    }
    if !bytes.is_multiple_of(4) {
        // SAFETY: the caller's contract: the dword ending at `bytes` is inside each block.
        let last = unsafe {
            let idx = _mm256_loadu_si256(offs.as_ptr().cast());
            _mm256_i32gather_epi32::<1>(blk.add(bytes - 4).cast(), idx)
        };
        let shift = _mm_cvtsi32_si128(8 * (4 - bytes % 4) as i32);
        dst[whole] = _mm256_srl_epi32(last, shift);
    }
}

/// Generates module `$m` with `gemm8::<F>` for the dot primitive `$dot` (accumulate the 4
/// u8 x s8 products of each dword into its i32 lane).
macro_rules! gemm8_module {
    ($m:ident, $feat:literal, $dot:path) => {
        mod $m {
            use super::*;

            /// 8 gathered f16 pairs' low halves (or high halves, `HIGH`) -> 8 f32.
            #[target_feature(enable = $feat)]
            fn f16_lanes<const HIGH: bool>(g: __m256i) -> __m256 {
                let v = if HIGH {
                    _mm256_srli_epi32::<16>(g)
                } else {
                    _mm256_and_si256(g, _mm256_set1_epi32(0xFFFF))
                };
                // [v0..v3, v0..v3 | v4..v7, v4..v7] as u16 -> [v0..v7] in the low 128 bits.
                let p = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(v, v));
                _mm256_cvtph_ps(_mm256_castsi256_si128(p))
            }

            /// Unpacks the panel's rows into `panel`, as `pack16` (by [`block_dwords8`]).
            ///
            /// # Safety
            /// The CPU has `$feat`; `check` passed for `a`; `panel` holds nb * 10 aligned ymm.
            #[target_feature(enable = $feat)]
            unsafe fn pack8<const F: usize>(a: &GemmArgs<'_>, panel: *mut u8) {
                let f = FMTS[F];
                let offs = row_offsets::<8>(a.rows, a.row_bytes);
                // dw[k] lane r: the dword at bytes 4k..4k + 4 of row r's block.
                let mut dw = [_mm256_setzero_si256(); 9];
                let n_dw = f.wb.div_ceil(4);
                // The dword at byte `o` of the block: every field starts at an even byte.
                let at = |dw: &[__m256i; 9], o: usize| {
                    if o.is_multiple_of(4) {
                        dw[o / 4]
                    } else {
                        _mm256_or_si256(
                            _mm256_srli_epi32::<16>(dw[o / 4]),
                            _mm256_slli_epi32::<16>(dw[o / 4 + 1]),
                        )
                    }
                };
                // SAFETY: as in pack16: `block_dwords8` reads inside checked blocks, the
                // stores stay inside the panel scratch.
                unsafe {
                    let nib = _mm256_set1_epi32(0x0F0F_0F0F);
                    let [t0, t1, t2, t3] = if f.offset == 0 { IQ4_S8 } else { IQ4_U8 };
                    let lut = _mm256_setr_epi32(t0, t1, t2, t3, t0, t1, t2, t3);
                    for b in 0..a.n / 32 {
                        let blk = a.w.as_ptr().add(b * f.wb);
                        block_dwords8(blk, &offs, f.wb, &mut dw[..n_dw]);
                        let dst = panel.add(b * VECS_PER_BLOCK * 32);
                        let store =
                            |i: usize, v: __m256i| _mm256_store_si256(dst.add(i * 32).cast(), v);
                        let head = dw[0];
                        store(8, _mm256_castps_si256(f16_lanes::<false>(head)));
                        if f.has_m {
                            store(9, _mm256_castps_si256(f16_lanes::<true>(head)));
                        }
                        match f.kind {
                            Kind::Q8 => {
                                let flip = _mm256_set1_epi8(if f.offset == 128 { -128 } else { 0 });
                                for k in 0..8 {
                                    store(k, _mm256_xor_si256(at(&dw, f.qs + 4 * k), flip));
                                }
                            }
                            Kind::Q4 | Kind::Q5 | Kind::Iq4 => {
                                let qh = if f.kind == Kind::Q5 {
                                    at(&dw, f.qh)
                                } else {
                                    _mm256_setzero_si256()
                                };
                                // As in pack16.
                                let high = |k: usize| {
                                    let bits = _mm256_and_si256(
                                        _mm256_srlv_epi32(qh, _mm256_set1_epi32(4 * k as i32)),
                                        _mm256_set1_epi32(0xF),
                                    );
                                    let spread = _mm256_and_si256(
                                        _mm256_mullo_epi32(bits, _mm256_set1_epi32(0x0020_4081)),
                                        _mm256_set1_epi32(0x0101_0101),
                                    );
                                    _mm256_slli_epi32::<4>(spread)
                                };
                                for k in 0..4 {
                                    let q = at(&dw, f.qs + 4 * k);
                                    let mut lo = _mm256_and_si256(q, nib);
                                    let mut hi = _mm256_and_si256(_mm256_srli_epi32::<4>(q), nib);
                                    if f.kind == Kind::Q5 {
                                        lo = _mm256_or_si256(lo, high(k));
                                        hi = _mm256_or_si256(hi, high(k + 4));
                                    }
                                    if f.kind == Kind::Iq4 {
                                        lo = _mm256_shuffle_epi8(lut, lo);
                                        hi = _mm256_shuffle_epi8(lut, hi);
                                    }
                                    store(k, lo);
                                    store(k + 4, hi);
                                }
                            }
                        }
                    }
                }
            }

            /// Tokens `t0..t0 + T` against the unpacked panel: `out[t * 8 + r]`.
            ///
            /// # Safety
            /// As [`pack8`], after it filled `panel`; `t0 + T <= a.n_tokens`; n >= 32.
            #[target_feature(enable = $feat)]
            unsafe fn tokens8<const F: usize, const T: usize>(
                a: &GemmArgs<'_>,
                panel: *const u8,
                t0: usize,
                out: *mut f32,
            ) {
                let f = FMTS[F];
                let nb = a.n / 32;
                let used = nb.min(32);
                let mut lanes = [[MaybeUninit::<__m256>::uninit(); T]; 32];
                // SAFETY: as in tokens16.
                unsafe {
                    for (l, lane) in lanes.iter_mut().enumerate().take(used) {
                        let mut acc = [_mm256_setzero_ps(); T];
                        let mut b = l;
                        while b < nb {
                            let pb = panel.add(b * VECS_PER_BLOCK * 32);
                            let wd = _mm256_load_ps(pb.add(8 * 32).cast());
                            let mut s: [__m256i; T] = std::array::from_fn(|t| {
                                let m = a.meta.get_unchecked((t0 + t) * nb + b);
                                _mm256_set1_epi32(-(f.offset * m.sum))
                            });
                            for k in 0..8 {
                                let wk = _mm256_load_si256(pb.add(k * 32).cast());
                                for (t, s) in s.iter_mut().enumerate() {
                                    let ap = a
                                        .acts
                                        .as_ptr()
                                        .add((t0 + t) * a.act_row_bytes + b * f.ab + f.aq + 4 * k);
                                    let g = ap.cast::<i32>().read_unaligned();
                                    *s = $dot(*s, wk, _mm256_set1_epi32(g));
                                }
                            }
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let m: ActMeta = *a.meta.get_unchecked((t0 + t) * nb + b);
                                let dd = _mm256_mul_ps(wd, _mm256_set1_ps(m.d));
                                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), dd, *acc);
                                if f.has_m {
                                    let wm = _mm256_load_ps(pb.add(9 * 32).cast());
                                    *acc = _mm256_fmadd_ps(wm, _mm256_set1_ps(m.s), *acc);
                                }
                            }
                            b += 32;
                        }
                        for (dst, v) in lane.iter_mut().zip(acc) {
                            dst.write(v);
                        }
                    }
                    let (mut live, mut m) = (used, 16);
                    while m > 0 {
                        let (lo, hi) = lanes.split_at_mut(m);
                        let pairs = lo.iter_mut().zip(hi.iter());
                        for (dst, src) in pairs.take(live.saturating_sub(m)) {
                            for (x, y) in dst.iter_mut().zip(src) {
                                x.write(_mm256_add_ps(x.assume_init(), y.assume_init()));
                            }
                        }
                        live = live.min(m);
                        m /= 2;
                    }
                    for (t, v) in lanes[0].iter().enumerate() {
                        _mm256_storeu_ps(out.add((t0 + t) * 8), v.assume_init());
                    }
                }
            }

            /// # Safety
            /// The CPU has `$feat`; `check` passed.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn gemm8<const F: usize>(
                a: &GemmArgs<'_>,
                out: &mut [f32],
                scratch: &mut Vec<u8>,
            ) {
                let nb = a.n / 32;
                if nb == 0 {
                    out[..a.n_tokens * 8].fill(0.0);
                    return;
                }
                let panel = panel_buf(scratch, nb, 32);
                let o = out.as_mut_ptr();
                // SAFETY: the caller's contract; token groups stay below n_tokens.
                unsafe {
                    pack8::<F>(a, panel);
                    let mut t = 0;
                    while t + 4 <= a.n_tokens {
                        tokens8::<F, 4>(a, panel, t, o);
                        t += 4;
                    }
                    while t < a.n_tokens {
                        tokens8::<F, 1>(a, panel, t, o);
                        t += 1;
                    }
                }
            }
        }
    };
}

gemm8_module!(
    vnni256,
    "avx2,fma,f16c,avxvnni",
    crate::quant::dot::canon256::dot_avxvnni
);
// `vpmaddubsw` saturates its i16 pair sums: exact for Q4/Q5 quants (2 * 31 * 128 < 2^15),
// not for the offset bytes of Q8_0 (up to 255) or IQ4_NL (up to 241), which take their signed
// values and `dot_sign` instead.
gemm8_module!(
    avx2_256,
    "avx2,fma,f16c",
    crate::quant::dot::canon256::dot_maddubs
);
gemm8_module!(avx2_sign256, "avx2,fma,f16c", super::dot_sign);

/// Safe [`super::GemmFn`] entry points: the argument check, then the kernel.
macro_rules! entry {
    ($name:ident, $($kernel:ident)::+, $f:expr, $panel:expr) => {
        fn $name(a: &GemmArgs<'_>, out: &mut [f32], scratch: &mut Vec<u8>) {
            check(a, out, $panel, FMTS[$f]);
            // SAFETY: checked above; the table holding this entry is only handed out when
            // the CPU has the kernel's features (see gemm_kernels_on).
            unsafe { $($kernel)::+::<{ $f }>(a, out, scratch) }
        }
    };
}

entry!(q4_0_16, gemm16, Q4_0, 16);
entry!(q4_1_16, gemm16, Q4_1, 16);
entry!(q5_0_16, gemm16, Q5_0, 16);
entry!(q5_1_16, gemm16, Q5_1, 16);
entry!(q8_0_16, gemm16, Q8_0, 16);
entry!(iq4_nl_16, gemm16, IQ4_NL, 16);
entry!(q4_0_vnni8, vnni256::gemm8, Q4_0, 8);
entry!(q4_1_vnni8, vnni256::gemm8, Q4_1, 8);
entry!(q5_0_vnni8, vnni256::gemm8, Q5_0, 8);
entry!(q5_1_vnni8, vnni256::gemm8, Q5_1, 8);
entry!(q8_0_vnni8, vnni256::gemm8, Q8_0, 8);
entry!(iq4_nl_vnni8, vnni256::gemm8, IQ4_NL, 8);
entry!(q4_0_avx2_8, avx2_256::gemm8, Q4_0, 8);
entry!(q4_1_avx2_8, avx2_256::gemm8, Q4_1, 8);
entry!(q5_0_avx2_8, avx2_256::gemm8, Q5_0, 8);
entry!(q5_1_avx2_8, avx2_256::gemm8, Q5_1, 8);
entry!(iq4_nl_avx2_8, avx2_sign256::gemm8, IQ4_NL_SIGNED, 8);
entry!(q8_0_avx2_8, avx2_sign256::gemm8, Q8_0_SIGNED, 8);

macro_rules! k {
    ($run:ident, $panel:expr, $name:literal, $ty:ident, $isa:ident) => {
        GemmKernels {
            run: $run,
            panel: $panel,
            name: $name,
            weight: GgmlType::$ty,
            isa: Isa::$isa,
        }
    };
}

/// Every tiled kernel, fastest first per type (AVX-512's 16-row panels do twice the work
/// per instruction of the 8-row ones).
pub(super) static KERNELS: &[GemmKernels] = &[
    k!(q4_0_16, 16, "q4_0*q8_0 gemm16 avx512", Q4_0, Avx512),
    k!(q4_1_16, 16, "q4_1*q8_1 gemm16 avx512", Q4_1, Avx512),
    k!(q5_0_16, 16, "q5_0*q8_0 gemm16 avx512", Q5_0, Avx512),
    k!(q5_1_16, 16, "q5_1*q8_1 gemm16 avx512", Q5_1, Avx512),
    k!(q8_0_16, 16, "q8_0*q8_0 gemm16 avx512", Q8_0, Avx512),
    k!(iq4_nl_16, 16, "iq4_nl*q8_0 gemm16 avx512", Iq4Nl, Avx512),
    k!(q4_0_vnni8, 8, "q4_0*q8_0 gemm8 avxvnni", Q4_0, AvxVnni),
    k!(q4_1_vnni8, 8, "q4_1*q8_1 gemm8 avxvnni", Q4_1, AvxVnni),
    k!(q5_0_vnni8, 8, "q5_0*q8_0 gemm8 avxvnni", Q5_0, AvxVnni),
    k!(q5_1_vnni8, 8, "q5_1*q8_1 gemm8 avxvnni", Q5_1, AvxVnni),
    k!(q8_0_vnni8, 8, "q8_0*q8_0 gemm8 avxvnni", Q8_0, AvxVnni),
    k!(iq4_nl_vnni8, 8, "iq4_nl*q8_0 gemm8 avxvnni", Iq4Nl, AvxVnni),
    k!(q4_0_avx2_8, 8, "q4_0*q8_0 gemm8 avx2", Q4_0, Avx2),
    k!(q4_1_avx2_8, 8, "q4_1*q8_1 gemm8 avx2", Q4_1, Avx2),
    k!(q5_0_avx2_8, 8, "q5_0*q8_0 gemm8 avx2", Q5_0, Avx2),
    k!(q5_1_avx2_8, 8, "q5_1*q8_1 gemm8 avx2", Q5_1, Avx2),
    k!(iq4_nl_avx2_8, 8, "iq4_nl*q8_0 gemm8 avx2", Iq4Nl, Avx2),
    k!(q8_0_avx2_8, 8, "q8_0*q8_0 gemm8 avx2", Q8_0, Avx2),
];
