//! Feeds arbitrary bytes to the GGUF parser. Any panic, abort, overflow trap or allocation past
//! libFuzzer's -rss_limit_mb is a bug: malformed files must come back as `Error::Gguf`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::gguf::{Array, GgufFile, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    // A parsed file must answer every accessor without panicking.
    let _ = (f.version(), f.alignment(), f.data_offset(), f.file_size());
    assert!(f.data_offset() <= f.file_size() || f.tensors().is_empty());
    for (key, value) in f.metadata() {
        assert!(f.get(key).is_some());
        let _ = (
            f.get_str(key),
            f.get_u64(key),
            f.get_u32(key),
            f.get_f32(key),
        );
        let _ = (f.get_bool(key), f.get_str_array(key), f.get_f32_array(key));
        let _ = f.get_i32_array(key);
        if let Value::Array(a) = value {
            touch(a);
        }
    }
    for t in f.tensors() {
        assert!(std::ptr::eq(f.tensor(&t.name).unwrap(), t));
        let bytes = f.tensor_data(t);
        // Ranges were validated at parse: the slice is the whole tensor.
        assert_eq!(bytes.len() as u64, t.n_bytes);
        assert!(t.n_elements() > 0);
        std::hint::black_box(bytes.iter().fold(0u8, |a, &b| a ^ b));
    }
});

fn touch(a: &Array) {
    let _ = (a.len(), a.is_empty(), a.elem_type());
    if let Array::Array(inner) = a {
        inner.iter().for_each(touch);
    }
}
