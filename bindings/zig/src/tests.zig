//! Tests against the real library and the SmolLM2-135M-Instruct Q4_1 model named by
//! ROCMFORGE_MODEL (scripts/fetch-models.sh). Without it the model tests fail, unless
//! ROCMFORGE_SKIP_MODEL_TESTS=1 asks to skip them. ROCMFORGE_SIMPLE may name a built
//! examples-c/simple: the greedy test then compares with what that C program prints.
const std = @import("std");
const rf = @import("rocmforge.zig");
const testing = std.testing;

const prompt = "The capital of France is";

/// What examples-c/simple.c prints for `prompt` and 16 tokens (tests/ffi_c.rs checks that the
/// Rust library's greedy loop gives the same).
const simple_output = "The capital of France is Paris.\n\nThe United States has a population of approximately 311\n";

fn env(name: [*:0]const u8) ?[:0]const u8 {
    const value = std.c.getenv(name) orelse return null;
    const s = std.mem.span(value);
    return if (s.len == 0) null else s;
}

fn modelPath() ![:0]const u8 {
    if (env("ROCMFORGE_MODEL")) |path| return path;
    if (env("ROCMFORGE_SKIP_MODEL_TESTS")) |skip| {
        if (std.mem.eql(u8, skip, "1")) return error.SkipZigTest;
    }
    std.debug.print("set ROCMFORGE_MODEL to SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-models.sh), " ++
        "or ROCMFORGE_SKIP_MODEL_TESTS=1 to skip the model tests\n", .{});
    return error.ModelNotSet;
}

fn loadModel() !rf.Model {
    return rf.Model.load(try modelPath(), .{}) catch |err| {
        std.debug.print("load: {s}: {s}\n", .{ @errorName(err), rf.lastError() });
        return err;
    };
}

/// examples-c/simple.c's loop: the prompt, then up to `n` greedy pieces, then a newline.
fn generate(gpa: std.mem.Allocator, model: rf.Model, ctx: rf.Context, sampler: rf.Sampler, text: []const u8, n: usize) ![]u8 {
    var out: std.ArrayList(u8) = .empty;
    errdefer out.deinit(gpa);
    const tokens = try model.tokenize(gpa, text, true, true);
    defer gpa.free(tokens);
    try ctx.eval(tokens, 0);
    try out.appendSlice(gpa, text);
    var piece: [64]u8 = undefined;
    for (0..n) |_| {
        const next = try sampler.sample(ctx, -1);
        try sampler.accept(next);
        if (try model.isEog(next)) break;
        var len: usize = 0;
        try out.appendSlice(gpa, try model.tokenToPiece(next, false, &piece, &len));
        try ctx.eval(&.{next}, 0);
    }
    try out.append(gpa, '\n');
    return out.toOwnedSlice(gpa);
}

test "greedy text matches the C example" {
    const gpa = testing.allocator;
    const model = try loadModel();
    defer model.deinit();
    const ctx = try rf.Context.init(model, .{});
    defer ctx.deinit();
    const sampler = try rf.Sampler.init(&.{.greedy});
    defer sampler.deinit();
    const got = try generate(gpa, model, ctx, sampler, prompt, 16);
    defer gpa.free(got);

    if (env("ROCMFORGE_SIMPLE")) |exe| {
        const result = try std.process.run(gpa, testing.io, .{ .argv = &.{ exe, try modelPath(), prompt, "16" } });
        defer gpa.free(result.stdout);
        defer gpa.free(result.stderr);
        try testing.expectEqualStrings(result.stdout, got);
    } else {
        try testing.expectEqualStrings(simple_output, got);
    }
}

test "a missing file is error.Io with a message" {
    try testing.expectError(error.Io, rf.Model.load("/nonexistent/missing.gguf", .{}));
    try testing.expect(std.mem.indexOf(u8, rf.lastError(), "missing.gguf") != null);
    try testing.expectEqual(@as(i32, rf.c.ROCMFORGE_ERR_IO), rf.statusOf(error.Io));
    try testing.expect(rf.describe(error.Io).len > 0);
    try testing.expectError(error.Cancelled, rf.check(rf.c.ROCMFORGE_ERR_CANCELLED));
    try testing.expectError(error.UnknownStatus, rf.check(9999));
}

