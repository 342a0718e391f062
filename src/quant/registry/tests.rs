//! The registry's rows against the type table, each other, and the HIP kernels' table.

use super::*;

#[test]
fn rows_are_unique_and_their_kernels_are_for_their_type() {
    for (i, f) in FORMATS.iter().enumerate() {
        assert!(
            FORMATS[..i].iter().all(|g| g.ty != f.ty),
            "{}: two rows",
            f.ty
        );
        assert!(std::ptr::eq(format(f.ty).unwrap(), f));
        if let Some(k) = f.cpu_dot {
            assert_eq!(k.weight, f.ty);
            assert!(
                k.name.starts_with(&f.ty.name().to_lowercase()),
                "{}",
                k.name
            );
        }
    }
    assert!(format(GgmlType::Iq3S).is_none());
}

#[test]
fn weights_pair_with_activation_formats() {
    for f in FORMATS {
        // A weight type has all three, an activation-only format none.
        assert_eq!(f.activation.is_some(), f.cpu_dot.is_some(), "{}", f.ty);
        assert_eq!(
            f.activation.is_some(),
            f.reference_dot.is_some(),
            "{}",
            f.ty
        );
        if let Some(act) = f.activation {
            let a = format(act).unwrap_or_else(|| panic!("{}: no row for {act}", f.ty));
            assert!(a.quantize_activation.is_some(), "{}: {act}", f.ty);
            assert_eq!(act.block_elems(), f.ty.block_elems(), "{}: {act}", f.ty);
        }
    }
}

#[test]
fn gpu_types_are_cpu_types() {
    // The GPU reproduces the CPU's decode, so it never takes a type the CPU cannot compute.
    for f in FORMATS
        .iter()
        .filter(|f| f.gpu_matvec.is_some() || f.gpu_gemm)
    {
        assert!(f.cpu_dot.is_some(), "{}", f.ty);
        assert!(
            f.on_gpu(),
            "{}: one GPU product path without the other",
            f.ty
        );
    }
}

#[test]
fn cpu_weight_types_run_on_the_gpu() {
    // Decode is bit-identical on both backends for every weight type (issue 11), so a model
    // the CPU runs never stays off the GPU for a tensor type.
    for f in FORMATS.iter().filter(|f| f.cpu_dot.is_some()) {
        assert!(f.on_gpu(), "{}: CPU only", f.ty);
    }
}

/// Each row's encoder and decoder are its own type's (a row wired to another format's
/// functions decodes garbage or the wrong number of bytes).
#[test]
fn every_row_round_trips_through_its_codec() {
    let n = 256; // whole blocks of every format, the K-quants' super-blocks included
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 64) as f32 - 31.5) / 10.0)
        .collect();
    for f in FORMATS {
        let bytes = f.ty.row_bytes(n as u64).unwrap() as usize;
        for encode in [f.quantize, f.quantize_activation].into_iter().flatten() {
            let mut packed = vec![0xEEu8; bytes + 7];
            encode(&x, &mut packed[..bytes]);
            assert!(packed[bytes..].iter().all(|&b| b == 0xEE), "{}", f.ty);
            let mut back = vec![f32::NAN; n];
            dequantize_row(f.ty, &packed, &mut back).unwrap();
            // 4-bit steps of these blocks are at most 6.3 / 15; Q2_K's 2-bit grid has steps
            // up to 6.3 / 3 and Q3_K's up to 6.3 / 7, and their fitted grids may clip an
            // extreme value by up to about one step.
            let bound = match f.ty {
                GgmlType::Q2K => 2.2,
                GgmlType::Q3K => 0.95,
                _ => 0.43,
            };
            for (a, b) in x.iter().zip(&back) {
                assert!((a - b).abs() <= bound, "{}: {a} vs {b}", f.ty);
            }
        }
    }
}

#[test]
fn dequantize_rejects_short_rows_and_unsupported_types() {
    let mut out = [0f32; 32];
    assert!(dequantize_row(GgmlType::Q4_1, &[0u8; 19], &mut out).is_err());
    assert!(dequantize_row(GgmlType::Iq3S, &[0u8; 1000], &mut out).is_err());
    let mut odd = [0f32; 31];
    assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 34], &mut odd).is_err());
}

/// kernels/quant.h, read as text.
const QUANT_H: &str = include_str!("../../../kernels/quant.h");

/// One row of `RF_QUANT_TYPES(X)`: `X(name, GGUF id, elements per block, bytes per block,
/// mat-vec activations)`.
#[derive(Debug)]
struct HipRow {
    name: String,
    id: u32,
    elems: usize,
    bytes: usize,
    matvec: String,
}

/// The rows of the X-macro: the continuation lines after `#define RF_QUANT_TYPES(X)`.
fn hip_rows() -> Vec<HipRow> {
    let mut lines = QUANT_H
        .lines()
        .skip_while(|l| !l.starts_with("#define RF_QUANT_TYPES(X)"));
    let mut line = lines
        .next()
        .expect("kernels/quant.h defines RF_QUANT_TYPES(X)");
    let mut body = String::new();
    while line.trim_end().ends_with('\\') {
        line = lines.next().expect("the macro ends");
        body.push_str(line.trim_end().trim_end_matches('\\'));
    }
    body.split("X(")
        .skip(1)
        .map(|entry| {
            let args = &entry[..entry.find(')').expect("a row ends with ')'")];
            let f: Vec<&str> = args.split(',').map(str::trim).collect();
            assert_eq!(f.len(), 5, "row X({args})");
            let num = |s: &str| s.parse::<usize>().unwrap_or_else(|_| panic!("X({args})"));
            HipRow {
                name: f[0].to_string(),
                id: num(f[1]) as u32,
                elems: num(f[2]),
                bytes: num(f[3]),
                matvec: f[4].to_string(),
            }
        })
        .collect()
}

