//! The model handle: load, free, metadata, and the memory estimate made before loading.

use super::guard::{
    c_path, c_str, call, call_on, free_handle, into_handle, out_ptr, write_out, write_text,
    Poisonable,
};
use super::log::{heard, log, ROCMFORGE_LOG_INFO, ROCMFORGE_LOG_WARN};
use super::params::{
    rocmforge_context_params, rocmforge_model_params, ROCMFORGE_BACKEND_AUTO,
    ROCMFORGE_BACKEND_CPU, ROCMFORGE_BACKEND_GPU,
};
use super::status::{rocmforge_status, FfiError, FfiResult};
use crate::api::MemoryEstimate;
use crate::{Backend, ContextParams, Model, ModelParams};
use rocmforge_status::*;
use std::ffi::{c_char, CString};
use std::sync::atomic::AtomicBool;

/// A loaded model. Immutable: share it between threads and contexts freely.
#[allow(non_camel_case_types)]
pub struct rocmforge_model {
    pub(crate) model: Model,
    /// NUL-terminated copies of metadata strings handed out by pointer.
    architecture: CString,
    name: Option<CString>,
    chat_template: Option<CString>,
    poisoned: AtomicBool,
}

impl Poisonable for rocmforge_model {
    fn poison_flag(&self) -> &AtomicBool {
        &self.poisoned
    }
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl rocmforge_model {
    pub(crate) fn new(model: Model) -> rocmforge_model {
        let architecture = c_string(model.hparams().arch.name());
        let name = model.name().map(c_string);
        let chat_template = model.chat_template().map(c_string);
        rocmforge_model {
            model,
            architecture,
            name,
            chat_template,
            poisoned: AtomicBool::new(false),
        }
    }
}

/// What ROCMFORGE_BACKEND_AUTO will pick, said through the log callback before loading: INFO
/// when it takes the GPU or there is no GPU backend to take, WARN with the reason (the runtime
/// or BLAS library missing, in the loader's words; no device; too few) when a GPU backend is
/// built in but cannot be used.
fn auto_backend_choice(device: usize) -> (i32, String) {
    if !crate::api::gpu_built_in() {
        return (
            ROCMFORGE_LOG_INFO,
            "backend auto: no GPU backend built in, using the CPU".into(),
        );
    }
    match crate::api::gpu_device(device) {
        Ok(d) => (
            ROCMFORGE_LOG_INFO,
            format!("backend auto: using GPU device {device} ({})", d.name),
        ),
        Err(e) => (
            ROCMFORGE_LOG_WARN,
            format!("backend auto: using the CPU: {e}"),
        ),
    }
}

/// The INFO line of a loaded model.
fn load_summary(model: &Model) -> String {
    let hp = model.hparams();
    let place = match model.backend() {
        Backend::Gpu => "the GPU",
        _ => "the CPU",
    };
    format!(
        "loaded {}: {}, {:.1}M parameters in {:.1} MiB, {} layers, {} tokens of vocabulary, \
         on {place}",
        model.name().unwrap_or("a model"),
        hp.arch.name(),
        model.n_params() as f64 / 1e6,
        model.size_bytes() as f64 / (1024.0 * 1024.0),
        hp.n_layer,
        hp.n_vocab,
    )
}

/// The C backend value as the Rust API's [`Backend`] (values were validated by the setter).
fn backend_of(params: &rocmforge_model_params) -> Backend {
    match params.backend {
        ROCMFORGE_BACKEND_CPU => Backend::Cpu,
        ROCMFORGE_BACKEND_GPU => Backend::Gpu,
        _ => Backend::Auto,
    }
}

/// Loads a GGUF model. `params` may be NULL for the defaults. On success writes the new handle
/// to `*out`. `path` is taken as bytes (POSIX paths need not be UTF-8); it must name a regular
/// file (a directory, device or FIFO is ROCMFORGE_ERR_IO). A file whose tensors do not all
/// belong to the model (an edited block count) or whose tensor types do not match their data
/// is ROCMFORGE_ERR_INVALID_MODEL.
///
/// Errors: ROCMFORGE_ERR_IO (cannot open), _INVALID_MODEL (malformed file), _UNSUPPORTED
/// (architecture, tensor type, or a feature of the model the chosen backend does not run yet,
/// named in the message), _TOKENIZER, _OUT_OF_MEMORY, _BACKEND_UNAVAILABLE (GPU asked
/// for, none built in), _CANCELLED (the progress callback returned false).
///
/// Ownership: the caller owns `*out` and frees it with rocmforge_model_free; `path` and
/// `params` are only borrowed for the call. Thread-safety: any thread; the progress callback
/// runs on the calling thread.
///
/// # Safety
/// `path` must be a NUL-terminated string; `params` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_load(
    path: *const c_char,
    params: *const rocmforge_model_params,
    out: *mut *mut rocmforge_model,
) -> rocmforge_status {
    call(|| {
        // SAFETY: caller contract.
        let path = unsafe { c_path(path, "path") }?;
        let out = out_ptr(out, "out")?;
        let defaults = rocmforge_model_params::default();
        // SAFETY: caller contract: NULL or a live params object.
        let params = unsafe { params.as_ref() }.unwrap_or(&defaults);
        // Probe the devices for the message only when a WARN (the most severe it can be) would
        // be heard.
        if params.backend == ROCMFORGE_BACKEND_AUTO && heard(ROCMFORGE_LOG_WARN) {
            let (level, message) = auto_backend_choice(params.device as usize);
            log(level, || message);
        }
        let (callback, user_data) = (params.progress, params.progress_user_data);
        let mut progress = move |fraction: f32| -> bool {
            match callback {
                // SAFETY: the caller registered this callback with this user data.
                Some(f) => unsafe { f(fraction, user_data) },
                None => true,
            }
        };
        let model = Model::load(
            path,
            ModelParams {
                use_mmap: params.use_mmap,
                progress: Some(&mut progress),
                backend: backend_of(params),
                device: params.device as usize,
            },
        )?;
        if let Some(why) = model.auto_on_cpu() {
            log(ROCMFORGE_LOG_WARN, || {
                format!(
                    "backend auto: using the CPU: the GPU backend does not run this model: {why}"
                )
            });
        }
        log(ROCMFORGE_LOG_INFO, || load_summary(&model));

        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, into_handle(rocmforge_model::new(model))) };
        Ok(())
    })
}

