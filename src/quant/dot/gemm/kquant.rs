//! Tiled kernels of the K-quants Q4_K, Q5_K, Q6_K and of IQ4_XS against Q8_K (prompt steps),
//! in the canonical super-block order of scalar.rs: 16-row panels in zmm (AVX-512 VNNI) and
//! 8-row panels in ymm (AVX-VNNI, or AVX2 `vpmaddubsw + vpmaddwd`).
//!
//! As in x86.rs, vector lane `r` is weight row `r` of the panel, so no integer sum needs a
//! horizontal reduction. Per super-block and token, lane-wise:
//! - each sub-block's quant sum `s_j = Σ q·a` by `vpdpbusd` over its groups of 4 elements
//!   (quants unsigned: Q4_K 0..=15, Q5_K 0..=31, Q6_K q + 32 in 0..=63 with the sum started at
//!   `-32 · bsum_j`, [`KMeta::q6_start`], so it is exactly `Σ (q - 32)·a`);
//! - `isum += s_j · sc_j` (`vpmulld` by the row's scale), exact in i32 (|isum| <= 2^27);
//! - Q4_K / Q5_K: `msum = Σ_j m_j · B_j` by `vpdpwssd` of the rows' (m_2p, m_2p+1) i16 pairs
//!   against the token's sub-block sums ([`KMeta::pairs`]);
//! - IQ4_XS: its quants are the IQ4 table values plus 128 (`x86::IQ4_U8`, looked up once per
//!   panel), so `Σ_j sc_j · s_j` is too large by `128 · Σ_j sc_j · B_j`, which `vpdpwssd` of
//!   the rows' (sc_2p, sc_2p+1) i16 pairs against [`KMeta::pairs`] gives and the kernel
//!   subtracts (all of it i32 arithmetic, exact: the true `isum` fits, and the wrapping adds
//!   and low-half multiplies are exact modulo 2^32). On the AVX2 table, whose `vpmaddubsw`
//!   would saturate on those bytes, the panel holds the signed table values instead and the
//!   dot is `x86::dot_sign` (|v| times a with v's sign), with no offset to remove;
//! - then the canonical float steps: `dd = f32(d) * a.d`, `acc[b % 32] = fma(isum as f32, dd,
//!   acc[b % 32])`, and with mins `dm = f32(dmin) * a.d`, `acc = fma(-(msum as f32), dm, acc)`;
//!   the butterfly of the 32 lane accumulators at the end.
//!
//! Integer sums are exact in any grouping, so each output has the bits of the one-row,
//! one-token kernel. Lanes no super-block reaches are skipped in the butterfly, as in x86.rs
//! (mod.rs says why that is exact; with Q8_K's f32 `a.d` the product `isum · dd` is 0 or at
//! least the smallest subnormal, so an accumulator is still never -0.0).
//!
//! Panel scratch per super-block (aligned vectors, lane = row): 64 vectors of quant groups
//! (group k = elements 4k..4k + 4), 16 of i32 scales (8 used by Q4_K / Q5_K / IQ4_XS), 4 of
//! i16 min pairs (IQ4_XS: scale pairs), then f32(d) and f32(dmin).

use super::x86::row_offsets;
use super::{GemmArgs, GemmKernels};
use crate::quant::dot::Isa;
use crate::quant::GgmlType;

const Q4K: usize = 0;
const Q5K: usize = 1;
const Q6K: usize = 2;
const IQ4XS: usize = 3;

/// Super-block bytes per format.
const WB: [usize; 4] = [144, 176, 210, 136];
/// Q8_K block bytes and the offset of its quants.
const AB: usize = 292;
const AQ: usize = 4;

/// Panel scratch layout, in vectors per super-block (see the module docs).
const VECS: usize = 86;
const SC: usize = 64;
const MP: usize = 80;
const D: usize = 84;
const DMIN: usize = 85;