test "cancel: a pending request cancels the next eval, one from another thread the running one" {
    const gpa = testing.allocator;
    const model = try loadModel();
    defer model.deinit();
    const ctx = try rf.Context.init(model, .{});
    defer ctx.deinit();
    try ctx.eval(&.{ 1, 2, 3 }, 0);

    ctx.cancel();
    try testing.expectError(error.Cancelled, ctx.eval(&.{4}, 0));
    try testing.expectEqual(@as(i32, 2), try ctx.kvSeqPosMax(0));
    try ctx.eval(&.{4}, 0); // one request cancels one call
    try testing.expectEqual(@as(i32, 3), try ctx.kvSeqPosMax(0));
    // No sliding window: every layer holds the sequence from its first position.
    try testing.expectEqual(@as(i32, 0), try ctx.kvSeqPosMin(0));

    const sentence = "The quick brown fox jumps over the lazy dog. ";
    var long_text: [40 * sentence.len]u8 = undefined;
    for (0..40) |i| @memcpy(long_text[i * sentence.len ..][0..sentence.len], sentence);
    const long = try model.tokenize(gpa, &long_text, false, false);
    defer gpa.free(long);
    const canceller = try std.Thread.spawn(.{}, rf.Context.cancel, .{ctx});
    const result = ctx.eval(long, 0);
    canceller.join();
    try testing.expectError(error.Cancelled, result);
    try testing.expectEqual(@as(i32, 3), try ctx.kvSeqPosMax(0));
}

const Log = struct {
    count: usize = 0,
    debug: usize = 0,
    last_level: rf.LogLevel = .err,

    fn record(self: *Log, level: rf.LogLevel, message: [:0]const u8) void {
        _ = message;
        self.count += 1;
        if (level == .debug) self.debug += 1;
        self.last_level = level;
    }
};

const Progress = struct {
    calls: usize = 0,
    last: f32 = -1,
    monotonic: bool = true,
    stop: bool = false,

    fn update(self: *Progress, fraction: f32) bool {
        if (fraction < self.last) self.monotonic = false;
        self.last = fraction;
        self.calls += 1;
        return !self.stop;
    }
};

test "progress and log callbacks" {
    const path = try modelPath();
    var global: Log = .{};
    try rf.setLogCallback(rf.logCallback(Log, &global, Log.record));
    defer rf.setLogCallback(null) catch {};

    var progress: Progress = .{};
    const model = try rf.Model.load(path, .{ .progress = rf.progressCallback(Progress, &progress, Progress.update) });
    defer model.deinit();
    try testing.expect(progress.calls >= 2 and progress.monotonic and progress.last == 1);
    try testing.expect(global.count >= 1); // the backend choice

    var stopper: Progress = .{ .stop = true };
    try testing.expectError(error.Cancelled, rf.Model.load(path, .{ .progress = rf.progressCallback(Progress, &stopper, Progress.update) }));

    const ctx = try rf.Context.init(model, .{});
    defer ctx.deinit();
    var local: Log = .{};
    try ctx.setLogLevel(.debug); // the eval line
    try ctx.setLogCallback(rf.logCallback(Log, &local, Log.record));
    const before = global.count;
    try ctx.eval(&.{ 1, 2 }, 0);
    try testing.expect(local.count >= 1);
    try testing.expectEqual(before, global.count);
}

test "log levels: no debug line by default; process-wide or context debug; a context at error" {
    const model = try loadModel();
    defer model.deinit();
    var log: Log = .{};
    try rf.setLogCallback(rf.logCallback(Log, &log, Log.record));
    defer rf.setLogCallback(null) catch {};
    defer rf.setLogLevel(.info) catch {};

    const ctx = try rf.Context.init(model, .{ .n_ctx = 32 });
    defer ctx.deinit();
    try ctx.eval(&.{1}, 0);
    try testing.expectEqual(@as(usize, 0), log.debug);
    try rf.setLogLevel(.debug);
    try ctx.eval(&.{2}, 0);
    try testing.expectEqual(@as(usize, 1), log.debug);
    try ctx.setLogLevel(.err);
    try ctx.eval(&.{3}, 0);
    try testing.expectEqual(@as(usize, 1), log.debug);
    try rf.setLogLevel(.info);
    try ctx.setLogLevel(.debug);
    try ctx.eval(&.{4}, 0);
    try testing.expectEqual(@as(usize, 2), log.debug);
    try testing.expectError(error.InvalidArgument, rf.setLogLevel(.global));
}

