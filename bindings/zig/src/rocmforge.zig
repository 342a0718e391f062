//! Zig bindings for ROCmForge's C API (librocmforge + rocmforge.h, translated by the build
//! system's translate-c into the `c` import).
//!
//! A thin layer: the C handles become structs with `deinit`, every status becomes a member of
//! `Error` (the detailed message of the calling thread's last failure is `lastError()`), and
//! buffers are slices: the `...Into` functions fill a caller's slice and return the part
//! written, the others allocate with the caller's allocator.
//!
//! Threads, as in C: a `Model` is immutable and shared freely; a `Context`, `Sampler` or `Batch`
//! is used by one thread at a time (a concurrent call fails with `error.Busy`), except
//! `Context.cancel`, which any thread may call while the context lives.
const std = @import("std");

/// The translated header, for what this layer does not wrap.
pub const c = @import("c");

/// The library's statuses, one error each (`error.OutOfMemory` is the allocator's too).
pub const Error = error{
    NullPointer,
    InvalidArgument,
    BufferTooSmall,
    InvalidToken,
    InvalidSequence,
    Busy,
    ContextFull,
    Cancelled,
    Poisoned,
    Internal,
    Io,
    InvalidModel,
    Unsupported,
    Tokenizer,
    OutOfMemory,
    BackendUnavailable,
    NoChatTemplate,
    Template,
    NotFound,
    Gpu,
    /// A status this binding does not know (a newer library).
    UnknownStatus,
};

/// The status codes behind `Error`, in their ABI order (index = status number).
const status_errors = [_]Error{
    error.NullPointer,     error.InvalidArgument, error.BufferTooSmall, error.InvalidToken,
    error.InvalidSequence, error.Busy,            error.ContextFull,    error.Cancelled,
    error.Poisoned,        error.Internal,        error.Io,             error.InvalidModel,
    error.Unsupported,     error.Tokenizer,       error.OutOfMemory,    error.BackendUnavailable,
    error.NoChatTemplate,  error.Template,        error.NotFound,       error.Gpu,
};

comptime {
    std.debug.assert(c.ROCMFORGE_ERR_NULL_POINTER == 1 and c.ROCMFORGE_ERR_GPU == status_errors.len);
}

/// The error of a status (`{}` for ROCMFORGE_OK).
pub fn check(status: c.rocmforge_status) Error!void {
    if (status == c.ROCMFORGE_OK) return;
    if (status < 1 or status > status_errors.len) return error.UnknownStatus;
    return status_errors[@intCast(status - 1)];
}

/// The status number of an error from this module.
pub fn statusOf(err: Error) c.rocmforge_status {
    for (status_errors, 1..) |e, i| {
        if (e == err) return @intCast(i);
    }
    return -1;
}

/// The library's static description of an error's status.
pub fn describe(err: Error) [:0]const u8 {
    return std.mem.span(c.rocmforge_status_string(statusOf(err)));
}

/// The detailed message of the calling thread's last failed call ("" after a success); valid
/// until this thread's next call into the library.
pub fn lastError() [:0]const u8 {
    return std.mem.span(c.rocmforge_last_error());
}

/// The loaded library's version string ("0.1.0").
pub fn version() [:0]const u8 {
    return std.mem.span(c.rocmforge_version_string());
}

/// Whether the library was built with a GPU backend.
pub fn gpuBuiltIn() bool {
    var out = false;
    check(c.rocmforge_gpu_built_in(&out)) catch return false;
    return out;
}

/// The number of GPUs present (0 without a GPU backend, driver or device).
pub fn deviceCount() Error!usize {
    var n: usize = 0;
    try check(c.rocmforge_device_count(&n));
    return n;
}

/// The name of GPU `index` into `buf` (error.NotFound for a missing device).
pub fn deviceName(index: usize, buf: []u8, needed: *usize) Error![]u8 {
    return intoBuffer(buf, needed, c.rocmforge_device_name, .{index});
}