/// Panics unless the arguments describe readable rows and a large enough `out` (the one
/// check before the unchecked loads).
fn check(a: &GemmArgs<'_>, out: &[f32], panel: usize, wb: usize) {
    let nsb = a.n / 256;
    assert!(
        a.n.is_multiple_of(256)
            && (1..=panel).contains(&a.rows)
            && a.row_bytes >= nsb * wb
            && a.w.len() >= (a.rows - 1) * a.row_bytes + nsb * wb
            && panel * a.row_bytes <= i32::MAX as usize
            && a.act_row_bytes >= nsb * AB
            && (a.n_tokens == 0 || a.acts.len() >= (a.n_tokens - 1) * a.act_row_bytes + nsb * AB)
            && a.kmeta.len() >= a.n_tokens * nsb
            && out.len() >= a.n_tokens * panel,
        "K-quant gemm kernel: bad arguments (n={}, rows={}, tokens={})",
        a.n,
        a.rows,
        a.n_tokens
    );
}

/// The 64-byte-aligned panel scratch of `nsb` super-blocks of `vec`-byte vectors.
fn panel_buf(scratch: &mut Vec<u8>, nsb: usize, vec: usize) -> *mut u8 {
    super::x86::aligned_panel(scratch, nsb * VECS * vec)
}

/// Defines a vector operation `$name` compiled for `$feat` (inlined into the kernels).
macro_rules! vop {
    ($feat:literal, $name:ident($($a:ident: $t:ty),*) -> $r:ty $body:block) => {
        #[target_feature(enable = $feat)]
        #[inline]
        pub fn $name($($a: $t),*) -> $r $body
    };
}

/// Vector operations of the 16-lane (zmm) kernels, under the names the generic body uses.
mod ops512 {
    use std::arch::x86_64::*;
    /// Whether IQ4_XS's panel holds signed table values (no: the +128 offset bytes).
    pub const SIGNED: bool = false;
    pub type I = __m512i;
    pub type F = __m512;
    pub const LANES: usize = 16;
    pub const VB: usize = 64;

    macro_rules! op {
        ($($t:tt)*) => {
            vop!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c", $($t)*);
        };
    }
    op!(set1(x: i32) -> I { _mm512_set1_epi32(x) });
    op!(zero() -> I { _mm512_setzero_si512() });
    op!(and(x: I, y: I) -> I { _mm512_and_si512(x, y) });
    op!(or(x: I, y: I) -> I { _mm512_or_si512(x, y) });
    op!(srl(x: I, n: u32) -> I { _mm512_srl_epi32(x, _mm_cvtsi32_si128(n as i32)) });
    op!(sll(x: I, n: u32) -> I { _mm512_sll_epi32(x, _mm_cvtsi32_si128(n as i32)) });
    op!(sra(x: I, n: u32) -> I { _mm512_sra_epi32(x, _mm_cvtsi32_si128(n as i32)) });
    op!(add(x: I, y: I) -> I { _mm512_add_epi32(x, y) });
    op!(sub(x: I, y: I) -> I { _mm512_sub_epi32(x, y) });
    op!(iq4_lookup(x: I) -> I {
        let [t0, t1, t2, t3] = crate::quant::dot::gemm::x86::IQ4_U8;
        _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_setr_epi32(t0, t1, t2, t3)), x)
    });
    op!(mullo(x: I, y: I) -> I { _mm512_mullo_epi32(x, y) });
    op!(dpbusd(acc: I, u: I, s: I) -> I { _mm512_dpbusd_epi32(acc, u, s) });
    op!(dpwssd(acc: I, x: I, y: I) -> I { _mm512_dpwssd_epi32(acc, x, y) });
    op!(cvt(x: I) -> F { _mm512_cvtepi32_ps(x) });
    op!(f16lo(x: I) -> I { _mm512_castps_si512(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(x))) });
    op!(as_f(x: I) -> F { _mm512_castsi512_ps(x) });
    op!(set1f(x: f32) -> F { _mm512_set1_ps(x) });
    op!(zerof() -> F { _mm512_setzero_ps() });
    op!(addf(x: F, y: F) -> F { _mm512_add_ps(x, y) });
    op!(mulf(x: F, y: F) -> F { _mm512_mul_ps(x, y) });
    op!(fmadd(x: F, y: F, z: F) -> F { _mm512_fmadd_ps(x, y, z) });
    op!(negf(x: F) -> F { _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN))) });

    pub(in crate::quant::dot::gemm) use crate::quant::dot::gemm::x86::block_dwords16 as block_dwords;
    /// # Safety
    /// `p` 64-byte aligned and readable for 64 bytes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn load(p: *const u8) -> I {
        // SAFETY: the caller's contract.
        unsafe { _mm512_load_si512(p.cast()) }
    }
    /// # Safety
    /// `p` 64-byte aligned and writable for 64 bytes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn store(p: *mut u8, v: I) {
        // SAFETY: the caller's contract.
        unsafe { _mm512_store_si512(p.cast(), v) }
    }
    /// # Safety
    /// `p` writable for 64 bytes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn storeu_f(p: *mut f32, v: F) {
        // SAFETY: the caller's contract.
        unsafe { _mm512_storeu_ps(p, v) }
    }
}

