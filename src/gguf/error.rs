//! The GGUF parse error: what went wrong, in which field, at which byte.

/// A malformed-file error naming the field and the byte offset where that field starts.
///
/// `field` is stable enough to match in tests, e.g. `kv_count`, `metadata[3].key`,
/// `metadata 'general.alignment' value`, `tensor 'token_embd.weight' dims[1]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} at offset {offset}: {detail}")]
pub struct GgufError {
    /// The field being read or checked.
    pub field: String,
    /// Byte offset in the file where that field starts.
    pub offset: u64,
    /// The class of the problem, for programmatic matching.
    pub kind: GgufErrorKind,
    /// Human-readable specifics (expected vs found).
    pub detail: String,
}

/// Every way a GGUF file can be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufErrorKind {
    /// A fixed-size field (integer, float, type id) runs past the end of the file.
    Truncated,
    /// The file does not start with the bytes `GGUF`.
    BadMagic,
    /// A version other than 2 or 3 (1 used 32-bit counts; later ones are unknown).
    UnsupportedVersion(u32),
    /// A metadata value type id outside 0..=12.
    UnknownValueType(u32),
    /// A tensor type id that no GGML version defines.
    UnknownTensorType(u32),
    /// A count or length needs more bytes than remain in the file (or overflows): a hostile
    /// value, or a file cut short inside a string or array.
    TooLarge,
    /// Arrays nested deeper than [`super::MAX_ARRAY_DEPTH`].
    TooDeep,
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// A bool byte other than 0 or 1.
    InvalidBool,
    /// `general.alignment` is not a u32 power of two.
    BadAlignment,
    /// A tensor offset that is not a multiple of the file's alignment.
    MisalignedOffset,
    /// A tensor's bytes extend past the end of the file.
    OutOfRange,
    /// Two tensors share bytes.
    Overlap,
    /// Data bytes that no tensor claims (more than the alignment padding between two tensors,
    /// before the first or after the last): a tensor's type or shape disagrees with its data.
    Unclaimed,
    /// The same metadata key twice.
    DuplicateKey,
    /// The same tensor name twice.
    DuplicateTensor,
    /// Tensor dimensions that are not usable: n_dims outside 1..=4, a zero dim, an element or
    /// byte count that overflows, or a row length that is not a whole number of blocks.
    BadDims,
}

impl GgufError {
    /// An error whose field is filled in later by [`WithField::field`].
    pub(crate) fn new(kind: GgufErrorKind, offset: u64, detail: impl Into<String>) -> Self {
        GgufError {
            field: String::new(),
            offset,
            kind,
            detail: detail.into(),
        }
    }

    /// An error with its field known up front.
    pub(crate) fn at(
        field: impl Into<String>,
        offset: u64,
        kind: GgufErrorKind,
        detail: impl Into<String>,
    ) -> Self {
        GgufError {
            field: field.into(),
            offset,
            kind,
            detail: detail.into(),
        }
    }
}

/// Names the field on an error coming out of the cursor. The name is built only on failure, so
/// the happy path over hundreds of thousands of array elements formats nothing.
pub(crate) trait WithField<T> {
    fn field<S: Into<String>>(self, name: impl FnOnce() -> S) -> Result<T, GgufError>;
}

impl<T> WithField<T> for Result<T, GgufError> {
    fn field<S: Into<String>>(self, name: impl FnOnce() -> S) -> Result<T, GgufError> {
        self.map_err(|mut e| {
            if e.field.is_empty() {
                e.field = name().into();
            }
            e
        })
    }
}