/// Frees a model; NULL is ignored. Contexts created from it keep their own reference to the
/// weights and stay usable.
/// Thread-safety: must not overlap any other use of this handle.
///
/// # Safety
/// `model` must be NULL or from rocmforge_model_load, not freed before, and no other thread may
/// be using this handle.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_free(model: *mut rocmforge_model) {
    // SAFETY: forwarded contract.
    unsafe { free_handle(model) }
}

/// Reads one integer fact of the model into `*out`.
fn model_u64(
    model: *const rocmforge_model,
    out: *mut u64,
    get: impl FnOnce(&Model) -> u64,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, get(&m.model)) };
        Ok(())
    })
}

/// Vocabulary size (valid token ids are 0..n_vocab). Written to `*out`.
/// Thread-safety: any thread (the model is immutable).
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_n_vocab(
    model: *const rocmforge_model,
    out: *mut u64,
) -> rocmforge_status {
    model_u64(model, out, |m| m.hparams().n_vocab as u64)
}

/// Context length the model was trained with. Written to `*out`.
/// Thread-safety: any thread (the model is immutable).
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_n_ctx_train(
    model: *const rocmforge_model,
    out: *mut u64,
) -> rocmforge_status {
    model_u64(model, out, |m| m.hparams().n_ctx_train as u64)
}

/// Embedding (residual stream) width. Written to `*out`.
/// Thread-safety: any thread (the model is immutable).
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_n_embd(
    model: *const rocmforge_model,
    out: *mut u64,
) -> rocmforge_status {
    model_u64(model, out, |m| m.hparams().n_embd as u64)
}

/// Number of transformer layers. Written to `*out`.
/// Thread-safety: any thread (the model is immutable).
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_n_layer(
    model: *const rocmforge_model,
    out: *mut u64,
) -> rocmforge_status {
    model_u64(model, out, |m| m.hparams().n_layer as u64)
}

/// Bytes of all tensor data. Written to `*out`.
/// Thread-safety: any thread (the model is immutable).
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_size_bytes(
    model: *const rocmforge_model,
    out: *mut u64,
) -> rocmforge_status {
    model_u64(model, out, |m| m.size_bytes())
}

/// Total number of weights (elements of all tensors). Written to `*out`.
/// Thread-safety: any thread (the model is immutable).
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_n_params(
    model: *const rocmforge_model,
    out: *mut u64,
) -> rocmforge_status {
    model_u64(model, out, |m| m.n_params())
}

/// Hands out one of the model's stored strings.
fn model_str(
    model: *const rocmforge_model,
    out: *mut *const c_char,
    pick: impl FnOnce(&rocmforge_model) -> FfiResult<*const c_char>,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let out = out_ptr(out, "out")?;
        let text = pick(m)?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, text) };
        Ok(())
    })
}

/// The architecture name ("llama"). Ownership: `*out` is owned by the model and valid until
/// rocmforge_model_free. Thread-safety: any thread.
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_architecture(
    model: *const rocmforge_model,
    out: *mut *const c_char,
) -> rocmforge_status {
    model_str(model, out, |m| Ok(m.architecture.as_ptr()))
}