/// Vector operations of the 8-lane (ymm) kernels for the features `$feat`, with `$dpbusd` /
/// `$dpwssd` the u8 x s8 and i16 x i16 dot-accumulates and `$signed` whether IQ4_XS's panel
/// holds the signed table values (for a `$dpbusd` that takes signed weights).
macro_rules! ops256 {
    ($m:ident, $feat:literal, signed: $signed:literal, dpbusd($c:ident, $u:ident, $s:ident) $dpbusd:block,
     dpwssd($c2:ident, $x:ident, $y:ident) $dpwssd:block) => {
        mod $m {
            use std::arch::x86_64::*;
            pub const SIGNED: bool = $signed;
            pub type I = __m256i;
            pub type F = __m256;
            pub const LANES: usize = 8;
            pub const VB: usize = 32;

            vop!($feat, set1(x: i32) -> I { _mm256_set1_epi32(x) });
            vop!($feat, zero() -> I { _mm256_setzero_si256() });
            vop!($feat, and(x: I, y: I) -> I { _mm256_and_si256(x, y) });
            vop!($feat, or(x: I, y: I) -> I { _mm256_or_si256(x, y) });
            vop!($feat, srl(x: I, n: u32) -> I { _mm256_srl_epi32(x, _mm_cvtsi32_si128(n as i32)) });
            vop!($feat, sll(x: I, n: u32) -> I { _mm256_sll_epi32(x, _mm_cvtsi32_si128(n as i32)) });
            vop!($feat, sra(x: I, n: u32) -> I { _mm256_sra_epi32(x, _mm_cvtsi32_si128(n as i32)) });
            vop!($feat, add(x: I, y: I) -> I { _mm256_add_epi32(x, y) });
            vop!($feat, sub(x: I, y: I) -> I { _mm256_sub_epi32(x, y) });
            // Bytes 0..=15 -> the IQ4 table value + 128 (`x86::IQ4_U8`), or the signed value
            // (`SIGNED`), per 128-bit half.
            vop!($feat, iq4_lookup(x: I) -> I {
                use crate::quant::dot::gemm::x86::{IQ4_S8, IQ4_U8};
                let [t0, t1, t2, t3] = if SIGNED { IQ4_S8 } else { IQ4_U8 };
                _mm256_shuffle_epi8(_mm256_setr_epi32(t0, t1, t2, t3, t0, t1, t2, t3), x)
            });
            vop!($feat, mullo(x: I, y: I) -> I { _mm256_mullo_epi32(x, y) });
            vop!($feat, dpbusd($c: I, $u: I, $s: I) -> I $dpbusd);
            vop!($feat, dpwssd($c2: I, $x: I, $y: I) -> I $dpwssd);
            vop!($feat, cvt(x: I) -> F { _mm256_cvtepi32_ps(x) });
            // The low 16 bits of each lane as u16 [v0..v3, v0..v3 | v4..v7, v4..v7], then
            // [v0..v7] in the low 128 bits, widened from f16.
            vop!($feat, f16lo(x: I) -> I {
                let v = _mm256_and_si256(x, _mm256_set1_epi32(0xFFFF));
                let p = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(v, v));
                _mm256_castps_si256(_mm256_cvtph_ps(_mm256_castsi256_si128(p)))
            });
            vop!($feat, as_f(x: I) -> F { _mm256_castsi256_ps(x) });
            vop!($feat, set1f(x: f32) -> F { _mm256_set1_ps(x) });
            vop!($feat, zerof() -> F { _mm256_setzero_ps() });
            vop!($feat, addf(x: F, y: F) -> F { _mm256_add_ps(x, y) });
            vop!($feat, mulf(x: F, y: F) -> F { _mm256_mul_ps(x, y) });
            vop!($feat, fmadd(x: F, y: F, z: F) -> F { _mm256_fmadd_ps(x, y, z) });
            vop!($feat, negf(x: F) -> F { _mm256_xor_ps(x, _mm256_set1_ps(-0.0)) });

            pub(in crate::quant::dot::gemm) use crate::quant::dot::gemm::x86::block_dwords8 as block_dwords;
            /// # Safety
            /// `p` 32-byte aligned and readable for 32 bytes.
            #[target_feature(enable = "avx2")]
            #[inline]
            pub unsafe fn load(p: *const u8) -> I {
                // SAFETY: the caller's contract.
                unsafe { _mm256_load_si256(p.cast()) }
            }
            /// # Safety
            /// `p` 32-byte aligned and writable for 32 bytes.
            #[target_feature(enable = "avx2")]
            #[inline]
            pub unsafe fn store(p: *mut u8, v: I) {
                // SAFETY: the caller's contract.
                unsafe { _mm256_store_si256(p.cast(), v) }
            }
            /// # Safety
            /// `p` writable for 32 bytes.
            #[target_feature(enable = "avx2")]
            #[inline]
            pub unsafe fn storeu_f(p: *mut f32, v: F) {
                // SAFETY: the caller's contract.
                unsafe { _mm256_storeu_ps(p, v) }
            }
        }
    };
}

