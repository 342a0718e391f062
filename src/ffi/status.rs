//! Status codes (stable numbers, never reused) and the thread-local last-error message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

/// Result of every fallible call. 0 is success; the numbers are part of the ABI and are never
/// renumbered or reused. `rocmforge_status_string` gives a static description of each,
/// `rocmforge_last_error` the detailed message of the calling thread's last failure.
///
/// In C the type is `int32_t` (a C enum's size is the compiler's choice) and the constants are an
/// enum; in C++ it is the enum with `int32_t` underneath. Every prototype says
/// `rocmforge_status`, so bindings (cgo, Zig) see one type.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum rocmforge_status {
    ROCMFORGE_OK = 0,
    /// A required pointer argument was NULL.
    ROCMFORGE_ERR_NULL_POINTER = 1,
    /// An argument is out of its documented range (a length, an enum value, UTF-8 text, ...).
    ROCMFORGE_ERR_INVALID_ARGUMENT = 2,
    /// The caller's buffer is too small; the required size was written to the size out-param.
    ROCMFORGE_ERR_BUFFER_TOO_SMALL = 3,
    /// A token id is negative or not below the vocabulary size.
    ROCMFORGE_ERR_INVALID_TOKEN = 4,
    /// A sequence id is negative or not below the context's maximum number of sequences.
    ROCMFORGE_ERR_INVALID_SEQUENCE = 5,
    /// The handle is in use by another thread right now (contexts and samplers are used by one
    /// thread at a time).
    ROCMFORGE_ERR_BUSY = 6,
    /// The KV cache has no room for the batch (or the state being restored).
    ROCMFORGE_ERR_CONTEXT_FULL = 7,
    /// The call was cancelled (rocmforge_context_cancel, or a load-progress callback).
    ROCMFORGE_ERR_CANCELLED = 8,
    /// The handle hit an internal fault earlier and refuses all further work; free it.
    ROCMFORGE_ERR_POISONED = 9,
    /// An internal fault (a bug) was caught at the boundary; the handle is now poisoned.
    ROCMFORGE_ERR_INTERNAL = 10,
    /// A file could not be opened, read or written.
    ROCMFORGE_ERR_IO = 11,
    /// The model file is malformed or inconsistent.
    ROCMFORGE_ERR_INVALID_MODEL = 12,
    /// The model uses an architecture or tensor type this build does not run.
    ROCMFORGE_ERR_UNSUPPORTED = 13,
    /// The model's tokenizer could not be built.
    ROCMFORGE_ERR_TOKENIZER = 14,
    /// An allocation failed.
    ROCMFORGE_ERR_OUT_OF_MEMORY = 15,
    /// The requested backend is not built into this library, or its device is not present
    /// (or the operation is not offered by the model's backend).
    ROCMFORGE_ERR_BACKEND_UNAVAILABLE = 16,
    /// The model has no chat template and none was given.
    ROCMFORGE_ERR_NO_CHAT_TEMPLATE = 17,
    /// The chat template failed to parse or render (including its own raise_exception).
    ROCMFORGE_ERR_TEMPLATE = 18,
    /// The requested item does not exist (a metadata key, a special token, logits not kept).
    ROCMFORGE_ERR_NOT_FOUND = 19,
    /// The GPU runtime or a GPU kernel failed (GPU out-of-memory is ROCMFORGE_ERR_OUT_OF_MEMORY).
    ROCMFORGE_ERR_GPU = 20,
}

use rocmforge_status::*;

impl rocmforge_status {
    /// Every status, for the table tests and `rocmforge_status_string`.
    pub(crate) const ALL: [rocmforge_status; 21] = [
        ROCMFORGE_OK,
        ROCMFORGE_ERR_NULL_POINTER,
        ROCMFORGE_ERR_INVALID_ARGUMENT,
        ROCMFORGE_ERR_BUFFER_TOO_SMALL,
        ROCMFORGE_ERR_INVALID_TOKEN,
        ROCMFORGE_ERR_INVALID_SEQUENCE,
        ROCMFORGE_ERR_BUSY,
        ROCMFORGE_ERR_CONTEXT_FULL,
        ROCMFORGE_ERR_CANCELLED,
        ROCMFORGE_ERR_POISONED,
        ROCMFORGE_ERR_INTERNAL,
        ROCMFORGE_ERR_IO,
        ROCMFORGE_ERR_INVALID_MODEL,
        ROCMFORGE_ERR_UNSUPPORTED,
        ROCMFORGE_ERR_TOKENIZER,
        ROCMFORGE_ERR_OUT_OF_MEMORY,
        ROCMFORGE_ERR_BACKEND_UNAVAILABLE,
        ROCMFORGE_ERR_NO_CHAT_TEMPLATE,
        ROCMFORGE_ERR_TEMPLATE,
        ROCMFORGE_ERR_NOT_FOUND,
        ROCMFORGE_ERR_GPU,
    ];

    /// The status with this number, if any (statuses travel as plain ints through C and
    /// through the abuse suite's child processes).
    pub fn from_code(code: i32) -> Option<rocmforge_status> {
        Self::ALL.into_iter().find(|s| *s as i32 == code)
    }