/// What a model file plus one context will need, in bytes.
pub const MemoryEstimate = struct { weights: u64, kv_cache: u64, compute: u64, total: u64 };

/// Estimates the memory of a model file plus a context with `params`, reading only the
/// file's header and metadata.
pub fn estimateMemory(path: [:0]const u8, params: ContextParams) Error!MemoryEstimate {
    const p = try params.create();
    defer c.rocmforge_context_params_free(p);
    var est = std.mem.zeroes(c.rocmforge_memory_estimate);
    est.struct_size = @sizeOf(c.rocmforge_memory_estimate);
    try check(c.rocmforge_estimate_memory(path.ptr, p, &est));
    return .{ .weights = est.weights_bytes, .kv_cache = est.kv_cache_bytes, .compute = est.compute_bytes, .total = est.total_bytes };
}

/// Where a model computes.
pub const Backend = enum(i32) {
    auto = c.ROCMFORGE_BACKEND_AUTO,
    cpu = c.ROCMFORGE_BACKEND_CPU,
    gpu = c.ROCMFORGE_BACKEND_GPU,
};

/// A message's level, most severe first; as a level to set (`setLogLevel`,
/// `Context.setLogLevel`) each lets through its own messages and the more severe ones.
pub const LogLevel = enum(i32) {
    err = c.ROCMFORGE_LOG_ERROR,
    warn = c.ROCMFORGE_LOG_WARN,
    /// The default: load and context summaries and warnings, no line per eval.
    info = c.ROCMFORGE_LOG_INFO,
    /// Adds a line per eval and decode.
    debug = c.ROCMFORGE_LOG_DEBUG,
    /// As a level to set: nothing gets through.
    none = c.ROCMFORGE_LOG_NONE,
    /// For `Context.setLogLevel` only: follow the process-wide level (the default).
    global = c.ROCMFORGE_LOG_GLOBAL,
    _,
};

/// Sets the process-wide log level (`.none` to `.debug`; `.info` by default), for messages not
/// tied to a context and contexts without their own level. Any thread.
pub fn setLogLevel(level: LogLevel) Error!void {
    try check(c.rocmforge_set_log_level(@backingInt(level)));
}

/// A C log callback and its user data; make one with `logCallback`.
pub const LogCallback = struct {
    func: c.rocmforge_log_callback,
    user_data: ?*anyopaque,
};

/// Wraps `func(ctx, level, message)` as a C log callback (a trampoline made at compile time).
pub fn logCallback(
    comptime T: type,
    ctx: *T,
    comptime func: fn (ctx: *T, level: LogLevel, message: [:0]const u8) void,
) LogCallback {
    const Trampoline = struct {
        fn call(level: i32, message: [*c]const u8, user_data: ?*anyopaque) callconv(.c) void {
            func(@ptrCast(@alignCast(user_data)), @fromBackingInt(@intCast(level)), std.mem.span(message));
        }
    };
    return .{ .func = Trampoline.call, .user_data = ctx };
}

/// Sets (or with null removes) the process-wide log callback: messages not tied to a context,
/// and those of contexts without their own. It may be called from any thread at once.
pub fn setLogCallback(callback: ?LogCallback) Error!void {
    const cb = callback orelse LogCallback{ .func = null, .user_data = null };
    try check(c.rocmforge_set_log_callback(cb.func, cb.user_data));
}

/// A C load-progress callback and its user data; make one with `progressCallback`.
pub const ProgressCallback = struct {
    func: c.rocmforge_progress_callback,
    user_data: ?*anyopaque,
};

/// Wraps `func(ctx, fraction) bool` (false cancels the load) as a C progress callback.
pub fn progressCallback(
    comptime T: type,
    ctx: *T,
    comptime func: fn (ctx: *T, fraction: f32) bool,
) ProgressCallback {
    const Trampoline = struct {
        fn call(fraction: f32, user_data: ?*anyopaque) callconv(.c) bool {
            return func(@ptrCast(@alignCast(user_data)), fraction);
        }
    };
    return .{ .func = Trampoline.call, .user_data = ctx };
}

