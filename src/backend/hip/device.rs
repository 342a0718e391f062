//! Safe wrappers over the kernel library's runtime calls: status checks, device enumeration,
//! device buffers, streams and the BLAS handle. Everything that can fail returns `Result`.

use super::ffi;
use crate::{Error, Result};
use std::ffi::{c_char, c_int, c_void, CStr};

/// Turns a status code into a Result, naming what was being done.
pub fn check(code: c_int, what: &str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: rf_error_string returns a static NUL-terminated string for any code.
    let msg = unsafe { CStr::from_ptr(ffi::rf_error_string(code)) }
        .to_string_lossy()
        .into_owned();
    if ffi::ERR_OUT_OF_MEMORY.contains(&code) {
        Err(Error::OutOfMemory(format!("GPU: {what}: {msg}")))
    } else if code == ffi::ERR_NO_RUNTIME || code == ffi::ERR_NO_BLAS {
        Err(Error::BackendUnavailable(msg))
    } else {
        Err(Error::Gpu(format!("{what}: {msg} (code {code})")))
    }
}

pub use crate::backend::gpu::DeviceInfo;

/// GPUs present. No device or no driver is an empty list, not an error; see [`usable`] for why.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    match present() {
        Err(Error::BackendUnavailable(_)) => Ok(Vec::new()),
        other => other,
    }
}

/// The GPUs this build can compute on, or `BackendUnavailable` saying why there are none: the
/// runtime library could not be opened (the loader's words), the runtime finds no device or no
/// driver (its words), or the BLAS library is missing.
pub fn usable() -> Result<Vec<DeviceInfo>> {
    let found = present()?;
    // SAFETY: returns NULL or a static NUL-terminated string.
    let blas = unsafe { ffi::rf_blas_unavailable_reason() };
    if !blas.is_null() {
        // SAFETY: as above, non-NULL.
        let why = unsafe { CStr::from_ptr(blas) }.to_string_lossy();
        return Err(Error::BackendUnavailable(format!(
            "{} GPU(s) present, but {why}",
            found.len()
        )));
    }
    Ok(found)
}

/// The devices, or BackendUnavailable when the runtime is missing or finds none.
fn present() -> Result<Vec<DeviceInfo>> {
    let mut count: c_int = 0;
    // SAFETY: plain out-parameter call.
    let code = unsafe { ffi::rf_device_count(&mut count) };
    if code == ffi::ERR_NO_DEVICE || code == ffi::ERR_INSUFFICIENT_DRIVER {
        // SAFETY: rf_error_string returns a static NUL-terminated string for any code.
        let why = unsafe { CStr::from_ptr(ffi::rf_error_string(code)) }.to_string_lossy();
        return Err(Error::BackendUnavailable(format!(
            "the GPU runtime finds no usable device: {why}"
        )));
    }
    check(code, "counting GPUs")?;
    let mut out = Vec::new();
    for index in 0..count.max(0) {
        let mut name = [0 as c_char; 256];
        let mut arch = [0 as c_char; 64];
        let (mut total, mut free) = (0usize, 0usize);
        // SAFETY: buffers have the sizes rf_device_info writes at most (256 / 64 bytes).
        let code = unsafe {
            ffi::rf_device_info(
                index,
                name.as_mut_ptr(),
                arch.as_mut_ptr(),
                &mut total,
                &mut free,
            )
        };
        check(code, &format!("querying GPU {index}"))?;
        // SAFETY: rf_device_info NUL-terminates both strings (snprintf).
        let (name, arch) = unsafe {
            (
                CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned(),
                CStr::from_ptr(arch.as_ptr()).to_string_lossy().into_owned(),
            )
        };
        out.push(DeviceInfo {
            index: index as usize,
            name,
            arch,
            total_mem: total as u64,
            free_mem: free as u64,
        });
    }
    Ok(out)
}

pub fn set_device(device: usize) -> Result<()> {
    // SAFETY: plain call; an invalid index is reported as a status.
    check(
        unsafe { ffi::rf_set_device(device as c_int) },
        &format!("selecting GPU {device}"),
    )
}