test "text, chat and metadata" {
    const gpa = testing.allocator;
    const model = try loadModel();
    defer model.deinit();
    const tokens = try model.tokenize(gpa, "Hello, world!", false, false);
    defer gpa.free(tokens);
    const text = try model.detokenize(gpa, tokens, false);
    defer gpa.free(text);
    try testing.expectEqualStrings("Hello, world!", text);

    var small: [2]i32 = undefined;
    var needed: usize = 0;
    try testing.expectError(error.BufferTooSmall, model.tokenizeInto("Hello, world!", false, false, &small, &needed));
    try testing.expectEqual(tokens.len, needed);

    const eot = try model.specialToken(.eot);
    try testing.expect(try model.isEog(eot));
    try testing.expectEqualStrings("llama", try model.architecture());
    const arch = try model.meta(gpa, "general.architecture");
    defer gpa.free(arch);
    try testing.expectEqualStrings("llama", arch);
    try testing.expectError(error.NotFound, model.meta(gpa, "no.such.key"));
    try testing.expectEqual(@as(usize, 49152), model.nVocab());

    const chat = try model.chatApply(gpa, null, &.{.{ .role = "user", .content = "What is 2+2?" }}, true);
    defer gpa.free(chat);
    try testing.expect(std.mem.indexOf(u8, chat, "<|im_start|>user\nWhat is 2+2?<|im_end|>") != null);
    try testing.expect(std.mem.endsWith(u8, chat, "<|im_start|>assistant\n"));
    try testing.expectError(error.Template, model.chatApply(gpa, "{{ raise_exception('no') }}", &.{}, false));
}

test "seeded sampling repeats; nothing follows a terminal stage" {
    const gpa = testing.allocator;
    const model = try loadModel();
    defer model.deinit();
    const chain = [_]rf.Sampler.Stage{
        .{ .penalties = .{ .last_n = 64, .repeat = 1.1 } }, .{ .top_k = 40 },        .{ .top_p = .{ .p = 0.9 } },
        .{ .min_p = .{ .p = 0.05 } },                       .{ .temperature = 0.8 }, .{ .dist = 7 },
    };
    var texts: [2][]u8 = undefined;
    for (&texts) |*t| {
        const ctx = try rf.Context.init(model, .{});
        defer ctx.deinit();
        const sampler = try rf.Sampler.init(&chain);
        defer sampler.deinit();
        t.* = try generate(gpa, model, ctx, sampler, prompt, 8);
    }
    defer for (texts) |t| gpa.free(t);
    try testing.expectEqualStrings(texts[0], texts[1]);

    const greedy = try rf.Sampler.init(&.{.greedy});
    defer greedy.deinit();
    try testing.expectError(error.InvalidArgument, greedy.add(.{ .top_k = 5 }));
}

test "state save and load; batches match eval" {
    const gpa = testing.allocator;
    const model = try loadModel();
    defer model.deinit();
    const tokens = try model.tokenize(gpa, prompt, true, true);
    defer gpa.free(tokens);

    const ctx = try rf.Context.init(model, .{});
    defer ctx.deinit();
    try ctx.eval(tokens, 0);
    const want = try gpa.dupe(f32, try ctx.logits(-1));
    defer gpa.free(want);
    const state = try ctx.stateSave(gpa, -1);
    defer gpa.free(state);

    const other = try rf.Context.init(model, .{ .n_seq_max = 2, .n_ctx = 256 });
    defer other.deinit();
    try other.stateLoad(-1, state);
    try testing.expectEqualSlices(f32, want, try other.logits(-1));
    state[state.len / 2] ^= 1;
    try testing.expectError(error.InvalidArgument, other.stateLoad(-1, state));

    try other.kvClear();
    const batch = try rf.Batch.init(@intCast(2 * tokens.len));
    defer batch.deinit();
    for (0..2) |seq| {
        for (tokens, 0..) |tok, i| try batch.add(tok, @intCast(i), @intCast(seq), i == tokens.len - 1);
    }
    try testing.expectEqual(2 * tokens.len, batch.len());
    try other.decode(batch);
    for ([_]usize{ tokens.len - 1, 2 * tokens.len - 1 }) |index| {
        const got = try other.logits(@intCast(index));
        for (want, got) |w, g| try testing.expectApproxEqAbs(w, g, 1e-3);
    }
}