/// Options of `Model.load`; the defaults are the library's.
pub const ModelParams = struct {
    backend: Backend = .auto,
    device: i32 = 0,
    use_mmap: bool = true,
    /// Called on the loading thread; its user data must live until `load` returns.
    progress: ?ProgressCallback = null,
};

/// A C quantize-progress callback and its user data; make one with `quantizeProgressCallback`.
pub const QuantizeProgressCallback = struct {
    func: c.rocmforge_quantize_progress_callback,
    user_data: ?*anyopaque,
};

/// Wraps `func(ctx, done, total) bool` (tensors written so far and their total; false cancels
/// the quantize) as a C quantize-progress callback.
pub fn quantizeProgressCallback(
    comptime T: type,
    ctx: *T,
    comptime func: fn (ctx: *T, done: usize, total: usize) bool,
) QuantizeProgressCallback {
    const Trampoline = struct {
        fn call(done: usize, total: usize, user_data: ?*anyopaque) callconv(.c) bool {
            return func(@ptrCast(@alignCast(user_data)), done, total);
        }
    };
    return .{ .func = Trampoline.call, .user_data = ctx };
}

/// Options of `quantize`; the defaults are the library's (llama.cpp's Q4_K_M mix, all cores).
pub const QuantizeParams = struct {
    /// llama-quantize's name of the target, in any case: the mixes Q2_K, Q3_K_S, Q3_K_M,
    /// Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, and F16,
    /// BF16, F32; or a llama_ftype number ("15"). null keeps Q4_K_M.
    target: ?[:0]const u8 = null,
    /// Threads (0: all cores; at most 1024); the output does not depend on it.
    threads: u32 = 0,
    /// Accept an already quantized input (dequantized, then quantized again); without it such
    /// an input is `error.InvalidArgument` naming the tensor.
    allow_requantize: bool = false,
    /// Every quantizable tensor in the target's main type (llama-quantize's --pure).
    pure: bool = false,
    /// Called on the calling thread after each tensor; its user data must live until
    /// `quantize` returns.
    progress: ?QuantizeProgressCallback = null,
};

/// Writes the GGUF model at `input`, quantized as `params` say, to a new file at `output`
/// (replaced if it exists), as llama.cpp's llama_model_quantize does. The same input and
/// params give the same bytes. On any error, `error.Cancelled` from the progress callback
/// included, no file is left at `output` (an existing one is kept).
pub fn quantize(input: [:0]const u8, output: [:0]const u8, params: QuantizeParams) Error!void {
    var p: ?*c.rocmforge_quantize_params = null;
    try check(c.rocmforge_quantize_params_create(&p));
    defer c.rocmforge_quantize_params_free(p);
    if (params.target) |t| try check(c.rocmforge_quantize_params_set_type(p, t.ptr));
    const threads = std.math.cast(i32, params.threads) orelse return error.InvalidArgument;
    try check(c.rocmforge_quantize_params_set_threads(p, threads));
    try check(c.rocmforge_quantize_params_set_allow_requantize(p, params.allow_requantize));
    try check(c.rocmforge_quantize_params_set_pure(p, params.pure));
    if (params.progress) |cb| try check(c.rocmforge_quantize_params_set_progress(p, cb.func, cb.user_data));
    try check(c.rocmforge_model_quantize(input.ptr, output.ptr, p));
}

