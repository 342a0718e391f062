//! The crate's one error type. Each variant maps to a stable status code used by the C ABI.

use crate::gguf::GgufError;

/// Everything that can go wrong in the engine. The message always names the offending thing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed GGUF file: {0}")]
    Gguf(#[from] GgufError),
    #[error(
        "unsupported model architecture '{0}' (this build runs: {supported})",
        supported = crate::model::Architecture::supported_names()
    )]
    UnsupportedArchitecture(String),
    /// The model's description uses something the backend it would run on does not run yet.
    #[error(
        "model architecture '{arch}' uses {feature}, which the {backend} backend does not run yet"
    )]
    UnsupportedFeature {
        arch: &'static str,
        feature: &'static str,
        backend: &'static str,
    },
    /// A request this engine does not serve (a quantization target it cannot write).
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("unsupported tensor type {ty} for tensor '{tensor}'")]
    UnsupportedTensorType { tensor: String, ty: String },
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("chat template error: {0}")]
    Template(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("context full: {0}")]
    ContextFull(String),
    #[error("operation cancelled")]
    Cancelled,
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The backend asked for is not built into this library, or no device is present.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    /// A HIP/CUDA runtime or kernel failure (out-of-memory is reported as OutOfMemory).
    #[error("GPU error: {0}")]
    Gpu(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
