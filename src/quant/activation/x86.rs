//! AVX2 and AVX-512 Q8_0/Q8_1 quantizers, bit-identical to the scalar reference: same amax,
//! same f32 `id = 127 / amax`, same round-half-even of `x * id`.

use super::Quantizers;
use crate::quant::blocks::QK;
use crate::quant::dot::Isa;
use half::f16;
use std::arch::x86_64::*;

pub(super) fn available() -> Vec<Quantizers> {
    let mut v = Vec::new();
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
        v.push(Quantizers {
            q8_0: avx512_q8_0,
            q8_1: avx512_q8_1,
            name: "avx512",
            isa: Isa::Avx512,
        });
    }
    if is_x86_feature_detected!("avx2") {
        v.push(Quantizers {
            q8_0: avx2_q8_0,
            q8_1: avx2_q8_1,
            name: "avx2",
            isa: Isa::Avx2,
        });
    }
    v
}

/// Header bytes before the quants: Q8_0 has `d`, Q8_1 has `d, s`.
const HDR0: usize = 2;
const HDR1: usize = 4;

fn avx512_q8_0(x: &[f32], out: &mut [u8]) {
    // SAFETY: listed in `available()` only when AVX-512 F/BW were detected.
    unsafe { quantize_avx512::<HDR0>(x, out) }
}
fn avx512_q8_1(x: &[f32], out: &mut [u8]) {
    // SAFETY: as above.
    unsafe { quantize_avx512::<HDR1>(x, out) }
}
fn avx2_q8_0(x: &[f32], out: &mut [u8]) {
    // SAFETY: listed in `available()` only when AVX2 was detected.
    unsafe { quantize_avx2::<HDR0>(x, out) }
}
fn avx2_q8_1(x: &[f32], out: &mut [u8]) {
    // SAFETY: as above.
    unsafe { quantize_avx2::<HDR1>(x, out) }
}

/// Scale and inverse scale of a block from its absolute maximum (as the reference).
#[inline(always)]
fn scales(amax: f32) -> (f32, f32) {
    (amax / 127.0, if amax != 0.0 { 127.0 / amax } else { 0.0 })
}

/// Writes the block header: `d`, and for Q8_1 `s = f16(d * sum)`.
#[inline(always)]
fn write_header<const HDR: usize>(blk: &mut [u8], d: f32, sum: i32) {
    blk[0..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    if HDR == HDR1 {
        blk[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes());
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_avx512<const HDR: usize>(x: &[f32], out: &mut [u8]) {
    let bb = HDR + QK;
    assert!(x.len().is_multiple_of(QK) && out.len() == x.len() / QK * bb);
    let sign = _mm512_set1_ps(-0.0);
    for (xb, blk) in x.chunks_exact(QK).zip(out.chunks_exact_mut(bb)) {
        // SAFETY: xb has exactly 32 f32s = two unaligned 512-bit loads.
        let (v0, v1) = unsafe {
            (
                _mm512_loadu_ps(xb.as_ptr()),
                _mm512_loadu_ps(xb.as_ptr().add(16)),
            )
        };
        let amax = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        let (d, id) = scales(_mm512_reduce_max_ps(amax));
        let idv = _mm512_set1_ps(id);
        const RNE: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let q0 = _mm512_cvt_roundps_epi32::<RNE>(_mm512_mul_ps(v0, idv));
        let q1 = _mm512_cvt_roundps_epi32::<RNE>(_mm512_mul_ps(v1, idv));
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        // SAFETY: blk has HDR + 32 bytes; two unaligned 16-byte stores at HDR and HDR + 16.
        unsafe {
            let p = blk.as_mut_ptr().add(HDR);
            _mm_storeu_si128(p.cast(), _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128(p.add(16).cast(), _mm512_cvtsepi32_epi8(q1));
        }
        write_header::<HDR>(blk, d, sum);
    }
}

#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2<const HDR: usize>(x: &[f32], out: &mut [u8]) {
    let bb = HDR + QK;
    assert!(x.len().is_multiple_of(QK) && out.len() == x.len() / QK * bb);
    let sign = _mm256_set1_ps(-0.0);
    for (xb, blk) in x.chunks_exact(QK).zip(out.chunks_exact_mut(bb)) {
        // SAFETY: xb has exactly 32 f32s = four unaligned 256-bit loads.
        let v: [__m256; 4] =
            std::array::from_fn(|k| unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * k)) });
        let m01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
        let m23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
        let m = _mm256_max_ps(m01, m23);
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
        let (d, id) = scales(_mm_cvtss_f32(m1));
        let idv = _mm256_set1_ps(id);
        let q: [__m256i; 4] = std::array::from_fn(|k| {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(v[k], idv),
            );
            _mm256_cvtps_epi32(r)
        });
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2)));
        // packs work per 128-bit lane; the final permute restores element order.
        let p01 = _mm256_packs_epi32(q[0], q[1]);
        let p23 = _mm256_packs_epi32(q[2], q[3]);
        let b = _mm256_packs_epi16(p01, p23);
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: blk has HDR + 32 bytes; one unaligned 32-byte store at HDR.
        unsafe { _mm256_storeu_si256(blk.as_mut_ptr().add(HDR).cast(), b) };
        write_header::<HDR>(blk, d, sum);
    }
}
