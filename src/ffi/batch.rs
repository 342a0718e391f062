//! The batch handle: tokens of several sequences, each with its position, sequence id and
//! whether its logits are wanted, evaluated together by rocmforge_context_decode.

use super::guard::{
    call, call_on, free_handle, into_handle, invalid, out_ptr, write_out, Poisonable,
};
use super::status::{rocmforge_status, FfiError, FfiResult};
use crate::Batch;
use parking_lot::Mutex;
use rocmforge_status::*;
use std::sync::atomic::AtomicBool;

#[allow(non_camel_case_types)]
pub struct rocmforge_batch {
    /// A lock so that the handle stays sound if C shares it by mistake (the contention then
    /// answers ROCMFORGE_ERR_BUSY).
    pub(crate) batch: Mutex<Batch>,
    capacity: usize,
    poisoned: AtomicBool,
}

impl Poisonable for rocmforge_batch {
    fn poison_flag(&self) -> &AtomicBool {
        &self.poisoned
    }
}

fn busy() -> FfiError {
    FfiError::new(ROCMFORGE_ERR_BUSY, "the batch is in use by another thread")
}

impl rocmforge_batch {
    /// A copy of the batch for decoding.
    pub(crate) fn get(&self) -> FfiResult<Batch> {
        Ok(self.batch.try_lock().ok_or_else(busy)?.clone())
    }
}

/// Creates an empty batch that holds up to `capacity` tokens (1..=65536).
///
/// Ownership: the caller owns `*out`; free with rocmforge_batch_free. Thread-safety: a batch is
/// used by one thread at a time.
///
/// # Safety
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_batch_create(
    capacity: u32,
    out: *mut *mut rocmforge_batch,
) -> rocmforge_status {
    call(|| {
        let out = out_ptr(out, "out")?;
        let capacity = capacity as usize;
        if !(1..=1 << 16).contains(&capacity) {
            return Err(invalid(format!(
                "batch capacity must be 1..=65536, got {capacity}"
            )));
        }
        let mut batch = Batch::new();
        batch.tokens.reserve_exact(capacity);
        let handle = rocmforge_batch {
            batch: Mutex::new(batch),
            capacity,
            poisoned: AtomicBool::new(false),
        };
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, into_handle(handle)) };
        Ok(())
    })
}

/// Frees a batch; NULL is ignored.
/// Thread-safety: must not overlap any other use of this handle.
///
/// # Safety
/// `batch` NULL or from rocmforge_batch_create, not freed before, unused by other threads.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_batch_free(batch: *mut rocmforge_batch) {
    // SAFETY: forwarded contract.
    unsafe { free_handle(batch) }
}

/// The largest token position (2^24 - 1): RoPE angles come from the position as a float, which
/// holds every integer exactly only below 2^24. Larger or negative positions are refused with
/// ROCMFORGE_ERR_INVALID_ARGUMENT, and so is an eval that would carry a sequence past it.
pub const ROCMFORGE_MAX_POSITION: i32 = 16777215;

/// Appends a token: its id, its position in its sequence (0..=ROCMFORGE_MAX_POSITION, checked
/// with the other ids at decode), its sequence id and whether
/// rocmforge_context_logits should have its logits afterwards. Ids are checked against the
/// model and context when the batch is decoded. Full batch: ROCMFORGE_ERR_INVALID_ARGUMENT.
/// Thread-safety: one thread at a time per batch (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `batch` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_batch_add(
    batch: *mut rocmforge_batch,
    token: i32,
    pos: i32,
    seq: i32,
    want_logits: bool,
) -> rocmforge_status {
    call_on(batch.cast_const(), "batch", |b| {
        let mut inner = b.batch.try_lock().ok_or_else(busy)?;
        if inner.len() >= b.capacity {
            return Err(invalid(format!(
                "the batch is full ({} tokens)",
                b.capacity
            )));
        }
        if token < 0 {
            return Err(FfiError::new(
                ROCMFORGE_ERR_INVALID_TOKEN,
                format!("token id {token} is negative"),
            ));
        }
        if seq < 0 {
            return Err(FfiError::new(
                ROCMFORGE_ERR_INVALID_SEQUENCE,
                format!("sequence id {seq} is negative"),
            ));
        }
        if pos < 0 {
            return Err(invalid(format!("position {pos} is negative")));
        }
        inner.push(token as u32, pos, seq as u32, want_logits);
        Ok(())
    })
}

/// Removes every token (the capacity stays).
/// Thread-safety: one thread at a time per batch (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `batch` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_batch_clear(batch: *mut rocmforge_batch) -> rocmforge_status {
    call_on(batch.cast_const(), "batch", |b| {
        b.batch.try_lock().ok_or_else(busy)?.clear();
        Ok(())
    })
}

/// The number of tokens in the batch, into `*out`.
/// Thread-safety: one thread at a time per batch (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `batch` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_batch_size(
    batch: *const rocmforge_batch,
    out: *mut usize,
) -> rocmforge_status {
    call_on(batch, "batch", |b| {
        let out = out_ptr(out, "out")?;
        let n = b.batch.try_lock().ok_or_else(busy)?.len();
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, n) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_position_limit_is_the_engines() {
        assert_eq!(super::ROCMFORGE_MAX_POSITION, crate::batch::MAX_POSITION);
    }
}
