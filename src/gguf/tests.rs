//! Writer -> reader round trips and the typed accessors.

use super::*;
use crate::error::Error;
use crate::quant::GgmlType;

/// Every value type, nested arrays, and tensors of four types; alignment 64.
fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "llama".into()).unwrap();
    w.add_kv("general.alignment", Value::U32(64)).unwrap();
    w.add_kv("k.u8", Value::U8(200)).unwrap();
    w.add_kv("k.i8", Value::I8(-5)).unwrap();
    w.add_kv("k.u16", Value::U16(60000)).unwrap();
    w.add_kv("k.i16", Value::I16(-30000)).unwrap();
    w.add_kv("k.u32", Value::U32(4_000_000_000)).unwrap();
    w.add_kv("k.i32", Value::I32(-7)).unwrap();
    w.add_kv("k.u64", Value::U64(1 << 40)).unwrap();
    w.add_kv("k.i64", Value::I64(i64::MIN)).unwrap();
    w.add_kv("k.f32", Value::F32(1.5)).unwrap();
    w.add_kv("k.f64", Value::F64(0.25)).unwrap();
    w.add_kv("k.bool", Value::Bool(true)).unwrap();
    w.add_kv("k.strs", vec!["a", "", "ünï"].into()).unwrap();
    w.add_kv("k.f32s", vec![1.0f32, -2.0].into()).unwrap();
    w.add_kv("k.i32s", vec![3i32, -4].into()).unwrap();
    w.add_kv("k.bools", vec![true, false].into()).unwrap();
    let nested = Array::Array(vec![
        Array::U8(vec![1, 2]),
        Array::Array(vec![Array::String(vec!["deep".into()])]),
        Array::I64(vec![]),
    ]);
    w.add_kv("k.nested", nested.into()).unwrap();
    let f32_bytes: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    w.add_tensor("t.f32", &[4, 3], GgmlType::F32, f32_bytes)
        .unwrap();
    w.add_tensor("t.f16", &[3], GgmlType::F16, vec![7; 6])
        .unwrap();
    w.add_tensor("t.q4_0", &[64, 2], GgmlType::Q4_0, vec![9; 72])
        .unwrap();
    w.add_tensor("t.q8_0", &[32, 1, 1, 2], GgmlType::Q8_0, vec![3; 68])
        .unwrap();
    w
}

#[test]
fn round_trip_keeps_every_value_and_tensor() {
    let w = sample();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.metadata().len(), 18);
    assert_eq!(f.metadata()[0].0, "general.architecture");
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get("k.u8"), Some(&Value::U8(200)));
    assert_eq!(f.get("k.i8"), Some(&Value::I8(-5)));
    assert_eq!(f.get("k.u16"), Some(&Value::U16(60000)));
    assert_eq!(f.get("k.i16"), Some(&Value::I16(-30000)));
    assert_eq!(f.get("k.i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(f.get("k.f64"), Some(&Value::F64(0.25)));
    assert_eq!(f.get_bool("k.bool"), Some(true));
    assert_eq!(
        f.get_str_array("k.strs"),
        Some(&["a".to_string(), String::new(), "ünï".to_string()][..])
    );
    assert_eq!(f.get_f32_array("k.f32s"), Some(&[1.0f32, -2.0][..]));
    assert_eq!(f.get_i32_array("k.i32s"), Some(&[3i32, -4][..]));
    assert_eq!(
        f.get_array("k.bools"),
        Some(&Array::Bool(vec![true, false]))
    );
    match f.get_array("k.nested") {
        Some(Array::Array(inner)) => {
            assert_eq!(inner.len(), 3);
            assert_eq!(inner[0], Array::U8(vec![1, 2]));
            assert_eq!(
                inner[1],
                Array::Array(vec![Array::String(vec!["deep".into()])])
            );
            assert_eq!(inner[2], Array::I64(vec![]));
        }
        other => panic!("k.nested: {other:?}"),
    }

    assert_eq!(f.tensors().len(), 4);
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["t.f32", "t.f16", "t.q4_0", "t.q8_0"]);
    let t = f.tensor("t.f32").unwrap();
    assert_eq!(t.dims, [4, 3]);
    assert_eq!(t.ty, GgmlType::F32);
    assert_eq!(t.n_elements(), 12);
    assert_eq!(t.n_rows(), 3);
    assert_eq!(t.n_bytes, 48);
    let data = f.tensor_data(t);
    assert_eq!(&data[4..8], &1.0f32.to_le_bytes());
    assert_eq!(f.tensor_data(f.tensor("t.f16").unwrap()), &[7; 6]);
    assert_eq!(f.tensor_data(f.tensor("t.q4_0").unwrap()), &[9; 72][..]);
    let q8 = f.tensor("t.q8_0").unwrap();
    assert_eq!(q8.dims, [32, 1, 1, 2]);
    assert_eq!(f.tensor_data(q8), &[3; 68][..]);
    for t in f.tensors() {
        assert_eq!(t.offset % 64, 0, "{} offset", t.name);
    }
    assert!(f.tensor("missing").is_none());
    assert_eq!(f.file_size(), f.as_bytes().len() as u64);
}