#[test]
fn hip_type_table_matches_the_registry() {
    let rows = hip_rows();
    assert!(rows.len() >= 2, "parsed {rows:?}");
    for (i, r) in rows.iter().enumerate() {
        assert!(
            rows[..i].iter().all(|p| p.id != r.id),
            "{}: two rows",
            r.name
        );
        let ty = GgmlType::from_id(r.id).unwrap_or_else(|| panic!("{r:?}: no GGML type"));
        assert_eq!(r.name, ty.name(), "{r:?}");
        assert_eq!(
            (r.elems, r.bytes),
            (ty.block_elems(), ty.block_bytes()),
            "{r:?}: block geometry"
        );
        let f = format(ty).unwrap_or_else(|| panic!("{r:?}: no registry row"));
        let want = match f.gpu_matvec {
            Some(GpuMatvec::Int8) => "INT8",
            Some(GpuMatvec::F32) => "F32",
            None => panic!("{r:?}: the registry has no GPU mat-vec for {ty}"),
        };
        assert_eq!(r.matvec, want, "{r:?}: mat-vec activations");
        assert!(f.on_gpu(), "{r:?}");
    }
    for f in FORMATS.iter().filter(|f| f.on_gpu()) {
        assert!(
            rows.iter().any(|r| r.id == f.ty.id()),
            "{} runs on the GPU in the registry but has no row in kernels/quant.h",
            f.ty
        );
    }
}

/// Blocks of seeded random bytes and their values as the `gguf` package from PyPI decodes
/// them (tools/reference/dequant_fixtures.py): an oracle independent of our decoders.
const DEQUANT_FIXTURES: &[(GgmlType, &[u8], &[u8])] = &[
    (
        GgmlType::Q5_0,
        include_bytes!("../../../tests/fixtures/dequant/q5_0.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/q5_0.f32"),
    ),
    (
        GgmlType::Q5_1,
        include_bytes!("../../../tests/fixtures/dequant/q5_1.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/q5_1.f32"),
    ),
    (
        GgmlType::Q2K,
        include_bytes!("../../../tests/fixtures/dequant/q2_k.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/q2_k.f32"),
    ),
    (
        GgmlType::Q3K,
        include_bytes!("../../../tests/fixtures/dequant/q3_k.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/q3_k.f32"),
    ),
    (
        GgmlType::Q4K,
        include_bytes!("../../../tests/fixtures/dequant/q4_k.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/q4_k.f32"),
    ),
    (
        GgmlType::Q5K,
        include_bytes!("../../../tests/fixtures/dequant/q5_k.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/q5_k.f32"),
    ),
    (
        GgmlType::Q6K,
        include_bytes!("../../../tests/fixtures/dequant/q6_k.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/q6_k.f32"),
    ),
    (
        GgmlType::Iq4Nl,
        include_bytes!("../../../tests/fixtures/dequant/iq4_nl.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/iq4_nl.f32"),
    ),
    (
        GgmlType::Iq4Xs,
        include_bytes!("../../../tests/fixtures/dequant/iq4_xs.blocks"),
        include_bytes!("../../../tests/fixtures/dequant/iq4_xs.f32"),
    ),
];

/// Our decoders round as llama.cpp's (each scale product to f32, then one multiply and one
/// subtraction), as does the oracle, so the values agree bit for bit.
#[test]
fn dequantize_matches_the_gguf_package() {
    for &(ty, blocks, values) in DEQUANT_FIXTURES {
        let want: Vec<f32> = values
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(
            blocks.len() / ty.block_bytes() * ty.block_elems(),
            want.len(),
            "{ty}: fixture sizes"
        );
        let mut got = vec![f32::NAN; want.len()];
        dequantize_row(ty, blocks, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{ty} element {i}: {g} vs {w}");
        }
    }
}

/// Our GGML reference quantizers write the bytes the `gguf` package writes
/// (tools/reference/dequant_fixtures.py), for the formats it reproduces.
#[test]
fn quantizers_match_the_gguf_package() {
    let x: Vec<f32> = include_bytes!("../../../tests/fixtures/dequant/quantize_input.f32")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected: [(GgmlType, &[u8]); 2] = [
        (
            GgmlType::Q5_0,
            include_bytes!("../../../tests/fixtures/dequant/q5_0.quantized"),
        ),
        (
            GgmlType::Q5_1,
            include_bytes!("../../../tests/fixtures/dequant/q5_1.quantized"),
        ),
    ];
    for (ty, want) in expected {
        let mut got = vec![0xEEu8; want.len()];
        (format(ty).unwrap().quantize.unwrap())(&x, &mut got);
        assert_eq!(got, want, "{ty}");
    }
}