/// Options of `Context.init`; null fields keep the library's defaults (4096 cells, batch 512,
/// one sequence, all cores). `n_ctx = 0` asks for the model's training length.
pub const ContextParams = struct {
    n_ctx: ?u32 = null,
    n_batch: ?u32 = null,
    n_seq_max: ?u32 = null,
    n_threads: ?u32 = null,

    fn create(self: ContextParams) Error!*c.rocmforge_context_params {
        var p: ?*c.rocmforge_context_params = null;
        try check(c.rocmforge_context_params_create(&p));
        errdefer c.rocmforge_context_params_free(p);
        if (self.n_ctx) |v| try check(c.rocmforge_context_params_set_n_ctx(p, v));
        if (self.n_batch) |v| try check(c.rocmforge_context_params_set_n_batch(p, v));
        if (self.n_seq_max) |v| try check(c.rocmforge_context_params_set_n_seq_max(p, v));
        if (self.n_threads) |v| try check(c.rocmforge_context_params_set_n_threads(p, v));
        return p.?;
    }
};

/// Runs a function of the two-call size protocol into `buf`: the part written, or
/// `error.BufferTooSmall` (then `needed.*` holds the size without the NUL).
fn intoBuffer(buf: []u8, needed: *usize, f: anytype, args: anytype) Error![]u8 {
    try check(@call(.auto, f, args ++ .{ buf.ptr, buf.len, needed }));
    return buf[0..needed.*];
}

/// The same with a buffer from `gpa`, sized by a first call; the caller frees the result.
fn allocBuffer(gpa: std.mem.Allocator, f: anytype, args: anytype) (Error || std.mem.Allocator.Error)![]u8 {
    var needed: usize = 0;
    const first = @call(.auto, f, args ++ .{ @as([*c]u8, null), @as(usize, 0), &needed });
    if (first != c.ROCMFORGE_ERR_BUFFER_TOO_SMALL) try check(first);
    const buf = try gpa.alloc(u8, needed + 1);
    errdefer gpa.free(buf);
    try check(@call(.auto, f, args ++ .{ buf.ptr, buf.len, &needed }));
    // The NUL is not part of the result; shrink so `free` sees the right length.
    return gpa.realloc(buf, needed) catch buf[0..needed];
}

