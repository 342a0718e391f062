//! Saving and restoring a context's state (KV cache, plus the last logits for a whole-context
//! save) to memory or to a file, for the whole context (`seq` = -1) or one sequence.

use super::context::{rocmforge_context, with_context};
use super::guard::{c_path, out_ptr, slice, write_array, write_out};
use super::status::{rocmforge_status, FfiResult};
use std::ffi::c_char;

fn seq_arg(h: &rocmforge_context, seq: i32) -> FfiResult<Option<u32>> {
    if seq == -1 {
        Ok(None)
    } else {
        h.seq_id(seq).map(Some)
    }
}

/// The size in bytes of the state rocmforge_state_save would write now, into `*out`.
///
/// Thread-safety: one thread at a time per context.
///
/// # Safety
/// `ctx` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_state_size(
    ctx: *mut rocmforge_context,
    seq: i32,
    out: *mut usize,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = seq_arg(h, seq)?;
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, inner.ctx.state_size(seq)) };
        Ok(())
    })
}

/// Saves the whole context (`seq` = -1) or sequence `seq` into `buf`. Two-call size protocol:
/// `*n_bytes` receives the size; the bytes are written only when `capacity` suffices, else
/// ROCMFORGE_ERR_BUFFER_TOO_SMALL. Errors: ROCMFORGE_ERR_INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live; `buf` NULL or writable for `capacity` bytes; `n_bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_state_save(
    ctx: *mut rocmforge_context,
    seq: i32,
    buf: *mut u8,
    capacity: usize,
    n_bytes: *mut usize,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = seq_arg(h, seq)?;
        let n_bytes = out_ptr(n_bytes, "n_bytes")?;
        let blob = inner.ctx.state_save(seq)?;
        // SAFETY: caller contract.
        unsafe { write_array(&blob, buf, capacity, n_bytes) }
    })
}

/// Restores `n` bytes from rocmforge_state_save: the whole context (`seq` = -1; logits
/// included, so generation can go on at once) or into sequence `seq`, replacing it (a state
/// saved from one sequence may be restored into another id). On error nothing changes.
///
/// Every blob ends with a CRC-32 of its bytes: a corrupted or truncated one is refused.
///
/// Errors: ROCMFORGE_ERR_INVALID_ARGUMENT (corrupt state or one from another model),
/// _CONTEXT_FULL (no room), _INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live; `data` readable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_state_load(
    ctx: *mut rocmforge_context,
    seq: i32,
    data: *const u8,
    n: usize,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = seq_arg(h, seq)?;
        // SAFETY: caller contract.
        let data = unsafe { slice(data, n, "data") }?;
        inner.ctx.state_restore(data, seq)?;
        Ok(())
    })
}

/// rocmforge_state_save to a file at `path` (created or truncated).
/// Errors: ROCMFORGE_ERR_IO, _INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live; `path` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_state_save_file(
    ctx: *mut rocmforge_context,
    seq: i32,
    path: *const c_char,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = seq_arg(h, seq)?;
        // SAFETY: caller contract.
        let path = unsafe { c_path(path, "path") }?;
        inner.ctx.state_save_file(path, seq)?;
        Ok(())
    })
}

/// rocmforge_state_load from a file written by rocmforge_state_save_file.
/// Reads at most the largest state this context can hold; `path` must name a regular file.
/// Errors: as rocmforge_state_load, plus ROCMFORGE_ERR_IO.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live; `path` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_state_load_file(
    ctx: *mut rocmforge_context,
    seq: i32,
    path: *const c_char,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = seq_arg(h, seq)?;
        // SAFETY: caller contract.
        let path = unsafe { c_path(path, "path") }?;
        inner.ctx.state_restore_file(path, seq)?;
        Ok(())
    })
}