    /// NUL-terminated static description.
    pub(crate) fn description(self) -> &'static [u8] {
        match self {
            ROCMFORGE_OK => b"success\0",
            ROCMFORGE_ERR_NULL_POINTER => b"a required pointer argument is NULL\0",
            ROCMFORGE_ERR_INVALID_ARGUMENT => b"invalid argument\0",
            ROCMFORGE_ERR_BUFFER_TOO_SMALL => b"buffer too small\0",
            ROCMFORGE_ERR_INVALID_TOKEN => b"token id out of range\0",
            ROCMFORGE_ERR_INVALID_SEQUENCE => b"sequence id out of range\0",
            ROCMFORGE_ERR_BUSY => b"handle is in use by another thread\0",
            ROCMFORGE_ERR_CONTEXT_FULL => b"context full\0",
            ROCMFORGE_ERR_CANCELLED => b"cancelled\0",
            ROCMFORGE_ERR_POISONED => b"handle is poisoned by an earlier internal fault\0",
            ROCMFORGE_ERR_INTERNAL => b"internal fault\0",
            ROCMFORGE_ERR_IO => b"I/O error\0",
            ROCMFORGE_ERR_INVALID_MODEL => b"invalid model file\0",
            ROCMFORGE_ERR_UNSUPPORTED => b"unsupported model\0",
            ROCMFORGE_ERR_TOKENIZER => b"tokenizer error\0",
            ROCMFORGE_ERR_OUT_OF_MEMORY => b"out of memory\0",
            ROCMFORGE_ERR_BACKEND_UNAVAILABLE => b"backend not built in or not available\0",
            ROCMFORGE_ERR_NO_CHAT_TEMPLATE => b"model has no chat template\0",
            ROCMFORGE_ERR_TEMPLATE => b"chat template error\0",
            ROCMFORGE_ERR_NOT_FOUND => b"not found\0",
            ROCMFORGE_ERR_GPU => b"GPU error\0",
        }
    }
}

/// A failure on its way to C: the status and the detailed message for `rocmforge_last_error`.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub status: rocmforge_status,
    pub message: String,
}

impl FfiError {
    pub fn new(status: rocmforge_status, message: impl Into<String>) -> FfiError {
        FfiError {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::Error> for FfiError {
    fn from(e: crate::Error) -> FfiError {
        use crate::Error as E;
        let status = match &e {
            E::Io { .. } => ROCMFORGE_ERR_IO,
            E::Gguf(_) | E::InvalidModel(_) => ROCMFORGE_ERR_INVALID_MODEL,
            E::UnsupportedArchitecture(_)
            | E::UnsupportedFeature { .. }
            | E::UnsupportedTensorType { .. }
            | E::Unsupported(_) => ROCMFORGE_ERR_UNSUPPORTED,
            E::Tokenizer(_) => ROCMFORGE_ERR_TOKENIZER,
            E::Template(_) => ROCMFORGE_ERR_TEMPLATE,
            E::InvalidArgument(_) => ROCMFORGE_ERR_INVALID_ARGUMENT,
            E::ContextFull(_) => ROCMFORGE_ERR_CONTEXT_FULL,
            E::Cancelled => ROCMFORGE_ERR_CANCELLED,
            E::OutOfMemory(_) => ROCMFORGE_ERR_OUT_OF_MEMORY,
            E::BackendUnavailable(_) => ROCMFORGE_ERR_BACKEND_UNAVAILABLE,
            E::Gpu(_) => ROCMFORGE_ERR_GPU,
        };
        FfiError {
            status,
            message: e.to_string(),
        }
    }
}

pub(crate) type FfiResult<T = ()> = Result<T, FfiError>;

thread_local! {
    /// The calling thread's last failure message (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    // Interior NULs cannot cross into a C string; show them instead of truncating silently.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// The calling thread's last message, to carry an inner call's failure outwards.
pub(crate) fn last_error_string() -> String {
    LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned())
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
}

/// A status as it arrives from C: any `int32_t`, not only the numbers this library defines.
/// The header spells it `rocmforge_status` (cbindgen.toml renames it and does not emit it), so
/// `rocmforge_status_string` takes the type every other function returns, while Rust reads a
/// plain integer: receiving an undefined number as the Rust enum would be undefined behaviour.
pub type RawStatus = i32;

/// The static description of `status` ("unknown status" for any number this library does not
/// define, negative ones included). Never NULL.
///
/// Ownership: the string is static; do not free it. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn rocmforge_status_string(status: RawStatus) -> *const c_char {
    let text = rocmforge_status::ALL
        .iter()
        .find(|s| **s as RawStatus == status)
        .map_or(&b"unknown status\0"[..], |s| s.description());
    text.as_ptr().cast()
}

/// The detailed message of the calling thread's last failed call ("" after a successful one).
/// Never NULL.
///
/// Ownership: owned by the library; valid until the calling thread's next rocmforge_ call.
/// Thread-safety: each thread sees its own message.
#[no_mangle]
pub extern "C" fn rocmforge_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