/// The model's name (`general.name`), or ROCMFORGE_ERR_NOT_FOUND. Ownership: `*out` is owned
/// by the model and valid until rocmforge_model_free. Thread-safety: any thread.
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_name(
    model: *const rocmforge_model,
    out: *mut *const c_char,
) -> rocmforge_status {
    model_str(model, out, |m| {
        m.name
            .as_ref()
            .map(|s| s.as_ptr())
            .ok_or_else(|| FfiError::new(ROCMFORGE_ERR_NOT_FOUND, "the model has no general.name"))
    })
}

/// The model's Jinja chat template (`tokenizer.chat_template`), or
/// ROCMFORGE_ERR_NO_CHAT_TEMPLATE. Ownership: `*out` is owned by the model and valid until
/// rocmforge_model_free. Thread-safety: any thread.
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_chat_template(
    model: *const rocmforge_model,
    out: *mut *const c_char,
) -> rocmforge_status {
    model_str(model, out, |m| {
        m.chat_template.as_ref().map(|s| s.as_ptr()).ok_or_else(|| {
            FfiError::new(
                ROCMFORGE_ERR_NO_CHAT_TEMPLATE,
                "the model has no tokenizer.chat_template",
            )
        })
    })
}

/// Any GGUF metadata value by key (e.g. "general.architecture", "llama.context_length"),
/// rendered as text (see docs/C_API.md), with the two-call size protocol: `*n_out` receives
/// the length without the NUL; the text and a NUL are written to `buf` only when `capacity`
/// exceeds it, else ROCMFORGE_ERR_BUFFER_TOO_SMALL. A missing key is ROCMFORGE_ERR_NOT_FOUND.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `key` NUL-terminated; `buf` NULL or writable for `capacity` bytes;
/// `n_out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_meta(
    model: *const rocmforge_model,
    key: *const c_char,
    buf: *mut c_char,
    capacity: usize,
    n_out: *mut usize,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        // SAFETY: caller contract.
        let key = unsafe { c_str(key, "key") }?;
        let n_out = out_ptr(n_out, "n_out")?;
        let text = m.model.meta(key).ok_or_else(|| {
            FfiError::new(ROCMFORGE_ERR_NOT_FOUND, format!("no metadata key '{key}'"))
        })?;
        // SAFETY: buf/capacity and n_out per the caller's contract.
        unsafe { write_text(text.as_bytes(), buf, capacity, n_out) }
    })
}

/// A memory estimate for a model plus one context, made before loading. Size-prefixed: set
/// `struct_size = sizeof(rocmforge_memory_estimate)` before the call; fields beyond it are not
/// written (so an older caller keeps working when fields are added).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct rocmforge_memory_estimate {
    pub struct_size: usize,
    /// Bytes of the model's tensor data.
    pub weights_bytes: u64,
    /// Bytes of the context's KV cache (keys and values, f32).
    pub kv_cache_bytes: u64,
    /// Working buffers of one full batch (activations, attention scores, logits).
    pub compute_bytes: u64,
    /// The sum of the above.
    pub total_bytes: u64,
}

/// Estimates the memory a model plus a context with `params` (NULL = defaults) will need,
/// reading only the file's header and metadata. Writes `*out` (up to its struct_size) on
/// success. Errors as rocmforge_model_load for the file; ROCMFORGE_ERR_INVALID_ARGUMENT when
/// struct_size is smaller than the first field.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `path` NUL-terminated; `params` NULL or live; `out` NULL or writable for `out->struct_size`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_estimate_memory(
    path: *const c_char,
    params: *const rocmforge_context_params,
    out: *mut rocmforge_memory_estimate,
) -> rocmforge_status {
    call(|| {
        // SAFETY: caller contract.
        let path = unsafe { c_path(path, "path") }?;
        let out = out_ptr(out, "out")?;
        // SAFETY: out is non-NULL and its first field readable per the contract.
        let size = unsafe { std::ptr::addr_of!((*out).struct_size).read() };
        if size < std::mem::size_of::<usize>() {
            return Err(super::guard::invalid(format!(
                "struct_size {size} is too small"
            )));
        }
        let defaults = ContextParams::default();
        // SAFETY: caller contract: NULL or live.
        let cp = unsafe { params.as_ref() }.map_or(&defaults, |p| &p.params);
        let e = MemoryEstimate::for_file(path, cp)?;
        let estimate = rocmforge_memory_estimate {
            struct_size: size.min(std::mem::size_of::<rocmforge_memory_estimate>()),
            weights_bytes: e.weights_bytes,
            kv_cache_bytes: e.kv_cache_bytes,
            compute_bytes: e.compute_bytes,
            total_bytes: e.total_bytes,
        };
        let n = estimate.struct_size;
        // SAFETY: we copy at most the caller's struct_size bytes into its struct.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&estimate as *const rocmforge_memory_estimate).cast::<u8>(),
                out.cast::<u8>(),
                n,
            )
        };
        Ok(())
    })
}