ops256!(
    ops_vnni256,
    "avx2,fma,f16c,avxvnni",
    signed: false,
    dpbusd(acc, u, s) { _mm256_dpbusd_avx_epi32(acc, u, s) },
    dpwssd(acc, x, y) { _mm256_dpwssd_avx_epi32(acc, x, y) }
);
// `vpmaddubsw` saturates its i16 pair sums, but never for the K-quants: quants <= 63 against
// bytes >= -128 sum to at most 2 * 63 * 128 per pair. IQ4_XS's offset table bytes (up to 241)
// could, so it takes `ops_avx2s_256`: the signed values and `x86::dot_sign`.
ops256!(
    ops_avx2_256,
    "avx2,fma,f16c",
    signed: false,
    dpbusd(acc, u, s) {
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
    },
    dpwssd(acc, x, y) { _mm256_add_epi32(acc, _mm256_madd_epi16(x, y)) }
);
ops256!(
    ops_avx2s_256,
    "avx2,fma,f16c",
    signed: true,
    dpbusd(acc, w, a) { crate::quant::dot::gemm::x86::dot_sign(acc, w, a) },
    dpwssd(acc, x, y) { _mm256_add_epi32(acc, _mm256_madd_epi16(x, y)) }
);

/// Generates module `$m` with `gemm::<F>` on the vector operations `$ops` (compiled for
/// `$feat`), taking token groups of `$tile` and then single tokens.
macro_rules! kgemm_module {
    ($m:ident, $feat:literal, $ops:ident, $tile:literal) => {
        mod $m {
            use super::$ops::*;
            use super::{GemmArgs, AB, AQ, D, DMIN, IQ4XS, MP, Q5K, Q6K, SC, VECS, WB};
            use std::mem::MaybeUninit;

            /// Unpacks the panel's rows into `panel` (module docs of kquant.rs).
            ///
            /// # Safety
            /// The CPU has `$feat`; `check` passed for `a`; `panel` holds nsb * VECS aligned
            /// vectors.
            #[target_feature(enable = $feat)]
            unsafe fn pack<const K: usize>(a: &GemmArgs<'_>, panel: *mut u8) {
                let offs = super::row_offsets::<LANES>(a.rows, a.row_bytes);
                let (nib, low6, top2, bit0) = (
                    set1(0x0F0F_0F0F),
                    set1(0x3F3F_3F3F),
                    set1(0x0303_0303),
                    set1(0x0101_0101),
                );
                let byte = |x: I, i: usize| and(srl(x, 8 * i as u32), set1(0xFF));
                // SAFETY: `block_dwords` reads super-block b of rows `check` verified (rows
                // past a.rows repeat the last); the stores stay inside the panel scratch.
                unsafe {
                    let mut dwords = [zero(); WB[Q6K].div_ceil(4)];
                    for b in 0..a.n / 256 {
                        let blk = a.w.as_ptr().add(b * WB[K]);
                        let dst = panel.add(b * VECS * VB);
                        block_dwords(blk, &offs, WB[K], &mut dwords);
                        // The 4 bytes at `off` of each row's super-block.
                        let g = |off: usize| match off % 4 {
                            0 => dwords[off / 4],
                            m => or(
                                srl(dwords[off / 4], 8 * m as u32),
                                sll(dwords[off / 4 + 1], 32 - 8 * m as u32),
                            ),
                        };
                        let st = |i: usize, v: I| store(dst.add(i * VB), v);
                        if K == Q6K {
                            // Element 32 q + l of half h: a nibble of ql[64 h + l + 32 (q % 2)]
                            // (high for q >= 2) and bits 2q..2q + 2 of qh[32 h + l].
                            for k in 0..64 {
                                let (h, q, l) = (k / 32, k % 32 / 8, 4 * (k % 8));
                                let lo =
                                    and(srl(g(64 * h + l + 32 * (q % 2)), 4 * (q / 2) as u32), nib);
                                let hi = and(srl(g(128 + 32 * h + l), 2 * q as u32), top2);
                                st(k, or(lo, sll(hi, 4)));
                            }
                            for p in 0..4 {
                                let x = g(192 + 4 * p);
                                for i in 0..4 {
                                    st(SC + 4 * p + i, sra(sll(x, 24 - 8 * i as u32), 24));
                                }
                            }
                            // d is the last 2 bytes: read the 4 ending there.
                            st(D, f16lo(srl(g(206), 16)));
                        } else if K == IQ4XS {
                            // Sub-block j's 32 indices are qs[16 j..16 j + 16] (qs at byte 8)
                            // as one IQ4_NL block's: element e < 16 the low nibble of byte e,
                            // e + 16 the high nibble.
                            for k in 0..64 {
                                let (j, e) = (k / 8, 4 * (k % 8));
                                let x = g(8 + 16 * j + e % 16);
                                let q = and(srl(x, if e >= 16 { 4 } else { 0 }), nib);
                                st(k, iq4_lookup(q));
                            }
                            // head = d | scales_h << 16; scales_l's nibble j is bits 4j..4j + 4
                            // of its 4 bytes; ls_j = that | (bits 2j..2j + 2 of scales_h) << 4.
                            let (head, sl) = (g(0), g(4));
                            let sc: [I; 8] = std::array::from_fn(|j| {
                                let low = and(srl(sl, 4 * j as u32), set1(0xF));
                                let high = and(srl(head, 16 + 2 * j as u32), set1(3));
                                add(or(low, sll(high, 4)), set1(-32))
                            });
                            for (j, &s) in sc.iter().enumerate() {
                                st(SC + j, s);
                            }
                            for p in 0..4 {
                                let lo16 = and(sc[2 * p], set1(0xFFFF));
                                st(MP + p, or(lo16, sll(sc[2 * p + 1], 16)));
                            }
                            st(D, f16lo(head));
                        } else {
                            // Element 64 c + e: the low nibble of qs[32 c + e] for e < 32, the
                            // high nibble of qs[32 c + e - 32] else; Q5_K's fifth bit is bit j
                            // (the sub-block) of qh[e % 32].
                            let qs = if K == Q5K { 48 } else { 16 };
                            for k in 0..64 {
                                let (c, e) = (k / 16, 4 * (k % 16));
                                let x = g(qs + 32 * c + e % 32);
                                let mut q = and(srl(x, if e >= 32 { 4 } else { 0 }), nib);
                                if K == Q5K {
                                    let high = and(srl(g(16 + e % 32), (k / 8) as u32), bit0);
                                    q = or(q, sll(high, 4));
                                }
                                st(k, q);
                            }
                            // The 12 scale bytes as in formats/q4_k.rs `scale_min`.
                            let (u0, u1, u2) = (g(4), g(8), g(12));
                            let sc_lo = and(u0, low6);
                            let mn_lo = and(u1, low6);
                            let sc_hi = or(and(u2, nib), sll(and(srl(u0, 6), top2), 4));
                            let mn_hi = or(and(srl(u2, 4), nib), sll(and(srl(u1, 6), top2), 4));
                            for j in 0..8 {
                                st(SC + j, byte(if j < 4 { sc_lo } else { sc_hi }, j % 4));
                            }
                            for p in 0..4 {
                                let (x, i) = (if p < 2 { mn_lo } else { mn_hi }, 2 * (p % 2));
                                st(MP + p, or(byte(x, i), sll(byte(x, i + 1), 16)));
                            }
                            let head = g(0);
                            st(D, f16lo(head));
                            st(DMIN, f16lo(srl(head, 16)));
                        }
                    }
                }
            }

            /// Tokens `t0..t0 + T` against the unpacked panel: `out[t * LANES + r]`.
            ///
            /// # Safety
            /// As [`pack`], after it filled `panel`; `t0 + T <= a.n_tokens`; n >= 256.
            #[target_feature(enable = $feat)]
            unsafe fn tokens<const K: usize, const T: usize>(
                a: &GemmArgs<'_>,
                panel: *const u8,
                t0: usize,
                out: *mut f32,
            ) {
                let nsb = a.n / 256;
                let used = nsb.min(32);
                // lanes[L][t]: canonical lane accumulator L of token t0 + t.
                let mut lanes = [[MaybeUninit::<super::$ops::F>::uninit(); T]; 32];
                // SAFETY: panel reads are inside the nsb super-blocks `pack` wrote;
                // activation and meta reads inside the rows of tokens < n_tokens that `check`
                // verified; out holds n_tokens * LANES.
                unsafe {
                    for (l, lane) in lanes.iter_mut().enumerate().take(used) {
                        let mut acc = [zerof(); T];
                        let mut b = l;
                        while b < nsb {
                            let pb = panel.add(b * VECS * VB);
                            let w = |i: usize| load(pb.add(i * VB));
                            let meta = |t: usize| a.kmeta.get_unchecked((t0 + t) * nsb + b);
                            let aq = |t: usize, at: usize| {
                                a.acts
                                    .as_ptr()
                                    .add((t0 + t) * a.act_row_bytes + b * AB + AQ + at)
                                    .cast::<i32>()
                                    .read_unaligned()
                            };
                            let mut isum = [zero(); T];
                            let mut msum = [zero(); T];
                            if K == Q6K {
                                for j in 0..16 {
                                    let wj = [w(4 * j), w(4 * j + 1), w(4 * j + 2), w(4 * j + 3)];
                                    let sc = w(SC + j);
                                    for (t, isum) in isum.iter_mut().enumerate() {
                                        let mut s = set1(meta(t).q6_start[j]);
                                        for (i, &wi) in wj.iter().enumerate() {
                                            s = dpbusd(s, wi, set1(aq(t, 16 * j + 4 * i)));
                                        }
                                        *isum = add(*isum, mullo(s, sc));
                                    }
                                }
                            } else {
                                for j in 0..8 {
                                    let wj: [I; 8] = std::array::from_fn(|i| w(8 * j + i));
                                    let sc = w(SC + j);
                                    for (t, isum) in isum.iter_mut().enumerate() {
                                        let mut s = zero();
                                        for (i, &wi) in wj.iter().enumerate() {
                                            s = dpbusd(s, wi, set1(aq(t, 32 * j + 4 * i)));
                                        }
                                        *isum = add(*isum, mullo(s, sc));
                                    }
                                }
                                // Q4_K / Q5_K: the mins' msum; IQ4_XS: Σ_j sc_j · B_j, whose
                                // 128 times the offset quants added to isum (module docs).
                                if K != IQ4XS || !SIGNED {
                                    for p in 0..4 {
                                        let mp = w(MP + p);
                                        for (t, msum) in msum.iter_mut().enumerate() {
                                            *msum = dpwssd(*msum, mp, set1(meta(t).pairs[p]));
                                        }
                                    }
                                }
                                if K == IQ4XS && !SIGNED {
                                    for (isum, msum) in isum.iter_mut().zip(&msum) {
                                        *isum = sub(*isum, sll(*msum, 7));
                                    }
                                }
                            }
                            let wd = as_f(w(D));
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let ad = set1f(meta(t).d);
                                *acc = fmadd(cvt(isum[t]), mulf(wd, ad), *acc);
                                if K != Q6K && K != IQ4XS {
                                    let dm = mulf(as_f(w(DMIN)), ad);
                                    *acc = fmadd(negf(cvt(msum[t])), dm, *acc);
                                }
                            }
                            b += 32;
                        }
                        for (dst, v) in lane.iter_mut().zip(acc) {
                            dst.write(v);
                        }
                    }
                    // The butterfly over the lanes some super-block reached (module docs).
                    let (mut live, mut m) = (used, 16);
                    while m > 0 {
                        let (lo, hi) = lanes.split_at_mut(m);
                        let pairs = lo.iter_mut().zip(hi.iter());
                        for (dst, src) in pairs.take(live.saturating_sub(m)) {
                            for (x, y) in dst.iter_mut().zip(src) {
                                x.write(addf(x.assume_init(), y.assume_init()));
                            }
                        }
                        live = live.min(m);
                        m /= 2;
                    }
                    for (t, v) in lanes[0].iter().enumerate() {
                        storeu_f(out.add((t0 + t) * LANES), v.assume_init());
                    }
                }
            }

            /// The whole product of [`GemmArgs`] with panels of `LANES` rows.
            ///
            /// # Safety
            /// The CPU has `$feat`; `check` passed.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn gemm<const K: usize>(
                a: &GemmArgs<'_>,
                out: &mut [f32],
                scratch: &mut Vec<u8>,
            ) {
                let nsb = a.n / 256;
                if nsb == 0 {
                    out[..a.n_tokens * LANES].fill(0.0); // the butterfly of 32 zero lanes
                    return;
                }
                let panel = super::panel_buf(scratch, nsb, VB);
                let o = out.as_mut_ptr();
                // SAFETY: the caller's contract; token groups stay below n_tokens.
                unsafe {
                    pack::<K>(a, panel);
                    let mut t = 0;
                    while t + $tile <= a.n_tokens {
                        tokens::<K, $tile>(a, panel, t, o);
                        t += $tile;
                    }
                    while t < a.n_tokens {
                        tokens::<K, 1>(a, panel, t, o);
                        t += 1;
                    }
                }
            }
        }
    };
}

