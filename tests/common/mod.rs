//! Shared helpers for integration tests that need the real models.
#![allow(dead_code)]

pub mod capi;
pub mod cbuild;
pub mod child;
pub mod mixed;
pub mod teacher;
pub mod tiny;

use std::path::PathBuf;

/// Folder of the model cache: `ROCMFORGE_MODEL_DIR`, or `.cache/models` in the repository.
pub fn model_dir() -> PathBuf {
    std::env::var_os("ROCMFORGE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models"))
}

/// Path of a cached model. Panics with instructions when it is missing: model tests must not
/// pass silently without their model. `ROCMFORGE_SKIP_MODEL_TESTS=1` turns them into no-ops for
/// quick local runs (never set in CI).
pub fn model_path(file: &str) -> Option<PathBuf> {
    let path = model_dir().join(file);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("ROCMFORGE_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping: {} is missing", path.display());
        return None;
    }
    panic!(
        "{} is missing: run scripts/fetch-models.sh (or set ROCMFORGE_SKIP_MODEL_TESTS=1)",
        path.display()
    );
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}
