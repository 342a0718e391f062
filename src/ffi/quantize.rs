//! The model quantizer (`llama_model_quantize`'s counterpart): a params object with setters and
//! `rocmforge_model_quantize`.

use super::guard::{
    c_path, c_str, call, free_handle, into_handle, invalid, null, out_ptr, write_out,
};
use super::status::{rocmforge_status, FfiResult};
use crate::api::{quantize_model, FileType, QuantizeParams};
use std::ffi::{c_char, c_void};

/// Called after each tensor is written with (tensors written, total); return false to cancel
/// (rocmforge_model_quantize then fails with ROCMFORGE_ERR_CANCELLED and leaves no output
/// file). Runs on the thread that called rocmforge_model_quantize.
#[allow(non_camel_case_types)]
pub type rocmforge_quantize_progress_callback =
    Option<unsafe extern "C" fn(done: usize, total: usize, user_data: *mut c_void) -> bool>;

/// Options for rocmforge_model_quantize.
#[allow(non_camel_case_types)]
pub struct rocmforge_quantize_params {
    pub(crate) file_type: FileType,
    pub(crate) threads: usize,
    pub(crate) allow_requantize: bool,
    pub(crate) pure: bool,
    pub(crate) progress: rocmforge_quantize_progress_callback,
    pub(crate) progress_user_data: *mut c_void,
}

impl Default for rocmforge_quantize_params {
    fn default() -> Self {
        rocmforge_quantize_params {
            file_type: FileType::MostlyQ4KM,
            threads: 0,
            allow_requantize: false,
            pure: false,
            progress: None,
            progress_user_data: std::ptr::null_mut(),
        }
    }
}

/// Runs a setter on a quantize params object (plain values: never poisoned).
fn set(
    p: *mut rocmforge_quantize_params,
    f: impl FnOnce(&mut rocmforge_quantize_params) -> FfiResult,
) -> rocmforge_status {
    call(|| {
        // SAFETY: the caller passes NULL or a live params object it uses from one thread.
        let p = unsafe { p.as_mut() }.ok_or_else(|| null("params"))?;
        f(p)
    })
}

/// Creates quantize parameters with the defaults: type Q4_K_M, threads 0 (all cores), no
/// requantizing, llama.cpp's mix (not pure), no progress callback. Writes the new object to
/// `*out` on success.
///
/// Ownership: the caller owns `*out`; free it with rocmforge_quantize_params_free.
/// Thread-safety: the object is used by one thread at a time.
///
/// # Safety
/// `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_quantize_params_create(
    out: *mut *mut rocmforge_quantize_params,
) -> rocmforge_status {
    call(|| {
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL; the caller gives a writable pointer.
        unsafe { write_out(out, into_handle(rocmforge_quantize_params::default())) };
        Ok(())
    })
}

/// Frees quantize parameters; NULL is ignored.
/// Thread-safety: must not overlap any other use of this handle.
///
/// # Safety
/// `params` must be NULL or from rocmforge_quantize_params_create, not freed before.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_quantize_params_free(params: *mut rocmforge_quantize_params) {
    // SAFETY: forwarded contract.
    unsafe { free_handle(params) }
}

/// Sets the target type by llama-quantize's name, in any case: the mixes Q2_K, Q3_K_S,
/// Q3_K_M (Q3_K), Q3_K_L, Q4_K_S, Q4_K_M (Q4_K), Q5_K_S, Q5_K_M (Q5_K), Q6_K, Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, and F16, BF16, F32; or the llama_ftype number ("15").
/// Errors: ROCMFORGE_ERR_INVALID_ARGUMENT (unknown name, not UTF-8), _UNSUPPORTED (a llama.cpp
/// type this engine cannot write, such as IQ3_S: the message names it), _NULL_POINTER.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` NULL or live; `type_name` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_quantize_params_set_type(
    params: *mut rocmforge_quantize_params,
    type_name: *const c_char,
) -> rocmforge_status {
    set(params, |p| {
        // SAFETY: caller contract.
        let name = unsafe { c_str(type_name, "type_name") }?;
        p.file_type = FileType::parse(name)?;
        Ok(())
    })
}