/// A loaded GGUF model; immutable and shared freely between threads and contexts.
pub const Model = struct {
    handle: *c.rocmforge_model,

    /// Loads a model file (`path` is taken as bytes).
    pub fn load(path: [:0]const u8, params: ModelParams) Error!Model {
        var p: ?*c.rocmforge_model_params = null;
        try check(c.rocmforge_model_params_create(&p));
        defer c.rocmforge_model_params_free(p);
        try check(c.rocmforge_model_params_set_backend(p, @backingInt(params.backend)));
        try check(c.rocmforge_model_params_set_device(p, params.device));
        try check(c.rocmforge_model_params_set_use_mmap(p, params.use_mmap));
        if (params.progress) |cb| try check(c.rocmforge_model_params_set_progress_callback(p, cb.func, cb.user_data));
        var m: ?*c.rocmforge_model = null;
        try check(c.rocmforge_model_load(path.ptr, p, &m));
        return .{ .handle = m.? };
    }

    /// Frees the model; contexts made from it keep the weights and stay usable.
    pub fn deinit(self: Model) void {
        c.rocmforge_model_free(self.handle);
    }

    fn number(self: Model, f: anytype) u64 {
        var out: u64 = 0;
        check(f(self.handle, &out)) catch return 0; // only a poisoned model fails
        return out;
    }

    pub fn nVocab(self: Model) usize {
        return @intCast(self.number(c.rocmforge_model_n_vocab));
    }
    pub fn nCtxTrain(self: Model) usize {
        return @intCast(self.number(c.rocmforge_model_n_ctx_train));
    }
    pub fn nEmbd(self: Model) usize {
        return @intCast(self.number(c.rocmforge_model_n_embd));
    }
    pub fn nLayer(self: Model) usize {
        return @intCast(self.number(c.rocmforge_model_n_layer));
    }
    pub fn sizeBytes(self: Model) u64 {
        return self.number(c.rocmforge_model_size_bytes);
    }
    pub fn nParams(self: Model) u64 {
        return self.number(c.rocmforge_model_n_params);
    }

    fn string(self: Model, f: anytype) Error![:0]const u8 {
        var out: [*c]const u8 = null;
        try check(f(self.handle, &out));
        return std.mem.span(out);
    }

    /// The architecture name ("llama"); owned by the model.
    pub fn architecture(self: Model) Error![:0]const u8 {
        return self.string(c.rocmforge_model_architecture);
    }
    /// general.name, or error.NotFound; owned by the model.
    pub fn name(self: Model) Error![:0]const u8 {
        return self.string(c.rocmforge_model_name);
    }
    /// The Jinja chat template, or error.NoChatTemplate; owned by the model.
    pub fn chatTemplate(self: Model) Error![:0]const u8 {
        return self.string(c.rocmforge_model_chat_template);
    }

    /// Any GGUF metadata value as text (error.NotFound for a missing key); the caller frees it.
    pub fn meta(self: Model, gpa: std.mem.Allocator, key: [:0]const u8) (Error || std.mem.Allocator.Error)![]u8 {
        return allocBuffer(gpa, c.rocmforge_model_meta, .{ self.handle, key.ptr });
    }

    /// Where the model computes (what `.auto` resolved to).
    pub fn backend(self: Model) Error!Backend {
        var out: i32 = 0;
        try check(c.rocmforge_model_backend(self.handle, &out));
        return @fromBackingInt(@intCast(out));
    }

    /// Tokenizes UTF-8 `text` into `tokens`; returns the ids written, or error.BufferTooSmall
    /// with `needed.*` set. `add_special` adds BOS/EOS as the model asks; `parse_special`
    /// turns special-token texts ("<|im_start|>") into their ids.
    pub fn tokenizeInto(self: Model, text: []const u8, add_special: bool, parse_special: bool, tokens: []i32, needed: *usize) Error![]i32 {
        try check(c.rocmforge_tokenize(self.handle, text.ptr, text.len, add_special, parse_special, tokens.ptr, tokens.len, needed));
        return tokens[0..needed.*];
    }

    /// Tokenizes into a slice from `gpa` (the caller frees it).
    pub fn tokenize(self: Model, gpa: std.mem.Allocator, text: []const u8, add_special: bool, parse_special: bool) (Error || std.mem.Allocator.Error)![]i32 {
        var n: usize = 0;
        const first = c.rocmforge_tokenize(self.handle, text.ptr, text.len, add_special, parse_special, null, 0, &n);
        if (first != c.ROCMFORGE_ERR_BUFFER_TOO_SMALL) try check(first);
        const tokens = try gpa.alloc(i32, n);
        errdefer gpa.free(tokens);
        _ = try self.tokenizeInto(text, add_special, parse_special, tokens, &n);
        return tokens;
    }

    /// The bytes of one token into `buf` (a piece may hold part of a UTF-8 character;
    /// control tokens render only when `special`). 64 bytes hold any piece of the usual
    /// vocabularies; error.BufferTooSmall sets `needed.*` otherwise.
    pub fn tokenToPiece(self: Model, token: i32, special: bool, buf: []u8, needed: *usize) Error![]u8 {
        return intoBuffer(buf, needed, c.rocmforge_token_to_piece, .{ self.handle, token, special });
    }

    /// Token ids back to text into `buf` (error.BufferTooSmall sets `needed.*`).
    pub fn detokenizeInto(self: Model, tokens: []const i32, special: bool, buf: []u8, needed: *usize) Error![]u8 {
        return intoBuffer(buf, needed, c.rocmforge_detokenize, .{ self.handle, tokens.ptr, tokens.len, special });
    }

    /// Token ids back to text from `gpa` (the caller frees it).
    pub fn detokenize(self: Model, gpa: std.mem.Allocator, tokens: []const i32, special: bool) (Error || std.mem.Allocator.Error)![]u8 {
        return allocBuffer(gpa, c.rocmforge_detokenize, .{ self.handle, tokens.ptr, tokens.len, special });
    }

    pub const Special = enum(i32) {
        bos = c.ROCMFORGE_TOKEN_BOS,
        eos = c.ROCMFORGE_TOKEN_EOS,
        eot = c.ROCMFORGE_TOKEN_EOT,
        pad = c.ROCMFORGE_TOKEN_PAD,
        unk = c.ROCMFORGE_TOKEN_UNK,
    };

    /// The id of a special token, or error.NotFound.
    pub fn specialToken(self: Model, which: Special) Error!i32 {
        var out: i32 = 0;
        try check(c.rocmforge_token_special(self.handle, @backingInt(which), &out));
        return out;
    }

    /// Whether generation should stop at `token` (EOS, end of turn, ...).
    pub fn isEog(self: Model, token: i32) Error!bool {
        var out = false;
        try check(c.rocmforge_token_is_eog(self.handle, token, &out));
        return out;
    }

    pub const ChatMessage = struct {
        role: [:0]const u8,
        content: [:0]const u8,
    };

    /// Formats a conversation with the model's chat template (`template` null) or the given
    /// Jinja one, as Hugging Face's apply_chat_template does; the caller frees the text.
    /// Tokenize it with `parse_special = true`.
    pub fn chatApply(
        self: Model,
        gpa: std.mem.Allocator,
        template: ?[:0]const u8,
        messages: []const ChatMessage,
        add_generation_prompt: bool,
    ) (Error || std.mem.Allocator.Error)![]u8 {
        const roles = try gpa.alloc([*c]const u8, messages.len);
        defer gpa.free(roles);
        const contents = try gpa.alloc([*c]const u8, messages.len);
        defer gpa.free(contents);
        for (messages, roles, contents) |m, *r, *t| {
            r.* = m.role.ptr;
            t.* = m.content.ptr;
        }
        const tmpl: [*c]const u8 = if (template) |t| t.ptr else null;
        return allocBuffer(gpa, c.rocmforge_chat_apply, .{ self.handle, tmpl, roles.ptr, contents.ptr, messages.len, add_generation_prompt });
    }
};

