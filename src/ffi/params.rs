//! Parameter objects for model loading and context creation: opaque, created with defaults and
//! changed through setters, so fields can be added without breaking the ABI.

use super::guard::{call, free_handle, into_handle, invalid, null, out_ptr, write_out};
use super::status::rocmforge_status;
use crate::ContextParams;
use std::ffi::c_void;

/// Pick the GPU when one is built in and usable, else the CPU (said through the log callback).
pub const ROCMFORGE_BACKEND_AUTO: i32 = 0;
pub const ROCMFORGE_BACKEND_CPU: i32 = 1;
/// A GPU (HIP); ROCMFORGE_ERR_BACKEND_UNAVAILABLE when this library has no GPU backend.
pub const ROCMFORGE_BACKEND_GPU: i32 = 2;

/// KV cache types for rocmforge_context_params_set_cache_type (ggml's type ids, as llama.cpp's
/// `--cache-type-k` names them). f32: keys and values exactly as computed (4 bytes each).
pub const ROCMFORGE_CACHE_TYPE_F32: i32 = 0;
/// f16 (the default): keys and values rounded to nearest-even half precision when written, half
/// the cache memory of f32; the same on the CPU and the GPU.
pub const ROCMFORGE_CACHE_TYPE_F16: i32 = 1;
/// q8_0 (llama.cpp's `-ctk q8_0 -ctv q8_0`): each token's keys and values as blocks of 32 8-bit
/// integers and one f16 scale, 34 bytes per 32 elements (a little over half of f16's memory),
/// quantized as llama.cpp's CPU does, the same bits on the CPU and the GPU. Only for models
/// whose head size is a multiple of 32 (else context creation answers
/// ROCMFORGE_ERR_UNSUPPORTED).
pub const ROCMFORGE_CACHE_TYPE_Q8_0: i32 = 8;

/// Called during model loading with the fraction done (0..1); return false to cancel the load
/// (which then fails with ROCMFORGE_ERR_CANCELLED). Runs on the loading thread.
#[allow(non_camel_case_types)]
pub type rocmforge_progress_callback =
    Option<unsafe extern "C" fn(progress: f32, user_data: *mut c_void) -> bool>;

/// Options for rocmforge_model_load.
#[allow(non_camel_case_types)]
pub struct rocmforge_model_params {
    pub(crate) backend: i32,
    pub(crate) device: i32,
    pub(crate) use_mmap: bool,
    pub(crate) progress: rocmforge_progress_callback,
    pub(crate) progress_user_data: *mut c_void,
}

impl Default for rocmforge_model_params {
    fn default() -> Self {
        rocmforge_model_params {
            backend: ROCMFORGE_BACKEND_AUTO,
            device: 0,
            use_mmap: true,
            progress: None,
            progress_user_data: std::ptr::null_mut(),
        }
    }
}

/// Options for rocmforge_context_create.
#[allow(non_camel_case_types)]
pub struct rocmforge_context_params {
    pub(crate) params: ContextParams,
}

/// Runs a setter on a params object. Params objects hold plain values, so there is nothing a
/// panic could leave half-updated: they are not poisoned.
fn set<P>(p: *mut P, f: impl FnOnce(&mut P) -> super::status::FfiResult) -> rocmforge_status {
    call(|| {
        // SAFETY: the caller passes NULL or a live params object it uses from one thread.
        let p = unsafe { p.as_mut() }.ok_or_else(|| null("params"))?;
        f(p)
    })
}

/// Creates model parameters with the defaults: backend AUTO, device 0, mmap on, no progress
/// callback. Writes the new object to `*out` on success.
///
/// Ownership: the caller owns `*out`; free it with rocmforge_model_params_free (it may be freed
/// right after rocmforge_model_load). Thread-safety: the object is used by one thread at a time.
///
/// # Safety
/// `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_params_create(
    out: *mut *mut rocmforge_model_params,
) -> rocmforge_status {
    call(|| {
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL; the caller gives a writable pointer.
        unsafe { write_out(out, into_handle(rocmforge_model_params::default())) };
        Ok(())
    })
}

/// Frees model parameters; NULL is ignored.
/// Thread-safety: must not overlap any other use of this handle.
///
/// # Safety
/// `params` must be NULL or from rocmforge_model_params_create, not freed before.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_params_free(params: *mut rocmforge_model_params) {
    // SAFETY: forwarded contract.
    unsafe { free_handle(params) }
}

/// Selects the backend: ROCMFORGE_BACKEND_AUTO, _CPU or _GPU (other values:
/// ROCMFORGE_ERR_INVALID_ARGUMENT).
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_model_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_params_set_backend(
    params: *mut rocmforge_model_params,
    backend: i32,
) -> rocmforge_status {
    set(params, |p| {
        if !(ROCMFORGE_BACKEND_AUTO..=ROCMFORGE_BACKEND_GPU).contains(&backend) {
            return Err(invalid(format!(
                "unknown backend {backend} (0 auto, 1 cpu, 2 gpu)"
            )));
        }
        p.backend = backend;
        Ok(())
    })
}