kgemm_module!(
    k512,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    ops512,
    8
);
kgemm_module!(kvnni256, "avx2,fma,f16c,avxvnni", ops_vnni256, 4);
kgemm_module!(kavx2_256, "avx2,fma,f16c", ops_avx2_256, 4);
kgemm_module!(kavx2s_256, "avx2,fma,f16c", ops_avx2s_256, 4);

/// Safe [`super::GemmFn`] entry points: the argument check, then the kernel.
macro_rules! entry {
    ($name:ident, $m:ident, $f:expr, $panel:expr) => {
        fn $name(a: &GemmArgs<'_>, out: &mut [f32], scratch: &mut Vec<u8>) {
            check(a, out, $panel, WB[$f]);
            // SAFETY: checked above; the table holding this entry is only handed out when
            // the CPU has the kernel's features (see gemm_kernels_on).
            unsafe { $m::gemm::<{ $f }>(a, out, scratch) }
        }
    };
}

entry!(q4k_16, k512, Q4K, 16);
entry!(q5k_16, k512, Q5K, 16);
entry!(q6k_16, k512, Q6K, 16);
entry!(iq4xs_16, k512, IQ4XS, 16);
entry!(q4k_vnni8, kvnni256, Q4K, 8);
entry!(q5k_vnni8, kvnni256, Q5K, 8);
entry!(q6k_vnni8, kvnni256, Q6K, 8);
entry!(iq4xs_vnni8, kvnni256, IQ4XS, 8);
entry!(q4k_avx2_8, kavx2_256, Q4K, 8);
entry!(q5k_avx2_8, kavx2_256, Q5K, 8);
entry!(q6k_avx2_8, kavx2_256, Q6K, 8);
entry!(iq4xs_avx2_8, kavx2s_256, IQ4XS, 8);

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

