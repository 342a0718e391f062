//! Every runnable kernel variant (forced, not only the selected one): accuracy against the
//! f64 reference, and for the quantized types bit identity with the canonical scalar order,
//! on seeded random rows and edge-case blocks.

use super::*;
use crate::quant::activation::activation_type;
use crate::quant::formats::q8_1;
use crate::quant::registry::{dequantize_row, FORMATS};
use half::{bf16, f16};

/// The weight types with dot kernels.
fn weight_types() -> impl Iterator<Item = GgmlType> {
    FORMATS.iter().filter(|f| f.cpu_dot.is_some()).map(|f| f.ty)
}

/// Relative tolerance against the sum of absolute block terms: the integer block sums are
/// exact, so only f32 accumulation order (and FMA) separates a kernel from the f64 reference.
const REL_TOL: f64 = 1e-5;
const LENGTHS: [usize; 5] = [32, 64, 576, 1536, 4096];

/// The weight types with SIMD kernels on x86-64 (the others have the scalar set only).
const HAVE_SIMD: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4K,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
];

pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn unit(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0 // [-1, 1)
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Byte offsets of the f16 factors in a block of a quantized `ty`: the scale `d`, then the
/// offset `m` (Q4_1, Q5_1) or the min factor `dmin` (Q4_K, Q5_K) if it has one. Every other
/// byte of a block is quants or integer scales, valid for any value.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Iq4Nl | GgmlType::Iq4Xs => &[0],
        _ => panic!("{ty}: f16 fields unknown to the test"),
    }
}

/// A random packed weight row of `ty`: random quants and integer scales (all 256 byte
/// values, so Q8_0 sees -128 too) and random finite f16 factors.
pub(super) fn weight_row(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let f16b = |v: f32| f16::from_f32(v).to_le_bytes();
    match ty {
        GgmlType::F32 => (0..n).for_each(|_| out.extend(rng.unit().to_le_bytes())),
        GgmlType::F16 => (0..n).for_each(|_| out.extend(f16b(rng.unit()))),
        GgmlType::Bf16 => (0..n).for_each(|_| out.extend(bf16::from_f32(rng.unit()).to_le_bytes())),
        _ => {
            for _ in 0..n / ty.block_elems() {
                let mut block: Vec<u8> = (0..ty.block_bytes()).map(|_| rng.byte()).collect();
                for (k, &at) in f16_fields(ty).iter().enumerate() {
                    let v = rng.unit() * if k == 0 { 0.05 } else { 0.2 };
                    block[at..at + 2].copy_from_slice(&f16b(v));
                }
                out.extend(block);
            }
        }
    }
    out
}

/// The row lengths a test uses for `ty`: `lengths` that are whole blocks of it, and for the
/// K-quants whole super-blocks of their own (single, odd and many).
fn lengths_for(ty: GgmlType, lengths: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = (lengths.iter().copied())
        .filter(|n| n.is_multiple_of(ty.block_elems()))
        .collect();
    if ty.block_elems() == 256 {
        out.extend([256, 768, 33 * 256]);
    }
    out
}

/// A random activation row of `act`, produced by the reference quantizer / conversions.
pub(super) fn act_row(act: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let x: Vec<f32> = (0..n).map(|_| rng.unit() * 3.0).collect();
    let mut out = vec![0u8; act.row_bytes(n as u64).unwrap() as usize];
    let quantize = act.format().and_then(|f| f.quantize_activation).unwrap();
    quantize(&x, &mut out);
    out
}

