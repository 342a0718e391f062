//! GGUF reader (being written).

/// A malformed-file error naming the field and the byte offset.
#[derive(Debug, thiserror::Error)]
#[error("{field} at offset {offset}: {detail}")]
pub struct GgufError {
    pub field: String,
    pub offset: u64,
    pub detail: String,
}