/// Sets the number of threads (0: all cores; 1..=1024). The output does not depend on it.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_quantize_params_set_threads(
    params: *mut rocmforge_quantize_params,
    threads: i32,
) -> rocmforge_status {
    set(params, |p| {
        if !(0..=1024).contains(&threads) {
            return Err(invalid(format!(
                "threads must be 0 (all cores) to 1024, got {threads}"
            )));
        }
        p.threads = threads as usize;
        Ok(())
    })
}

/// Accepts already quantized input (dequantized, then quantized again). Off by default: a
/// quantized input is then ROCMFORGE_ERR_INVALID_ARGUMENT naming the tensor.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_quantize_params_set_allow_requantize(
    params: *mut rocmforge_quantize_params,
    allow: bool,
) -> rocmforge_status {
    set(params, |p| {
        p.allow_requantize = allow;
        Ok(())
    })
}

/// Quantizes every quantizable tensor to the target's main type, without the mix's per-tensor
/// choices (llama-quantize's --pure); rows that are not whole blocks still fall back.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_quantize_params_set_pure(
    params: *mut rocmforge_quantize_params,
    pure: bool,
) -> rocmforge_status {
    set(params, |p| {
        p.pure = pure;
        Ok(())
    })
}

/// Sets the progress callback (NULL: none) and the user data passed to it.
/// Thread-safety: one thread at a time per params object.
///
/// # Safety
/// `params` NULL or live; `callback` must be safe to call with `user_data` during
/// rocmforge_model_quantize.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_quantize_params_set_progress(
    params: *mut rocmforge_quantize_params,
    callback: rocmforge_quantize_progress_callback,
    user_data: *mut c_void,
) -> rocmforge_status {
    set(params, |p| {
        p.progress = callback;
        p.progress_user_data = user_data;
        Ok(())
    })
}

/// Quantizes the GGUF model at `input` into a new GGUF file at `output` (replaced if it
/// exists), as llama.cpp's llama_model_quantize does: the target's mix of per-tensor types,
/// metadata copied, `general.file_type` set. `params` may be NULL for the defaults. The same
/// input and params always give the same bytes. The output appears only when complete: on any
/// error or cancellation no file is left at `output`.
///
/// Errors: ROCMFORGE_ERR_IO (input cannot be opened, output not writable),
/// _INVALID_MODEL (malformed input), _INVALID_ARGUMENT (quantized input without
/// allow_requantize), _UNSUPPORTED (an input tensor type this engine cannot decode, named with
/// its tensor), _CANCELLED (the progress callback returned false), _NULL_POINTER.
///
/// Ownership: `input`, `output` and `params` are borrowed for the call. Thread-safety: any
/// thread; the progress callback runs on the calling thread.
///
/// # Safety
/// `input` and `output` NUL-terminated strings; `params` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_quantize(
    input: *const c_char,
    output: *const c_char,
    params: *const rocmforge_quantize_params,
) -> rocmforge_status {
    call(|| {
        // SAFETY: caller contract.
        let input = unsafe { c_path(input, "input") }?;
        // SAFETY: caller contract.
        let output = unsafe { c_path(output, "output") }?;
        let defaults = rocmforge_quantize_params::default();
        // SAFETY: caller contract: NULL or a live params object.
        let p = unsafe { params.as_ref() }.unwrap_or(&defaults);
        let (callback, user_data) = (p.progress, p.progress_user_data);
        let mut progress = move |done: usize, total: usize| -> bool {
            match callback {
                // SAFETY: the caller registered this callback with this user data.
                Some(f) => unsafe { f(done, total, user_data) },
                None => true,
            }
        };
        quantize_model(
            input,
            output,
            QuantizeParams {
                file_type: p.file_type,
                pure: p.pure,
                allow_requantize: p.allow_requantize,
                threads: p.threads,
                progress: Some(&mut progress),
            },
        )?;
        Ok(())
    })
}