#[test]
fn integer_accessors_convert_only_when_the_value_fits() {
    let f = GgufFile::from_bytes(sample().to_bytes()).unwrap();
    assert_eq!(f.get_u64("k.u8"), Some(200));
    assert_eq!(f.get_u32("k.u8"), Some(200));
    assert_eq!(f.get_u32("k.u32"), Some(4_000_000_000));
    assert_eq!(f.get_u64("k.u64"), Some(1 << 40));
    assert_eq!(f.get_u32("k.u64"), None, "2^40 does not fit in u32");
    assert_eq!(f.get_u64("k.i8"), None, "negative");
    assert_eq!(f.get_u32("k.i32"), None, "negative");
    assert_eq!(f.get_u64("k.f32"), None, "float is not an integer");
    assert_eq!(f.get_f32("k.f32"), Some(1.5));
    assert_eq!(f.get_f32("k.f64"), Some(0.25));
    assert_eq!(f.get_f32("k.u8"), None);
    assert_eq!(f.get_str("k.u8"), None);
    assert_eq!(f.get_bool("k.u8"), None);
    assert_eq!(f.get_str_array("k.f32s"), None);
    assert_eq!(f.get_f32_array("k.i32s"), None);
    assert_eq!(f.get_i32_array("missing"), None);
}

#[test]
fn version_2_and_default_alignment_round_trip() {
    let mut w = GgufWriter::new();
    w.set_version(2).unwrap();
    w.add_tensor("a", &[3], GgmlType::F32, vec![1; 12]).unwrap();
    w.add_tensor("b", &[1], GgmlType::I8, vec![2]).unwrap();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.alignment(), DEFAULT_ALIGNMENT);
    assert_eq!(f.tensor("b").unwrap().offset, 32);
    assert_eq!(f.tensor_data(f.tensor("b").unwrap()), &[2]);
    assert!(w.set_version(1).is_err());
    assert!(w.set_version(4).is_err());
}

#[test]
fn empty_file_with_no_tensors_parses() {
    let f = GgufFile::from_bytes(GgufWriter::new().to_bytes()).unwrap();
    assert!(f.metadata().is_empty());
    assert!(f.tensors().is_empty());
}

#[test]
fn generated_tensors_match_owned_ones_and_stream_in_row_chunks() {
    // 600 rows of 4096 Q8_0 elements: 4352 bytes a row, several 1 MiB chunks.
    let dims = [4096u64, 600];
    let row_bytes = 4096 / 32 * 34;
    let byte_at = |i: usize| (i % 251) as u8;
    let owned: Vec<u8> = (0..row_bytes * 600).map(byte_at).collect();
    let mut a = GgufWriter::new();
    a.add_tensor("w", &dims, GgmlType::Q8_0, owned).unwrap();
    let mut b = GgufWriter::new();
    b.add_tensor_generated("w", &dims, GgmlType::Q8_0, move |first_row, buf| {
        assert_eq!(buf.len() % row_bytes, 0, "whole rows");
        let start = first_row as usize * row_bytes;
        for (i, x) in buf.iter_mut().enumerate() {
            *x = byte_at(start + i);
        }
    })
    .unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
}

#[test]
fn write_to_then_open_maps_the_same_file() {
    let path = std::env::temp_dir().join(format!("rocmforge-gguf-{}.gguf", std::process::id()));
    sample().write_to(&path).unwrap();
    let opened = GgufFile::open(&path);
    let on_disk = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    let f = opened.unwrap();
    assert_eq!(on_disk.unwrap(), sample().to_bytes());
    assert_eq!(f.tensors().len(), 4);
    assert_eq!(f.tensor_data(f.tensor("t.q4_0").unwrap()), &[9; 72][..]);
}

#[test]
fn open_reports_io_errors_with_the_path() {
    let path = std::path::Path::new("/nonexistent/rocmforge/model.gguf");
    match GgufFile::open(path) {
        Err(Error::Io { path: p, .. }) => assert!(p.contains("model.gguf")),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn writer_rejects_what_the_reader_would() {
    let mut w = GgufWriter::new();
    w.add_kv("a", Value::U8(1)).unwrap();
    assert!(w.add_kv("a", Value::U8(2)).is_err(), "duplicate key");
    assert!(w.add_kv("general.alignment", Value::U32(3)).is_err());
    assert!(w.add_kv("general.alignment", Value::U32(0)).is_err());
    assert!(w.add_kv("general.alignment", Value::U64(32)).is_err());
    assert!(w.add_tensor("t", &[4], GgmlType::F32, vec![0; 15]).is_err());
    assert!(w
        .add_tensor("t", &[33], GgmlType::Q8_0, vec![0; 34])
        .is_err());
    assert!(w.add_tensor("t", &[0], GgmlType::F32, vec![]).is_err());
    assert!(w
        .add_tensor("t", &[1; 5], GgmlType::F32, vec![0; 4])
        .is_err());
    assert!(w.add_tensor("t", &[], GgmlType::F32, vec![0; 4]).is_err());
    w.add_tensor("t", &[4], GgmlType::F32, vec![0; 16]).unwrap();
    assert!(w.add_tensor("t", &[4], GgmlType::F32, vec![0; 16]).is_err());
    let too_deep = (0..MAX_ARRAY_DEPTH).fold(Array::U8(vec![]), |a, _| Array::Array(vec![a]));
    assert!(w.add_kv("deep", too_deep.into()).is_err());
}

#[test]
fn gguf_file_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<GgufFile>();
}