/// A batch of tokens for `Context.decode`, each with its position, sequence and logits flag.
pub const Batch = struct {
    handle: *c.rocmforge_batch,

    pub fn init(capacity: u32) Error!Batch {
        var b: ?*c.rocmforge_batch = null;
        try check(c.rocmforge_batch_create(capacity, &b));
        return .{ .handle = b.? };
    }

    pub fn deinit(self: Batch) void {
        c.rocmforge_batch_free(self.handle);
    }

    /// Appends a token; a full batch is error.InvalidArgument.
    pub fn add(self: Batch, token: i32, pos: i32, seq: i32, want_logits: bool) Error!void {
        try check(c.rocmforge_batch_add(self.handle, token, pos, seq, want_logits));
    }

    pub fn clear(self: Batch) Error!void {
        try check(c.rocmforge_batch_clear(self.handle));
    }

    pub fn len(self: Batch) usize {
        var n: usize = 0;
        check(c.rocmforge_batch_size(self.handle, &n)) catch return 0;
        return n;
    }
};

/// A KV cache over a model: evaluates tokens, holds logits.
pub const Context = struct {
    handle: *c.rocmforge_context,

    pub fn init(model: Model, params: ContextParams) Error!Context {
        const p = try params.create();
        defer c.rocmforge_context_params_free(p);
        var ctx: ?*c.rocmforge_context = null;
        try check(c.rocmforge_context_create(model.handle, p, &ctx));
        return .{ .handle = ctx.? };
    }

    pub fn deinit(self: Context) void {
        c.rocmforge_context_free(self.handle);
    }

    /// The effective sizes: KV cells, batch, sequences.
    pub fn sizes(self: Context) Error!struct { n_ctx: u32, n_batch: u32, n_seq_max: u32 } {
        var n_ctx: u32 = 0;
        var n_batch: u32 = 0;
        var n_seq: u32 = 0;
        try check(c.rocmforge_context_sizes(self.handle, &n_ctx, &n_batch, &n_seq));
        return .{ .n_ctx = n_ctx, .n_batch = n_batch, .n_seq_max = n_seq };
    }

    /// Appends tokens to sequence `seq` and computes the logits of the last one. On error
    /// (error.Cancelled included) the sequence is as it was.
    pub fn eval(self: Context, tokens: []const i32, seq: i32) Error!void {
        try check(c.rocmforge_context_eval(self.handle, tokens.ptr, tokens.len, seq));
    }

    /// Evaluates a batch (tokens of any sequences with their own positions).
    pub fn decode(self: Context, batch: Batch) Error!void {
        try check(c.rocmforge_context_decode(self.handle, batch.handle));
    }

    /// Asks the running (or the next) eval/decode to stop with error.Cancelled. Any thread;
    /// a request is never lost (one that comes after the running call's last check cancels
    /// the next call).
    pub fn cancel(self: Context) void {
        _ = c.rocmforge_context_cancel(self.handle);
    }

    /// The logits of token `index` of the last batch (-1: the last that asked for them),
    /// borrowed: valid until the next eval, decode, state load or deinit.
    pub fn logits(self: Context, index: i32) Error![]const f32 {
        var ptr: [*c]const f32 = null;
        var n: usize = 0;
        try check(c.rocmforge_context_logits(self.handle, index, &ptr, &n));
        return ptr[0..n];
    }

    /// Gives this context its own log callback (null removes it); it runs on the thread
    /// using the context, and its user data must live until replaced or deinit.
    pub fn setLogCallback(self: Context, callback: ?LogCallback) Error!void {
        const cb = callback orelse LogCallback{ .func = null, .user_data = null };
        try check(c.rocmforge_context_set_log_callback(self.handle, cb.func, cb.user_data));
    }

    /// Sets this context's own log level (`.none` to `.debug`), or with `.global` makes it
    /// follow the process-wide level again (the default).
    pub fn setLogLevel(self: Context, level: LogLevel) Error!void {
        try check(c.rocmforge_context_set_log_level(self.handle, @backingInt(level)));
    }

    pub fn kvClear(self: Context) Error!void {
        try check(c.rocmforge_kv_clear(self.handle));
    }
    /// Removes positions [p0, p1) of `seq` (-1: every sequence; negative bounds: open).
    pub fn kvSeqRemove(self: Context, seq: i32, p0: i32, p1: i32) Error!void {
        try check(c.rocmforge_kv_seq_remove(self.handle, seq, p0, p1));
    }
    /// Shares positions [p0, p1) of `src` with `dst`.
    pub fn kvSeqCopy(self: Context, src: i32, dst: i32, p0: i32, p1: i32) Error!void {
        try check(c.rocmforge_kv_seq_copy(self.handle, src, dst, p0, p1));
    }
    pub fn kvSeqKeep(self: Context, seq: i32) Error!void {
        try check(c.rocmforge_kv_seq_keep(self.handle, seq));
    }
    /// The largest position of `seq`, -1 when empty.
    pub fn kvSeqPosMax(self: Context, seq: i32) Error!i32 {
        var out: i32 = 0;
        try check(c.rocmforge_kv_seq_pos_max(self.handle, seq, &out));
        return out;
    }
    /// The smallest position of `seq` every layer still holds, -1 when empty: with
    /// sliding-window layers (Gemma 3), the oldest their ring kept.
    pub fn kvSeqPosMin(self: Context, seq: i32) Error!i32 {
        var out: i32 = 0;
        try check(c.rocmforge_kv_seq_pos_min(self.handle, seq, &out));
        return out;
    }

    /// The state of the whole context (`seq` = -1) or one sequence, from `gpa`.
    pub fn stateSave(self: Context, gpa: std.mem.Allocator, seq: i32) (Error || std.mem.Allocator.Error)![]u8 {
        var size: usize = 0;
        try check(c.rocmforge_state_size(self.handle, seq, &size));
        const buf = try gpa.alloc(u8, size);
        errdefer gpa.free(buf);
        var n: usize = 0;
        try check(c.rocmforge_state_save(self.handle, seq, buf.ptr, buf.len, &n));
        return buf;
    }

    /// Restores a state from `stateSave` (on error nothing changes).
    pub fn stateLoad(self: Context, seq: i32, state: []const u8) Error!void {
        try check(c.rocmforge_state_load(self.handle, seq, state.ptr, state.len));
    }

    pub fn stateSaveFile(self: Context, seq: i32, path: [:0]const u8) Error!void {
        try check(c.rocmforge_state_save_file(self.handle, seq, path.ptr));
    }

    pub fn stateLoadFile(self: Context, seq: i32, path: [:0]const u8) Error!void {
        try check(c.rocmforge_state_load_file(self.handle, seq, path.ptr));
    }
};

