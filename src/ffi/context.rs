//! The context handle: one conversation's (or several parallel sequences') KV cache and
//! buffers. Used by one thread at a time: a second thread gets ROCMFORGE_ERR_BUSY instead of a
//! data race. Cancellation is the exception: it only sets a flag and works from any thread.

use super::batch::rocmforge_batch;
use super::guard::{
    call_on, free_handle, into_handle, invalid, out_ptr, slice, write_out, Poisonable,
};
use super::log::{
    checked_level, log, log_to, rocmforge_log_callback, LogSink, ROCMFORGE_LOG_DEBUG,
    ROCMFORGE_LOG_GLOBAL, ROCMFORGE_LOG_INFO,
};
use super::model::rocmforge_model;
use super::params::rocmforge_context_params;
use super::status::{rocmforge_status, FfiError, FfiResult};
use super::tokenizer::token_id;
use crate::cancel::CancelFlag;
use crate::{Context, ContextParams};
use parking_lot::{Mutex, RwLock};
use rocmforge_status::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// What the busy lock guards.
pub(crate) struct Inner {
    pub ctx: Context,
}

#[allow(non_camel_case_types)]
pub struct rocmforge_context {
    /// try_lock, never lock: contention means two threads use the context at once.
    inner: Mutex<Inner>,
    cancel: Arc<CancelFlag>,
    log: RwLock<Option<LogSink>>,
    /// A ROCMFORGE_LOG_* threshold, or ROCMFORGE_LOG_GLOBAL to follow the process-wide one.
    log_level: AtomicI32,
    n_vocab: usize,
    n_seq_max: usize,
    poisoned: AtomicBool,
}

impl Poisonable for rocmforge_context {
    fn poison_flag(&self) -> &AtomicBool {
        &self.poisoned
    }
}

impl rocmforge_context {
    /// Logs one of this context's messages; `message` is built only when it will be heard.
    pub(crate) fn log(&self, level: i32, message: impl FnOnce() -> String) {
        let threshold = self.log_level.load(Ordering::Relaxed);
        if !super::log::enabled(threshold, level) {
            return;
        }
        let local = *self.log.read();
        log_to(local.as_ref(), threshold, level, message);
    }

    pub(crate) fn seq_id(&self, seq: i32) -> FfiResult<u32> {
        if seq < 0 || seq as usize >= self.n_seq_max {
            return Err(FfiError::new(
                ROCMFORGE_ERR_INVALID_SEQUENCE,
                format!(
                    "sequence id {seq} is out of range (the context holds {})",
                    self.n_seq_max
                ),
            ));
        }
        Ok(seq as u32)
    }

    pub(crate) fn token(&self, token: i32) -> FfiResult<u32> {
        token_id(token, self.n_vocab)
    }
}

/// Runs `f` with exclusive use of the context, or fails with ROCMFORGE_ERR_BUSY.
pub(crate) fn with_context(
    ctx: *const rocmforge_context,
    f: impl FnOnce(&rocmforge_context, &mut Inner) -> FfiResult,
) -> rocmforge_status {
    call_on(ctx, "context", |h| {
        let mut inner = h.inner.try_lock().ok_or_else(|| {
            FfiError::new(
                ROCMFORGE_ERR_BUSY,
                "the context is in use by another call (a context is used by one thread at a time)",
            )
        })?;
        f(h, &mut inner)
    })
}

/// The INFO line of a new context: its sizes, the memory they take and where it computes.
fn context_summary(ctx: &Context) -> String {
    let p = ctx.params();
    let model = ctx.model();
    let mem = crate::api::MemoryEstimate::new(model.hparams(), 0, p);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let place = match model.backend() {
        crate::Backend::Gpu => "on the GPU".to_string(),
        _ => format!("on the CPU with {} threads", p.n_threads),
    };
    format!(
        "context: {} cells, batches of up to {} tokens, {} sequence(s); KV cache {:.1} MiB \
         ({}), working buffers {:.1} MiB, {place}",
        p.n_ctx,
        p.n_batch,
        p.n_seq_max,
        mib(mem.kv_cache_bytes),
        p.cache_type,
        mib(mem.compute_bytes),
    )
}