/// Every tiled K-quant kernel, fastest first per type.
pub(super) static KERNELS: &[GemmKernels] = &[
    k!(q4k_16, 16, "q4_k*q8_k gemm16 avx512", Q4K, Avx512),
    k!(q5k_16, 16, "q5_k*q8_k gemm16 avx512", Q5K, Avx512),
    k!(q6k_16, 16, "q6_k*q8_k gemm16 avx512", Q6K, Avx512),
    k!(iq4xs_16, 16, "iq4_xs*q8_k gemm16 avx512", Iq4Xs, Avx512),
    k!(q4k_vnni8, 8, "q4_k*q8_k gemm8 avxvnni", Q4K, AvxVnni),
    k!(q5k_vnni8, 8, "q5_k*q8_k gemm8 avxvnni", Q5K, AvxVnni),
    k!(q6k_vnni8, 8, "q6_k*q8_k gemm8 avxvnni", Q6K, AvxVnni),
    k!(iq4xs_vnni8, 8, "iq4_xs*q8_k gemm8 avxvnni", Iq4Xs, AvxVnni),
    k!(q4k_avx2_8, 8, "q4_k*q8_k gemm8 avx2", Q4K, Avx2),
    k!(q5k_avx2_8, 8, "q5_k*q8_k gemm8 avx2", Q5K, Avx2),
    k!(q6k_avx2_8, 8, "q6_k*q8_k gemm8 avx2", Q6K, Avx2),
    k!(iq4xs_avx2_8, 8, "iq4_xs*q8_k gemm8 avx2", Iq4Xs, Avx2),
];