/// A sampler chain: stages in order, ending with `.greedy` or `.dist`.
pub const Sampler = struct {
    handle: *c.rocmforge_sampler,

    pub const Stage = union(enum) {
        greedy,
        /// Seeded draw from the distribution (`c.ROCMFORGE_SEED_RANDOM`: OS entropy).
        dist: u64,
        temperature: f32,
        top_k: i32,
        top_p: struct { p: f32, min_keep: u32 = 1 },
        min_p: struct { p: f32, min_keep: u32 = 1 },
        penalties: struct { last_n: u32 = 64, repeat: f32 = 1, frequency: f32 = 0, presence: f32 = 0 },
    };

    /// A chain of `stages` (may be empty: add more with `add`).
    pub fn init(stages: []const Stage) Error!Sampler {
        var s: ?*c.rocmforge_sampler = null;
        try check(c.rocmforge_sampler_create(&s));
        const self: Sampler = .{ .handle = s.? };
        errdefer self.deinit();
        for (stages) |stage| try self.add(stage);
        return self;
    }

    pub fn deinit(self: Sampler) void {
        c.rocmforge_sampler_free(self.handle);
    }

    /// Appends a stage; nothing may follow greedy or dist (error.InvalidArgument).
    pub fn add(self: Sampler, stage: Stage) Error!void {
        const h = self.handle;
        try check(switch (stage) {
            .greedy => c.rocmforge_sampler_add_greedy(h),
            .dist => |seed| c.rocmforge_sampler_add_dist(h, seed),
            .temperature => |t| c.rocmforge_sampler_add_temperature(h, t),
            .top_k => |k| c.rocmforge_sampler_add_top_k(h, k),
            .top_p => |a| c.rocmforge_sampler_add_top_p(h, a.p, a.min_keep),
            .min_p => |a| c.rocmforge_sampler_add_min_p(h, a.p, a.min_keep),
            .penalties => |a| c.rocmforge_sampler_add_penalties(h, a.last_n, a.repeat, a.frequency, a.presence),
        });
    }

    /// Picks a token from the logits of token `index` of `ctx`'s last batch (-1: the last
    /// that asked); does not accept it.
    pub fn sample(self: Sampler, ctx: Context, index: i32) Error!i32 {
        var out: i32 = 0;
        try check(c.rocmforge_sampler_sample(self.handle, ctx.handle, index, &out));
        return out;
    }

    /// Records a token appended to the sequence (for the penalties).
    pub fn accept(self: Sampler, token: i32) Error!void {
        try check(c.rocmforge_sampler_accept(self.handle, token));
    }

    pub fn reset(self: Sampler) Error!void {
        try check(c.rocmforge_sampler_reset(self.handle));
    }
};

test {
    _ = @import("tests.zig");
}
