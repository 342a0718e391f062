//! Log callbacks and levels: one process-wide callback (thread-safe: it may be called from any
//! thread) and an optional one per context, which takes precedence for that context's
//! messages; one process-wide level and an optional one per context.
//!
//! A message is built only when it will be delivered: every log site passes a closure, run
//! after the level check and after checking that a callback is set, so a debug line per eval
//! costs two atomic loads when debug is off.

use super::guard::{call, invalid};
use super::status::rocmforge_status;
use parking_lot::RwLock;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicI32, Ordering};

/// As a level to set: nothing is delivered. Never the level of a message.
pub const ROCMFORGE_LOG_NONE: i32 = -1;
/// A failure worth a line beyond the status a call returns (no message uses it yet).
pub const ROCMFORGE_LOG_ERROR: i32 = 0;
/// Something works, but not as asked or not as well as it could (AUTO fell back to the CPU).
pub const ROCMFORGE_LOG_WARN: i32 = 1;
/// A few lines per model or context: what was loaded, the backend chosen, the sizes. The
/// default level.
pub const ROCMFORGE_LOG_INFO: i32 = 2;
/// A line per eval or decode call: for debugging, off by default.
pub const ROCMFORGE_LOG_DEBUG: i32 = 3;
/// For rocmforge_context_set_log_level only: the context follows the process-wide level (what
/// a new context does).
pub const ROCMFORGE_LOG_GLOBAL: i32 = -2;

/// Receives a log message (`level` is a ROCMFORGE_LOG_* value). `message` is NUL-terminated,
/// without a trailing newline, and valid only during the call.
#[allow(non_camel_case_types)]
pub type rocmforge_log_callback =
    Option<unsafe extern "C" fn(level: i32, message: *const c_char, user_data: *mut c_void)>;

/// A callback with its user data. The C caller promises the pair may be used from any thread
/// (documented on the setters), which is what makes the raw pointer Send + Sync here.
#[derive(Clone, Copy)]
pub(crate) struct LogSink {
    callback: unsafe extern "C" fn(i32, *const c_char, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: the setters' contract requires the callback and user data to be callable from any
// thread; we only pass the pointer back to the caller's own callback.
unsafe impl Send for LogSink {}
// SAFETY: as above.
unsafe impl Sync for LogSink {}

impl LogSink {
    pub fn new(callback: rocmforge_log_callback, user_data: *mut c_void) -> Option<LogSink> {
        callback.map(|callback| LogSink {
            callback,
            user_data,
        })
    }

    fn emit(&self, level: i32, message: &str) {
        let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: the caller registered this function for exactly this signature.
        unsafe { (self.callback)(level, text.as_ptr(), self.user_data) };
    }
}

static GLOBAL: RwLock<Option<LogSink>> = RwLock::new(None);
static GLOBAL_LEVEL: AtomicI32 = AtomicI32::new(ROCMFORGE_LOG_INFO);

/// The level a set_log_level call asks for, checked: NONE..=DEBUG, plus GLOBAL where allowed.
pub(crate) fn checked_level(level: i32, allow_global: bool) -> super::status::FfiResult<i32> {
    let lowest = if allow_global {
        ROCMFORGE_LOG_GLOBAL
    } else {
        ROCMFORGE_LOG_NONE
    };
    if (lowest..=ROCMFORGE_LOG_DEBUG).contains(&level) {
        Ok(level)
    } else {
        Err(invalid(format!(
            "unknown log level {level} ({}-1 none, 0 error, 1 warn, 2 info, 3 debug)",
            if allow_global { "-2 global, " } else { "" }
        )))
    }
}

/// Whether a message at `level` would be delivered under `threshold` (a context's own level,
/// or ROCMFORGE_LOG_GLOBAL for the process-wide one).
pub(crate) fn enabled(threshold: i32, level: i32) -> bool {
    let threshold = match threshold {
        ROCMFORGE_LOG_GLOBAL => GLOBAL_LEVEL.load(Ordering::Relaxed),
        own => own,
    };
    level <= threshold
}

/// Logs through `local` if set, else the process-wide callback, else nowhere; `message` is
/// built only when the level passes `threshold` and there is a callback to hear it.
pub(crate) fn log_to(
    local: Option<&LogSink>,
    threshold: i32,
    level: i32,
    message: impl FnOnce() -> String,
) {
    if !enabled(threshold, level) {
        return;
    }
    // Copy the sink out so no lock is held during the callback (it may replace the callback).
    let sink = local.copied().or_else(|| *GLOBAL.read());
    if let Some(sink) = sink {
        sink.emit(level, &message());
    }
}

/// Whether a message not tied to a context at `level` would reach a callback.
pub(crate) fn heard(level: i32) -> bool {
    enabled(ROCMFORGE_LOG_GLOBAL, level) && GLOBAL.read().is_some()
}

/// Logs a message not tied to a context: the process-wide level and callback.
pub(crate) fn log(level: i32, message: impl FnOnce() -> String) {
    log_to(None, ROCMFORGE_LOG_GLOBAL, level, message);
}

/// Sets (or with a NULL callback, removes) the process-wide log callback, used for messages
/// not tied to a context (model loading, backend selection, context creation) and for
/// contexts without their own. The default is silence.
///
/// Thread-safety: any thread; the callback may be invoked concurrently from several threads,
/// so it and `user_data` must be thread-safe. `user_data` is borrowed until replaced.
#[no_mangle]
pub extern "C" fn rocmforge_set_log_callback(
    callback: rocmforge_log_callback,
    user_data: *mut c_void,
) -> rocmforge_status {
    call(|| {
        *GLOBAL.write() = LogSink::new(callback, user_data);
        Ok(())
    })
}

/// Sets the process-wide log level: messages at `level` and more severe ones are delivered
/// (ROCMFORGE_LOG_ERROR < _WARN < _INFO < _DEBUG), the others are not even formatted;
/// ROCMFORGE_LOG_NONE delivers nothing. It applies to messages not tied to a context and to
/// contexts that have not set their own level (rocmforge_context_set_log_level). The default
/// is ROCMFORGE_LOG_INFO: load and context summaries and warnings, no line per eval.
///
/// Errors: ROCMFORGE_ERR_INVALID_ARGUMENT (not a level from ROCMFORGE_LOG_NONE to _DEBUG).
///
/// Thread-safety: any thread, at any time; calls running meanwhile may still use the old level.
#[no_mangle]
pub extern "C" fn rocmforge_set_log_level(level: i32) -> rocmforge_status {
    call(|| {
        GLOBAL_LEVEL.store(checked_level(level, false)?, Ordering::Relaxed);
        Ok(())
    })
}