/// Creates a context for `model` with `params` (NULL = defaults). The context keeps its own
/// reference to the model's weights: the model handle may be freed first. Its sizes are
/// reported at ROCMFORGE_LOG_INFO through the process-wide log callback.
///
/// A CPU context whose KV cache and working buffers would not fit in the memory the host has
/// available (or under the process's address-space limit) is refused up front; the cache is
/// then allocated lazily, so its pages are only taken as cells fill.
///
/// Errors: ROCMFORGE_ERR_INVALID_ARGUMENT (sizes), _OUT_OF_MEMORY (does not fit; the message
/// says what was needed and what is available).
///
/// Ownership: the caller owns `*out`; free with rocmforge_context_free. Thread-safety: any
/// thread; the new context is then used by one thread at a time (others get ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `model` NULL or live; `params` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_create(
    model: *const rocmforge_model,
    params: *const rocmforge_context_params,
    out: *mut *mut rocmforge_context,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let out = out_ptr(out, "out")?;
        let defaults = ContextParams::default();
        // SAFETY: caller contract: NULL or live.
        let p = unsafe { params.as_ref() }.map_or(&defaults, |p| &p.params);
        let ctx = Context::new(&m.model, p.clone())?;
        log(ROCMFORGE_LOG_INFO, || context_summary(&ctx));
        let handle = rocmforge_context {
            cancel: ctx.cancel_handle(),
            n_vocab: m.model.hparams().n_vocab,
            n_seq_max: ctx.params().n_seq_max,
            inner: Mutex::new(Inner { ctx }),
            log: RwLock::new(None),
            log_level: AtomicI32::new(ROCMFORGE_LOG_GLOBAL),
            poisoned: AtomicBool::new(false),
        };
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, into_handle(handle)) };
        Ok(())
    })
}

/// Frees a context; NULL is ignored.
/// Thread-safety: must not overlap any other use of this handle.
///
/// # Safety
/// `ctx` NULL or from rocmforge_context_create, not freed before; no other thread may be using
/// it (not even rocmforge_context_cancel) during or after this call.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_free(ctx: *mut rocmforge_context) {
    // SAFETY: forwarded contract.
    unsafe { free_handle(ctx) }
}

/// The context's effective sizes (after defaults were resolved): `n_ctx` cells, `n_batch`,
/// `n_seq_max`. Any out-pointer may be NULL to skip it. Thread-safety: as every context call.
///
/// # Safety
/// `ctx` NULL or live; non-NULL out-pointers writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_sizes(
    ctx: *const rocmforge_context,
    n_ctx: *mut u32,
    n_batch: *mut u32,
    n_seq_max: *mut u32,
) -> rocmforge_status {
    with_context(ctx, |_, inner| {
        let p = inner.ctx.params();
        for (out, v) in [
            (n_ctx, p.n_ctx),
            (n_batch, p.n_batch),
            (n_seq_max, p.n_seq_max),
        ] {
            if !out.is_null() {
                // SAFETY: non-NULL and writable per the contract.
                unsafe { write_out(out, v as u32) };
            }
        }
        Ok(())
    })
}

/// Appends `n` tokens to sequence `seq` (after its last position) and computes the logits of
/// the last one (read them with rocmforge_context_logits(ctx, -1, ...)). Long inputs are split
/// into batches of n_batch. On error the sequence is as it was before the call.
///
/// Errors: ROCMFORGE_ERR_INVALID_TOKEN, _INVALID_SEQUENCE, _INVALID_ARGUMENT (n = 0),
/// _CONTEXT_FULL, _CANCELLED, _BUSY.
///
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live; `tokens` readable for `n` ids.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_eval(
    ctx: *mut rocmforge_context,
    tokens: *const i32,
    n: usize,
    seq: i32,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        // SAFETY: caller contract.
        let tokens = unsafe { slice(tokens, n, "tokens") }?;
        let seq = h.seq_id(seq)?;
        if tokens.is_empty() {
            return Err(invalid("no tokens to evaluate (n = 0)"));
        }
        let ids = tokens
            .iter()
            .map(|&t| h.token(t))
            .collect::<FfiResult<Vec<u32>>>()?;
        h.log(ROCMFORGE_LOG_DEBUG, || {
            format!("eval: {} tokens into sequence {seq}", ids.len())
        });
        inner.ctx.eval(&ids, seq)?;
        Ok(())
    })
}

/// Evaluates a batch: tokens of any sequences, each with its own position and logits flag
/// (see rocmforge_batch_add). At most n_batch tokens. On error the KV cache is unchanged.
///
/// Errors: as rocmforge_context_eval; _INVALID_ARGUMENT for an empty or oversized batch or a
/// negative position.
///
/// Thread-safety: one thread at a time per context; `batch` is only read.
///
/// # Safety
/// `ctx` and `batch` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_decode(
    ctx: *mut rocmforge_context,
    batch: *const rocmforge_batch,
) -> rocmforge_status {
    with_context(ctx, |h, inner| {
        // SAFETY: caller contract.
        let batch = unsafe { batch.as_ref() }.ok_or_else(|| super::guard::null("batch"))?;
        let batch = batch.get()?;
        for (&t, &s) in batch.tokens.iter().zip(&batch.seq) {
            h.token(t as i32)?;
            h.seq_id(s as i32)?;
        }
        h.log(ROCMFORGE_LOG_DEBUG, || {
            format!("decode: {} tokens", batch.len())
        });
        inner.ctx.decode(&batch)?;
        Ok(())
    })
}