test "memory estimate and devices" {
    const est = try rf.estimateMemory(try modelPath(), .{ .n_ctx = 1024 });
    try testing.expect(est.weights > 0 and est.kv_cache > 0);
    try testing.expectEqual(est.weights + est.kv_cache + est.compute, est.total);
    const n = try rf.deviceCount();
    try testing.expect(n == 0 or rf.gpuBuiltIn());
    var buf: [128]u8 = undefined;
    var len: usize = 0;
    try testing.expectError(error.NotFound, rf.deviceName(n, &buf, &len));
    try testing.expect(std.mem.startsWith(u8, rf.version(), "0."));
}

/// Counts the quantize's progress calls; stops after `stop_after` tensors when set.
const QuantizeProgress = struct {
    calls: usize = 0,
    last_done: usize = 0,
    total: usize = 0,
    in_order: bool = true,
    stop_after: ?usize = null,

    fn update(self: *QuantizeProgress, done: usize, total: usize) bool {
        self.calls += 1;
        self.in_order = self.in_order and done == self.last_done + 1 and done <= total;
        self.last_done = done;
        self.total = total;
        return if (self.stop_after) |n| done < n else true;
    }
};

test "quantize: the file loads and generates; a cancel leaves no file" {
    const gpa = testing.allocator;
    const path = try modelPath();
    // A fresh directory of our own (under ROCMFORGE_SCRATCH, which tests/bindings.rs points
    // into target/, else /tmp), so that "no file left" can be checked by listing it.
    const io = testing.io;
    const cwd = std.Io.Dir.cwd();
    const dir_path = try std.fmt.allocPrint(gpa, "{s}/zig-quantize-{d}", .{ env("ROCMFORGE_SCRATCH") orelse "/tmp", std.c.getpid() });
    defer gpa.free(dir_path);
    cwd.deleteTree(io, dir_path) catch {};
    var dir = try cwd.createDirPathOpen(io, dir_path, .{ .open_options = .{ .iterate = true } });
    defer cwd.deleteTree(io, dir_path) catch {};
    defer dir.close(io);
    const out = try std.fmt.allocPrintSentinel(gpa, "{s}/q8_0.gguf", .{dir_path}, 0);
    defer gpa.free(out);
    const cancelled = try std.fmt.allocPrintSentinel(gpa, "{s}/cancelled.gguf", .{dir_path}, 0);
    defer gpa.free(cancelled);

    // The test model is Q4_1: requantizing must be asked for.
    try testing.expectError(error.InvalidArgument, rf.quantize(path, out, .{ .target = "Q8_0" }));

    var progress: QuantizeProgress = .{};
    try rf.quantize(path, out, .{
        .target = "q8_0",
        .allow_requantize = true,
        .progress = rf.quantizeProgressCallback(QuantizeProgress, &progress, QuantizeProgress.update),
    });
    try testing.expect(progress.in_order and progress.calls > 1 and progress.last_done == progress.total);

    const model = try rf.Model.load(out, .{});
    defer model.deinit();
    const input = try loadModel();
    defer input.deinit();
    try testing.expectEqual(input.nVocab(), model.nVocab());
    const ctx = try rf.Context.init(model, .{});
    defer ctx.deinit();
    const sampler = try rf.Sampler.init(&.{.greedy});
    defer sampler.deinit();
    // Q8_0 is close to the Q4_1 input: the greedy answer is still Paris.
    const got = try generate(gpa, model, ctx, sampler, prompt, 4);
    defer gpa.free(got);
    try testing.expectStringStartsWith(got, prompt ++ " Paris");

    var stopper: QuantizeProgress = .{ .stop_after = 1 };
    try testing.expectError(error.Cancelled, rf.quantize(path, cancelled, .{
        .target = "q8_0",
        .allow_requantize = true,
        .progress = rf.quantizeProgressCallback(QuantizeProgress, &stopper, QuantizeProgress.update),
    }));
    try testing.expectEqual(1, stopper.calls);
    // Only the finished file is in the directory: no output, no temporary left behind.
    var names: usize = 0;
    var it = dir.iterate();
    while (try it.next(io)) |entry| {
        try testing.expectEqualStrings("q8_0.gguf", entry.name);
        names += 1;
    }
    try testing.expectEqual(1, names);
}