/// Selects the GPU device index (>= 0; ignored by the CPU backend).
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_model_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_params_set_device(
    params: *mut rocmforge_model_params,
    device: i32,
) -> rocmforge_status {
    set(params, |p| {
        if device < 0 {
            return Err(invalid(format!("device index {device} is negative")));
        }
        p.device = device;
        Ok(())
    })
}

/// Maps the file (true, default: weights stay in the page cache) or reads it into memory.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_model_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_params_set_use_mmap(
    params: *mut rocmforge_model_params,
    use_mmap: bool,
) -> rocmforge_status {
    set(params, |p| {
        p.use_mmap = use_mmap;
        Ok(())
    })
}

/// Sets (or with NULL removes) the load-progress callback. `user_data` is passed back to it
/// and must stay valid until rocmforge_model_load returns.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_model_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_params_set_progress_callback(
    params: *mut rocmforge_model_params,
    callback: rocmforge_progress_callback,
    user_data: *mut c_void,
) -> rocmforge_status {
    set(params, |p| {
        p.progress = callback;
        p.progress_user_data = user_data;
        Ok(())
    })
}

/// Creates context parameters with the defaults: context 4096 tokens (0 = the model's training
/// context), batch 512, 1 sequence, threads 0 (= all available cores).
///
/// Ownership: the caller owns `*out`; free it with rocmforge_context_params_free (it may be
/// freed right after rocmforge_context_create). Thread-safety: one thread at a time.
///
/// # Safety
/// `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_create(
    out: *mut *mut rocmforge_context_params,
) -> rocmforge_status {
    call(|| {
        let out = out_ptr(out, "out")?;
        let params = rocmforge_context_params {
            params: ContextParams::default(),
        };
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, into_handle(params)) };
        Ok(())
    })
}

/// Frees context parameters; NULL is ignored.
/// Thread-safety: must not overlap any other use of this handle.
///
/// # Safety
/// `params` must be NULL or from rocmforge_context_params_create, not freed before.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_free(params: *mut rocmforge_context_params) {
    // SAFETY: forwarded contract.
    unsafe { free_handle(params) }
}

/// Checks a context size against its range and stores it.
fn set_size(
    params: *mut rocmforge_context_params,
    what: &str,
    value: u32,
    range: std::ops::RangeInclusive<usize>,
    field: impl FnOnce(&mut ContextParams) -> &mut usize,
) -> rocmforge_status {
    set(params, |p| {
        let v = value as usize;
        if !range.contains(&v) {
            return Err(invalid(format!(
                "{what} must be in {}..={}, got {value}",
                range.start(),
                range.end()
            )));
        }
        *field(&mut p.params) = v;
        Ok(())
    })
}

/// KV cache cells shared by all sequences (0 = the model's training context length, at most 4194304).
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_context_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_set_n_ctx(
    params: *mut rocmforge_context_params,
    value: u32,
) -> rocmforge_status {
    set_size(params, "n_ctx", value, 0..=1 << 22, |p| &mut p.n_ctx)
}

/// Most tokens one decode call may carry (1..=65536).
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_context_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_set_n_batch(
    params: *mut rocmforge_context_params,
    value: u32,
) -> rocmforge_status {
    set_size(params, "n_batch", value, 1..=1 << 16, |p| &mut p.n_batch)
}

/// Independent sequences the context holds (1..=64).
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_context_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_set_n_seq_max(
    params: *mut rocmforge_context_params,
    value: u32,
) -> rocmforge_status {
    set_size(
        params,
        "n_seq_max",
        value,
        1..=crate::kv_cache::MAX_SEQUENCES,
        |p| &mut p.n_seq_max,
    )
}

/// Compute threads (0 = all available cores, at most 1024).
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_context_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_set_n_threads(
    params: *mut rocmforge_context_params,
    value: u32,
) -> rocmforge_status {
    set_size(params, "n_threads", value, 0..=1024, |p| &mut p.n_threads)
}

/// Sliding-window layers (Gemma 3's) keep a cell for every token, as global layers do, when
/// `value` is true; by default (false) they keep only a ring of their window plus one batch
/// per sequence, which takes far less memory at long contexts and computes the same logits,
/// but cannot take a sequence back past what the ring still holds (see
/// rocmforge_kv_seq_pos_min). Models without such layers are not affected.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_context_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_set_swa_full(
    params: *mut rocmforge_context_params,
    value: bool,
) -> rocmforge_status {
    set(params, |p| {
        p.params.swa_full = value;
        Ok(())
    })
}

/// How the KV cache stores keys and values: ROCMFORGE_CACHE_TYPE_F16 (the default),
/// ROCMFORGE_CACHE_TYPE_F32 or ROCMFORGE_CACHE_TYPE_Q8_0 (other values:
/// ROCMFORGE_ERR_INVALID_ARGUMENT). A state saved from a context restores only into a context
/// with the same cache type.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` must be NULL or a live object from rocmforge_context_params_create.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_context_params_set_cache_type(
    params: *mut rocmforge_context_params,
    cache_type: i32,
) -> rocmforge_status {
    set(params, |p| {
        let t = u32::try_from(cache_type)
            .ok()
            .and_then(crate::kv_cache::KvType::from_id)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown KV cache type {cache_type} (0 f32, 1 f16, 8 q8_0)"
                ))
            })?;
        p.params.cache_type = t;
        Ok(())
    })
}
