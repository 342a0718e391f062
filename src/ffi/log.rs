//! Log callbacks: one process-wide (thread-safe: it may be called from any thread) and an
//! optional one per context, which takes precedence for that context's messages.

use super::guard::call;
use super::status::rocmforge_status;
use parking_lot::RwLock;
use std::ffi::{c_char, c_void, CString};

pub const ROCMFORGE_LOG_ERROR: i32 = 0;
pub const ROCMFORGE_LOG_WARN: i32 = 1;
pub const ROCMFORGE_LOG_INFO: i32 = 2;
pub const ROCMFORGE_LOG_DEBUG: i32 = 3;

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

/// Logs through `local` if set, else the process-wide callback, else nowhere.
pub(crate) fn log(local: Option<&LogSink>, level: i32, message: &str) {
    // Copy the sink out so no lock is held during the callback (it may replace the callback).
    let global = *GLOBAL.read();
    if let Some(sink) = local.or(global.as_ref()) {
        sink.emit(level, message);
    }
}

/// Sets (or with a NULL callback, removes) the process-wide log callback, used for messages
/// not tied to a context (model loading, backend selection) and for contexts without their own.
/// The default is silence.
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