/// Device memory, freed on drop.
pub struct DeviceBuffer {
    ptr: *mut c_void,
    bytes: usize,
}

// SAFETY: the pointer is a device allocation, not host memory; the owning types serialise use
// through their streams.
unsafe impl Send for DeviceBuffer {}
// SAFETY: shared references only hand out the raw address; kernels reading it concurrently is
// fine, and writers go through &mut owners.
unsafe impl Sync for DeviceBuffer {}

impl DeviceBuffer {
    /// `bytes` of uninitialised device memory (at least 1 byte is asked for).
    pub fn new(bytes: usize, what: &str) -> Result<DeviceBuffer> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: out-parameter call; failure leaves ptr null and is reported.
        let code = unsafe { ffi::rf_malloc(&mut ptr, bytes.max(1)) };
        check(code, &format!("allocating {bytes} bytes for {what}"))?;
        Ok(DeviceBuffer { ptr, bytes })
    }

    pub fn zeroed(bytes: usize, what: &str, stream: &Stream) -> Result<DeviceBuffer> {
        let b = DeviceBuffer::new(bytes, what)?;
        // SAFETY: the range is inside the allocation.
        check(
            unsafe { ffi::rf_memset(b.ptr, 0, b.bytes, stream.raw()) },
            what,
        )?;
        Ok(b)
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    pub fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Typed address `offset` elements of T in.
    pub fn at<T>(&self, offset: usize) -> *mut T {
        // Stays within the allocation whenever the caller's shapes do (callers size buffers).
        (self.ptr as *mut T).wrapping_add(offset)
    }

    /// Copies `src` to `byte_offset` (asynchronous on `stream`; `src` must stay valid until the
    /// stream is synchronised, which every caller does before returning).
    pub fn upload(
        &self,
        byte_offset: usize,
        src: &[u8],
        stream: &Stream,
        what: &str,
    ) -> Result<()> {
        if byte_offset + src.len() > self.bytes {
            return Err(Error::Gpu(format!(
                "{what}: upload of {} bytes past the buffer end",
                src.len()
            )));
        }
        // SAFETY: destination range checked above; source is a live slice.
        let code = unsafe {
            ffi::rf_memcpy_h2d(
                (self.ptr as *mut u8).add(byte_offset) as *mut c_void,
                src.as_ptr() as *const c_void,
                src.len(),
                stream.raw(),
            )
        };
        check(code, what)
    }

    /// Copies `dst.len()` bytes from the start of the buffer, synchronously.
    pub fn download(&self, dst: &mut [u8], stream: &Stream, what: &str) -> Result<()> {
        self.download_from(0, dst, stream, what)
    }

    /// Copies `dst.len()` bytes from `byte_offset` on, synchronously.
    pub fn download_from(
        &self,
        byte_offset: usize,
        dst: &mut [u8],
        stream: &Stream,
        what: &str,
    ) -> Result<()> {
        if byte_offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.bytes)
        {
            return Err(Error::Gpu(format!("{what}: download past the buffer end")));
        }
        // SAFETY: ranges checked (the source is inside the buffer); the stream is synchronised
        // before `dst` is used.
        let code = unsafe {
            ffi::rf_memcpy_d2h(
                dst.as_mut_ptr() as *mut c_void,
                self.ptr.cast::<u8>().add(byte_offset).cast::<c_void>(),
                dst.len(),
                stream.raw(),
            )
        };
        check(code, what)?;
        stream.sync(what)
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr came from rf_malloc and is freed once. A failure cannot be reported here.
        unsafe {
            ffi::rf_free(self.ptr);
        }
    }
}

/// Page-locked host memory: copies between it and the device run asynchronously and at the
/// link's full speed (pageable memory is staged through a driver buffer first).
pub struct PinnedBuffer {
    ptr: *mut u8,
    bytes: usize,
}

// SAFETY: plain host memory owned by this value; access goes through & / &mut.
unsafe impl Send for PinnedBuffer {}
unsafe impl Sync for PinnedBuffer {}

