//! Parses the real SmolLM2 model when the model cache holds it. A missing file fails the test
//! (so CI cannot silently skip it) unless ROCMFORGE_SKIP_MODEL_TESTS=1.

use std::path::PathBuf;

use rocmforge::gguf::GgufFile;
use rocmforge::quant::GgmlType;

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model path, or `None` when the model tests are skipped on purpose.
fn model_path() -> Option<PathBuf> {
    if std::env::var("ROCMFORGE_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        return None;
    }
    let dir = std::env::var_os("ROCMFORGE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models"));
    let path = dir.join(MODEL);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh (or set ROCMFORGE_SKIP_MODEL_TESTS=1)",
        path.display()
    );
    Some(path)
}

#[test]
fn smollm2_parses_with_expected_shape() {
    let Some(path) = model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_u32("llama.block_count"), Some(30));
    assert_eq!(f.get_u64("llama.embedding_length"), Some(576));
    assert_eq!(f.alignment(), 32);

    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ty, GgmlType::Q8_0);
    assert_eq!(embd.dims, [576, 49152]);
    assert_eq!(embd.n_bytes, 576 / 32 * 34 * 49152);
    assert_eq!(f.tensor_data(embd).len() as u64, embd.n_bytes);

    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);

    // Tensors tile the data section: the last one ends within one alignment of the file end.
    let end = f
        .tensors()
        .iter()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert!(f.file_size() - (f.data_offset() + end) < f.alignment());
}

/// Load progress never goes backwards and ends at 1, with mmap on and off; a cancel from the
/// callback stops the load and the callback is not called again.
#[test]
fn load_progress_is_monotonic_and_cancellable() {
    use rocmforge::{Backend, Error, Model, ModelParams};
    let Some(path) = model_path() else { return };
    for use_mmap in [true, false] {
        let mut seen: Vec<f32> = Vec::new();
        let mut progress = |f: f32| {
            seen.push(f);
            true
        };
        let params = ModelParams {
            use_mmap,
            progress: Some(&mut progress),
            backend: Backend::Cpu,
            device: 0,
        };
        Model::load(&path, params).unwrap();
        assert!(seen.len() > 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!((seen[0], seen[seen.len() - 1]), (0.0, 1.0));

        let mut after_stop = 0;
        let mut stopped = false;
        let mut progress = |f: f32| {
            after_stop += stopped as usize;
            stopped |= f > 0.3;
            !stopped
        };
        let params = ModelParams {
            use_mmap,
            progress: Some(&mut progress),
            backend: Backend::Cpu,
            device: 0,
        };
        assert!(matches!(Model::load(&path, params), Err(Error::Cancelled)));
        assert_eq!(after_stop, 0);
    }
}
