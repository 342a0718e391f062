//! Malformed GGUF files: valid files from the writer, corrupted byte by byte. Each must be
//! rejected with a typed error naming the field and offset, never a panic or a huge allocation.

use rocmforge::gguf::{Array, GgufError, GgufErrorKind, GgufFile, GgufWriter, Value};
use rocmforge::quant::GgmlType;
use rocmforge::Error;

use GgufErrorKind::*;

/// A file touching every section: scalar, string, array and nested-array values, and three
/// tensors. The last tensor (128 bytes) ends exactly at the end of the file (no padding), so
/// any truncation loses bytes the file needs.
fn valid() -> Vec<u8> {
    let mut w = GgufWriter::new();
    // Filler first, so the kv_count check (13 bytes a pair) passes for cuts in later pairs.
    w.add_kv("general.description", Value::String("x".repeat(100)))
        .unwrap();
    w.add_kv("general.name", "hello".into()).unwrap();
    w.add_kv("general.alignment", Value::U32(32)).unwrap();
    w.add_kv("t.u8", Value::U8(7)).unwrap();
    w.add_kv("t.bool", Value::Bool(true)).unwrap();
    w.add_kv("t.f64", Value::F64(2.5)).unwrap();
    w.add_kv("t.strs", vec!["ab", "cd"].into()).unwrap();
    w.add_kv("t.arr_i32", vec![1i32, 2, 3].into()).unwrap();
    w.add_kv("t.bools", vec![false, true].into()).unwrap();
    let nested = Array::Array(vec![Array::U16(vec![1, 2])]);
    w.add_kv("t.nested", nested.into()).unwrap();
    w.add_kv("dupk.a", Value::U32(1)).unwrap();
    w.add_kv("dupk.b", Value::U32(2)).unwrap();
    w.add_tensor("w.q8", &[32, 2], GgmlType::Q8_0, vec![1; 68])
        .unwrap();
    w.add_tensor("dupt.a", &[8], GgmlType::F32, vec![2; 32])
        .unwrap();
    w.add_tensor("w.f32", &[8, 4], GgmlType::F32, vec![3; 128])
        .unwrap();
    w.to_bytes()
}

fn parse_err(bytes: Vec<u8>) -> GgufError {
    match GgufFile::from_bytes(bytes) {
        Err(Error::Gguf(e)) => e,
        Err(other) => panic!("expected Error::Gguf, got {other}"),
        Ok(_) => panic!("malformed file was accepted"),
    }
}

/// Asserts the kind and field of the error for `bytes`, and that Display names both.
fn expect(bytes: Vec<u8>, kind: GgufErrorKind, field: &str) -> GgufError {
    let e = parse_err(bytes);
    assert_eq!(e.kind, kind, "{e}");
    assert_eq!(e.field, field, "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{field} at offset {}: ", e.offset)),
        "{shown}"
    );
    e
}

/// Position of the unique occurrence of `needle`.
fn find(bytes: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = (0..=bytes.len() - needle.len())
        .filter(|&i| &bytes[i..i + needle.len()] == needle)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "needle {:?}",
        String::from_utf8_lossy(needle)
    );
    hits[0]
}