impl PinnedBuffer {
    pub fn new(bytes: usize, what: &str) -> Result<PinnedBuffer> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: out-parameter call; failure leaves ptr null and is reported.
        let code = unsafe { ffi::rf_host_alloc(&mut ptr, bytes.max(1)) };
        check(
            code,
            &format!("allocating {bytes} page-locked bytes for {what}"),
        )?;
        Ok(PinnedBuffer {
            ptr: ptr as *mut u8,
            bytes,
        })
    }

    #[allow(clippy::len_without_is_empty)] // a staging area, never empty
    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr holds `bytes` bytes for as long as self lives (zeroed or written bytes;
        // every bit pattern is a valid u8).
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr came from rf_host_alloc and is freed once. A failure cannot be reported.
        unsafe {
            ffi::rf_host_free(self.ptr as *mut c_void);
        }
    }
}

/// An ordered queue of GPU work.
pub struct Stream(*mut c_void);

// SAFETY: a stream handle may be used from any thread; owners serialise through &mut.
unsafe impl Send for Stream {}

impl Stream {
    pub fn new() -> Result<Stream> {
        let mut s = std::ptr::null_mut();
        // SAFETY: out-parameter call.
        check(
            unsafe { ffi::rf_stream_create(&mut s) },
            "creating a stream",
        )?;
        Ok(Stream(s))
    }

    pub fn raw(&self) -> *mut c_void {
        self.0
    }

    /// Waits for all queued work; reports any error a kernel hit.
    pub fn sync(&self, what: &str) -> Result<()> {
        // SAFETY: valid stream handle.
        check(unsafe { ffi::rf_stream_sync(self.0) }, what)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: handle from rf_stream_create, destroyed once.
        unsafe {
            ffi::rf_stream_sync(self.0);
            ffi::rf_stream_destroy(self.0);
        }
    }
}

/// A cuBLAS / hipBLAS handle bound to one stream.
pub struct Blas(*mut c_void);

// SAFETY: used only by the owning context, through &mut.
unsafe impl Send for Blas {}

impl Blas {
    pub fn new(stream: &Stream) -> Result<Blas> {
        let mut h = std::ptr::null_mut();
        // SAFETY: out-parameter call with a valid stream.
        check(
            unsafe { ffi::rf_blas_create(&mut h, stream.raw()) },
            "creating the BLAS handle",
        )?;
        Ok(Blas(h))
    }

    pub fn raw(&self) -> *mut c_void {
        self.0
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: handle from rf_blas_create, destroyed once.
        unsafe {
            ffi::rf_blas_destroy(self.0);
        }
    }
}

/// Runs kernels/wave_check.hip on GPU `device`: the cross-lane helpers of kernels/arch.h
/// against exact values, with the wave size the kernels were compiled for.
pub fn wave_check(device: usize) -> Result<WaveCheck> {
    set_device(device)?;
    let mut r = [0 as c_int; 3];
    // SAFETY: `r` holds the 3 ints rf_wave_check writes.
    check(
        unsafe { ffi::rf_wave_check(r.as_mut_ptr()) },
        "running the wave check",
    )?;
    Ok(WaveCheck {
        checks: r[0].max(0) as u64,
        failed: r[1].max(0) as u64,
        wave: r[2].max(0) as u32,
    })
}

pub use crate::backend::gpu::WaveCheck;

/// Device-to-device copy bandwidth in bytes/s over a `bytes`-sized buffer (read + write
/// counted), the "measured memory bandwidth" of the decode ceiling.
pub fn measure_copy_bandwidth(bytes: usize, iters: usize) -> Result<f64> {
    let stream = Stream::new()?;
    let a = DeviceBuffer::zeroed(bytes, "bandwidth source", &stream)?;
    let b = DeviceBuffer::new(bytes, "bandwidth target")?;
    let mut ms = 0.0f32;
    // SAFETY: both buffers hold `bytes` bytes.
    let code = unsafe {
        ffi::rf_measure_copy(
            b.ptr(),
            a.ptr(),
            bytes,
            iters as c_int,
            stream.raw(),
            &mut ms,
        )
    };
    check(code, "measuring copy bandwidth")?;
    Ok(2.0 * bytes as f64 * iters as f64 / (ms as f64 / 1e3))
}
