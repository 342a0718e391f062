//! The boundary every export goes through: panics caught, pointers checked, poisoned handles
//! refused, `crate::Error` mapped to a status with its message, out-params written last.

use super::status::{clear_last_error, rocmforge_status, set_last_error, FfiError, FfiResult};
use rocmforge_status::*;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// A handle that can be poisoned by an internal fault.
pub(crate) trait Poisonable {
    fn poison_flag(&self) -> &AtomicBool;
}

/// Runs one export: a caught panic becomes ROCMFORGE_ERR_INTERNAL; an error sets the
/// thread's last-error message; success clears it.
pub(crate) fn call(f: impl FnOnce() -> FfiResult) -> rocmforge_status {
    finish(catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(internal(panic))))
}

/// Like [`call`] for an export on a handle: NULL and poisoned handles are refused, and a panic
/// poisons the handle so later calls answer ROCMFORGE_ERR_POISONED instead of touching state
/// the panic may have left half-updated.
pub(crate) fn call_on<H: Poisonable>(
    handle: *const H,
    what: &str,
    f: impl FnOnce(&H) -> FfiResult,
) -> rocmforge_status {
    let run = || -> FfiResult {
        // SAFETY: the caller promised `handle` is NULL or a live handle of this type.
        let h = unsafe { handle.as_ref() }.ok_or_else(|| null(what))?;
        if h.poison_flag().load(Ordering::Acquire) {
            return Err(FfiError::new(
                ROCMFORGE_ERR_POISONED,
                format!(
                    "this {what} hit an internal fault earlier and refuses further work; free it"
                ),
            ));
        }
        match catch_unwind(AssertUnwindSafe(|| f(h))) {
            Ok(result) => result,
            Err(panic) => {
                h.poison_flag().store(true, Ordering::Release);
                Err(internal(panic))
            }
        }
    };
    call(run)
}

fn finish(result: FfiResult) -> rocmforge_status {
    match result {
        Ok(()) => {
            clear_last_error();
            ROCMFORGE_OK
        }
        Err(e) => {
            set_last_error(&e.message);
            e.status
        }
    }
}

fn internal(panic: Box<dyn std::any::Any + Send>) -> FfiError {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    FfiError::new(
        ROCMFORGE_ERR_INTERNAL,
        format!("internal fault (the handle is now poisoned): {detail}"),
    )
}

pub(crate) fn null(what: &str) -> FfiError {
    FfiError::new(ROCMFORGE_ERR_NULL_POINTER, format!("{what} is NULL"))
}

pub(crate) fn invalid(message: impl Into<String>) -> FfiError {
    FfiError::new(ROCMFORGE_ERR_INVALID_ARGUMENT, message)
}

/// Checks an out-param before any work, so a NULL one fails fast.
pub(crate) fn out_ptr<T>(p: *mut T, what: &str) -> FfiResult<*mut T> {
    if p.is_null() {
        Err(null(what))
    } else {
        Ok(p)
    }
}

/// Writes an out-param checked by [`out_ptr`].
///
/// # Safety
/// `p` must be non-NULL, aligned and valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, value: T) {
    // SAFETY: guaranteed by the caller.
    unsafe { p.write(value) }
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes
        .to_str()
        .map_err(|e| invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// A NUL-terminated file path. POSIX paths are bytes, so any bytes are accepted there (a name
/// in Latin-1 or another legacy encoding opens like any other); elsewhere the path must be
/// UTF-8.
///
/// # Safety
/// As [`c_str`].
pub(crate) unsafe fn c_path<'a>(p: *const c_char, what: &str) -> FfiResult<&'a std::path::Path> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes)
            .map(std::path::Path::new)
            .map_err(|e| invalid(format!("{what} is not valid UTF-8: {e}")))
    }
}

/// A (pointer, length) array argument; NULL is accepted only with length 0.
///
/// # Safety
/// `p` must be NULL or valid for reads of `len` elements for `'a`.
pub(crate) unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> FfiResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(invalid(format!("{what}: length {len} is impossibly large")));
    }
    // SAFETY: non-NULL, and the caller promised `len` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// The two-call size protocol for output arrays: `*n_out` receives the element count needed;
/// the elements are copied only when `capacity` suffices, else ROCMFORGE_ERR_BUFFER_TOO_SMALL
/// (with `*n_out` still written: that is how callers ask for the size).
///
/// # Safety
/// `buf` must be NULL or valid for writes of `capacity` elements; `n_out` must be non-NULL.
pub(crate) unsafe fn write_array<T: Copy>(
    items: &[T],
    buf: *mut T,
    capacity: usize,
    n_out: *mut usize,
) -> FfiResult {
    // SAFETY: n_out checked by the caller (out_ptr).
    unsafe { write_out(n_out, items.len()) };
    if items.len() > capacity || (buf.is_null() && !items.is_empty()) {
        return Err(FfiError::new(
            ROCMFORGE_ERR_BUFFER_TOO_SMALL,
            format!("{} elements needed, buffer holds {capacity}", items.len()),
        ));
    }
    if !items.is_empty() {
        // SAFETY: buf holds at least `capacity >= items.len()` elements and cannot overlap our
        // own Rust-owned `items`.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len()) };
    }
    Ok(())
}

/// The two-call size protocol for text: `*n_out` receives the byte length (without the
/// terminating NUL); the bytes plus a NUL are written only when `capacity >= length + 1`.
///
/// # Safety
/// As [`write_array`].
pub(crate) unsafe fn write_text(
    text: &[u8],
    buf: *mut c_char,
    capacity: usize,
    n_out: *mut usize,
) -> FfiResult {
    // SAFETY: n_out checked by the caller (out_ptr).
    unsafe { write_out(n_out, text.len()) };
    if text.len() >= capacity || buf.is_null() {
        return Err(FfiError::new(
            ROCMFORGE_ERR_BUFFER_TOO_SMALL,
            format!(
                "{} bytes plus a NUL needed, buffer holds {capacity}",
                text.len()
            ),
        ));
    }
    // SAFETY: buf holds `capacity > text.len()` bytes; text is Rust-owned, so no overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    Ok(())
}

/// Moves a value into a new handle for C.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a handle made by [`into_handle`]; NULL is ignored. Panics in destructors are caught.
///
/// # Safety
/// `p` must be NULL or a handle from [`into_handle`] not freed before, unused by other threads.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if p.is_null() {
        return;
    }
    // SAFETY: per the caller's contract we own the box now.
    let boxed = unsafe { Box::from_raw(p) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}
