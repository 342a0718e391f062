//! The C ABI (`include/rocmforge.h`, generated from this module by cbindgen).
//!
//! This is the only place with `extern "C"`, raw pointers and `catch_unwind`. The convention,
//! applied by [`guard`] on every export:
//! - every fallible call returns `rocmforge_status` (0 = OK) and sets a thread-local message
//!   (`rocmforge_last_error`); out-params are written only on success (the two-call size
//!   protocol also writes the needed size with ROCMFORGE_ERR_BUFFER_TOO_SMALL);
//! - panics never cross into C: they become ROCMFORGE_ERR_INTERNAL and poison the handle,
//!   which then answers ROCMFORGE_ERR_POISONED;
//! - handles are opaque; every `*_free` accepts NULL; enums from C arrive as integers and are
//!   validated;
//! - a model is immutable and shared by any number of threads and contexts; a context, sampler
//!   or batch is used by one thread at a time, enforced by a try-lock (ROCMFORGE_ERR_BUSY);
//!   `rocmforge_context_cancel` works from any thread.
//!
//! One module per C object.

pub mod batch;
pub mod context;
pub mod device;
pub mod guard;
pub mod kv;
pub mod log;
pub mod model;
pub mod params;
pub mod quantize;
pub mod sampler;
pub mod state;
pub mod status;
pub mod tokenizer;
pub mod version;

#[cfg(test)]
mod tests;

/// Handles cross threads in C (a model is shared; a context may be touched by a second thread,
/// which then gets ROCMFORGE_ERR_BUSY, or cancels it): they must be Send + Sync.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<model::rocmforge_model>();
    assert_send_sync::<context::rocmforge_context>();
    assert_send_sync::<sampler::rocmforge_sampler>();
    assert_send_sync::<batch::rocmforge_batch>();
};