/// Sum of |w_i * a_i| over the dequantized rows plus |m * s| terms: the scale of the
/// accumulation error.
fn magnitude(ty: GgmlType, act: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f64 {
    let (mut wf, mut af) = (vec![0f32; n], vec![0f32; n]);
    dequantize_row(ty, w, &mut wf).unwrap();
    dequantize_row(act, a, &mut af).unwrap();
    wf.iter()
        .zip(&af)
        .map(|(&x, &y)| (x as f64 * y as f64).abs())
        .sum::<f64>()
        + 1e-30
}

#[test]
fn every_kernel_matches_the_f64_reference() {
    let mut rng = Rng(0x5EED);
    for ty in weight_types() {
        let act = activation_type(ty).unwrap();
        let reference = ty.format().unwrap().reference_dot.unwrap();
        let variants = available_kernels(ty);
        assert!(
            variants.len() >= 2 || !HAVE_SIMD.contains(&ty) || cfg!(not(target_arch = "x86_64")),
            "{ty}: no SIMD variant"
        );
        let mut lengths = lengths_for(ty, &LENGTHS);
        if ty.block_elems() == 1 {
            lengths.extend([1, 7, 37, 100]); // scalar tails of the float kernels
        }
        for n in lengths {
            let w = weight_row(ty, n, &mut rng);
            let a: [Vec<u8>; 4] = std::array::from_fn(|_| act_row(act, n, &mut rng));
            let w2: [Vec<u8>; 3] = std::array::from_fn(|_| weight_row(ty, n, &mut rng));
            for k in &variants {
                let mut four = [0f32; 4];
                (k.four)(n, &w, [&a[0], &a[1], &a[2], &a[3]], &mut four);
                for r in 0..4 {
                    let want = reference(n, &w, &a[r]) as f64;
                    let tol = REL_TOL * magnitude(ty, act, n, &w, &a[r]);
                    let got = (k.one)(n, &w, &a[r]) as f64;
                    assert!(
                        (got - want).abs() <= tol,
                        "{} n={n}: {got} vs {want} (tol {tol})",
                        k.name
                    );
                    let got4 = four[r] as f64;
                    assert!(
                        (got4 - want).abs() <= tol,
                        "{} four[{r}] n={n}: {got4} vs {want}",
                        k.name
                    );
                }
                // rows4: four weight rows (w and three more) against one activation row.
                let ws = [&w, &w2[0], &w2[1], &w2[2]];
                let mut rows = [0f32; 4];
                (k.rows4)(n, ws.map(|v| &v[..]), &a[1], &mut rows);
                for (r, wr) in ws.into_iter().enumerate() {
                    let want = reference(n, wr, &a[1]) as f64;
                    let tol = REL_TOL * magnitude(ty, act, n, wr, &a[1]);
                    let got = rows[r] as f64;
                    assert!(
                        (got - want).abs() <= tol,
                        "{} rows4[{r}] n={n}: {got} vs {want}",
                        k.name
                    );
                }
            }
        }
    }
}

#[test]
fn q4_1_kernels_use_the_offset_term() {
    // All quants 0: the whole dot is sum_b m_w * s_a, which only the `m*s` term produces.
    let n = 96;
    let mut w = Vec::new();
    for b in 0..3 {
        w.extend(f16::from_f32(1.0).to_le_bytes());
        w.extend(f16::from_f32(0.5 * (b + 1) as f32).to_le_bytes());
        w.extend([0u8; 16]);
    }
    let x = vec![1.0f32; n]; // each block: d = 1/127, q = 127, s = 32
    let mut a = vec![0u8; 3 * 36];
    q8_1::quantize_activations(&x, &mut a);
    for k in available_kernels(GgmlType::Q4_1) {
        assert_eq!((k.one)(n, &w, &a), 32.0 * (0.5 + 1.0 + 1.5), "{}", k.name);
    }
}

#[test]
fn best_kernels_exist_for_every_weight_type_and_not_for_others() {
    for ty in weight_types() {
        let k = kernels_for(ty).unwrap();
        assert_eq!(k.weight, ty);
        assert!(k.name.starts_with(&ty.name().to_lowercase()), "{}", k.name);
    }
    assert!(kernels_for(GgmlType::Iq3S).is_none());
    assert!(scalar_kernels_for(GgmlType::Q8_1).is_none());
}

#[test]
#[should_panic(expected = "bad row lengths")]
fn short_rows_are_refused_before_any_read() {
    let k = kernels_for(GgmlType::Q4_1).unwrap();
    (k.one)(64, &[0u8; 40], &[0u8; 71]);
}

/// Batch invariance: within one kernel set, `four` and `rows4` must return exactly the bits
/// `one` returns for the same (weight row, activation row) pair, so a sequence's logits do
/// not depend on how the matmul groups its tokens (every matmul re-quantizes its output to
/// 8 bits, which would turn a last-bit difference into a different int8 code downstream).
#[test]
fn four_and_rows4_are_bit_identical_to_one() {
    let mut rng = Rng(0xB17);
    for ty in weight_types() {
        let act = activation_type(ty).unwrap();
        let mut lengths = lengths_for(ty, &LENGTHS);
        if ty.block_elems() == 1 {
            lengths.extend([1, 7, 15, 17, 33, 37, 100]); // every tail shape of the float kernels
        } else if ty.block_elems() == 32 {
            lengths.extend([96, 160]); // odd block counts: the unpaired last block
        }
        for n in lengths {
            let ws: [Vec<u8>; 4] = std::array::from_fn(|_| weight_row(ty, n, &mut rng));
            let acts: [Vec<u8>; 4] = std::array::from_fn(|_| act_row(act, n, &mut rng));
            for k in available_kernels(ty) {
                for (wi, w) in ws.iter().enumerate() {
                    let mut four = [0f32; 4];
                    (k.four)(n, w, acts.each_ref().map(|a| &a[..]), &mut four);
                    for (ai, a) in acts.iter().enumerate() {
                        let one = (k.one)(n, w, a);
                        assert_eq!(
                            four[ai].to_bits(),
                            one.to_bits(),
                            "{} n={n}: four[{ai}] {} vs one {one} (weight row {wi})",
                            k.name,
                            four[ai]
                        );
                    }
                }
                for (ai, a) in acts.iter().enumerate() {
                    let mut rows = [0f32; 4];
                    (k.rows4)(n, ws.each_ref().map(|w| &w[..]), a, &mut rows);
                    for (wi, w) in ws.iter().enumerate() {
                        let one = (k.one)(n, w, a);
                        assert_eq!(
                            rows[wi].to_bits(),
                            one.to_bits(),
                            "{} n={n}: rows4[{wi}] {} vs one {one} (activation row {ai})",
                            k.name,
                            rows[wi]
                        );
                    }
                }
            }
        }
    }
}

/// Block counts for the bit-identity test: single blocks, partial and full rounds of the 32
/// lane accumulators, and every tail of the 4- and 8-block SIMD groups.
const CANONICAL_BLOCKS: [usize; 17] =
    [1, 2, 3, 4, 5, 7, 8, 9, 17, 18, 31, 32, 33, 48, 64, 129, 133];

/// An f16 scale of one of the edge kinds: zero, tiny (subnormal), huge, or ordinary; either
/// sign. Never inf/NaN (their NaN payloads are not part of the contract).
fn edge_scale(kind: u64, rng: &mut Rng) -> [u8; 2] {
    let sign = if rng.next().is_multiple_of(2) {
        1.0
    } else {
        -1.0
    };
    let v = match kind {
        0 => 0.0,
        1 => return ((rng.next() % 0x3FF + 1) as u16 | (rng.next() as u16 & 0x8000)).to_le_bytes(),
        2 => sign * [65504.0, 30000.0, 1024.5][rng.next() as usize % 3],
        _ => rng.unit() * 0.05,
    };
    f16::from_f32(v).to_le_bytes()
}

/// A weight row of a quantized `ty` whose blocks are a seeded mix of edge cases: random
/// quants, all-zero values, extreme quants (nibbles 0/15, bytes +-127 and -128; for the
/// K-quants all integer scales 0 or 63 too), and zero, subnormal, huge and ordinary factors.
pub(super) fn edge_weight_row(ty: GgmlType, nb: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..nb {
        let scale_kind = rng.next() % 6;
        let quant_kind = rng.next() % 5;
        let mut block: Vec<u8> = (0..ty.block_bytes())
            .map(|_| match (quant_kind, ty) {
                (0, GgmlType::Q4_0) => 0x88, // all values 0
                (0, _) => 0,                 // all quants 0
                (1, GgmlType::Q8_0) => 127,  // +127
                (2, GgmlType::Q8_0) => [0x81u8, 0x80][rng.next() as usize % 2], // -127/-128
                (1, _) => 0xFF,              // nibbles 15
                (2, _) => 0x00,              // nibbles 0
                _ => rng.byte(),
            })
            .collect();
        for (k, &at) in f16_fields(ty).iter().enumerate() {
            let kind = if k == 0 { scale_kind } else { rng.next() % 6 };
            block[at..at + 2].copy_from_slice(&edge_scale(kind, rng));
        }
        out.extend(block);
    }
    out
}

/// An activation row (Q8_0, Q8_1 or Q8_K blocks) of the same edge mix; quants stay in
/// -127..=127 and Q8_K's group sums match its quants, as the quantizers guarantee. The Q8_1
/// `s` field is an arbitrary scale: kernels use it as given.
pub(super) fn edge_act_row(act: GgmlType, nb: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..nb {
        let scale = edge_scale(rng.next() % 6, rng);
        if act == GgmlType::Q8K {
            out.extend(f16::from_le_bytes(scale).to_f32().to_le_bytes());
        } else {
            out.extend(scale);
        }
        if act == GgmlType::Q8_1 {
            out.extend(edge_scale(rng.next() % 6, rng));
        }
        let quant_kind = rng.next() % 5;
        let qs: Vec<i8> = (0..act.block_elems())
            .map(|_| {
                let q: i8 = match quant_kind {
                    0 => 0,
                    1 => 127,
                    2 => -127,
                    _ => (rng.next() % 255) as i8 as i16 as i8,
                };
                if q == i8::MIN {
                    -127
                } else {
                    q
                }
            })
            .collect();
        out.extend(qs.iter().map(|&q| q as u8));
        if act == GgmlType::Q8K {
            for group in qs.chunks(16) {
                let sum: i16 = group.iter().map(|&q| q as i16).sum();
                out.extend(sum.to_le_bytes());
            }
        }
    }
    out
}

/// The GPU-parity contract: every quantized kernel set, in every shape, returns exactly the
/// bits of the canonical scalar order, on random and edge-case blocks.
#[test]
fn quantized_kernels_are_bit_identical_to_the_canonical_order() {
    let mut rng = Rng(0xCA90);
    for ty in weight_types().filter(|t| t.block_elems() > 1) {
        let act = activation_type(ty).unwrap();
        let want = scalar_kernels_for(ty).unwrap().one;
        // The K-quants' 256-element super-blocks: up to 48 of them cover the lane rounds.
        let max_blocks = if ty.block_elems() == 256 {
            48
        } else {
            usize::MAX
        };
        for nb in CANONICAL_BLOCKS.into_iter().filter(|&nb| nb <= max_blocks) {
            let n = nb * ty.block_elems();
            for round in 0..3 {
                let mut ws: [Vec<u8>; 4] =
                    std::array::from_fn(|_| edge_weight_row(ty, nb, &mut rng));
                let acts: [Vec<u8>; 4] = std::array::from_fn(|_| edge_act_row(act, nb, &mut rng));
                if round == 2 {
                    ws[3] = weight_row(ty, n, &mut rng); // ordinary random row
                    ws[2].iter_mut().for_each(|b| *b = 0); // an all-zero row
                }
                let aref = acts.each_ref().map(|a| &a[..]);
                let wref = ws.each_ref().map(|w| &w[..]);
                for k in available_kernels(ty) {
                    for (wi, w) in ws.iter().enumerate() {
                        let mut four = [0f32; 4];
                        (k.four)(n, w, aref, &mut four);
                        for (ai, a) in acts.iter().enumerate() {
                            let expect = want(n, w, a);
                            let one = (k.one)(n, w, a);
                            assert_eq!(
                                one.to_bits(),
                                expect.to_bits(),
                                "{} one nb={nb} w{wi} a{ai}: {one} vs {expect}",
                                k.name
                            );
                            assert_eq!(
                                four[ai].to_bits(),
                                expect.to_bits(),
                                "{} four nb={nb} w{wi} a{ai}: {} vs {expect}",
                                k.name,
                                four[ai]
                            );
                        }
                    }
                    for (ai, a) in acts.iter().enumerate() {
                        let mut rows = [0f32; 4];
                        (k.rows4)(n, wref, a, &mut rows);
                        for (wi, w) in ws.iter().enumerate() {
                            let expect = want(n, w, a);
                            assert_eq!(
                                rows[wi].to_bits(),
                                expect.to_bits(),
                                "{} rows4 nb={nb} w{wi} a{ai}: {} vs {expect}",
                                k.name,
                                rows[wi]
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn butterfly_adds_in_the_gpu_order() {
    // Lane values chosen so that the order shows in the rounding: 2^24 + 1 + 1 differs
    // depending on which two terms meet first.
    let mut acc = [0f32; 32];
    acc[0] = 16_777_216.0;
    acc[16] = 1.0;
    acc[8] = 1.0;
    // m = 16: acc[0] = 2^24 + 1 -> 2^24 (ties to even); m = 8: acc[8] = 1 + 0; m = 8 folds
    // acc[8] into acc[0]: 2^24 + 1 -> 2^24 again.
    assert_eq!(scalar::butterfly(acc), 16_777_216.0);
    acc[24] = 1.0; // m = 16: acc[8] = 2, then acc[0] = 2^24 + 2 (exact)
    assert_eq!(scalar::butterfly(acc), 16_777_218.0);
}

#[test]
fn isa_choice_parses_runnable_tables_and_names_them_otherwise() {
    assert_eq!(IsaChoice::parse(""), Ok(IsaChoice::Auto));
    assert_eq!(IsaChoice::parse(" Auto "), Ok(IsaChoice::Auto));
    assert_eq!(
        IsaChoice::parse("scalar"),
        Ok(IsaChoice::Forced(Isa::Scalar))
    );
    for isa in Isa::ALL {
        match IsaChoice::parse(isa.name()) {
            Ok(choice) => {
                assert!(isa.runnable(), "{}", isa.name());
                assert_eq!(choice, IsaChoice::Forced(isa));
            }
            Err(e) => {
                assert!(!isa.runnable(), "{}", isa.name());
                assert!(
                    e.contains("lacks its features") && e.contains("scalar"),
                    "{e}"
                );
            }
        }
    }
    let e = IsaChoice::parse("sse9").unwrap_err();
    assert!(
        e.contains("unknown table") && e.contains("auto, scalar"),
        "{e}"
    );
}

#[test]
fn a_forced_table_picks_only_its_kernels_and_the_scalar_fallback() {
    for isa in Isa::ALL.into_iter().filter(|i| i.runnable()) {
        let choice = IsaChoice::Forced(isa);
        for ty in weight_types() {
            let best = kernels_on(ty, |i| choice.allows(i))[0];
            let suffix = best.name.rsplit(' ').next().unwrap();
            let expected: &[&str] = match isa {
                Isa::AvxVnni => &["avxvnni", "avx2"],
                Isa::Avx512 => &["avx512", "avx512-vnni"],
                _ => &[isa.name()],
            };
            assert!(
                expected.contains(&suffix) || suffix == "scalar",
                "{}: {} under {choice:?}",
                ty.name(),
                best.name
            );
            if isa == Isa::Scalar {
                assert_eq!(suffix, "scalar");
            }
        }
    }
}

/// The scalar kernels are the documented canonical order (scalar.rs), recomputed here from
/// independent pieces: each block's integer parts come from the format's dequantizer (with the
/// f16 factors set to 1 and 0, the decoded values are the integer `scale · quant` products,
/// exact in f32; with `d` = 0 and `dmin` = 1 they are the negated mins), and the float steps
/// are written out as the documentation states them.
#[test]
fn scalar_kernels_are_the_documented_canonical_order() {
    let mut rng = Rng(0xD0C);
    for ty in weight_types().filter(|t| t.block_elems() > 1) {
        let act = activation_type(ty).unwrap();
        let fields = f16_fields(ty);
        let with_mins = matches!(ty, GgmlType::Q2K | GgmlType::Q4K | GgmlType::Q5K);
        let with_offset = matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1);
        let (be, wb, ab) = (ty.block_elems(), ty.block_bytes(), act.block_bytes());
        // Activation layout: f16 d [, f16 s] then quants for Q8_0 / Q8_1, f32 d then quants
        // for Q8_K.
        let a_quants_at = match act {
            GgmlType::Q8_0 => 2,
            _ => 4,
        };
        for nb in [1, 5, 32, 33, 70] {
            let n = nb * be;
            let w = weight_row(ty, n, &mut rng);
            let a = act_row(act, n, &mut rng);
            let f16_at = |bytes: &[u8], at: usize| f16::from_le_bytes([bytes[at], bytes[at + 1]]);
            // Decodes block `blk` with its f16 factors replaced by `factors`.
            let decode_with = |blk: &[u8], factors: &[f32]| {
                let mut b = blk.to_vec();
                for (&at, &v) in fields.iter().zip(factors) {
                    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
                let mut out = vec![0f32; be];
                dequantize_row(ty, &b, &mut out).unwrap();
                out
            };
            let mut acc = [0f32; 32];
            for b in 0..nb {
                let (wblk, ablk) = (&w[b * wb..][..wb], &a[b * ab..][..ab]);
                let aq = &ablk[a_quants_at..][..be];
                let integer = |vals: Vec<f32>| -> i32 {
                    vals.iter()
                        .zip(aq)
                        .map(|(&v, &q)| {
                            assert_eq!(v, v.trunc(), "{ty}: decoded integer part {v}");
                            v as i32 * q as i8 as i32
                        })
                        .sum()
                };
                let isum = integer(decode_with(wblk, &[1.0, 0.0]));
                let a_d = if act == GgmlType::Q8K {
                    f32::from_le_bytes([ablk[0], ablk[1], ablk[2], ablk[3]])
                } else {
                    f16_at(ablk, 0).to_f32()
                };
                let w_d = f16_at(wblk, fields[0]).to_f32();
                let lane = &mut acc[b % 32];
                let dd = w_d * a_d;
                *lane = (isum as f32).mul_add(dd, *lane);
                if with_offset {
                    let (m, s) = (f16_at(wblk, fields[1]), f16_at(ablk, 2));
                    *lane = m.to_f32().mul_add(s.to_f32(), *lane);
                }
                if with_mins {
                    // decoded values are -m_j: the sum is -msum
                    let neg_msum = integer(decode_with(wblk, &[0.0, 1.0]));
                    let dm = f16_at(wblk, fields[1]).to_f32() * a_d;
                    *lane = (neg_msum as f32).mul_add(dm, *lane);
                }
            }
            let expect = scalar::butterfly(acc);
            let got = (scalar_kernels_for(ty).unwrap().one)(n, &w, &a);
            assert_eq!(
                got.to_bits(),
                expect.to_bits(),
                "{ty} nb={nb}: {got} vs {expect}"
            );
        }
    }
}
