//! GPU devices as the runtime reports them, and which backend a loaded model runs on.

use super::guard::{call, call_on, out_ptr, write_out, write_text};
use super::model::rocmforge_model;
use super::params::{ROCMFORGE_BACKEND_CPU, ROCMFORGE_BACKEND_GPU};
use super::status::{rocmforge_status, FfiError, FfiResult};
use crate::api::{devices, DeviceInfo};
use crate::Backend;
use rocmforge_status::*;
use std::ffi::c_char;

fn device(index: usize) -> FfiResult<DeviceInfo> {
    let all = devices()?;
    let n = all.len();
    all.into_iter().nth(index).ok_or_else(|| {
        FfiError::new(
            ROCMFORGE_ERR_NOT_FOUND,
            format!("GPU device {index} does not exist ({n} present)"),
        )
    })
}

/// One text field of a device through the two-call size protocol.
///
/// # Safety
/// `buf` NULL or writable for `capacity` bytes; `n_out` NULL or writable.
unsafe fn device_text(
    index: usize,
    field: fn(DeviceInfo) -> String,
    buf: *mut c_char,
    capacity: usize,
    n_out: *mut usize,
) -> rocmforge_status {
    call(|| {
        let n_out = out_ptr(n_out, "n_out")?;
        let text = field(device(index)?);
        // SAFETY: caller contract on buf/capacity; n_out checked.
        unsafe { write_text(text.as_bytes(), buf, capacity, n_out) }
    })
}

/// Whether this library was built with a GPU backend (`rocm` or `cuda` feature).
/// Thread-safety: any thread.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_gpu_built_in(out: *mut bool) -> rocmforge_status {
    call(|| {
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, crate::api::gpu_built_in()) };
        Ok(())
    })
}

/// Number of GPUs present (0 without a GPU backend, a driver or a device).
/// Thread-safety: any thread.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_device_count(out: *mut usize) -> rocmforge_status {
    call(|| {
        let out = out_ptr(out, "out")?;
        let n = devices()?.len();
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, n) };
        Ok(())
    })
}

/// The name of GPU `index` ("NVIDIA H100 80GB HBM3", "AMD Instinct MI210"), with the two-call
/// size protocol: `*n_out` receives the length without the NUL; the text is written only when
/// `capacity > length` (else ROCMFORGE_ERR_BUFFER_TOO_SMALL). ROCMFORGE_ERR_NOT_FOUND for a
/// missing device. Ownership: the caller's buffer. Thread-safety: any thread.
///
/// # Safety
/// `buf` NULL or writable for `capacity` bytes; `n_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_device_name(
    index: usize,
    buf: *mut c_char,
    capacity: usize,
    n_out: *mut usize,
) -> rocmforge_status {
    // SAFETY: forwarded caller contract.
    unsafe { device_text(index, |d| d.name, buf, capacity, n_out) }
}

/// The architecture of GPU `index` ("sm_90", "gfx90a"), with the two-call size protocol of
/// rocmforge_device_name. Thread-safety: any thread.
///
/// # Safety
/// As rocmforge_device_name.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_device_arch(
    index: usize,
    buf: *mut c_char,
    capacity: usize,
    n_out: *mut usize,
) -> rocmforge_status {
    // SAFETY: forwarded caller contract.
    unsafe { device_text(index, |d| d.arch, buf, capacity, n_out) }
}

/// Total and currently free memory of GPU `index`, in bytes. Thread-safety: any thread.
///
/// # Safety
/// `total` and `free` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_device_memory(
    index: usize,
    total: *mut u64,
    free: *mut u64,
) -> rocmforge_status {
    call(|| {
        let total = out_ptr(total, "total")?;
        let free = out_ptr(free, "free")?;
        let d = device(index)?;
        // SAFETY: both checked non-NULL.
        unsafe {
            write_out(total, d.total_mem);
            write_out(free, d.free_mem);
        }
        Ok(())
    })
}

/// The backend a loaded model computes on: ROCMFORGE_BACKEND_CPU or ROCMFORGE_BACKEND_GPU
/// (what ROCMFORGE_BACKEND_AUTO resolved to). Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_model_backend(
    model: *const rocmforge_model,
    out: *mut i32,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let out = out_ptr(out, "out")?;
        let backend = match m.model.backend() {
            Backend::Gpu => ROCMFORGE_BACKEND_GPU,
            _ => ROCMFORGE_BACKEND_CPU,
        };
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, backend) };
        Ok(())
    })
}