/// Offset just after the length-prefixed string `s` (a key or tensor name).
fn after_string(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    find(bytes, &needle) + needle.len()
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offsets of a tensor info's fields, from the end of its name.
struct InfoAt {
    n_dims: usize,
    dims: usize,
    ty: usize,
    offset: usize,
}

fn tensor_info_at(bytes: &[u8], name: &str) -> InfoAt {
    let n_dims = after_string(bytes, name);
    let nd = u32::from_le_bytes(bytes[n_dims..n_dims + 4].try_into().unwrap()) as usize;
    let dims = n_dims + 4;
    let ty = dims + 8 * nd;
    InfoAt {
        n_dims,
        dims,
        ty,
        offset: ty + 4,
    }
}

#[test]
fn the_base_file_is_valid() {
    let f = GgufFile::from_bytes(valid()).unwrap();
    assert_eq!(f.metadata().len(), 12);
    assert_eq!(f.tensors().len(), 3);
    let last = f.tensor("w.f32").unwrap();
    assert_eq!(f.data_offset() + last.offset + last.n_bytes, f.file_size());
}

#[test]
fn truncation_at_every_byte_is_a_typed_error() {
    let bytes = valid();
    for len in 0..bytes.len() {
        let e = parse_err(bytes[..len].to_vec());
        assert!(
            matches!(e.kind, Truncated | TooLarge | OutOfRange),
            "cut at {len}: {e}"
        );
        assert!(
            e.offset <= len as u64 || e.kind == OutOfRange,
            "cut at {len}: {e}"
        );
    }
}

#[test]
fn truncation_names_the_section_it_hits() {
    let bytes = valid();
    let cut = |n: usize| parse_err(bytes[..n].to_vec());
    assert_eq!(cut(2).field, "magic");
    assert_eq!(cut(6).field, "version");
    assert_eq!(cut(12).field, "tensor_count");
    assert_eq!(cut(20).field, "kv_count");
    // Counts are checked against what remains where their section starts.
    let e = cut(30);
    assert_eq!(
        (e.kind, e.field.as_str(), e.offset),
        (TooLarge, "kv_count", 16)
    );
    let key = find(&bytes, b"dupk.b") - 8;
    let e = cut(key + 3);
    assert_eq!((e.kind, e.field.as_str()), (Truncated, "metadata[11].key"));
    assert_eq!(e.offset, key as u64);
    let e = cut(key + 10);
    assert_eq!((e.kind, e.field.as_str()), (TooLarge, "metadata[11].key"));
    let value_type = after_string(&bytes, "t.u8");
    assert_eq!(cut(value_type + 2).field, "metadata 't.u8' type");
    assert_eq!(cut(value_type + 4).field, "metadata 't.u8' value");
    let arr = after_string(&bytes, "t.arr_i32") + 4;
    assert_eq!(cut(arr + 1).field, "metadata 't.arr_i32' value array type");
    assert_eq!(cut(arr + 6).field, "metadata 't.arr_i32' value array count");
    // Fixed-size elements: the count check catches a cut anywhere in them.
    let e = cut(arr + 12 + 5);
    assert_eq!(
        (e.kind, e.field.as_str()),
        (TooLarge, "metadata 't.arr_i32' value array count")
    );
    // Strings: a cut inside the second one's bytes.
    let strs = after_string(&bytes, "t.strs") + 4;
    let e = cut(strs + 12 + 10 + 8 + 1);
    assert_eq!(
        (e.kind, e.field.as_str()),
        (TooLarge, "metadata 't.strs' value[1]")
    );
    let nested = after_string(&bytes, "t.nested") + 4;
    let e = cut(nested + 12 + 12 + 1);
    assert_eq!(
        (e.kind, e.field.as_str()),
        (TooLarge, "metadata 't.nested' value[0] array count")
    );
    let info = tensor_info_at(&bytes, "w.f32");
    assert_eq!(cut(info.n_dims + 1).field, "tensor 'w.f32' n_dims");
    assert_eq!(cut(info.dims + 12).field, "tensor 'w.f32' dims[1]");
    assert_eq!(cut(info.ty + 3).field, "tensor 'w.f32' type");
    assert_eq!(cut(info.offset + 7).field, "tensor 'w.f32' offset");
    let e = cut(bytes.len() - 1);
    assert_eq!(
        (e.kind, e.field.as_str()),
        (OutOfRange, "tensor 'w.f32' offset")
    );
}

#[test]
fn wrong_magic() {
    let mut b = valid();
    b[0..4].copy_from_slice(b"GGUG");
    let e = expect(b, BadMagic, "magic");
    assert_eq!(e.offset, 0);
}

#[test]
fn versions_other_than_2_and_3() {
    for v in [0, 1, 4, 0x0300_0000] {
        let mut b = valid();
        put_u32(&mut b, 4, v);
        let e = expect(b, UnsupportedVersion(v), "version");
        assert_eq!(e.offset, 4);
    }
}

#[test]
fn absurd_counts() {
    let mut b = valid();
    put_u64(&mut b, 16, u64::MAX);
    assert_eq!(expect(b, TooLarge, "kv_count").offset, 16);

    let mut b = valid();
    put_u64(&mut b, 8, u64::MAX);
    assert_eq!(expect(b, TooLarge, "tensor_count").offset, 8);

    // A count that fits the file at header time but not what remains after the metadata.
    let mut b = valid();
    put_u64(&mut b, 8, 20);
    expect(b, TooLarge, "tensor_count");

    let mut b = valid();
    put_u64(&mut b, 24, 1 << 62);
    assert_eq!(expect(b, TooLarge, "metadata[0].key").offset, 24);

    let mut b = valid();
    let arr = after_string(&b, "t.arr_i32") + 4;
    put_u64(&mut b, arr + 4, 1 << 40);
    let e = expect(b, TooLarge, "metadata 't.arr_i32' value array count");
    assert_eq!(e.offset, arr as u64 + 4);

    // count * element size overflows u64.
    let mut b = valid();
    put_u64(&mut b, arr + 4, u64::MAX / 2);
    expect(b, TooLarge, "metadata 't.arr_i32' value array count");

    let mut b = valid();
    let strs = after_string(&b, "t.strs") + 4;
    put_u64(&mut b, strs + 12, 1 << 62);
    expect(b, TooLarge, "metadata 't.strs' value[0]");

    let mut b = valid();
    let name = after_string(&b, "general.name") + 4;
    put_u64(&mut b, name, u64::MAX);
    expect(b, TooLarge, "metadata 'general.name' value");
}

#[test]
fn unknown_value_types() {
    let mut b = valid();
    let at = after_string(&b, "t.u8");
    put_u32(&mut b, at, 13);
    assert_eq!(
        expect(b, UnknownValueType(13), "metadata 't.u8' type").offset,
        at as u64
    );

    let mut b = valid();
    let arr = after_string(&b, "t.arr_i32") + 4;
    put_u32(&mut b, arr, 0xdead);
    expect(
        b,
        UnknownValueType(0xdead),
        "metadata 't.arr_i32' value array type",
    );
}

#[test]
fn unknown_tensor_type() {
    let mut b = valid();
    let info = tensor_info_at(&b, "w.f32");
    put_u32(&mut b, info.ty, 4); // Q4_2, removed from GGML
    let e = expect(b, UnknownTensorType(4), "tensor 'w.f32' type");
    assert_eq!(e.offset, info.ty as u64);
}

#[test]
fn bad_dims() {
    let mut b = valid();
    let info = tensor_info_at(&b, "w.f32");
    put_u32(&mut b, info.n_dims, 5);
    expect(b, BadDims, "tensor 'w.f32' n_dims");

    let mut b = valid();
    put_u32(&mut b, info.n_dims, 0);
    expect(b, BadDims, "tensor 'w.f32' n_dims");

    let mut b = valid();
    put_u64(&mut b, info.dims + 8, 0);
    let e = expect(b, BadDims, "tensor 'w.f32' dims");
    assert!(e.detail.contains("dims[1] is 0"), "{e}");

    let mut b = valid();
    put_u64(&mut b, info.dims, 1 << 32);
    put_u64(&mut b, info.dims + 8, 1 << 32);
    let e = expect(b, BadDims, "tensor 'w.f32' dims");
    assert!(e.detail.contains("overflow"), "{e}");

    // Row length not a multiple of the Q8_0 block (32).
    let mut b = valid();
    let q8 = tensor_info_at(&b, "w.q8");
    put_u64(&mut b, q8.dims, 16);
    let e = expect(b, BadDims, "tensor 'w.q8' dims");
    assert!(e.detail.contains("block size 32"), "{e}");
}

#[test]
fn tensor_offsets() {
    let base = valid();
    let f32_at = tensor_info_at(&base, "w.f32").offset;

    let mut b = base.clone();
    put_u64(&mut b, f32_at, 16);
    let e = expect(b, MisalignedOffset, "tensor 'w.f32' offset");
    assert_eq!(e.offset, f32_at as u64);

    let mut b = base.clone();
    put_u64(&mut b, f32_at, 1 << 20);
    expect(b, OutOfRange, "tensor 'w.f32' offset");

    // offset + n_bytes overflows u64.
    let mut b = base.clone();
    put_u64(&mut b, f32_at, u64::MAX - 31);
    expect(b, OutOfRange, "tensor 'w.f32' offset");

    // w.q8 occupies [0, 68): a tensor at 64 overlaps it.
    let mut b = base.clone();
    let dup_at = tensor_info_at(&base, "dupt.a").offset;
    put_u64(&mut b, dup_at, 64);
    let e = expect(b, Overlap, "tensor 'dupt.a' offset");
    assert!(e.detail.contains("'w.q8'"), "{e}");

    // Two tensors at the same offset.
    let mut b = base.clone();
    put_u64(&mut b, f32_at, 0);
    expect(b, Overlap, "tensor 'w.f32' offset");

    // A type byte changed to a smaller type: bytes no tensor holds, between tensors (w.q8 as
    // Q4_0 holds 36 of its 68 bytes, 64 padded, and dupt.a starts at 96) or after the last
    // (w.f32 as F16 holds 64 of 128).
    for (name, ty, detail) in [
        ("w.q8", GgmlType::Q4_0, "next tensor 'dupt.a'"),
        ("w.f32", GgmlType::F16, "belong to no tensor"),
    ] {
        let mut b = base.clone();
        put_u32(&mut b, tensor_info_at(&base, name).ty, ty as u32);
        let e = expect(b, Unclaimed, &format!("tensor '{name}' offset"));
        assert!(e.detail.contains(detail), "{e}");
        assert!(e.detail.contains(&format!("type {}", ty.name())), "{e}");
    }
}

#[test]
fn bad_alignment_values() {
    for bad in [0u32, 3, 48] {
        let mut b = valid();
        let at = after_string(&b, "general.alignment") + 4;
        put_u32(&mut b, at, bad);
        let e = expect(b, BadAlignment, "metadata 'general.alignment' value");
        assert_eq!(e.offset, at as u64);
    }
    // The right value in the wrong type: rename a u32 key to general.alignment's length twin.
    let mut w = GgufWriter::new();
    w.add_kv("general.alignmenX", Value::U64(32)).unwrap();
    let mut b = w.to_bytes();
    let at = find(&b, b"general.alignmenX");
    b[at + 16] = b't';
    expect(b, BadAlignment, "metadata 'general.alignment' value");
}

#[test]
fn alignment_is_honoured_when_valid() {
    let mut b = valid();
    let at = after_string(&b, "general.alignment") + 4;
    // Tensor offsets 0, 96 and 128 are all multiples of 16 but not all of 64.
    put_u32(&mut b, at, 64);
    expect(b, MisalignedOffset, "tensor 'dupt.a' offset");
}

#[test]
fn duplicate_key_and_tensor_name() {
    let mut b = valid();
    let at = find(&b, b"dupk.b");
    b[at + 5] = b'a';
    let e = expect(b, DuplicateKey, "metadata[11].key");
    assert_eq!(e.offset, at as u64 - 8);

    // The base file's tensor names differ in length; two equal-length names, one renamed.
    let mut w = GgufWriter::new();
    w.add_tensor("dupt.a", &[8], GgmlType::F32, vec![0; 32])
        .unwrap();
    w.add_tensor("dupt.b", &[8], GgmlType::F32, vec![0; 32])
        .unwrap();
    let mut b3 = w.to_bytes();
    let at3 = find(&b3, b"dupt.b");
    b3[at3 + 5] = b'a';
    let e = expect(b3, DuplicateTensor, "tensor[1].name");
    assert_eq!(e.offset, at3 as u64 - 8);
}

#[test]
fn invalid_utf8() {
    let mut b = valid();
    let at = find(&b, b"hello");
    b[at + 1] = 0xff;
    expect(b, InvalidUtf8, "metadata 'general.name' value");

    let mut b = valid();
    let at = find(&b, b"t.u8");
    b[at + 2] = 0xc3; // a lead byte followed by '8': not UTF-8
    expect(b, InvalidUtf8, "metadata[3].key");

    let mut b = valid();
    let at = find(&b, b"cd");
    b[at] = 0x80;
    expect(b, InvalidUtf8, "metadata 't.strs' value[1]");

    let mut b = valid();
    let at = find(&b, b"w.f32");
    b[at] = 0xfe;
    expect(b, InvalidUtf8, "tensor[2].name");
}

#[test]
fn bool_bytes_other_than_0_and_1() {
    let mut b = valid();
    let at = after_string(&b, "t.bool") + 4;
    b[at] = 2;
    assert_eq!(
        expect(b, InvalidBool, "metadata 't.bool' value").offset,
        at as u64
    );

    let mut b = valid();
    let at = after_string(&b, "t.bools") + 4 + 12;
    b[at + 1] = 0xff;
    expect(b, InvalidBool, "metadata 't.bools' value[1]");
}

#[test]
fn arrays_nested_too_deep() {
    // Header, one key "deep", then 17 array headers of (type ARRAY, count 1), then an empty
    // u8 array: built by hand because the writer refuses to produce it.
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(b"deep");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..17 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    let field = format!("metadata 'deep' value{}", "[0]".repeat(16));
    expect(b, TooDeep, &field);
}

#[test]
fn many_huge_nested_array_counts_do_not_allocate_past_the_file() {
    // An outer array claiming as many inner arrays as the bytes could hold, each inner one
    // claiming 2^40 elements: rejected at the first inner count without large allocations.
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(b"k");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    for _ in 0..2 {
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    }
    expect(b, TooLarge, "metadata 'k' value[0] array count");
}
