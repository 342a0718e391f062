//! Thin owners of C API handles for tests that must go through the C boundary: each call is the
//! exported `rocmforge_*` function itself; these types only free what they own and turn
//! statuses plus `rocmforge_last_error` into `Result`s.
//!
//! The handles are `Send + Sync` on purpose: the abuse tests share one context, sampler or
//! batch between threads to check that the library answers ROCMFORGE_ERR_BUSY instead of racing.

use rocmforge::ffi::batch::*;
use rocmforge::ffi::context::*;
use rocmforge::ffi::kv::*;
use rocmforge::ffi::model::*;
use rocmforge::ffi::params::*;
use rocmforge::ffi::sampler::*;
use rocmforge::ffi::state::*;
use rocmforge::ffi::status::rocmforge_last_error;
use rocmforge::ffi::status::rocmforge_status::{self, *};
use rocmforge::ffi::tokenizer::*;
use std::ffi::{c_char, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub type Status = rocmforge_status;

/// A failed call: its status and the thread's last-error message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: Status,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message)
    }
}

pub fn last_error() -> String {
    // SAFETY: never NULL; valid until this thread's next library call.
    unsafe { CStr::from_ptr(rocmforge_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// `Ok(())` for ROCMFORGE_OK, else the status with the thread's message.
pub fn check(status: Status) -> Result<(), Failure> {
    if status == ROCMFORGE_OK {
        Ok(())
    } else {
        Err(Failure {
            status,
            message: last_error(),
        })
    }
}

/// Panics with the library's message unless `status` is OK.
#[track_caller]
pub fn ok(status: Status) {
    if let Err(f) = check(status) {
        panic!("expected ROCMFORGE_OK, got {f}");
    }
}

/// A path as the NUL-terminated bytes C receives (POSIX paths are bytes, not UTF-8).
pub fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

pub struct Model(pub *mut rocmforge_model);

// SAFETY: a model is immutable and documented as shareable between threads.
unsafe impl Send for Model {}
// SAFETY: as above.
unsafe impl Sync for Model {}

impl Model {
    /// Loads with the CPU backend.
    pub fn load(path: &Path, use_mmap: bool) -> Result<Model, Failure> {
        Model::load_on(path, use_mmap, ROCMFORGE_BACKEND_CPU)
    }

    pub fn load_on(path: &Path, use_mmap: bool, backend: i32) -> Result<Model, Failure> {
        let mut params = std::ptr::null_mut();
        let c = c_path(path);
        let mut model = std::ptr::null_mut();
        // SAFETY: valid out-pointers; the params object is live until freed below.
        let status = unsafe {
            ok(rocmforge_model_params_create(&mut params));
            ok(rocmforge_model_params_set_use_mmap(params, use_mmap));
            ok(rocmforge_model_params_set_backend(params, backend));
            let status = rocmforge_model_load(c.as_ptr(), params, &mut model);
            let failure = check(status);
            rocmforge_model_params_free(params);
            failure
        };
        status.map(|()| {
            assert!(!model.is_null());
            Model(model)
        })
    }

    pub fn n_vocab(&self) -> usize {
        let mut n = 0u64;
        // SAFETY: live model, valid out-pointer.
        ok(unsafe { rocmforge_model_n_vocab(self.0, &mut n) });
        n as usize
    }

    /// Token ids of `text` (with BOS as the model asks).
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        let mut buf = vec![0i32; text.len() + 8];
        let mut n = 0usize;
        // SAFETY: text readable for its length; buffer of buf.len() ids.
        ok(unsafe {
            rocmforge_tokenize(
                self.0,
                text.as_ptr().cast(),
                text.len(),
                true,
                false,
                buf.as_mut_ptr(),
                buf.len(),
                &mut n,
            )
        });
        buf.truncate(n);
        buf
    }

    /// Renders one user message with `template` (None = the model's own).
    pub fn chat_apply(&self, template: Option<&str>) -> Result<String, Failure> {
        let template = template.map(|t| CString::new(t).unwrap());
        let role = CString::new("user").unwrap();
        let content = CString::new("Hello").unwrap();
        let (roles, contents) = ([role.as_ptr()], [content.as_ptr()]);
        let mut buf = vec![0 as c_char; 1 << 16];
        let mut n = 0usize;
        // SAFETY: arrays of one valid string each; buffer of buf.len() bytes.
        let status = unsafe {
            rocmforge_chat_apply(
                self.0,
                template.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
                roles.as_ptr(),
                contents.as_ptr(),
                1,
                true,
                buf.as_mut_ptr(),
                buf.len(),
                &mut n,
            )
        };
        check(status)?;
        // SAFETY: NUL-terminated on success.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { rocmforge_model_free(self.0) }
    }
}

/// Context sizes for [`Ctx::new`]; 0 = the library's default for n_ctx and n_threads.
#[derive(Debug, Clone, Copy)]
pub struct CtxOpts {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_seq_max: u32,
    pub n_threads: u32,
}

impl Default for CtxOpts {
    fn default() -> Self {
        CtxOpts {
            n_ctx: 256,
            n_batch: 256,
            n_seq_max: 1,
            n_threads: 2,
        }
    }
}

pub struct Ctx(pub *mut rocmforge_context);

// SAFETY: the library guards a context with a try-lock (ROCMFORGE_ERR_BUSY) and allows
// rocmforge_context_cancel from any thread; sharing it is what the abuse tests check.
unsafe impl Send for Ctx {}
// SAFETY: as above.
unsafe impl Sync for Ctx {}

impl Ctx {
    pub fn new(model: &Model, o: CtxOpts) -> Result<Ctx, Failure> {
        let mut params = std::ptr::null_mut();
        let mut ctx = std::ptr::null_mut();
        // SAFETY: valid out-pointers; params live until freed below.
        let result = unsafe {
            ok(rocmforge_context_params_create(&mut params));
            ok(rocmforge_context_params_set_n_ctx(params, o.n_ctx));
            ok(rocmforge_context_params_set_n_batch(params, o.n_batch));
            ok(rocmforge_context_params_set_n_seq_max(params, o.n_seq_max));
            ok(rocmforge_context_params_set_n_threads(params, o.n_threads));
            let r = check(rocmforge_context_create(model.0, params, &mut ctx));
            rocmforge_context_params_free(params);
            r
        };
        result.map(|()| Ctx(ctx))
    }

    pub fn eval(&self, tokens: &[i32], seq: i32) -> Status {
        // SAFETY: live context; tokens readable for their length.
        unsafe { rocmforge_context_eval(self.0, tokens.as_ptr(), tokens.len(), seq) }
    }

    pub fn decode(&self, batch: &Batch) -> Status {
        // SAFETY: live handles.
        unsafe { rocmforge_context_decode(self.0, batch.0) }
    }

    pub fn cancel(&self) -> Status {
        // SAFETY: live context.
        unsafe { rocmforge_context_cancel(self.0) }
    }

    /// rocmforge_kv_seq_pos_max, or its failure.
    pub fn try_pos_max(&self, seq: i32) -> Result<i32, Failure> {
        let mut p = 0;
        // SAFETY: live context, valid out-pointer.
        check(unsafe { rocmforge_kv_seq_pos_max(self.0, seq, &mut p) })?;
        Ok(p)
    }

    #[track_caller]
    pub fn pos_max(&self, seq: i32) -> i32 {
        self.try_pos_max(seq).unwrap_or_else(|f| panic!("{f}"))
    }

    pub fn seq_remove(&self, seq: i32, p0: i32, p1: i32) -> Status {
        // SAFETY: live context.
        unsafe { rocmforge_kv_seq_remove(self.0, seq, p0, p1) }
    }

    pub fn kv_clear(&self) -> Status {
        // SAFETY: live context.
        unsafe { rocmforge_kv_clear(self.0) }
    }

    /// A copy of the logits of batch index `index` (-1 = last).
    pub fn logits(&self, index: i32) -> Result<Vec<f32>, Failure> {
        let mut p = std::ptr::null();
        let mut n = 0usize;
        // SAFETY: live context, valid out-pointers.
        check(unsafe { rocmforge_context_logits(self.0, index, &mut p, &mut n) })?;
        // SAFETY: n floats valid until the next eval/decode on this context, which cannot run
        // before the copy (callers using this helper do not share the context meanwhile).
        Ok(unsafe { std::slice::from_raw_parts(p, n) }.to_vec())
    }

    /// The most likely next token after the last eval (ties: lowest id).
    #[track_caller]
    pub fn greedy(&self) -> i32 {
        let logits = self.logits(-1).unwrap_or_else(|f| panic!("{f}"));
        argmax(&logits)
    }

    /// rocmforge_state_save through the two-call size protocol.
    pub fn state(&self, seq: i32) -> Result<Vec<u8>, Failure> {
        let mut n = 0usize;
        // SAFETY: size query: NULL buffer of capacity 0.
        let status = unsafe { rocmforge_state_save(self.0, seq, std::ptr::null_mut(), 0, &mut n) };
        if status != ROCMFORGE_ERR_BUFFER_TOO_SMALL {
            check(status)?;
        }
        let mut buf = vec![0u8; n];
        // SAFETY: buffer of n bytes.
        check(unsafe { rocmforge_state_save(self.0, seq, buf.as_mut_ptr(), n, &mut n) })?;
        buf.truncate(n);
        Ok(buf)
    }

    pub fn state_load(&self, seq: i32, blob: &[u8]) -> Status {
        // SAFETY: live context; blob readable for its length.
        unsafe { rocmforge_state_load(self.0, seq, blob.as_ptr(), blob.len()) }
    }

    pub fn state_save_file(&self, seq: i32, path: &Path) -> Status {
        let c = c_path(path);
        // SAFETY: live context, NUL-terminated path.
        unsafe { rocmforge_state_save_file(self.0, seq, c.as_ptr()) }
    }

    pub fn state_load_file(&self, seq: i32, path: &Path) -> Status {
        let c = c_path(path);
        // SAFETY: live context, NUL-terminated path.
        unsafe { rocmforge_state_load_file(self.0, seq, c.as_ptr()) }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once, no thread uses it any more.
        unsafe { rocmforge_context_free(self.0) }
    }
}

pub fn argmax(logits: &[f32]) -> i32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as i32
}

pub struct Sampler(pub *mut rocmforge_sampler);

// SAFETY: guarded by the library's try-lock (ROCMFORGE_ERR_BUSY).
unsafe impl Send for Sampler {}
// SAFETY: as above.
unsafe impl Sync for Sampler {}

impl Sampler {
    pub fn new() -> Sampler {
        let mut s = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        ok(unsafe { rocmforge_sampler_create(&mut s) });
        Sampler(s)
    }

    pub fn sample(&self, ctx: &Ctx, index: i32) -> Result<i32, Failure> {
        let mut t = -1;
        // SAFETY: live handles, valid out-pointer.
        check(unsafe { rocmforge_sampler_sample(self.0, ctx.0, index, &mut t) })?;
        Ok(t)
    }

    pub fn accept(&self, token: i32) -> Status {
        // SAFETY: live sampler.
        unsafe { rocmforge_sampler_accept(self.0, token) }
    }

    pub fn reset(&self) -> Status {
        // SAFETY: live sampler.
        unsafe { rocmforge_sampler_reset(self.0) }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { rocmforge_sampler_free(self.0) }
    }
}

pub struct Batch(pub *mut rocmforge_batch);

// SAFETY: guarded by the library's try-lock (ROCMFORGE_ERR_BUSY).
unsafe impl Send for Batch {}
// SAFETY: as above.
unsafe impl Sync for Batch {}

impl Batch {
    pub fn new(capacity: u32) -> Result<Batch, Failure> {
        let mut b = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { rocmforge_batch_create(capacity, &mut b) })?;
        Ok(Batch(b))
    }

    pub fn add(&self, token: i32, pos: i32, seq: i32, logits: bool) -> Status {
        // SAFETY: live batch.
        unsafe { rocmforge_batch_add(self.0, token, pos, seq, logits) }
    }

    pub fn clear(&self) -> Status {
        // SAFETY: live batch.
        unsafe { rocmforge_batch_clear(self.0) }
    }

    pub fn size(&self) -> Result<usize, Failure> {
        let mut n = 0;
        // SAFETY: live batch, valid out-pointer.
        check(unsafe { rocmforge_batch_size(self.0, &mut n) })?;
        Ok(n)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { rocmforge_batch_free(self.0) }
    }
}

/// Whether a GPU backend is built in and a device is present.
pub fn gpu_available() -> bool {
    let mut built = false;
    let mut n = 0usize;
    // SAFETY: valid out-pointers.
    unsafe {
        ok(rocmforge::ffi::device::rocmforge_gpu_built_in(&mut built));
        built && rocmforge::ffi::device::rocmforge_device_count(&mut n) == ROCMFORGE_OK && n > 0
    }
}

/// Small deterministic generator (xorshift64*), so every random case can be replayed from the
/// seed the test prints.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `ROCMFORGE_ABUSE_SEED` when set, else from the clock; prints the seed.
    pub fn from_env(what: &str) -> Rng {
        let seed = std::env::var("ROCMFORGE_ABUSE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: ROCMFORGE_ABUSE_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
