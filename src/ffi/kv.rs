//! KV cache edits on a context: clear, remove a position range, copy or keep a sequence.
//! Positions p0..p1 are half-open; p0 < 0 means 0 and p1 < 0 means "to the end".

use super::context::{rocmforge_context, with_context};
use super::guard::{out_ptr, write_out};
use super::status::rocmforge_status;

/// Empties the KV cache (all sequences).
///
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_kv_clear(ctx: *mut rocmforge_context) -> rocmforge_status {
    with_context(ctx, |_, inner| {
        inner.ctx.kv_clear();
        Ok(())
    })
}

/// Removes positions [p0, p1) of sequence `seq` (-1 = every sequence) from the KV cache, e.g.
/// to rewind a conversation. Errors: ROCMFORGE_ERR_INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_kv_seq_remove(
    ctx: *mut rocmforge_context,
    seq: i32,
    p0: i32,
    p1: i32,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = if seq == -1 {
            None
        } else {
            Some(h.seq_id(seq)?)
        };
        inner.ctx.kv_seq_remove(seq, p0, p1)?;
        Ok(())
    })
}

/// Makes positions [p0, p1) of sequence `src` also belong to `dst` (shared, not duplicated),
/// e.g. to fork a common prompt into several continuations.
/// Errors: ROCMFORGE_ERR_INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_kv_seq_copy(
    ctx: *mut rocmforge_context,
    src: i32,
    dst: i32,
    p0: i32,
    p1: i32,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let (src, dst) = (h.seq_id(src)?, h.seq_id(dst)?);
        inner.ctx.kv_seq_copy(src, dst, p0, p1)?;
        Ok(())
    })
}

/// Drops every sequence but `seq`. Errors: ROCMFORGE_ERR_INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_kv_seq_keep(
    ctx: *mut rocmforge_context,
    seq: i32,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = h.seq_id(seq)?;
        inner.ctx.kv_seq_keep(seq)?;
        Ok(())
    })
}

/// The largest position of sequence `seq` in the cache into `*out` (-1 when it is empty); the
/// next token of the sequence goes at `*out + 1`. Errors: ROCMFORGE_ERR_INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_kv_seq_pos_max(
    ctx: *mut rocmforge_context,
    seq: i32,
    out: *mut i32,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = h.seq_id(seq)?;
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, inner.ctx.kv_seq_pos_max(seq).unwrap_or(-1)) };
        Ok(())
    })
}

/// The smallest position of sequence `seq` that every layer still holds into `*out` (-1 when
/// the sequence is empty). Without sliding-window layers that is its first position; with
/// them (Gemma 3) the oldest position their ring kept, llama.cpp's `seq_pos_min`: after
/// removing a tail with rocmforge_kv_seq_remove, the sequence can continue at position `p`
/// only if `p == 0` or `*out <= max(0, p - window + 1)`; otherwise evaluating at `p` fails
/// with ROCMFORGE_ERR_INVALID_ARGUMENT, and the caller removes the sequence and evaluates it
/// again. Errors: ROCMFORGE_ERR_INVALID_SEQUENCE.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_kv_seq_pos_min(
    ctx: *mut rocmforge_context,
    seq: i32,
    out: *mut i32,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        let seq = h.seq_id(seq)?;
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, inner.ctx.kv_seq_pos_min(seq).unwrap_or(-1)) };
        Ok(())
    })
}
