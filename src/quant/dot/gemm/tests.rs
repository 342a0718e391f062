//! Every runnable tiled kernel against the canonical scalar kernel, bit for bit: random and
//! edge-case blocks, every panel height up to the kernel's, token counts that leave every
//! remainder of its token groups, and rows of fewer and more than 32 blocks.

use super::*;
use crate::quant::activation::activation_type;
use crate::quant::dot::scalar_kernels_for;
use crate::quant::dot::tests::{edge_act_row, edge_weight_row, weight_row, Rng};

/// The weight types that have tiled kernels on x86-64 with AVX2 (every one of them has the
/// AVX-VNNI and AVX-512 versions too, where the CPU has those).
const TILED: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
];

/// Runs `k` on `rows` weight rows and `acts` (each token's packed row) and returns
/// out[t][r], checking the lanes past `rows` were left for the caller to ignore.
fn run(k: &GemmKernels, n: usize, ws: &[Vec<u8>], acts: &[Vec<u8>]) -> Vec<Vec<f32>> {
    let act = activation_type(k.weight).unwrap();
    let (nb, nsb) = if act == GgmlType::Q8K {
        (0, n / 256)
    } else {
        (n / 32, 0)
    };
    let row_bytes = k.weight.row_bytes(n as u64).unwrap() as usize;
    let w: Vec<u8> = ws.concat();
    let a: Vec<u8> = acts.concat();
    let act_row_bytes = act.row_bytes(n as u64).unwrap() as usize;
    let mut meta = vec![ActMeta::default(); acts.len() * nb];
    let mut kmeta = vec![KMeta::default(); acts.len() * nsb];
    for (t, row) in acts.iter().enumerate() {
        assert!(
            act_meta(act, row, &mut meta[t * nb..(t + 1) * nb])
                || act_meta_k(act, row, &mut kmeta[t * nsb..(t + 1) * nsb])
        );
    }
    let args = GemmArgs {
        n,
        w: &w,
        row_bytes,
        rows: ws.len(),
        acts: &a,
        act_row_bytes,
        meta: &meta,
        kmeta: &kmeta,
        n_tokens: acts.len(),
    };
    let mut out = vec![f32::NAN; acts.len() * k.panel];
    let mut scratch = Vec::new();
    (k.run)(&args, &mut out, &mut scratch);
    (0..acts.len())
        .map(|t| out[t * k.panel..][..ws.len()].to_vec())
        .collect()
}

#[test]
fn tiled_kernels_are_bit_identical_to_the_canonical_order() {
    let mut rng = Rng(0x6E33);
    for ty in TILED {
        let kernels = available_gemm_kernels(ty);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            assert!(!kernels.is_empty(), "{ty}: no tiled kernel");
        }
        let act = activation_type(ty).unwrap();
        let want = scalar_kernels_for(ty).unwrap().one;
        for k in kernels {
            // Panels of 1, an odd few, one short of full and full; blocks of one lane
            // round, a partial and whole ones, and more than one round.
            let heights = [1, 3, k.panel - 1, k.panel];
            for (case, (nb, n_tokens)) in [
                (1, 13),
                (2, 1),
                (17, 9),
                (18, 5),
                (32, 12),
                (33, 3),
                (65, 11),
            ]
            .into_iter()
            .enumerate()
            {
                let n = nb * ty.block_elems();
                let rows = heights[case % heights.len()];
                let mut ws: Vec<Vec<u8>> = (0..rows)
                    .map(|_| edge_weight_row(ty, nb, &mut rng))
                    .collect();
                if case % 2 == 1 {
                    ws[0] = weight_row(ty, n, &mut rng); // an ordinary random row
                }
                let acts: Vec<Vec<u8>> = (0..n_tokens)
                    .map(|_| edge_act_row(act, nb, &mut rng))
                    .collect();
                let got = run(k, n, &ws, &acts);
                for (t, a) in acts.iter().enumerate() {
                    for (r, w) in ws.iter().enumerate() {
                        let expect = want(n, w, a);
                        assert_eq!(
                            got[t][r].to_bits(),
                            expect.to_bits(),
                            "{} nb={nb} rows={rows} token {t} row {r}: {} vs {expect}",
                            k.name,
                            got[t][r]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn tiled_kernels_refuse_short_slices() {
    for k in TILED.into_iter().flat_map(available_gemm_kernels) {
        let n = 2 * k.weight.block_elems();
        let row_bytes = k.weight.row_bytes(n as u64).unwrap() as usize;
        let act = activation_type(k.weight).unwrap();
        let arb = act.row_bytes(n as u64).unwrap() as usize;
        let (w, a) = (vec![0u8; 2 * row_bytes], vec![0u8; arb]);
        let meta = [ActMeta::default(); 2];
        let kmeta = [KMeta::default(); 2];
        let args = GemmArgs {
            n,
            w: &w[..2 * row_bytes - 1], // the second row is one byte short
            row_bytes,
            rows: 2,
            acts: &a,
            act_row_bytes: arb,
            meta: &meta,
            kmeta: &kmeta,
            n_tokens: 1,
        };
        let r =
            std::panic::catch_unwind(|| (k.run)(&args, &mut vec![0.0; k.panel], &mut Vec::new()));
        assert!(r.is_err(), "{} read a short row", k.name);
    }
}

#[test]
fn act_meta_sums_the_quants_and_reads_the_scales() {
    // A Q8_1 block: d = 0.5, s = 2.0, quants -3, 1, 1, ... (sum -3 + 31).
    let mut row = Vec::new();
    row.extend(half::f16::from_f32(0.5).to_le_bytes());
    row.extend(half::f16::from_f32(2.0).to_le_bytes());
    row.push((-3i8) as u8);
    row.extend([1u8; 31]);
    let mut meta = [ActMeta::default()];
    assert!(act_meta(GgmlType::Q8_1, &row, &mut meta));
    assert_eq!(
        meta[0],
        ActMeta {
            d: 0.5,
            s: 2.0,
            sum: 28
        }
    );
    assert!(act_meta(GgmlType::Q8_0, &row[2..], &mut meta));
    assert_eq!(
        meta[0],
        ActMeta {
            d: 2.0,
            s: 0.0,
            sum: 28
        }
    );
    assert!(!act_meta(GgmlType::Q8K, &row, &mut meta));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn iq4_shuffle_tables_hold_the_values_and_their_offset_bytes() {
    use crate::quant::formats::iq4_nl::VALUES;
    let bytes = |t: [i32; 4]| -> Vec<u8> { t.iter().flat_map(|w| w.to_le_bytes()).collect() };
    let (unsigned, signed) = (bytes(x86::IQ4_U8), bytes(x86::IQ4_S8));
    for (i, &v) in VALUES.iter().enumerate() {
        assert_eq!(unsigned[i] as i32, v as i32 + 128, "offset byte {i}");
        assert_eq!(signed[i] as i8, v, "signed byte {i}");
    }
}