/// The logits (n_vocab floats) computed for token `index` of the last batch (-1 = the last
/// token that asked for logits). `*n_vocab` receives their count.
///
/// Errors: ROCMFORGE_ERR_INVALID_ARGUMENT (index outside the last batch), _NOT_FOUND (that
/// token did not ask for logits, or nothing was evaluated yet).
///
/// Lifetime: `*out` points into the context and stays valid until the next eval, decode,
/// state restore or free of this context. Thread-safety: one thread at a time per context.
///
/// # Safety
/// `ctx` NULL or live; `out`, `n_vocab` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_logits(
    ctx: *mut rocmforge_context,
    index: i32,
    out: *mut *const f32,
    n_vocab: *mut usize,
) -> rocmforge_status {
    with_context(ctx, |_, inner| {
        let out = out_ptr(out, "out")?;
        let n_vocab = out_ptr(n_vocab, "n_vocab")?;
        let logits = logits_of(inner, index)?;
        // SAFETY: both checked non-NULL.
        unsafe {
            write_out(out, logits.as_ptr());
            write_out(n_vocab, logits.len());
        }
        Ok(())
    })
}

/// The logits row for a batch index (-1 = last) with the errors documented above.
pub(crate) fn logits_of(inner: &Inner, index: i32) -> FfiResult<&[f32]> {
    let not_found = |what: String| FfiError::new(ROCMFORGE_ERR_NOT_FOUND, what);
    if index == -1 {
        return inner
            .ctx
            .last_logits()
            .ok_or_else(|| not_found("no logits: nothing evaluated yet".into()));
    }
    if index < 0 || index as usize >= inner.ctx.last_batch_len() {
        return Err(invalid(format!(
            "batch index {index} is outside the last batch ({} tokens; -1 = last)",
            inner.ctx.last_batch_len()
        )));
    }
    inner.ctx.logits(index as usize).ok_or_else(|| {
        not_found(format!(
            "token {index} of the last batch did not ask for logits"
        ))
    })
}

/// Asks the running (or, if none runs, the next) eval/decode of this context to stop; it then
/// returns ROCMFORGE_ERR_CANCELLED with the KV cache unchanged. Does not wait. A request is never
/// lost: the running call honours it within one layer, or, if that call had already passed its
/// last check, the next eval/decode returns ROCMFORGE_ERR_CANCELLED at once. Each request
/// cancels one call; the call after it runs normally.
///
/// Thread-safety: any thread, at any time while the context is alive (it does not take the
/// context's busy flag).
///
/// # Safety
/// `ctx` NULL or live (not being freed).
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_cancel(
    ctx: *const rocmforge_context,
) -> rocmforge_status {
    call_on(ctx, "context", |h| {
        h.cancel.request();
        Ok(())
    })
}

/// Sets (or with NULL removes) this context's log callback, which then receives the context's
/// messages (those its level lets through: rocmforge_context_set_log_level) instead of the
/// process-wide callback. It is called on the thread using the context, during that call; it
/// may call back into the library (a call on this same context will answer
/// ROCMFORGE_ERR_BUSY, except rocmforge_context_cancel). `user_data` is borrowed until replaced
/// or the context is freed.
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_set_log_callback(
    ctx: *mut rocmforge_context,
    callback: rocmforge_log_callback,
    user_data: *mut c_void,
) -> rocmforge_status {
    with_context(ctx, |h, _| {
        *h.log.write() = LogSink::new(callback, user_data);
        Ok(())
    })
}

/// Sets this context's log level (see rocmforge_set_log_level): its messages at `level` and
/// more severe ones are delivered, to its own callback or else the process-wide one;
/// ROCMFORGE_LOG_NONE silences it; ROCMFORGE_LOG_GLOBAL (the default) follows the process-wide
/// level, including later changes to it. ROCMFORGE_LOG_DEBUG adds a line per eval and decode.
///
/// Errors: ROCMFORGE_ERR_INVALID_ARGUMENT (not a level from ROCMFORGE_LOG_GLOBAL to _DEBUG).
///
/// Thread-safety: one thread at a time per context (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `ctx` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_set_log_level(
    ctx: *mut rocmforge_context,
    level: i32,
) -> rocmforge_status {
    with_context(ctx, |h, _| {
        h.log_level
            .store(checked_level(level, true)?, Ordering::Relaxed);
        Ok(())
    })
}
